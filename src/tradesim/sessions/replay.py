"""Replaying a recorded session: its exact inputs through the strategy again, or through another.

`replay` re-runs the recorded inputs (bars with their bid/ask, in recorded
order, the runners added and the control commands applied where they were)
through fresh runners built from the manifest: the recorded strategy source,
parameters and execution settings, so that a file edited since does not
matter. With the same strategy and parameters the decisions, fills and trades
must be identical; `ReplayResult.comparison` says whether they are and, if
not, where they first differ. With ``strategy=`` or ``params=`` it is a
what-if run on exactly the recorded inputs.

`backtest_session` runs each recorded runner's bars through `Backtest`
instead (``tradesim diff-live``): the same bars, the backtest engine's loop.
"""

from __future__ import annotations

import tempfile
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tradesim._core import InvalidMarketData, MarketData
from tradesim.backtest import Backtest
from tradesim.jsonable import plain
from tradesim.recording.recorder import bar_columns
from tradesim.runner import FINAL_STATUSES, SymbolRunner
from tradesim.runner.execution import ExecutionConfig
from tradesim.runner.risk import RiskConfig
from tradesim.sessions.compare import Comparison, compare_outcomes
from tradesim.sessions.session import OUTCOME_TYPES, RunnerInfo, Session, chunk_span

__all__ = ["ReplayResult", "backtest_session", "replay"]

#: Runner errors that mean "this bar was refused" (the input's fault, not the strategy's).
REFUSED_BAR_ERRORS = frozenset({"InvalidMarketData", "OutOfOrderBar"})


@dataclass
class ReplayResult:
    """What a replay did, and how it compares with the recording.

    Attributes
    ----------
    session : Session
    runners : dict of str to SymbolRunner
        The replay's runners by the recorded keys (after the run).
    outcomes : dict of str to list of dict
        Each runner's outcome events in the replay (the recorded events' form).
    comparison : Comparison
        Recorded (A) against replayed (B).
    what_if : bool
        Another strategy or other parameters were used.
    bars : int
        Bars replayed (all runners).
    seconds : float
    notes : list of str
        What the replay could not reproduce (e.g. control commands a backtest does not apply).
    """

    session: Session
    runners: dict[str, SymbolRunner]
    outcomes: dict[str, list[dict[str, Any]]]
    comparison: Comparison
    what_if: bool
    bars: int
    seconds: float
    notes: list[str] = field(default_factory=list)

    @property
    def identical(self) -> bool:
        """True when every runner's decisions, fills and trades equal the recorded ones."""
        return self.comparison.first is None


#: Recorded runner options a `SymbolRunner` (replay) and a `Backtest` (diff-live) take.
RUNNER_OPTIONS = ("max_consecutive_errors", "ambiguity_policy", "analysis_timeout_bars", "history_limit")
BACKTEST_OPTIONS = RUNNER_OPTIONS[:3]


def _write_script(folder: Path, info: RunnerInfo) -> Path:
    """The recorded source under the recorded file name (the strategy's name and its errors name
    the file), in a folder of its own (a reload rewrites only this copy)."""
    folder.mkdir()
    path = folder / (Path(info.script).name or "strategy.lua")
    path.write_text(info.source, encoding="utf-8")
    return path


def _outcome_sink(key: str, sink: list[dict[str, Any]]):
    """A `SymbolRunner.record_to` sink keeping the runner's outcome events in the recorded form."""
    def record(event: dict[str, Any]) -> None:
        if event["type"] in OUTCOME_TYPES:
            sink.append({"runner": key, **plain(event)})
    return record


class _Runners:
    """The replay's runners: each built from its recorded strategy source, recording its outcomes."""

    def __init__(self, session: Session, folder: Path, strategy: str | Path | None,
                 params: dict[str, Any] | None) -> None:
        self.session = session
        self.folder = folder
        self.strategy = Path(strategy) if strategy is not None else None
        self.params = dict(params or {})
        self.by_key: dict[str, SymbolRunner] = {}
        self.info: dict[str, RunnerInfo] = {}
        self.outcomes: dict[str, list[dict[str, Any]]] = {}
        self.scripts: dict[str, Path] = {}

    def add(self, info: RunnerInfo) -> SymbolRunner:
        if self.strategy is not None:
            path, params = self.strategy, dict(self.params)
        else:
            path = self.scripts[info.key] = _write_script(self.folder / f"r{len(self.scripts)}", info)
            params = {**info.params, **self.params}
        options = {k: v for k, v in info.options.items() if k in RUNNER_OPTIONS}
        runner = SymbolRunner(info.symbol, path, params=params, window_size=info.window_size,
                              execution=ExecutionConfig(**info.execution),
                              risk=RiskConfig(**(info.risk or {})), **options)
        runner.record_to(_outcome_sink(info.key, self.outcomes.setdefault(info.key, [])))
        self.by_key[info.key] = runner
        self.info[info.key] = info
        return runner

    def reload(self, key: str, source: str | None) -> bool:
        """Apply a recorded reload (False for a what-if run, which keeps its own strategy)."""
        if self.strategy is not None or source is None:
            return False
        self.scripts[key].write_text(source, encoding="utf-8")
        self.by_key[key].reload()
        return True


def replay(session: Session, *, strategy: str | Path | None = None, params: dict[str, Any] | None = None,
           speed: float = 0.0, sleep: Callable[[float], Any] = time.sleep,
           progress: Callable[[int], Any] | None = None) -> ReplayResult:
    """Re-run `session`'s recorded inputs through its strategies (or `strategy`, with `params`).

    Parameters
    ----------
    session : Session
    strategy : path, optional
        Another Lua strategy for every runner (a what-if run).
    params : dict, optional
        Parameter overrides (a what-if run).
    speed : float
        0: as fast as possible; N: N times the recorded pace (bar open times).
    sleep : callable
        Waits that many seconds (tests pass a fake).
    progress : callable, optional
        ``progress(bars_done)`` after each batch.

    Raises
    ------
    StrategyLoadError
        A strategy (recorded or `strategy`) does not load, or `params` names an unknown parameter.
    LogCorrupt
        The log has a corrupt block (the replay stops there: nothing corrupt is replayed).
    """
    if speed < 0:
        raise ValueError(f"speed = {speed}: must be >= 0")
    what_if = strategy is not None or bool(params)
    started = time.perf_counter()
    notes: list[str] = []
    with tempfile.TemporaryDirectory(prefix="tradesim-replay-") as tmp:
        runners = _Runners(session, Path(tmp), strategy, params)
        infos = {info.key: info for info in session.runners()}
        for info in infos.values():
            if not info.added_during_run:   # the others join at their runner_added event
                runners.add(info)
        controls = _controls(session)
        bars = 0
        last_ts: int | None = None
        for event in session.inputs():
            kind = event["type"]
            if kind == "bars":
                runner = runners.by_key.get(event["runner"])
                if runner is not None:
                    bars += _run_chunk(runner, event)
                    last_ts = _pace(speed, sleep, last_ts, chunk_span(event)[1])
            elif kind == "bar":
                md = _bar(event)
                last_ts = _pace(speed, sleep, last_ts, md.timestamp)
                for key, runner in runners.by_key.items():
                    info = runners.info[key]
                    if info.symbol != md.symbol or (info.feed is not None and info.feed != event["feed"]):
                        continue
                    _apply_controls(runners, key, controls, notes)
                    if runner.status in FINAL_STATUSES:
                        continue
                    try:
                        runner.process(md)
                        bars += 1
                    except InvalidMarketData as exc:   # as the engine's inbox: refuse the bar, go on
                        runner.emit("runner_error", timestamp=md.timestamp, error=type(exc).__name__,
                                    message=str(exc)[:1024])
            elif kind == "runner_added" and event["key"] not in runners.by_key:
                runners.add(infos[event["key"]])
                _apply_controls(runners, event["key"], controls, notes)
            elif kind == "shutdown" and event.get("runner") is None:
                break
            if progress is not None and kind in ("bars", "bar"):
                progress(bars)
        for key in runners.by_key:
            _apply_controls(runners, key, controls, notes)
        for runner in runners.by_key.values():
            runner.record_to(None)
    notes.extend(session.warnings())
    notes.extend(portfolio_notes(session))
    comparison = compare_outcomes(session.outcomes(), runners.outcomes, label_a=f"recorded {session.id}",
                                  label_b="what-if replay" if what_if else "replay",
                                  inputs_a=session, inputs_b=session)
    return ReplayResult(session, runners.by_key, runners.outcomes, comparison, what_if, bars,
                        time.perf_counter() - started, notes)


def portfolio_notes(session: Session) -> list[str]:
    """Why a replay may differ: the recording ran with portfolio settings a replay does not apply."""
    portfolio = (session.manifest.get("config") or {}).get("portfolio") or {}
    used = {k: v for k, v in portfolio.items()
            if (k == "cash" and v == "shared") or (k.startswith("max_") and v)}
    if not used:
        return []
    shown = ", ".join(f"{k} = {v}" for k, v in used.items())
    return [f"the recording ran with portfolio settings ({shown}) that a replay does not apply: entries "
            f"the portfolio rejected or sized from shared cash may differ (halts it ordered are replayed)"]


def _controls(session: Session) -> dict[str, deque[dict[str, Any]]]:
    out: dict[str, deque[dict[str, Any]]] = {}
    for event in session.log.events(types={"control"}):
        if event.get("runner") is not None and "bars" in event:
            out.setdefault(event["runner"], deque()).append(event)
    return out


def _apply_controls(runners: _Runners, key: str, controls: dict[str, deque], notes: list[str]) -> None:
    # A control applies where it was applied live: after the runner's `bars`-th bar.
    pending = controls.get(key)
    runner = runners.by_key[key]
    while pending and pending[0]["bars"] <= runner.core.bars:
        event = pending.popleft()
        command = event["command"]
        if command == "pause":
            runner.pause()
        elif command == "resume":
            runner.resume()
        elif command in ("stop", "remove"):
            runner.stop(event.get("reason") or ("removed" if command == "remove" else "stopped by request"))
        elif command == "reload" and event.get("failed"):   # live, the old version kept running
            runner.emit("runner_error", timestamp=None, error=event.get("error"), message=event.get("message"))
        elif command == "reload":
            if not runners.reload(key, event.get("source")):
                notes.append(f"{key}: the recorded reload at bar {event['bars']} was not applied (what-if)")
        elif command == "exit":
            runner.close_position(event.get("reason") or "forced exit")
        elif command == "halt":   # by request, or by the engine's portfolio limits
            runner.halt(event.get("reason") or "halted by request")
        else:
            notes.append(f"{key}: control {command!r} at bar {event['bars']} is not replayed")


def _run_chunk(runner: SymbolRunner, event: dict[str, Any]) -> int:
    cols = bar_columns(event)
    n = event["count"]
    if runner.status in FINAL_STATUSES or n == 0:
        return 0
    quote = np.full(n, np.nan)
    equity = np.empty(n)
    in_pos = np.zeros(n, dtype=np.uint8)
    done = runner.core.run(cols["timestamp"], cols["open"], cols["high"], cols["low"], cols["close"],
                           cols["volume"], quote, quote, equity, in_pos, 0, n)
    return int(done)


_UNKNOWN = float("nan")   # a quote a bar event does not hold (MarketData: NaN is unknown)


def _bar(event: dict[str, Any]) -> MarketData:
    return MarketData(event["symbol"], event["timestamp"], event["open"], event["high"], event["low"],
                      event["close"], event["volume"], event.get("bid", _UNKNOWN), event.get("ask", _UNKNOWN),
                      validate=False)


def _pace(speed: float, sleep: Callable[[float], Any], last: int | None, ts: int) -> int:
    if speed > 0 and last is not None and ts > last:
        sleep((ts - last) / 1000.0 / speed)
    return ts


def backtest_session(session: Session) -> ReplayResult:
    """Run each recorded runner's bars through `Backtest` and compare with the recording (``diff-live``).

    The backtest takes the runner's bars in their recorded order (bars the
    live runner refused, out of order, are left out, as the runner left them
    out), its recorded strategy source, parameters and execution, and does
    not close positions at the end. Runner errors for refused bars are not
    compared (a backtest never sees those bars); control commands applied
    live (pause, reload ...) are listed in `notes`: a backtest does not apply them.
    """
    started = time.perf_counter()
    notes: list[str] = []
    outcomes: dict[str, list[dict[str, Any]]] = {}
    runners: dict[str, SymbolRunner] = {}
    bars_total = 0
    notes.extend(session.warnings())
    notes.extend(portfolio_notes(session))
    for event in session.log.events(types={"control"}):
        if event.get("runner") is not None and event["command"] not in ("stop", "remove"):
            notes.append(f"{event['runner']}: control {event['command']!r} after bar {event.get('bars')} "
                         f"was applied live; a backtest does not apply it")
    with tempfile.TemporaryDirectory(prefix="tradesim-diff-live-") as tmp:
        for i, info in enumerate(session.runners()):
            bars = _increasing(session.bars_for(info.key))
            script = _write_script(Path(tmp) / f"r{i}", info)
            options = {k: v for k, v in info.options.items() if k in BACKTEST_OPTIONS}
            bt = Backtest(script, bars, params=info.params, execution=ExecutionConfig(**info.execution),
                          window_size=info.window_size, close_at_end=False,
                          risk=RiskConfig(**info.risk) if info.risk else None, **options)
            runner = bt.runners[0][0]
            runner.record_to(_outcome_sink(info.key, outcomes.setdefault(info.key, [])))
            if len(bars):
                bt.run()
            runner.record_to(None)
            runners[info.key] = runner
            bars_total += len(bars)
    recorded = {key: [e for e in events if not _refused_bar(e)] for key, events in session.outcomes().items()}
    comparison = compare_outcomes(recorded, outcomes, label_a=f"live {session.id}", label_b="backtest",
                                  inputs_a=session, inputs_b=session)
    return ReplayResult(session, runners, outcomes, comparison, False, bars_total,
                        time.perf_counter() - started, notes)


def _refused_bar(event: dict[str, Any]) -> bool:
    return event["type"] == "runner_error" and event.get("error") in REFUSED_BAR_ERRORS


def _increasing(bars):
    # The bars a runner accepted: each strictly after the previous accepted one.
    ts = bars.timestamp
    if len(ts) < 2 or bool(np.all(np.diff(ts) > 0)):
        return bars
    keep = np.zeros(len(ts), dtype=bool)
    last = None
    for i, t in enumerate(ts.tolist()):
        if last is None or t > last:
            keep[i] = True
            last = t
    return type(bars)(bars.symbol, ts[keep], bars.open[keep], bars.high[keep], bars.low[keep],
                      bars.close[keep], bars.volume[keep], bars.source, bars.interval_ms)
