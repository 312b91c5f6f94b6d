"""A runner's bounded inbox and the worker's per-bar loop (compiled)."""

from collections import deque
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from tradesim._core.market_data import MarketData

class RunnerInbox:
    """Bounded inbox, control queue and per-bar health counters of one runner.

    Parameters
    ----------
    runner : tradesim.runner.SymbolRunner
    schedule : callable
        ``schedule(self)`` queues this inbox on a worker pool (called once per
        idle -> busy change).
    queue_size : int
        Bars the inbox holds (>= 1, else ValueError); one more fails the runner.
    closed : tuple
        Runner statuses in which bars are no longer taken (stopped, failed).

    Attributes
    ----------
    bars : int
        Bars processed.
    rejected_bars : int
        Bars the runner refused (out of order, wrong symbol).
    last_bar_time : int or None
        Open time of the newest processed bar, ms since epoch UTC.
    last_lag_ms, max_lag_ms : float
        Arrival -> processed, of the newest bar and the largest so far, ms.
    in_call_since : float or None
        ``time.monotonic()`` when the current bar's call began; None between calls.
    on_processed : callable or None
        ``on_processed(self, done_ns)`` after each processed bar.
    """
    runner: Any
    symbol: str
    queue_size: int
    _inbox: deque[tuple[MarketData, int]]
    _control: deque[tuple[Callable[[Any], Any], Future[Any]]]
    _scheduled: bool
    bars: int
    rejected_bars: int
    last_bar_time: int | None
    last_lag_ms: float
    max_lag_ms: float
    in_call_since: float | None
    on_processed: Callable[[RunnerInbox, int], None] | None
    def __init__(self, runner: Any, schedule: Callable[[RunnerInbox], None], queue_size: int,
                 closed: tuple[Any, ...]) -> None: ...
    def offer(self, bar: MarketData, arrived_ns: int) -> bool:
        """Queue a bar (event-loop thread); False if the runner no longer takes bars.

        When the inbox already holds ``queue_size`` bars, the runner is failed
        ("queue overflow") and False returned.
        """
    def add_control(self, fn: Callable[[Any], Any], fut: Future[Any]) -> None:
        """Queue ``fn(runner)`` to run between two bars, its result going to `fut`."""
    def _fail(self, reason: str) -> None:
        """Fail the runner with `reason`; its queued bars are dropped."""
    def drain(self, budget: int = 64) -> bool:
        """Process up to `budget` queued items (worker thread); True if more wait."""
    def _transitions(self, n: int) -> None:
        """Called after a bar that made `n` state transitions (the handle publishes them)."""
