"""`TradingEngine`: many (symbol × strategy) runners fed by one or more feeds, on asyncio.

The event loop only moves data: each feed is an async iterator of closed bars
(`MarketDataSource`); the engine hands every bar to the runners watching that
(feed, symbol) and returns to the loop. Strategies run on worker threads
(`WorkerPool`), each runner behind its own bounded inbox (`RunnerHandle`), so
a slow or failing runner never delays the feed or the other runners, and the
loop stays free to answer the exchange's pings.

Paper trading: live runners use the same `SymbolRunner` and `ExecutionConfig`
as backtests (fills, costs, stop-loss / take-profit), so a strategy fed
through a live feed makes the same trades as a backtest over the same bars.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import Counter
from pathlib import Path
from typing import Any

from tradesim.engine.events import BarReceived, ControlApplied, EventBus, FeedStatus, RiskLimit, Subscription
from tradesim.engine.handle import RunnerHandle, price_history, snapshot
from tradesim.engine.workers import WorkerPool
from tradesim.jsonable import finite_or_none, jsonable
from tradesim.portfolio import Portfolio, PortfolioConfig
from tradesim.recording import SessionRecorder
from tradesim.runner import RunnerStatus, SymbolRunner
from tradesim.runner.execution import ExecutionConfig
from tradesim.runner.symbol_runner import check_history_limit
from tradesim.strategy import LuaStrategy

__all__ = ["TradingEngine", "UnknownRunner"]

log = logging.getLogger(__name__)


#: Busy-poll mode: longest the event loop waits (GIL released) for the workers to run a
#: bar it just queued before going on with its own work (s). A quiet bar takes a few µs.
HANDOFF_MAX_S = 50e-6

#: Trades, errors, rejections and closed positions each runner keeps by default (see `TradingEngine`).
DEFAULT_HISTORY_LIMIT = 10_000

#: A recorded session logs each runner's state every this many bars of its feed and symbol
#: (taken by the runner's worker between two bars), where `tradesim inspect` starts from.
SNAPSHOT_EVERY_BARS = 1000


class UnknownRunner(KeyError):
    """No runner has this id."""


class TradingEngine:
    """Run strategies on live or simulated feeds (see the module docstring).

    Parameters
    ----------
    workers : int
        Worker threads kept for strategy calls (more are added while all are stuck).
    max_workers : int
        Upper bound on worker threads.
    queue_size : int
        Default inbox size per runner, in bars. On a live or paced feed a
        runner that falls this far behind is FAILED ("queue overflow") and the
        others go on; a replay at full speed (``speed=0``) waits for it instead.
    events : EventBus, optional
        Where events are published (a new bus by default; see `subscribe`).
    stall_after : float
        Seconds a strategy call may run before the pool adds a worker.
    busy_poll_us : float
        Low-latency mode: microseconds an idle worker spins before parking
        (0, the default: park at once; ``math.inf``: always spin). Run the
        engine on `new_event_loop` so the event loop spins on its sockets too.
        Each spinning thread keeps a core busy; in exchange a bar reaches its
        strategy without a thread wake-up (see `tradesim.engine.busypoll`).
    history_limit : int or None
        Default for the runners' ``history_limit``: the newest trades, errors,
        rejections and closed positions each runner keeps (10,000; None keeps
        all). A runner trading for months would otherwise grow without bound;
        counts (``trade_count``, ``error_count``, ...) and health stay exact.
    portfolio : PortfolioConfig, optional
        Portfolio cash and limits across every runner (docs/orders.md, Risk
        limits). When it sets a limit or shares the cash, a `Portfolio` is
        every runner's entry gate and is marked after each runner's bar, on
        that runner's worker (runners are not synchronised: the portfolio
        equity takes each runner's newest close); a breach publishes a
        ``risk_limit`` event and blocks entries, or halts every runner
        between two of its bars. `resume_portfolio` lifts it. The portfolio
        keeps its equity and P&L curve (the newest `history_limit` bar
        times) and uses the handles' ``on_processed`` hook.
    """

    def __init__(self, *, workers: int = 2, max_workers: int = 32, queue_size: int = 1024,
                 events: EventBus | None = None, stall_after: float = 0.25,
                 busy_poll_us: float = 0.0, history_limit: int | None = DEFAULT_HISTORY_LIMIT,
                 portfolio: PortfolioConfig | None = None) -> None:
        if not busy_poll_us >= 0:
            raise ValueError(f"busy_poll_us = {busy_poll_us!r}: must be >= 0")
        check_history_limit(history_limit)
        self.history_limit = history_limit
        self.bus = events or EventBus()
        self.busy_poll_us = float(busy_poll_us)
        self.pool = WorkerPool(workers, max_workers, stall_after, spin_s=self.busy_poll_us / 1e6)
        self.queue_size = queue_size
        self._feeds: dict[str, Any] = {}
        self._feed_state: dict[str, str] = {}
        self._feed_bars: Counter[str] = Counter()
        self._routes: dict[tuple[str, str], list[RunnerHandle]] = {}
        self._runners: dict[str, RunnerHandle] = {}
        self._tasks: list[asyncio.Task] = []
        self._stopping: asyncio.Event | None = None
        self._started: float | None = None
        self._ids = Counter()
        self.recorder: SessionRecorder | None = None
        #: symbol -> when its last bar arrived (ms UTC, wall clock), from any feed
        self.last_bar_wall: dict[str, int] = {}
        self.portfolio: Portfolio | None = None
        if portfolio is not None and portfolio.active:
            self.portfolio = Portfolio([], portfolio, on_event=self._portfolio_event,
                                       halt_runner=self._halt_for_portfolio,
                                       resume_runner=self._resume_for_portfolio,
                                       pause_runner=self._pause_for_portfolio,
                                       curve_limit=history_limit, max_events=history_limit or 1000)

    def record(self, recorder: SessionRecorder) -> None:
        """Record this engine's session: every bar (with its receive time), feed status change,
        runner added, control command, decision and fill, in order (see `SessionRecorder`).

        Call before `run`; runners added so far and later are recorded. The
        recorder is started here if it is not yet; the caller finishes it
        (`tradesim.engine.run.run_engine` does).
        """
        self.recorder = recorder
        for runner_id, handle in self._runners.items():
            handle.recorder = recorder
            recorder.add_runner(runner_id, handle.runner, feed=handle.feed,
                                window_size=handle.runner.window.capacity, options=handle.options)
        if not recorder.recording:
            recorder.start()

    def new_event_loop(self) -> asyncio.AbstractEventLoop:
        """An event loop suited to this engine (an ``asyncio.Runner`` ``loop_factory``).

        With ``busy_poll_us > 0`` a loop that spins on its sockets
        (`tradesim.engine.busypoll`), else a plain ``asyncio.new_event_loop()``.
        """
        if self.busy_poll_us > 0:
            from tradesim.engine.busypoll import new_busy_poll_loop
            return new_busy_poll_loop(self.busy_poll_us)
        return asyncio.new_event_loop()

    # -- configuration -------------------------------------------------------------

    def add_feed(self, feed: Any, name: str | None = None) -> str:
        """Register a feed (async iterator of `MarketData`); returns its name.

        A feed with an ``on_status`` attribute reports connectivity as `FeedStatus`
        events. Feeds added while the engine runs start at once.

        Raises
        ------
        ValueError
            The name is taken.
        """
        name = name or type(feed).__name__.removesuffix("Feed").lower() or "feed"
        if name in self._feeds:
            raise ValueError(f"feed name {name!r} already used")
        self._feeds[name] = feed
        self._feed_state[name] = "added"
        if hasattr(feed, "on_status"):
            feed.on_status = self._status_callback(name)
        if self._stopping is not None:
            self._tasks.append(asyncio.get_running_loop().create_task(self._pump(name, feed)))
        return name

    def _status_callback(self, name: str):
        # The callback reports events (rejected frame, gap, backfilled, ...); the
        # feed's own `status` attribute, when it has one, is its connection state.
        def on_status(status: str, **detail: Any) -> None:
            if not hasattr(self._feeds[name], "status"):
                self._feed_state[name] = status
            if self.recorder is not None:
                self.recorder.feed_status(name, status, detail)
            self.bus.publish(FeedStatus, feed=name, status=status, detail=_plain(detail))
        return on_status

    def _feed_status(self, name: str) -> str:
        state = getattr(self._feeds[name], "status", None)
        if isinstance(state, str) and self._feed_state[name] not in ("ended", "failed"):
            return state
        return self._feed_state[name]

    def add_runner(self, symbol: str, strategy: LuaStrategy | str | Path, *, feed: str | None = None,
                   runner_id: str | None = None, params: dict[str, Any] | None = None,
                   window_size: int = 500, execution: ExecutionConfig | None = None,
                   queue_size: int | None = None, audit: dict[str, str] | None = None,
                   **runner_options: Any) -> str:
        """Add a runner for `symbol` on `feed` (the only feed if omitted); returns its id.

        May be called while the engine runs; the runner receives the next bar.
        `audit` (``scope``, ``origin``: who asked) is kept with the recorded ``runner_added``.
        `runner_options` go to `SymbolRunner` (``max_consecutive_errors``,
        ``ambiguity_policy``, ``analysis_timeout_bars``, ``history_limit``:
        the engine's by default).

        Raises
        ------
        ValueError
            Unknown feed, a feed that does not serve `symbol`, or a duplicate id.
        StrategyLoadError
            The strategy failed to load.
        """
        feed_name = self._resolve_feed(feed)
        symbol = symbol.upper()
        served = getattr(self._feeds[feed_name], "symbols", None)
        if served is not None and symbol not in served:
            raise ValueError(f"feed {feed_name!r} does not serve {symbol!r} (it serves {list(served)})")
        runner_options.setdefault("history_limit", self.history_limit)
        runner = SymbolRunner(symbol, strategy, params=params, window_size=window_size,
                              execution=execution, **runner_options)
        if runner_id is None:
            base = f"{symbol}:{runner.strategy.name}"
            self._ids[base] += 1
            runner_id = base if self._ids[base] == 1 else f"{base}#{self._ids[base]}"
        if runner_id in self._runners:
            raise ValueError(f"runner id {runner_id!r} already used")
        handle = RunnerHandle(runner_id, runner, feed_name, self.pool, self.bus,
                              queue_size or self.queue_size)
        self._runners[runner_id] = handle
        handle.options = _recordable(runner_options)   # what a recorded session needs to rebuild it
        if self.recorder is not None:
            handle.recorder = self.recorder
            self.recorder.add_runner(runner_id, runner, feed=feed_name, window_size=window_size,
                                     options=handle.options, audit=audit)
        self._routes.setdefault((feed_name, symbol), []).append(handle)
        if self.portfolio is not None:
            self.portfolio.add(runner)
            book = self.portfolio
            handle.on_processed = lambda h, _done: book.after_bar(h.last_bar_time, h.runner)
        return runner_id

    def _resolve_feed(self, feed: str | None) -> str:
        if feed is None:
            if len(self._feeds) != 1:
                raise ValueError(f"name the feed: the engine has {len(self._feeds)} "
                                 f"({sorted(self._feeds)})")
            return next(iter(self._feeds))
        if feed not in self._feeds:
            raise ValueError(f"unknown feed {feed!r}; feeds: {sorted(self._feeds)}")
        return feed

    def remove_runner(self, runner_id: str, **audit: str) -> None:
        """Stop a runner and forget it (its queued bars are dropped).

        Raises
        ------
        UnknownRunner
        """
        handle = self._handle(runner_id)
        book = self.portfolio
        self._command(runner_id, "remove", lambda r: self._remove(r, book), audit)
        del self._runners[runner_id]
        route = self._routes.get((handle.feed, handle.symbol), [])
        if handle in route:
            route.remove(handle)

    @staticmethod
    def _remove(runner: SymbolRunner, book: Portfolio | None) -> None:
        # (on the runner's worker) with a portfolio, a removed runner's position is closed and
        # it leaves the portfolio: it must not hold a slot or a stale mark for good
        if book is not None:
            runner.close_position("removed")
            book.remove(runner)
        runner.stop("removed")

    def _handle(self, runner_id: str) -> RunnerHandle:
        try:
            return self._runners[runner_id]
        except KeyError:
            raise UnknownRunner(f"no runner {runner_id!r}; runners: {sorted(self._runners)}") from None

    # -- control -----------------------------------------------------------------------
    # Every command takes ``audit`` fields (``scope``, ``origin``: who asked) that go with the
    # ``control`` event published on the bus and the control record of a recorded session.

    def pause(self, runner_id: str, **audit: str) -> None:
        """Stop deciding; the window and indicators stay warm, state is kept.

        Like every control command, applied by the runner's worker between two
        bars (at once when the engine is not running), so that a recorded session
        knows exactly after which bar it took effect.
        """
        self._command(runner_id, "pause", SymbolRunner.pause, audit)

    def resume(self, runner_id: str, **audit: str) -> None:
        """Decide again after `pause`, or trade again after a risk halt (between two bars, as `pause`)."""
        self._command(runner_id, "resume", SymbolRunner.resume, audit)

    def stop_runner(self, runner_id: str, reason: str = "stopped by request", **audit: str) -> None:
        """Stop one runner for good (it stays listed with status STOPPED; between two bars, as `pause`)."""
        self._command(runner_id, "stop", lambda r: r.stop(reason), audit, reason=reason)

    def force_exit(self, runner_id: str, reason: str = "forced exit", **audit: str) -> None:
        """Close the runner's open position at the newest close (market order, with slippage and
        commission) and drop a pending order; between two bars, as `pause`. The runner goes on
        deciding (pause it first to stay out). Recorded as control ``"exit"``; a replay applies it.

        Raises
        ------
        UnknownRunner
        """
        self._command(runner_id, "exit", lambda r: r.close_position(reason), audit, reason=reason)

    def halt(self, runner_id: str, reason: str = "halted by request", **audit: str) -> None:
        """Close the runner's position at the newest close, drop its orders and halt it (status
        ``halted``) until `resume`; between two bars, as `pause`."""
        self._command(runner_id, "halt", lambda r: r.halt(reason), audit, reason=reason)

    def resume_portfolio(self, **audit: str) -> None:
        """Lift the portfolio's blocks and resume the runners it halted (each between two of its
        bars); the drawdown is measured again from the equity now. No-op without a portfolio."""
        if self.portfolio is not None:
            self.audit("resume_portfolio", None, **audit)
            self.portfolio.resume()

    def portfolio_state(self, curve: int = 0) -> dict[str, Any] | None:
        """The portfolio's cash, equity, P&L, exposure per symbol and limits (JSON-ready), or None.

        `curve` > 0 adds its newest `curve` points (``curve``: columns timestamp,
        equity, cash, realised, unrealised; one point per bar time, the newest
        ``history_limit`` kept).
        """
        if self.portfolio is None:
            return None
        out = self.portfolio.state()
        if curve > 0:
            out["curve"] = self.portfolio.curve_columns(curve)
        return jsonable(out)

    def _portfolio_event(self, event: dict) -> None:
        # A portfolio breach, or an entry it rejected: on the bus and in the session's log.
        runner_id = ""
        if event.get("symbol"):
            runner_id = next((rid for rid, h in self._runners.items() if h.symbol == event["symbol"]
                              and h.strategy == event.get("strategy")), "")
        if self.recorder is not None:
            self.recorder.append(dict(event))
        if self.bus.active:
            self.bus.publish(RiskLimit, runner_id=runner_id, symbol=event.get("symbol", ""),
                             strategy=event.get("strategy", ""), scope="portfolio",
                             timestamp=event["timestamp"], limit=event["limit"],
                             threshold=float(event["threshold"]), value=float(event["value"]),
                             action=event["action"])

    def _halt_for_portfolio(self, runner: SymbolRunner, reason: str) -> None:
        rid = next((i for i, h in self._runners.items() if h.runner is runner), None)
        if rid is not None:
            self._command(rid, "halt", lambda r: r.halt(reason), {"scope": "portfolio"}, reason=reason)

    def _resume_for_portfolio(self, runner: SymbolRunner) -> None:
        rid = next((i for i, h in self._runners.items() if h.runner is runner), None)
        if rid is not None:
            self._command(rid, "resume", SymbolRunner.resume, {"scope": "portfolio"})

    def _pause_for_portfolio(self, runner: SymbolRunner) -> None:
        rid = next((i for i, h in self._runners.items() if h.runner is runner), None)
        if rid is not None:
            self._command(rid, "pause", SymbolRunner.pause, {"scope": "portfolio"})

    def reload(self, runner_id: str, **audit: str) -> None:
        """Hot-reload a runner's strategy file (position, window and context kept).

        The new version is loaded between two bars (as `pause`); a version that
        fails to load is reported as a ``runner_error`` event and the old one
        keeps running. Called while the engine is not running, it raises instead.

        Raises
        ------
        UnknownRunner
        StrategyLoadError, StrategyError
            (engine not running) The new version failed to load.
        """
        def reload(runner: SymbolRunner) -> None:
            try:
                runner.reload()
            except Exception as exc:
                # recorded, so that a replay reports the same failure at the same bar
                self.audit("reload", runner_id, failed=True, error=type(exc).__name__,
                           message=f"reload failed: {exc}"[:1024], **audit)
                raise
            self.audit("reload", runner_id, source=runner.strategy.source, **audit)
        handle = self._handle(runner_id)
        if self._stopping is None:
            reload(handle.runner)
            return

        def guarded(runner: SymbolRunner) -> None:
            try:
                reload(runner)
            except Exception as exc:   # the old version keeps running; say why
                runner.emit("runner_error", timestamp=None, error=type(exc).__name__,
                            message=f"reload failed: {exc}"[:1024])
        handle.request(guarded).add_done_callback(_log_failure)

    def _command(self, runner_id: str, command: str, fn, audit: dict[str, str] | None = None,
                 **fields: Any) -> None:
        handle = self._handle(runner_id)

        def apply(runner: SymbolRunner) -> None:
            self.audit(command, runner_id, **fields, **(audit or {}))
            fn(runner)
        if self._stopping is None:
            apply(handle.runner)
        else:   # applied between two bars by the runner's worker (after a call in progress)
            handle.request(apply).add_done_callback(_log_failure)

    def audit(self, command: str, runner_id: str | None, *, scope: str = "", origin: str = "",
              record: bool = True, **fields: Any) -> None:
        """Record control `command` in the session (when recording) and publish a ``control`` event.

        The engine calls it for its own commands; a front end calls it for what it does
        around them (e.g. ``"add"`` after `add_runner`). `scope` and `origin` say who asked;
        ``record=False`` publishes only (what the session already holds in another form).
        """
        if record and self.recorder is not None:
            extra = {k: v for k, v in (("scope", scope), ("origin", origin)) if v}
            self.recorder.control(command, runner_id, **fields, **extra)
        if self.bus.active:
            detail = {k: v for k, v in fields.items() if k != "source" and isinstance(v, (str, int, float, bool))}
            self.bus.publish(ControlApplied, command=command, runner_id=runner_id, scope=scope,
                             origin=origin, detail=detail)

    def runner(self, runner_id: str) -> SymbolRunner:
        """The `SymbolRunner` behind an id (read it only while the engine is idle)."""
        return self._handle(runner_id).runner

    @property
    def runner_ids(self) -> list[str]:
        return list(self._runners)

    @property
    def feeds(self) -> dict[str, Any]:
        """The feeds by name (a copy)."""
        return dict(self._feeds)

    def subscribe(self, maxsize: int = 10_000, types: list[str] | None = None) -> Subscription:
        """Events as an async iterator (see `EventBus.subscribe`)."""
        return self.bus.subscribe(maxsize, types)

    # -- introspection --------------------------------------------------------------------

    async def get_runner_snapshot(self, runner_id: str, timeout: float = 2.0,
                                  extra=None) -> dict[str, Any]:
        """State, position, context, indicator values and stats of a runner (JSON-serializable).

        Answered by the runner's worker between two bars, without stopping it.
        `extra`, a function of the `SymbolRunner` returning a dict, adds fields in the same
        round trip (a front end's own view of the runner).

        Raises
        ------
        UnknownRunner
        TimeoutError
            The runner is stuck in a strategy call for longer than `timeout` s.
        """
        handle = self._handle(runner_id)
        if extra is None:
            return await self._ask(handle, lambda r: snapshot(handle, r), timeout)
        return await self._ask(handle, lambda r: {**snapshot(handle, r), **extra(r)}, timeout)

    async def get_price_history(self, runner_id: str, n: int = 100,
                                timeout: float = 2.0) -> dict[str, Any]:
        """The newest `n` bars the runner holds, as columns (JSON-serializable)."""
        if n < 1:
            raise ValueError(f"n = {n}: must be >= 1")
        handle = self._handle(runner_id)
        return await self._ask(handle, lambda r: price_history(r, n), timeout)

    async def query(self, runner_id: str, fn, timeout: float = 2.0) -> Any:
        """``fn(runner)`` run by the runner's worker between two bars (at once when idle); its result.

        For read-only views of a runner (a front end's table row, its trades): `fn` must not
        change the runner and should return plain data.

        Raises
        ------
        UnknownRunner
        TimeoutError
            The runner is stuck in a strategy call for longer than `timeout` s.
        """
        return await self._ask(self._handle(runner_id), fn, timeout)

    async def _ask(self, handle: RunnerHandle, fn, timeout: float) -> Any:
        if self._stopping is None:  # engine idle: no worker owns the runner
            return fn(handle.runner)
        self.pool.start()
        fut = handle.request(fn)
        return await asyncio.wait_for(asyncio.wrap_future(fut), timeout)

    def runner_health(self, runner_id: str) -> dict[str, Any]:
        """Uptime, bars, decisions, errors, last bar time, lag and queue depth of one runner."""
        return self._handle(runner_id).health()

    def health(self) -> dict[str, Any]:
        """Engine summary: runners by status, symbols, feeds and their status, workers."""
        by_status = Counter(h.runner.status.value for h in self._runners.values())
        return {
            "uptime_s": round(time.monotonic() - self._started, 3) if self._started else 0.0,
            "runners": len(self._runners),
            "by_status": {s.value: by_status.get(s.value, 0) for s in RunnerStatus},
            "symbols": sorted({h.symbol for h in self._runners.values()}),
            "feeds": {name: {"status": self._feed_status(name), "bars": self._feed_bars[name],
                             **({"stats": dict(stats)} if (stats := getattr(feed, "stats", None))
                                and isinstance(stats, dict) else {})}
                      for name, feed in self._feeds.items()},
            "workers": self.pool.size, "stuck_workers": self.pool.stuck(),
            "events_published": self.bus.seq,
        }

    # -- running ---------------------------------------------------------------------------

    async def run(self, *, duration: float | None = None) -> None:
        """Feed every runner until all feeds end, `stop` is called, or `duration` s pass.

        On return every queued bar has been processed (unless a runner is stuck
        in a call) and the worker threads are stopped.
        """
        if self._stopping is not None:
            raise RuntimeError("the engine is already running")
        self._stopping = asyncio.Event()
        self._started = time.monotonic()
        self.pool.start()
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._pump(name, feed)) for name, feed in self._feeds.items()]
        supervisor = loop.create_task(self._supervise())
        stopper = loop.create_task(self._stopping.wait())
        try:
            while True:
                feeds_done = asyncio.gather(*self._tasks) if self._tasks else None
                waiters = [stopper] + ([feeds_done] if feeds_done else [])
                done, _ = await asyncio.wait(waiters, timeout=duration,
                                             return_when=asyncio.FIRST_COMPLETED)
                if feeds_done is not None and not feeds_done.done():
                    feeds_done.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await feeds_done
                # feeds added while running join the next round
                if stopper in done or not done or all(t.done() for t in self._tasks):
                    break
        finally:
            for task in self._tasks:
                task.cancel()
            await asyncio.gather(*self._tasks, return_exceptions=True)
            stopper.cancel()
            await self._drain()
            supervisor.cancel()
            await asyncio.gather(supervisor, return_exceptions=True)
            for feed in self._feeds.values():
                await _close_feed(feed)
            self.pool.shutdown()
            self._stopping = None

    def stop(self) -> None:
        """Ask `run` to finish (safe from a signal handler on the loop thread)."""
        if self._stopping is not None:
            self._stopping.set()

    async def _pump(self, name: str, feed: Any) -> None:
        self._feed_state[name] = "running"
        bus, counts = self.bus, self._feed_bars
        dispatch = self._dispatcher(name)
        realtime = _is_realtime(feed)
        try:
            push = getattr(feed, "stream_to", None)
            if realtime and push is not None:
                # Bars are dispatched inside the feed's socket callback: no queue hop.
                await push(dispatch)
            elif realtime:
                async for bar in feed:
                    dispatch(bar)
            else:
                async for bar in feed:
                    for handle in self._routes.get((name, bar.symbol), ()):
                        while handle.queued >= handle.queue_size and handle.accepting:
                            await asyncio.sleep(0.0005)  # a replay waits for its slowest runner
                    dispatch(bar)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # a broken feed ends itself, not the engine
            log.exception("feed %s failed", name)
            self._feed_state[name] = "failed"
            detail = {"error": type(exc).__name__, "message": str(exc)[:1024]}
            if self.recorder is not None:
                self.recorder.feed_status(name, "failed", detail)
            bus.publish(FeedStatus, feed=name, status="failed", detail=detail)
            return
        self._feed_state[name] = "ended"
        if self.recorder is not None:
            self.recorder.feed_status(name, "ended", {"bars": counts[name]})
        bus.publish(FeedStatus, feed=name, status="ended", detail={"bars": counts[name]})

    def _dispatcher(self, name: str):
        """The per-bar hand-off of feed `name`: count, publish, offer to every runner watching."""
        bus, routes, counts = self.bus, self._routes, self._feed_bars
        clock = time.perf_counter_ns
        # Busy-poll mode: let the (spinning) workers run the bar before the loop goes on
        # with its own bookkeeping; bounded, so a slow strategy can't hold the loop.
        handoff = HANDOFF_MAX_S if self.busy_poll_us > 0 else 0.0
        wait_quiet = self.pool.wait_quiet
        recorder = self.recorder
        wall_ns = time.time_ns
        per_symbol: Counter[str] = Counter()   # bars of this feed per symbol (snapshot cadence)

        last_wall = self.last_bar_wall

        def dispatch(bar: Any) -> None:
            arrived = clock()
            counts[name] += 1
            last_wall[bar.symbol] = recv = wall_ns() // 1_000_000
            if recorder is not None:   # before any runner sees it: the log keeps inputs first
                recorder.bar(name, bar, recv)
                per_symbol[bar.symbol] += 1
                if per_symbol[bar.symbol] % SNAPSHOT_EVERY_BARS == 0:
                    for handle in routes.get((name, bar.symbol), ()):
                        handle.request(functools.partial(_snapshot, recorder, handle.id))
            if bus.active:
                bus.publish(BarReceived, feed=name, symbol=bar.symbol, timestamp=bar.timestamp,
                            open=bar.open, high=bar.high, low=bar.low, close=bar.close,
                            volume=bar.volume, bid=finite_or_none(bar.bid), ask=finite_or_none(bar.ask))
            handles = routes.get((name, bar.symbol), ())
            for handle in handles:
                handle.offer(bar, arrived)
            if handoff and handles:
                wait_quiet(handoff)
        return dispatch

    async def _supervise(self) -> None:
        while True:
            await asyncio.sleep(0.05)
            self.pool.check()

    async def _drain(self, timeout: float = 5.0) -> None:
        deadline = time.monotonic() + timeout
        while any(h.queued for h in self._runners.values()) and time.monotonic() < deadline:
            self.pool.check()
            await asyncio.sleep(0.005)
        # let the last bar of each runner finish its call
        while any(h.in_call_since is not None for h in self._runners.values()) \
                and time.monotonic() < deadline:
            await asyncio.sleep(0.005)

    def close(self, reason: str = "engine shut down") -> None:
        """Close open positions at the last close and stop every runner (after `run`)."""
        if self.recorder is not None:
            self.recorder.shutdown(reason)
        for handle in self._runners.values():
            runner = handle.runner
            if runner.status in (RunnerStatus.RUNNING, RunnerStatus.PAUSED, RunnerStatus.HALTED):
                runner.close_position("end_of_run")
                runner.stop(reason)


def _is_realtime(feed: Any) -> bool:
    """Live or paced feeds can't wait for a runner; a replay at full speed can."""
    live = getattr(feed, "live", None)
    if live is not None:
        return bool(live)
    return (getattr(feed, "speed", 0) or 0) > 0


def _log_failure(fut) -> None:
    # A control command applied on a worker: its failure goes to the log, not to a lost Future.
    exc = fut.exception() if not fut.cancelled() else None
    if exc is not None:
        log.error("control command failed: %s: %s", type(exc).__name__, exc)


def _snapshot(recorder: SessionRecorder, runner_id: str, runner: SymbolRunner) -> None:
    recorder.snapshot(runner_id)


def _recordable(options: dict[str, Any]) -> dict[str, Any]:
    """The runner options a session manifest keeps (plain values; the recorder keeps the risk limits)."""
    return {k: v for k, v in options.items() if isinstance(v, (str, int, float, bool, type(None)))}


def _plain(detail: dict[str, Any]) -> dict[str, Any]:
    """JSON-ready copy of a feed's status fields (exceptions and odd types become text)."""
    return {k: v if isinstance(v, (str, int, float, bool, type(None), list, dict)) else str(v)
            for k, v in detail.items()}




async def _close_feed(feed: Any) -> None:
    closer = getattr(feed, "aclose", None)
    try:
        if closer is not None:
            await closer()
        elif hasattr(feed, "close"):
            feed.close()
    except Exception:  # closing is best effort
        log.exception("closing feed %r failed", feed)
