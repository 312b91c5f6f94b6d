"""`Backtest`: run strategies over recorded bars with simulated execution.

Each (symbol, strategy) pair gets its own `SymbolRunner` (its own sandbox,
window, indicators, state machine and cash: the starting cash is split evenly
between runners). Without portfolio limits or shared cash the runners are
independent, so each processes its symbol's bars in one pass through the same
per-bar step a live runner uses (the fast path); the portfolio equity curve is
the sum of the runners' curves on the union of their timestamps.

With a `PortfolioConfig` that limits the portfolio or shares its cash, the
runners are processed interleaved in timestamp order instead: every runner's
bar at time t (in runner order: strategies, then symbols, as given) before any
bar at t+1, and the `Portfolio` checked after each timestamp, so its limits
apply at the bar where they are breached (docs/orders.md, Risk limits).
"""

from __future__ import annotations

import dataclasses
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tradesim.backtest.metrics import Metrics, compute_metrics
from tradesim.data import Bars, find_gaps
from tradesim.jsonable import jsonable
from tradesim.portfolio import Portfolio, PortfolioConfig, PortfolioCurves, RunPositions, portfolio_curves
from tradesim.recording import SessionRecorder
from tradesim.runner.execution import ExecutionConfig
from tradesim.runner.symbol_runner import RunnerError, SymbolRunner
from tradesim.runner.trades import Trade

__all__ = ["Backtest", "BacktestResult", "RunResult"]

_NUMBER = re.compile(r"[-+]?\d[\d.,e+-]*")

#: Bars per call into the runner between progress reports.
CHUNK = 1 << 16

#: risk_limit events a result keeps (the count covers them all).
MAX_EVENTS = 1000

#: Bars per call while recording a session: one ``bars`` event and one ``snapshot`` per runner each.
RECORD_CHUNK = 1 << 14


@dataclass
class RunResult:
    """One runner's outcome: its trades, equity curve (quote currency, per bar) and metrics."""

    symbol: str
    strategy: str
    params: dict
    trades: list[Trade]
    timestamps: np.ndarray
    equity: np.ndarray
    in_position: np.ndarray
    metrics: Metrics
    starting_cash: float
    warmup_bars: int
    errors: list[RunnerError]
    rejections: list
    status: str
    status_reason: str
    bars_processed: int

    def problems(self, limit: int = 5) -> dict:
        """What went wrong, for people: the failure reason, the first `limit` distinct error
        messages (with the bar time and the Lua location the message names) and the `limit`
        most frequent kinds of rejection (reasons alike but for their numbers), each with its
        count, first reason and first bar time (ms since epoch UTC)."""
        errors, seen = [], set()
        for e in self.errors:
            if e.message not in seen and len(errors) < limit:
                seen.add(e.message)
                errors.append({"time": e.timestamp, "kind": e.kind, "message": e.message})
        rejections: dict[tuple[str, str], dict] = {}
        for r in self.rejections:
            # Reasons that differ only in their numbers (prices, equity) are one kind of rejection.
            key = (r.action, _NUMBER.sub("#", r.reason))
            entry = rejections.setdefault(key, {"action": r.action, "reason": r.reason,
                                                "count": 0, "first_time": r.timestamp})
            entry["count"] += 1
        by_count = sorted(rejections.values(), key=lambda x: (-x["count"], x["first_time"]))
        return {"failed": self.status == "failed", "reason": self.status_reason if self.status == "failed" else "",
                "error_count": len(self.errors), "errors": errors,
                "rejection_count": len(self.rejections), "rejections": by_count[:limit]}


@dataclass
class BacktestResult:
    """Everything a backtest produced.

    Attributes
    ----------
    runs : list of RunResult
        Per (symbol, strategy) pair.
    trades : list of Trade
        All closed trades, by exit time.
    timestamps : ndarray of int64
        Bar open times (ms since epoch UTC) of the portfolio curve.
    equity : ndarray of float64
        Portfolio equity per bar (quote currency), marked at each close.
    metrics : Metrics
        Portfolio metrics (see `tradesim.backtest.metrics` for formulas).
    ledger : dict
        Assumptions and data health: fill rule, costs, bars processed, warm-up
        bars, gaps found, ambiguous exits, errors, load and run times.
    portfolio : PortfolioCurves
        Per-bar cash, realised / unrealised P&L and exposure per symbol on
        `timestamps`, the portfolio settings and its ``risk_limit`` events
        (the runners' own too); built on first access.
    """

    runs: list[RunResult]
    trades: list[Trade]
    timestamps: np.ndarray
    equity: np.ndarray
    in_position: np.ndarray
    metrics: Metrics
    ledger: dict
    bars: dict[str, Bars] = field(repr=False, default_factory=dict)
    portfolio_build: Callable[[], PortfolioCurves] | None = field(repr=False, default=None)
    _portfolio: PortfolioCurves | None = field(init=False, repr=False, default=None)

    @property
    def portfolio(self) -> PortfolioCurves | None:
        """The portfolio's P&L curves and risk events (see the class docs); None if not built."""
        if self._portfolio is None and self.portfolio_build is not None:
            # built on demand: a plain backtest that never reads them pays nothing
            self._portfolio, self.portfolio_build = self.portfolio_build(), None
        return self._portfolio

    @property
    def failed_runs(self) -> list[RunResult]:
        """The runs whose runner FAILED (stopped by its errors before the end of the data)."""
        return [r for r in self.runs if r.status == "failed"]

    def to_dict(self) -> dict:
        """Strict-JSON summary (metrics, ledger, trades; not the per-bar curves).

        Undefined metrics (NaN, e.g. no trades) and infinities become None.
        """
        return jsonable({"metrics": self.metrics.to_dict(), "ledger": self.ledger,
                "portfolio": self.portfolio.summary() if self.portfolio is not None else None,
                "runs": [{"symbol": r.symbol, "strategy": r.strategy, "params": r.params,
                          "metrics": r.metrics.to_dict(), "trades": len(r.trades),
                          "status": r.status, "status_reason": r.status_reason,
                          "problems": r.problems()}
                         for r in self.runs],
                "trades": [t.to_dict() for t in self.trades]})


def session_result(result: BacktestResult) -> dict[str, Any]:
    """The summary a recorded session's manifest keeps: bars, trades, P&L, return, per runner."""
    m = result.metrics
    return {
        "bars": int(result.ledger.get("bars_processed", 0)), "trades": len(result.trades),
        "net_profit": float(sum(t.pnl for t in result.trades)),
        "total_return": float(m.total_return),
        "runners": {f"{r.symbol}:{r.strategy}": {"status": r.status, "trades": len(r.trades),
                                                  "bars": r.bars_processed} for r in result.runs},
    }


def _as_dict(config: Any) -> dict:
    """A pydantic dataclass's settings as a dict."""
    return dataclasses.asdict(config)


def _final_status(runner: SymbolRunner) -> str:
    """A runner still running when its data ran out has "finished"; else its status (failed, ...)."""
    return "finished" if runner.status.value == "running" else runner.status.value


def _as_bars(data: Any, start: Any, end: Any) -> list[Bars]:
    from tradesim.feeds.historical import HistoricalFeed

    items = data if isinstance(data, (list, tuple)) else [data]
    feed = HistoricalFeed(list(items), start=start, end=end)
    return [feed.bars(symbol) for symbol in feed.symbols]


class Backtest:
    """Backtest one or more Lua strategies over one or more symbols' bars.

    Parameters
    ----------
    strategy : path or sequence of paths
        Lua strategy script(s); every strategy runs on every symbol.
    data : path, Bars, or a sequence of them
        Bar files (Binance kline CSV, generic OHLCV CSV, Parquet) or loaded `Bars`.
    params : dict, optional
        Parameter overrides applied to every strategy that declares them.
    start, end : int or str, optional
        Keep bars with start <= open time < end (ms since epoch UTC or ISO date).
    execution : ExecutionConfig, optional
        Fill rule and costs; or pass its fields as keyword arguments
        (``fill="close", slippage_bps=2, commission_bps=10, starting_cash=...``).
    window_size : int
        Bars kept per runner window.
    risk_free_rate : float
        Annual risk-free rate for Sharpe/Sortino (fraction, e.g. 0.04).
    close_at_end : bool
        Close positions still open at the last bar (reason "end_of_data").
    max_consecutive_errors : int
        A runner stops itself after this many failed strategy calls in a row.
    ambiguity_policy : str
        Same-bar stop-loss/take-profit policy of the state machine.
    analysis_timeout_bars : int
        Bars allowed in ANALYZING before returning to IDLE (0 = no limit).
    risk : RiskConfig, optional
        Per-runner risk limits (`tradesim.runner.risk.RiskConfig`), applied
        by every runner to itself.
    portfolio : PortfolioConfig, optional
        Portfolio cash and limits across the runners; when it sets a limit or
        shares the cash, the runners run interleaved in timestamp order.
    progress : callable, optional
        ``progress(bars_done, bars_total)`` called between chunks.

    Raises
    ------
    StrategyLoadError
        A strategy failed to load (before any bar is processed).
    DataFileError
        A data file is unreadable or has a bad row (file, line, field).
    """

    def __init__(self, strategy: str | Path | Sequence[str | Path], data: Any, *,
                 params: dict[str, Any] | None = None, start: Any = None, end: Any = None,
                 execution: ExecutionConfig | None = None, window_size: int = 500,
                 risk_free_rate: float = 0.0, close_at_end: bool = True,
                 max_consecutive_errors: int = 10, ambiguity_policy: str = "stop_loss_first",
                 analysis_timeout_bars: int = 0, risk: Any = None,
                 portfolio: PortfolioConfig | None = None,
                 progress: Callable[[int, int], Any] | None = None, **execution_fields: Any) -> None:
        if execution is not None and execution_fields:
            raise TypeError("pass either execution=ExecutionConfig(...) or its fields, not both")
        unknown = sorted(set(execution_fields) - {f.name for f in dataclasses.fields(ExecutionConfig)})
        if unknown:  # a misspelt keyword is a TypeError, as for any other function
            raise TypeError(f"Backtest() got unexpected keyword argument(s): {', '.join(unknown)}")
        self.strategies = [Path(s) for s in (strategy if isinstance(strategy, (list, tuple)) else [strategy])]
        t0 = time.perf_counter()
        self.bars = _as_bars(data, start, end)
        self.files = [Path(d) for d in (data if isinstance(data, (list, tuple)) else [data])
                      if isinstance(d, (str, Path))]
        self.load_seconds = time.perf_counter() - t0
        self.params = dict(params or {})
        self.execution = execution or ExecutionConfig(**execution_fields)
        self.window_size = window_size
        self.risk_free_rate = risk_free_rate
        self.close_at_end = close_at_end
        self.max_consecutive_errors = max_consecutive_errors
        self.ambiguity_policy = ambiguity_policy
        self.analysis_timeout_bars = analysis_timeout_bars
        self.progress = progress
        self.risk = risk
        self.portfolio = portfolio or PortfolioConfig()
        self.risk_events: list[dict] = []   # the portfolio's risk_limit events (the first MAX_EVENTS)
        self.risk_event_count = 0
        n_runners = len(self.strategies) * len(self.bars)
        per_runner = ExecutionConfig(**{**self.execution.as_dict(),
                                        "starting_cash": self.execution.starting_cash / n_runners})
        self.runners: list[tuple[SymbolRunner, Bars]] = []
        # (only given when set: runners take risk= from issue 15's per-runner limits on)
        extra = {"risk": risk} if risk is not None else {}
        for path in self.strategies:
            for bars in self.bars:
                runner = SymbolRunner(bars.symbol, path, params=self._params_for(path),
                                      window_size=window_size, execution=per_runner,
                                      max_consecutive_errors=max_consecutive_errors,
                                      ambiguity_policy=ambiguity_policy,
                                      analysis_timeout_bars=analysis_timeout_bars, **extra)
                self.runners.append((runner, bars))
        self.book: Portfolio | None = None
        if self.portfolio.active:
            # (its starting cash: the runners' shares, which add up to the backtest's)
            self.book = Portfolio([r for r, _ in self.runners], self.portfolio,
                                  on_event=self._collect_risk_event, max_events=0,
                                  halt_runner=self._halt_for_portfolio)
        self._halt_due: dict[int, str] = {}     # runner index -> why: halted after its next bar
        self._now: int | None = None            # the bar time the interleaved loop is at

    def _halt_for_portfolio(self, runner: SymbolRunner, reason: str) -> None:
        # A runner with a bar at this time closes at that close; one without waits for its
        # next bar and closes at that one's close (its newest close is from before the
        # breach, and its equity there is already booked).
        j = next(i for i, (r, _) in enumerate(self.runners) if r is runner)
        window = runner.window
        if self._now is None or (len(window) and window.latest().timestamp == self._now):
            runner.halt(reason)
        else:
            self._halt_due[j] = reason

    def _collect_risk_event(self, event: dict) -> None:
        self.risk_event_count += 1
        if len(self.risk_events) < MAX_EVENTS:
            self.risk_events.append(event)

    def _all_risk_events(self) -> tuple[list[dict], int]:
        """The portfolio's and the runners' own risk_limit events by bar time, and their count."""
        events = list(self.risk_events)
        count = self.risk_event_count
        for runner, _ in self.runners:
            kept = getattr(runner, "risk_events", ())   # (issue 15's per-runner limits)
            count += len(kept)
            events += [{"type": "risk_limit", "scope": "runner", "symbol": runner.symbol,
                        "strategy": runner.strategy.name, "limit": e.limit, "threshold": e.threshold,
                        "value": e.value, "action": e.action, "timestamp": e.timestamp} for e in kept]
        events.sort(key=lambda e: e["timestamp"])
        return events[:MAX_EVENTS], count

    def _params_for(self, path: Path) -> dict:
        # Overrides go to each strategy that declares them; a name no strategy
        # declares is an error (likely a typo).
        from tradesim.strategy import LuaStrategy, StrategyLoadError

        if not self.params:
            return {}
        if not hasattr(self, "_declared"):
            self._declared = {p: LuaStrategy(p).default_params for p in self.strategies}
        unknown = [k for k in self.params if all(k not in d for d in self._declared.values())]
        if unknown:
            known = sorted({k for d in self._declared.values() for k in d})
            raise StrategyLoadError(f"unknown parameter(s) {', '.join(map(repr, unknown))}; the "
                                    f"strategies declare: {', '.join(known)}", script=path.name,
                                    field=unknown[0])
        return {k: v for k, v in self.params.items() if k in self._declared[path]}

    def run(self, recorder: SessionRecorder | None = None) -> BacktestResult:
        """Process every bar of every runner and return the result.

        Parameters
        ----------
        recorder : SessionRecorder, optional
            Record the run as a session (started here if it is not yet, and
            finished with the result's summary): every input bar, decision,
            fill, rejection and error, in order. A recording that fails stops;
            the backtest goes on (``recorder.error`` says why).
        """
        total = sum(len(b) for _, b in self.runners)
        chunk = CHUNK
        if recorder is not None:
            self._describe(recorder)
            chunk = RECORD_CHUNK
        t0 = time.perf_counter()
        cash = None
        try:
            if self.book is None:
                runs = self._run_each(recorder, chunk, total)
            else:
                runs, cash = self._run_interleaved(recorder, chunk, total)
        except BaseException as exc:
            if recorder is not None:
                recorder.finish("interrupted" if isinstance(exc, KeyboardInterrupt) else "failed",
                                {"error": f"{type(exc).__name__}: {exc}"})
            raise
        elapsed = time.perf_counter() - t0
        result = self._combine(runs, elapsed, total, cash)
        if recorder is not None:
            recorder.finish("completed", session_result(result))
            result.ledger["session"] = {"id": recorder.id, "path": str(recorder.path),
                                        "error": recorder.error}
        return result

    def _run_each(self, recorder: SessionRecorder | None, chunk: int, total: int) -> list[RunResult]:
        # The fast path: runners are independent, each runs its whole array in C.
        done = 0
        runs: list[RunResult] = []
        for runner, bars in self.runners:
            key = f"{bars.symbol}:{runner.strategy.name}"
            n = len(bars)
            equity = np.empty(n)
            in_pos = np.zeros(n, dtype=np.uint8)
            no_quote = np.full(n, np.nan)  # klines carry no bid/ask
            i = 0
            while i < n:
                stop = min(n, i + chunk)
                if recorder is not None:
                    recorder.bars(key, bars, i, stop)
                nxt = runner.core.run(bars.timestamp, bars.open, bars.high, bars.low, bars.close,
                                      bars.volume, no_quote, no_quote, equity, in_pos, i, stop)
                if recorder is not None:
                    recorder.snapshot(key)
                done += nxt - i
                if self.progress is not None:
                    self.progress(done, total)
                if nxt < stop:  # the runner stopped itself
                    equity[nxt:] = runner.equity
                    in_pos[nxt:] = runner.core.quantity != 0
                    break
                i = nxt
            if recorder is not None:
                recorder.append({"type": "shutdown", "runner": key, "reason": "end_of_data"})
            if self.close_at_end and n:
                runner.close_position()
                equity[-1] = runner.equity
                in_pos[-1] = 0
            if recorder is not None:
                recorder.flush_outcomes(key)
            runs.append(self._run_result(runner, bars, equity, in_pos))
        return runs

    def _run_interleaved(self, recorder: SessionRecorder | None, chunk: int,
                         total: int) -> tuple[list[RunResult], np.ndarray]:
        """Every runner's bar at t before any bar at t+1, the portfolio checked after each t.

        Returns the runs and the portfolio's ledger cash at each timestamp of the union.
        """
        book = self.book
        assert book is not None
        stamps = np.unique(np.concatenate([b.timestamp for _, b in self.runners]))
        m = len(self.runners)
        lanes = [(b.timestamp.tolist(), b.open.tolist(), b.high.tolist(), b.low.tolist(), b.close.tolist(),
                  b.volume.tolist(), len(b), r, r.core) for r, b in self.runners]
        # plain lists while running (cheaper to write one item at a time than arrays)
        equity: list[list[float]] = [[0.0] * len(b) for _, b in self.runners]
        in_pos: list[list[bool]] = [[False] * len(b) for _, b in self.runners]
        at = [0] * m                     # next bar of each runner
        due = [lane[0][0] if lane[6] else None for lane in lanes]   # its open time
        alive = [True] * m
        shut = [False] * m               # its shutdown recorded
        cash = np.empty(len(stamps))
        done = 0
        close_at_end = self.close_at_end
        keys = [f"{b.symbol}:{r.strategy.name}" for r, b in self.runners]
        for k0 in range(0, len(stamps), chunk):
            k1 = min(len(stamps), k0 + chunk)
            if recorder is not None:   # each runner's bars of this stretch, then what they caused
                for j, (_, bars) in enumerate(self.runners):
                    stop = int(np.searchsorted(bars.timestamp, stamps[k1 - 1], side="right"))
                    if stop > at[j]:
                        recorder.bars(keys[j], bars, at[j], stop)
            for k, t in enumerate(stamps[k0:k1].tolist(), start=k0):
                self._now = t
                for j in range(m):
                    if due[j] != t:
                        continue
                    ts, o, h, lo, c, v, n, runner, core = lanes[j]
                    i = at[j]
                    if alive[j]:
                        alive[j] = core.process_values(t, o[i], h[i], lo[i], c[i], v[i])
                        done += 1
                        if j in self._halt_due:      # a portfolio halt that waited for this bar
                            runner.halt(self._halt_due.pop(j))
                        # (a runner that stopped itself is marked at its last close from now on)
                        equity[j][i] = core.cash + core.quantity * c[i] if alive[j] else runner.equity
                    else:
                        equity[j][i] = runner.equity
                    in_pos[j][i] = core.quantity != 0
                    at[j] = i + 1
                    due[j] = ts[i + 1] if i + 1 < n else None
                    if i + 1 == n and close_at_end:
                        # its last bar: close now, so the portfolio's later bars see it flat
                        if recorder is not None:   # what follows its shutdown is the close (as below)
                            recorder.flush_outcomes(keys[j])
                            recorder.append({"type": "shutdown", "runner": keys[j], "reason": "end_of_data"})
                            shut[j] = True
                        runner.close_position()
                        equity[j][i] = runner.equity
                        in_pos[j][i] = False
                halted = book.halted
                book.after_bar(t)
                cash[k] = book.last_cash
                if book.halted and not halted:   # the halt closed positions at this close
                    for j in range(m):
                        i = at[j] - 1
                        if i >= 0 and lanes[j][0][i] == t:
                            equity[j][i] = lanes[j][7].equity
                            in_pos[j][i] = lanes[j][8].quantity != 0
            if recorder is not None:
                for key in keys:
                    recorder.snapshot(key)
            if self.progress is not None:
                self.progress(done, total)
        runs = []
        for j, (runner, bars) in enumerate(self.runners):
            if recorder is not None:
                if not shut[j]:
                    recorder.append({"type": "shutdown", "runner": keys[j], "reason": "end_of_data"})
                recorder.flush_outcomes(keys[j])
            runs.append(self._run_result(runner, bars, np.array(equity[j], dtype=np.float64),
                                         np.array(in_pos[j], dtype=np.uint8)))
        return runs, cash

    def _describe(self, recorder: SessionRecorder) -> None:
        # What the session's manifest says this backtest is.
        recorder.manifest["config"] = jsonable({
            "execution": self.execution.as_dict(), "window_size": self.window_size,
            "risk_free_rate": self.risk_free_rate, "close_at_end": self.close_at_end,
            "max_consecutive_errors": self.max_consecutive_errors,
            "ambiguity_policy": self.ambiguity_policy, "params": self.params,
            "chunk": RECORD_CHUNK, "portfolio": self.portfolio.as_dict(),
            "risk": _as_dict(self.risk) if self.risk is not None else None})
        for path in self.files:
            if path.is_file():
                recorder.add_file(path)
        for bars in self.bars:
            recorder.add_data(bars)
        for runner, bars in self.runners:
            recorder.add_runner(f"{bars.symbol}:{runner.strategy.name}", runner,
                                window_size=self.window_size,
                                options={"max_consecutive_errors": self.max_consecutive_errors,
                                         "ambiguity_policy": self.ambiguity_policy,
                                         "analysis_timeout_bars": self.analysis_timeout_bars},
                                batch=True)   # outcomes written per chunk (recording.outcomes)
        if not recorder.recording:
            recorder.start()

    def _run_result(self, runner: SymbolRunner, bars: Bars, equity, in_pos) -> RunResult:
        metrics = compute_metrics(equity, bars.timestamp, runner.trades,
                                  interval_ms=bars.interval_ms or 60_000,
                                  starting_cash=runner.execution.starting_cash,
                                  risk_free_rate=self.risk_free_rate, in_position=in_pos.astype(bool))
        return RunResult(bars.symbol, runner.strategy.name, runner.strategy.params, list(runner.trades),
                         bars.timestamp, equity, in_pos.astype(bool), metrics,
                         runner.execution.starting_cash, runner.warmup_bars(), list(runner.errors),
                         list(runner.rejections), _final_status(runner), runner.status_reason,
                         int(runner.core.bars))

    def _combine(self, runs: list[RunResult], elapsed: float, total: int,
                 cash: np.ndarray | None = None) -> BacktestResult:
        if len(runs) == 1:
            ts, equity, in_pos = runs[0].timestamps, runs[0].equity, runs[0].in_position
        else:
            ts = np.unique(np.concatenate([r.timestamps for r in runs]))
            equity = np.zeros(len(ts))
            in_pos = np.zeros(len(ts), dtype=bool)
            for r in runs:
                # Forward-fill each runner's curve onto the union of timestamps.
                idx = np.searchsorted(r.timestamps, ts, side="right") - 1
                seen = idx >= 0
                equity += np.where(seen, r.equity[np.maximum(idx, 0)], r.starting_cash)
                in_pos |= seen & r.in_position[np.maximum(idx, 0)]
        trades = sorted((t for r in runs for t in r.trades), key=lambda t: (t.exit_time, t.symbol))
        interval = min((b.interval_ms or 60_000) for _, b in self.runners)
        metrics = compute_metrics(equity, ts, trades, interval_ms=interval,
                                  starting_cash=self.execution.starting_cash,
                                  risk_free_rate=self.risk_free_rate, in_position=in_pos)
        ledger = self._ledger(runs, elapsed, total)
        positions = [self._positions(run, runner, bars) for run, (runner, bars) in zip(runs, self.runners)]
        events = self._all_risk_events()

        def build() -> PortfolioCurves:
            curves = portfolio_curves(ts, equity, positions, starting_cash=self.execution.starting_cash,
                                      cash=cash)
            curves.config = self.portfolio.as_dict()
            curves.interleaved = self.book is not None
            curves.events, curves.event_count = events
            return curves
        return BacktestResult(runs, trades, ts, equity, in_pos, metrics, ledger,
                              {b.symbol: b for _, b in self.runners}, build)

    @staticmethod
    def _positions(run: RunResult, runner: SymbolRunner, bars: Bars) -> RunPositions:
        lots = []
        pos = runner.machine.position
        if pos is not None and runner.core.quantity != 0:   # still open (close_at_end=False): its lots
            side = pos.side.name.lower()
            lots.extend((side, lot["quantity"], lot["entry_price"], lot["entry_bar"])
                        for lot in runner.core.lots())
        return RunPositions(bars.symbol, bars.timestamp, bars.close, run.equity, run.trades,
                            run.starting_cash, run.bars_processed, lots)

    def _ledger(self, runs: list[RunResult], elapsed: float, total: int) -> dict:
        exe = self.execution
        gaps = {}
        for bars in self.bars:
            found = find_gaps(bars)
            gaps[bars.symbol] = {"count": len(found), "missing_bars": sum(g[2] for g in found),
                                 "first": found[:5]}
        return {
            "fill_rule": exe.fill,
            "slippage_bps": exe.slippage_bps,
            "commission_bps": exe.commission_bps,
            "fixed_fee": exe.fixed_fee,
            "starting_cash": exe.starting_cash,
            "size_fraction": exe.size_fraction,
            **{k: v for k, v in exe.as_dict().items() if k in ("lot_size", "min_notional")},
            "risk": dict(_as_dict(self.risk)) if self.risk is not None else None,
            "portfolio": self.portfolio.as_dict(),
            "ambiguity_policy": self.ambiguity_policy,
            "risk_free_rate": self.risk_free_rate,
            "close_at_end": self.close_at_end,
            "bars_processed": int(sum(r.bars_processed for r in runs)),
            "warmup_bars": {f"{r.symbol}/{r.strategy}": r.warmup_bars for r in runs},
            "gaps": gaps,
            "ambiguous_exits": int(sum(t.ambiguous for r in runs for t in r.trades)),
            "strategy_errors": int(sum(len(r.errors) for r in runs)),
            "rejected_actions": int(sum(len(r.rejections) for r in runs)),
            "runners_failed": [f"{r.symbol}/{r.strategy}: {r.status_reason}" for r in runs
                               if r.status == "failed"],
            "load_seconds": round(self.load_seconds, 4),
            "run_seconds": round(elapsed, 4),
            # bars actually run: a runner that failed early skips the rest of its bars
            "bars_per_second": round(sum(r.bars_processed for r in runs) / elapsed) if elapsed > 0 else None,
        }
