"""`runners.toml`: the engine's feeds and runners, read with `tomllib`, checked with pydantic.

Example::

    [engine]
    workers = 2            # threads for strategy calls
    queue_size = 1024      # bars a runner may fall behind on a live feed
    history_limit = 10000  # newest trades / errors / rejections each runner keeps

    [sessions]             # record runs (docs/sessions.md); `tradesim run --record DIR` too
    record = true
    folder = "sessions"    # default: $TRADESIM_SESSIONS or ./sessions
    fsync = "interval"     # never | interval | block
    flush_interval = 0.2   # s

    [feeds.sim]            # named feeds; a runner may also just say feed = "simulated"
    type = "simulated"     # simulated | replay | binance
    interval = "1m"
    bars = 5000
    speed = 0

    [feeds.live]
    type = "binance"
    interval = "1m"
    region = "com"         # or "us"; base_url / rest_url override (e.g. a test server)

    [risk]                 # every runner's own limits (docs/orders.md, Risk limits)
    max_position_notional = 5000   # quote currency; 0 = none
    max_daily_loss_pct = 3         # percent; 0 = none
    max_drawdown_pct = 10
    on_breach = "block"            # block | halt

    [portfolio]            # limits across all runners
    cash = "per_runner"            # per_runner | shared
    max_open_positions = 2
    max_daily_loss_pct = 5
    max_drawdown_pct = 15
    on_breach = "halt"

    [[runners]]
    symbol = "BTCUSDT"
    strategy = "lua-strategies/examples/ema_crossover.lua"
    feed = "sim"
    window_size = 500
    params = { fast = 12, slow = 26 }
    execution = { fill = "next_open", slippage_bps = 1, commission_bps = 10, starting_cash = 10000,
                  lot_size = 0.00001, min_notional = 5 }
    risk = { max_drawdown_pct = 20 }   # overrides [risk] keys for this runner

A feed's symbols are those of the runners on it (plus any it lists). An
invalid file raises `ConfigError` naming the key path, e.g.
``runners[1].execution.slippage_bps: Input should be a valid number``.
Relative paths (strategies, data files) are resolved against the TOML file's folder.
"""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from tradesim.engine.trading_engine import DEFAULT_HISTORY_LIMIT
from tradesim.portfolio import PortfolioConfig
from tradesim.runner.execution import ExecutionConfig
from tradesim.runner.risk import RiskConfig
from tradesim.timeframes import parse_interval

__all__ = ["ConfigError", "EngineConfig", "FeedConfig", "RunnerConfig", "SessionsSection", "load_config",
           "parse_config"]

FEED_TYPES = ("simulated", "replay", "binance")


class ConfigError(ValueError):
    """The configuration is invalid; the message names the key path(s)."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class EngineSection(_Strict):
    workers: int = Field(2, ge=1, le=64)
    max_workers: int = Field(32, ge=1, le=256)
    queue_size: int = Field(1024, ge=1)
    #: µs idle threads spin before parking (0 = park at once; see TradingEngine)
    busy_poll_us: float = Field(0.0, ge=0)
    #: newest trades, errors, rejections and closed positions kept per runner (counts stay exact)
    history_limit: int = Field(DEFAULT_HISTORY_LIMIT, ge=1)


class FeedConfig(_Strict):
    """One feed. Only the keys of its `type` are used."""

    type: Literal["simulated", "replay", "binance"]
    symbols: list[str] = Field(default_factory=list)
    interval: str = "1m"
    speed: float = Field(0.0, ge=0)
    # simulated
    bars: int = Field(5000, ge=0)
    seed: int = 0
    start_price: float | None = Field(None, gt=0)   # None: a typical level per symbol
    # replay: bar files (kline/generic CSV, Parquet) or Binance recordings (.txt/.txt.gz)
    data: list[str] = Field(default_factory=list)
    #: recordings only: bars from the @kline stream, from @trade (built here), or auto
    #: (klines when recorded, else trades; an error when neither is)
    bars_from: Literal["auto", "klines", "trades"] = "auto"
    # binance
    region: Literal["com", "us"] = "com"
    base_url: str | None = None
    rest_url: str | None = None

    @field_validator("symbols")
    @classmethod
    def _upper(cls, v: list[str]) -> list[str]:
        return [s.upper() for s in v]

    @field_validator("interval")
    @classmethod
    def _interval(cls, v: str) -> str:
        if v != "1M":
            parse_interval(v)
        return v


class RunnerConfig(_Strict):
    """One (symbol, strategy) runner."""

    symbol: str
    strategy: str
    feed: str = "simulated"
    id: str | None = None
    params: dict[str, float | int | str | bool] = Field(default_factory=dict)
    window_size: int = Field(500, ge=1)
    queue_size: int | None = Field(None, ge=1)
    max_consecutive_errors: int = Field(10, ge=1)
    ambiguity_policy: Literal["stop_loss_first", "take_profit_first", "open_distance"] = \
        "stop_loss_first"
    analysis_timeout_bars: int = Field(0, ge=0)
    data: str | None = None   # bar file for an implicit replay feed
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)
    #: the runner's own limits: the file's [risk] table with this table's keys on top
    risk: RiskConfig = Field(default_factory=RiskConfig)

    @field_validator("symbol")
    @classmethod
    def _upper(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("must not be empty")
        return v.strip().upper()


class SessionsSection(_Strict):
    """``[sessions]``: recording runs as sessions (docs/sessions.md)."""

    #: record every run (``tradesim run --config``) without ``--record``
    record: bool = False
    #: the sessions folder (relative to the TOML file); $TRADESIM_SESSIONS or ./sessions if unset
    folder: str | None = None
    #: the log's fsync policy: never | interval | block
    fsync: Literal["never", "interval", "block"] = "interval"
    #: seconds between the log writer's timed flushes (what a power loss can cost)
    flush_interval: float = Field(0.2, gt=0, le=60)
    #: when the writer's queue is full: drop (count and report; the live path never waits on
    #: the disk) | block (wait for the disk: nothing lost, the feed may stall)
    on_full: Literal["block", "drop"] = "drop"


class EngineConfig(_Strict):
    """The whole file."""

    engine: EngineSection = Field(default_factory=EngineSection)
    sessions: SessionsSection = Field(default_factory=SessionsSection)
    #: defaults of every runner's ``risk`` table
    risk: RiskConfig = Field(default_factory=RiskConfig)
    portfolio: PortfolioConfig = Field(default_factory=PortfolioConfig)
    feeds: dict[str, FeedConfig] = Field(default_factory=dict)
    runners: list[RunnerConfig] = Field(min_length=1)

    @model_validator(mode="before")
    @classmethod
    def _risk_defaults(cls, data: Any) -> Any:
        # [risk] holds defaults: each runner's own risk table is merged over it before validation
        # (a bad default is reported under risk.*, and under each runner it reaches).
        if not isinstance(data, dict) or not isinstance(data.get("risk"), dict):
            return data
        runners = data.get("runners")
        if not isinstance(runners, list):
            return data
        merged = []
        for runner in runners:
            if isinstance(runner, dict) and isinstance(runner.get("risk", {}), dict):
                runner = {**runner, "risk": {**data["risk"], **runner.get("risk", {})}}
            merged.append(runner)
        return {**data, "runners": merged}

    @model_validator(mode="after")
    def _feeds_exist(self) -> EngineConfig:
        for i, runner in enumerate(self.runners):
            if runner.feed not in self.feeds and runner.feed not in FEED_TYPES:
                raise ValueError(f"runners[{i}].feed: {runner.feed!r} is neither a [feeds.*] table "
                                 f"({sorted(self.feeds)}) nor one of {list(FEED_TYPES)}")
            if runner.feed == "replay" and runner.feed not in self.feeds and not runner.data:
                raise ValueError(f"runners[{i}].data: a runner on the implicit replay feed needs "
                                 f"a bar file")
        return self

    def resolved_feeds(self) -> dict[str, FeedConfig]:
        """Every feed the runners use, implicit ones included, with their symbols filled in."""
        feeds: dict[str, FeedConfig] = dict(self.feeds)
        symbols: dict[str, list[str]] = {name: list(f.symbols) for name, f in feeds.items()}
        data: dict[str, list[str]] = {name: list(f.data) for name, f in feeds.items()}
        for runner in self.runners:
            if runner.feed not in feeds:
                feeds[runner.feed] = FeedConfig(type=runner.feed)
                symbols[runner.feed], data[runner.feed] = [], []
            if runner.symbol not in symbols[runner.feed]:
                symbols[runner.feed].append(runner.symbol)
                if runner.data:
                    data[runner.feed].append(runner.data)
        return {name: f.model_copy(update={"symbols": symbols[name], "data": data[name]})
                for name, f in feeds.items()}


def _path(loc: tuple) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += ("." if out else "") + str(part)
    return out


def parse_config(data: dict[str, Any], source: str = "config", base_dir: Path | None = None) -> EngineConfig:
    """Validate a decoded TOML document.

    Raises
    ------
    ConfigError
        One line per problem, each naming the key path and the value.
    """
    try:
        config = EngineConfig.model_validate(data)
    except ValidationError as exc:
        lines = []
        for err in exc.errors():
            where = _path(err["loc"]) or "(top level)"
            msg = err["msg"].removeprefix("Value error, ")
            got = err.get("input")
            shown = "" if isinstance(got, dict) or err["type"] == "missing" else f" (got {got!r})"
            lines.append(f"{where}: {msg}{shown}" if not msg.startswith(where) else msg)
        raise ConfigError(f"{source}: invalid configuration:\n  " + "\n  ".join(lines)) from None
    if base_dir is not None:
        config = _resolve_paths(config, base_dir)
    return config


def _resolve_paths(config: EngineConfig, base: Path) -> EngineConfig:
    def fix(p: str | None) -> str | None:
        if p is None:
            return None
        path = Path(p).expanduser()
        return str(path if path.is_absolute() else base / path)

    runners = [r.model_copy(update={"strategy": fix(r.strategy), "data": fix(r.data)})
               for r in config.runners]
    feeds = {n: f.model_copy(update={"data": [fix(d) for d in f.data]}) for n, f in config.feeds.items()}
    sessions = config.sessions.model_copy(update={"folder": fix(config.sessions.folder)})
    return config.model_copy(update={"runners": runners, "feeds": feeds, "sessions": sessions})


def load_config(path: str | Path) -> EngineConfig:
    """Read and validate a ``runners.toml`` file.

    Raises
    ------
    ConfigError
        Unreadable file, TOML syntax error (with line and column), or invalid content.
    """
    path = Path(path)
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: TOML syntax error: {exc}") from None
    return parse_config(data, str(path), base_dir=path.parent)
