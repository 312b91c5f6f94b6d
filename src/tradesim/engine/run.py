"""Paper trading from the command line: a `TradingEngine` on simulated, replayed or Binance feeds.

`build_engine` turns an `EngineConfig` (from ``runners.toml`` or from the
``tradesim run`` options) into an engine with its feeds and runners;
`run_engine` runs it with a live status line, stops cleanly on Ctrl-C or
SIGTERM (runners stop, open positions are closed at the last close) and
prints a summary table. Runners use the same execution model as backtests.
"""

from __future__ import annotations

import asyncio
import logging
import signal
import time
from pathlib import Path
from typing import IO, Any

from tradesim.data import Bars
from tradesim.engine import TradingEngine
from tradesim.engine.config import EngineConfig, FeedConfig, RunnerConfig
from tradesim.engine.feed_watch import DEFAULT_MAX_OFFLINE_S, FeedOffline, FeedWatch
from tradesim.jsonable import jsonable
from tradesim.recording import SessionRecorder
from tradesim.runner import SymbolRunner

__all__ = ["build_engine", "engine_session_result", "make_feed", "record_session", "run_engine", "run_paper"]

log = logging.getLogger(__name__)


def make_feed(cfg: FeedConfig) -> Any:
    """The feed object for one feed configuration.

    Raises
    ------
    ValueError
        A replay feed without data files, or bad feed options.
    """
    if cfg.type == "simulated":
        from tradesim.feeds.simulated import SimulatedFeed

        return SimulatedFeed(tuple(cfg.symbols or ["BTCUSDT"]), interval=cfg.interval, seed=cfg.seed,
                             bars=cfg.bars or None, speed=cfg.speed, start_price=cfg.start_price)
    if cfg.type == "replay":
        if not cfg.data:
            raise ValueError("a replay feed needs data files")
        recordings = [d for d in cfg.data if d.endswith((".txt", ".txt.gz"))]
        if recordings:
            from tradesim.feeds.recorded import RecordedFeed

            from_trades = _bars_from_trades(recordings, cfg.interval, cfg.bars_from)
            return RecordedFeed(recordings if len(recordings) > 1 else recordings[0],
                                interval=None if from_trades else cfg.interval,
                                klines_from_trades=cfg.interval if from_trades else None,
                                speed=cfg.speed)
        from tradesim.feeds.historical import HistoricalFeed

        return HistoricalFeed(cfg.data, symbols=cfg.symbols or None, speed=cfg.speed)
    from tradesim.feeds.binance import BinanceFeed

    return BinanceFeed(cfg.symbols, cfg.interval, region=cfg.region, base_url=cfg.base_url,
                       rest_url=cfg.rest_url)


def _bars_from_trades(recordings: list[str], interval: str, bars_from: str) -> bool:
    """Whether a recorded replay builds its bars from trades (see FeedConfig.bars_from).

    Raises
    ------
    ValueError
        The recording holds neither the kline stream of `interval` nor trades, or
        not the stream `bars_from` asks for; the message names what it does hold.
    """
    from tradesim.feeds.recorded import recorded_streams

    kinds = recorded_streams(recordings, stop_when={f"kline_{interval}", "trade"})
    has_klines, has_trades = f"kline_{interval}" in kinds, "trade" in kinds
    names = ", ".join(Path(r).name for r in recordings)
    found = ", ".join(sorted(kinds)) or "no streams"
    if bars_from == "klines" and not has_klines:
        raise ValueError(f"{names}: no @kline_{interval} stream to replay (it holds: {found}); "
                         f"use bars_from = 'trades' / --bars-from trades to build bars from trades")
    if bars_from == "trades" and not has_trades:
        raise ValueError(f"{names}: no @trade stream to build bars from (it holds: {found})")
    if bars_from == "auto" and not (has_klines or has_trades):
        raise ValueError(f"{names}: nothing to build {interval} bars from: no @kline_{interval} and no "
                         f"@trade stream (it holds: {found})")
    from_trades = bars_from == "trades" or (bars_from == "auto" and not has_klines)
    if from_trades and bars_from == "auto":
        log.warning("%s: no @kline_%s stream; building %s bars from its @trade stream", names, interval,
                    interval)
    return from_trades


def build_engine(config: EngineConfig, feeds: dict[str, Any] | None = None) -> TradingEngine:
    """An engine with the configured feeds and runners (`feeds` overrides by name, for tests).

    Raises
    ------
    StrategyLoadError
        A strategy failed to load.
    ValueError
        A runner names a symbol its feed does not serve.
    """
    e = config.engine
    engine = TradingEngine(workers=e.workers, max_workers=max(e.max_workers, e.workers),
                           queue_size=e.queue_size, busy_poll_us=e.busy_poll_us,
                           history_limit=e.history_limit, portfolio=config.portfolio)
    for name, feed_cfg in config.resolved_feeds().items():
        engine.add_feed((feeds or {}).get(name) or make_feed(feed_cfg), name)
    for r in config.runners:
        _add_runner(engine, r)
    return engine


def _add_runner(engine: TradingEngine, r: RunnerConfig) -> str:
    return engine.add_runner(
        r.symbol, r.strategy, feed=r.feed, runner_id=r.id, params=dict(r.params) or None,
        window_size=r.window_size, queue_size=r.queue_size,
        execution=r.execution,
        max_consecutive_errors=r.max_consecutive_errors, ambiguity_policy=r.ambiguity_policy,
        analysis_timeout_bars=r.analysis_timeout_bars, risk=r.risk)


def record_session(engine: TradingEngine, recorder: SessionRecorder, config: EngineConfig | None) -> None:
    """Record `engine`'s run with `recorder`; the manifest keeps `config` and the simulated feeds' seeds."""
    if config is not None:
        recorder.manifest["config"] = jsonable(config.model_dump())
        recorder.manifest["seeds"] = {name: f.seed for name, f in config.resolved_feeds().items()
                                      if f.type == "simulated"}
    engine.record(recorder)


def run_engine(engine: TradingEngine, *, console=None, duration: float | None = None,
               events_file: IO[bytes] | None = None,
               max_offline: float = DEFAULT_MAX_OFFLINE_S, err_console=None,
               recorder: SessionRecorder | None = None) -> TradingEngine:
    """Run `engine` until its feeds end, `duration` s pass, or SIGINT/SIGTERM; print a summary.

    `events_file` receives every event as one JSON line. The cause of each failed
    connection attempt of a live feed goes to `err_console` (stderr), rate-limited.
    `recorder` (already attached with `record_session`, or attached here) records
    the session; it is finished after the summary, which names it.

    Raises
    ------
    FeedOffline
        After the summary, when a live feed had no connection for `max_offline`
        seconds (0: retry for ever) and the run was stopped for it.
    """
    from rich.console import Console
    from rich.live import Live
    from rich.markup import escape

    console = console or Console()
    err_console = err_console or Console(stderr=True)
    if recorder is not None and engine.recorder is not recorder:
        engine.record(recorder)
    started = time.monotonic()
    interrupted = False
    watch = FeedWatch(engine, lambda text: err_console.print(escape(text), soft_wrap=True),
                      max_offline=max_offline)

    async def main(live: Live) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            try:
                loop.add_signal_handler(sig, _on_signal, engine, console, sig)
            except (NotImplementedError, RuntimeError):  # not the main thread / platform
                pass
        tasks = [loop.create_task(_refresh(engine, live, started)), loop.create_task(watch.run())]
        if events_file is not None:
            tasks.append(loop.create_task(_log_events(engine, events_file)))
        try:
            await engine.run(duration=duration)
        finally:
            # Close positions and stop the runners while the event writer still listens,
            # so the last position_closed and every runner_status reach --events.
            try:
                engine.close("end of run")
            finally:
                for task in tasks:
                    task.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
            for sig in (signal.SIGINT, signal.SIGTERM):
                try:
                    loop.remove_signal_handler(sig)
                except (NotImplementedError, RuntimeError):
                    pass

    try:
        with Live(_status_line(engine, 0.0), console=console, refresh_per_second=5,
                  transient=True) as live:
            try:
                with asyncio.Runner(loop_factory=engine.new_event_loop) as runner:  # busy-polls if asked
                    runner.run(main(live))
            except KeyboardInterrupt:  # a second Ctrl-C while shutting down
                console.print("[yellow]interrupted[/yellow]")
                interrupted = True
    except BaseException as exc:   # the session still gets its end, and says why
        if recorder is not None:
            engine.close("end of run")
            recorder.finish("failed", {"error": f"{type(exc).__name__}: {exc}"[:1024]})
        raise
    engine.close("end of run")  # a no-op unless the run was interrupted before its own close
    console.print(_summary(engine, time.monotonic() - started))
    if engine.portfolio is not None:
        console.print(_portfolio_line(engine), soft_wrap=True)
    if recorder is not None:
        recorder.finish("interrupted" if interrupted else "completed", engine_session_result(engine))
        dropped = (recorder.manifest.get("log") or {}).get("dropped") or 0
        if recorder.error:
            console.print(f"[red]session {recorder.path}: {recorder.error}[/red]")
        elif dropped:
            console.print(f"[yellow]session recorded: {recorder.path}, but {dropped:,} events did not fit in "
                          f"the log writer's queue and were dropped (the disk was too slow)[/yellow]")
        else:
            console.print(f"session recorded: {recorder.path}")
    if watch.gave_up:
        raise FeedOffline(watch.gave_up)
    return engine


def _on_signal(engine: TradingEngine, console, sig: signal.Signals) -> None:
    console.print(f"[yellow]{signal.Signals(sig).name}: stopping runners[/yellow]")
    engine.stop()


async def _refresh(engine: TradingEngine, live, started: float) -> None:
    while True:
        await asyncio.sleep(0.2)
        live.update(_status_line(engine, time.monotonic() - started))


async def _log_events(engine: TradingEngine, out: IO[bytes]) -> None:
    sub = engine.subscribe(maxsize=100_000)
    try:
        async for event in sub:
            out.write(event.to_json() + b"\n")
    finally:
        sub.close()
        while (event := sub.get_nowait()) is not None:
            out.write(event.to_json() + b"\n")
        out.flush()


def _status_line(engine: TradingEngine, elapsed: float):
    from rich.text import Text

    parts = []
    for rid in engine.runner_ids[:6]:
        r = engine.runner(rid)
        pos = r.machine.position
        held = f"{pos.side.name.lower()} {pos.quantity:g}@{pos.entry_price:.2f}" if pos else "flat"
        pnl = r.equity - r.execution.starting_cash
        parts.append(f"{rid}: {r.core.bars:,} bars {r.machine.state.name} {held} P&L {pnl:+,.2f}")
    more = len(engine.runner_ids) - 6
    feeds = ", ".join(f"{n} {f['status']}" for n, f in engine.health()["feeds"].items())
    tail = f" | +{more} more" if more > 0 else ""
    return Text(f"[{elapsed:6.1f}s] {feeds} | " + " | ".join(parts) + tail)


def _summary(engine: TradingEngine, elapsed: float):
    from rich.table import Table

    from tradesim.display import format_percent
    from tradesim.timeframes import format_time

    table = Table(title=f"tradesim run: {elapsed:.1f} s")
    for col in ("runner", "bars", "last bar (UTC)", "trades", "win rate", "fees", "P&L", "return",
                "equity", "errors", "status"):
        table.add_column(col, no_wrap=col != "status",
                         justify="left" if col in ("runner", "status", "last bar (UTC)") else "right")
    for rid in engine.runner_ids:
        r: SymbolRunner = engine.runner(rid)
        cash = r.execution.starting_cash
        pnl = r.equity - cash
        last = engine.runner_health(rid)["last_bar_time"]
        win_rate = r.winning_trades / r.trade_count if r.trade_count else float("nan")
        table.add_row(rid, f"{r.core.bars:,}", format_time(last, "%Y-%m-%d %H:%M") if last else "—",
                      f"{r.trade_count:,}", format_percent(win_rate),
                      f"{sum(t.fees for t in r.trades):,.2f}", f"{pnl:+,.2f}", format_percent(pnl / cash),
                      f"{r.equity:,.2f}", str(r.error_count),
                      r.status.value + (f" ({r.status_reason})" if r.status.value == "failed" else ""))
    return table


def _portfolio_line(engine: TradingEngine) -> str:
    """The portfolio after the run: equity, P&L, exposure per symbol, what its limits did."""
    from rich.markup import escape

    p = engine.portfolio_state() or {}
    exposure = ", ".join(f"{s} {v:,.2f}" for s, v in p["exposure"].items())
    state = "halted" if p["halted"] else ("blocked: " + "; ".join(p["blocked"].values()) if p["blocked"] else "")
    return escape(f"portfolio: equity {p['equity']:,.2f} (cash {p['cash']:,.2f}), realised P&L "
                  f"{p['realised_pnl']:+,.2f}, unrealised {p['unrealised_pnl']:+,.2f}; exposure {exposure or '—'}; "
                  f"{p['risk_events']:,} risk limit events{'; ' + state if state else ''}")


def engine_session_result(engine: TradingEngine) -> dict[str, Any]:
    """What a recorded session's manifest keeps of an engine's run: bars, trades and net P&L, in
    total and per runner (status, bars, trades, P&L in quote currency)."""
    runners = {}
    for rid in engine.runner_ids:
        r = engine.runner(rid)
        runners[rid] = {"status": r.status.value, "bars": int(r.core.bars), "trades": r.trade_count,
                        "pnl": r.equity - r.execution.starting_cash}
    out = {"bars": sum(v["bars"] for v in runners.values()),
           "trades": sum(v["trades"] for v in runners.values()),
           "net_profit": sum(v["pnl"] for v in runners.values()), "runners": runners}
    if engine.portfolio is not None:
        out["portfolio"] = engine.portfolio_state()
    return out


def run_paper(strategy: str | Path, *, symbols: list[str] | None = None, feed: str = "simulated",
              data: list[str | Bars] | None = None, speed: float = 0.0, bars: int = 5000,
              interval: str = "1m", seed: int = 0, cash: float = 10_000.0,
              params: dict[str, Any] | None = None, console=None, region: str = "com",
              base_url: str | None = None, rest_url: str | None = None,
              duration: float | None = None, events_file: IO[bytes] | None = None,
              execution: dict[str, Any] | None = None,
              busy_poll_us: float = 0.0, bars_from: str = "auto",
              max_offline: float = DEFAULT_MAX_OFFLINE_S, err_console=None,
              recorder: SessionRecorder | None = None, risk: dict[str, Any] | None = None,
              portfolio: dict[str, Any] | None = None) -> list[SymbolRunner]:
    """Run one strategy on each symbol of one feed (``tradesim run`` without ``--config``).

    `recorder` records the run as a session (see `run_engine`). For ``feed="replay"``,
    `data` holds bar files or recordings, or loaded `Bars` (e.g. from `tradesim.catalog`).
    `risk` and `portfolio` are the ``[risk]`` and ``[portfolio]`` tables of a runners.toml
    (field -> value; validated as there).

    Returns the runners after the run (positions closed, status STOPPED or FAILED).
    """
    from tradesim.engine.config import parse_config

    symbols = [s.upper() for s in (symbols or [])]
    feed_cfg: dict[str, Any] = {"type": feed, "interval": interval, "speed": speed}
    prebuilt: dict[str, Any] = {}
    if feed == "simulated":
        feed_cfg.update(bars=bars, seed=seed)
    elif feed == "replay":
        loaded = [d for d in data or [] if isinstance(d, Bars)]  # e.g. from the catalog
        feed_cfg.update(data=[b.source for b in loaded] if loaded else list(data or []), bars_from=bars_from)
        if loaded:
            from tradesim.feeds.historical import HistoricalFeed

            if len(loaded) != len(data or []):
                raise ValueError("give bar files or loaded Bars, not both")
            prebuilt["main"] = HistoricalFeed(loaded, speed=speed)
            symbols = symbols or list(prebuilt["main"].symbols)
        elif not symbols:  # the files name the symbols: build the feed once and ask it
            prebuilt["main"] = make_feed(FeedConfig(**feed_cfg))
            symbols = list(prebuilt["main"].symbols)
    else:
        feed_cfg.update(region=region, base_url=base_url, rest_url=rest_url)
    runners = [{"symbol": s, "strategy": str(strategy), "feed": "main",
                "params": dict(params or {}),
                "execution": {"starting_cash": cash, **(execution or {})}}
               for s in (symbols or ["BTCUSDT"])]
    config = parse_config({"engine": {"busy_poll_us": busy_poll_us}, "feeds": {"main": feed_cfg},
                           "risk": dict(risk or {}), "portfolio": dict(portfolio or {}),
                           "runners": runners}, "tradesim run")
    engine = build_engine(config, prebuilt)
    if recorder is not None:
        record_session(engine, recorder, config)
    run_engine(engine, console=console, duration=duration, events_file=events_file,
               max_offline=max_offline, err_console=err_console, recorder=recorder)
    return [engine.runner(rid) for rid in engine.runner_ids]

