"""`RunnerHandle`: one `SymbolRunner` inside the engine — its inbox, stats and control.

The event loop `offer`s bars; a worker thread `drain`s them into the runner.
The inbox is bounded (``queue_size`` bars). Closed bars are never dropped:
when a runner falls ``queue_size`` bars behind, it is FAILED with the reason
"queue overflow" and its inbox is discarded; the feed and every other runner
go on (docs/binance.md, Slow readers and blocked loops: never drop a closed
kline silently, never block the reader). Bid/ask quotes reach runners only
attached to bars, so there is no quote stream to coalesce here.

Control requests (snapshots, price history) travel through the same inbox
ahead of bars, so they are answered between two bars, by the worker that owns
the runner, without stopping it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import Future
from typing import TYPE_CHECKING, Any

from tradesim.engine.events import EventBus, StateTransition, event_from_runner_dict
from tradesim.engine.inbox import RunnerInbox
from tradesim.jsonable import finite_or_none, jsonable
from tradesim.runner import FINAL_STATUSES, SymbolRunner

if TYPE_CHECKING:
    from tradesim.engine.workers import WorkerPool

__all__ = ["RunnerHandle"]


class RunnerHandle(RunnerInbox):
    """A runner, its bounded inbox and its health counters (see the module docstring).

    The inbox, the worker's per-bar loop and the counters (``bars``,
    ``last_bar_time``, ``last_lag_ms``, ...) are `tradesim.engine.inbox.RunnerInbox`'s.

    Parameters
    ----------
    runner_id : str
        Unique id within the engine.
    runner : SymbolRunner
    feed : str
        Name of the feed whose bars this runner receives.
    pool : WorkerPool
    bus : EventBus
    queue_size : int
        Bars the inbox holds before the runner is failed for falling behind.
    """

    def __init__(self, runner_id: str, runner: SymbolRunner, feed: str, pool: WorkerPool,
                 bus: EventBus, queue_size: int = 1024) -> None:
        super().__init__(runner, pool.schedule, queue_size, FINAL_STATUSES)
        self.id = runner_id
        self.feed = feed
        self.strategy = runner.strategy.name
        self._bus = bus
        self.options: dict[str, Any] = {}   # the SymbolRunner options it was built with (plain values)
        self.recorder: Any = None   # the engine's SessionRecorder while it records (state transitions)
        self.started = time.monotonic()
        runner.on_event = self._on_runner_event
        runner.events_wanted = lambda: bus.active   # no subscriber: no event is even built

    # -- loop side (`offer` is `RunnerInbox.offer`) ----------------------------------

    def request(self, fn: Callable[[SymbolRunner], Any]) -> Future:
        """Run ``fn(runner)`` on the runner's worker between two bars; a Future of its result."""
        fut: Future = Future()
        self.add_control(fn, fut)
        return fut

    @property
    def accepting(self) -> bool:
        """False once the runner is stopped or failed."""
        return self.runner.status not in FINAL_STATUSES

    @property
    def queued(self) -> int:
        """Bars waiting in the inbox."""
        return len(self._inbox)

    # -- worker side (`drain` is `RunnerInbox.drain`) ------------------------------------

    def _transitions(self, n: int) -> None:
        # (a trade closes with a transition: keep the runner's history bounded)
        self.runner.trim_history()
        if self._bus.active or self.recorder is not None:
            self._publish_transitions(n)

    def _publish_transitions(self, n: int) -> None:
        bus, rec = self._bus, self.recorder
        publish = bus.active
        for t in self.runner.machine.history()[-n:]:
            fields = {"symbol": self.symbol, "strategy": self.strategy, "timestamp": t.timestamp,
                      "from_state": t.from_state.name, "to_state": t.to_state.name, "reason": t.reason or ""}
            if rec is not None:   # a live session logs them too (`tradesim serve` streams the log)
                rec.append({"type": "state_transition", "runner": self.id, **fields})
            if publish:
                bus.publish(StateTransition, runner_id=self.id, **fields)

    # -- events -------------------------------------------------------------------

    def _on_runner_event(self, payload: dict) -> None:
        if not self._bus.active:
            return
        mapped = event_from_runner_dict(payload)
        if mapped is not None:
            cls, fields = mapped
            fields.update(runner_id=self.id)
            self._bus.publish(cls, **jsonable(fields))

    # -- introspection ---------------------------------------------------------------

    def health(self) -> dict[str, Any]:
        """Uptime (s), bars, decisions, errors, last bar time (ms UTC), lag (ms), queue depth."""
        r = self.runner
        busy = self.in_call_since
        return {
            "id": self.id, "symbol": self.symbol, "strategy": self.strategy, "feed": self.feed,
            "status": r.status.value, "reason": r.status_reason,
            "uptime_s": round(time.monotonic() - self.started, 3),
            "bars": self.bars, "decisions": r.decisions, "errors": r.error_count,
            "rejected_bars": self.rejected_bars, "trades": r.trade_count,
            "last_bar_time": self.last_bar_time,
            "lag_ms": round(self.last_lag_ms, 3), "max_lag_ms": round(self.max_lag_ms, 3),
            "queued": len(self._inbox),
            "in_call_s": round(time.monotonic() - busy, 3) if busy is not None else 0.0,
        }


def snapshot(handle: RunnerHandle, runner: SymbolRunner) -> dict[str, Any]:
    """State, position, context, indicator values and stats (JSON-ready); runs on the worker."""
    state = runner.state()
    return {
        "id": handle.id, "symbol": handle.symbol, "strategy": handle.strategy,
        "status": state["status"], "reason": state["reason"], "state": state["state"],
        "position": jsonable(state["position"]),
        "lots": jsonable(state["lots"]),
        "pending_order": state["pending_order"],
        "working_order": jsonable(state["working_order"]),
        "entries_blocked": state["entries_blocked"],
        "context": jsonable(state["context"]),
        "indicators": jsonable(state["indicators"]),
        "equity": finite_or_none(state["equity"]), "cash": finite_or_none(state["cash"]),
        "pnl": finite_or_none(runner.equity - runner.execution.starting_cash),
        "stats": handle.health(),
    }


def price_history(runner: SymbolRunner, n: int) -> dict[str, Any]:
    """The newest `n` bars of the runner's window as JSON-ready columns (oldest first)."""
    w = runner.window
    n = min(n, len(w))
    if n == 0:
        return {"symbol": runner.symbol, "bars": 0, **{k: [] for k in (
            "timestamp", "open", "high", "low", "close", "volume", "bid", "ask")}}
    return {
        "symbol": runner.symbol, "bars": n,
        "timestamp": w.timestamps(n).tolist(),
        "open": jsonable(w.opens(n)), "high": jsonable(w.highs(n)), "low": jsonable(w.lows(n)),
        "close": jsonable(w.closes(n)), "volume": jsonable(w.volumes(n)),
        "bid": jsonable(w.bids(n)), "ask": jsonable(w.asks(n)),
    }
