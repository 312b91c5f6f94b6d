"""`RunnerInbox`: a runner's bounded bar inbox and control queue, and the worker's per-bar loop.

The engine's `RunnerHandle` builds on this class. The event loop `offer`s
bars; a worker thread `drain`s them: control requests first, then bars, each
bar run through the runner's `RunnerCore` with the handle's health counters
kept. In Python this hand-off cost ~2.2 µs per bar with warm caches, more
than the runner's own step (~1.8 µs), on the path from a live frame to the
strategy's decision.

Thread safety without a lock: every queue operation here (a length check,
append, pop, clear, the "scheduled" flag) runs with the GIL held and calls
no Python code in between, so no other thread can interleave with it. The
loop thread calls `offer` and `add_control`, one worker at a time calls
`drain` (the pool schedules an inbox once), and either may call `_fail`.
"""

from collections import deque
from time import monotonic, perf_counter_ns

from tradesim._core.market_data cimport MarketData
from tradesim._core.market_data import InvalidMarketData
from tradesim._core.state_machine cimport StateMachine


cdef class RunnerInbox:
    """Bounded inbox, control queue and per-bar health counters of one runner.

    Parameters
    ----------
    runner : tradesim.runner.SymbolRunner
    schedule : callable
        ``schedule(self)`` queues this inbox on a worker pool (called once per
        idle -> busy change).
    queue_size : int
        Bars the inbox holds; one more fails the runner (see `offer`).
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
        ``on_processed(self, done_ns)`` after each processed bar (``done_ns``:
        ``time.perf_counter_ns()`` when the runner finished it).
    """

    cdef public object runner
    cdef public str symbol
    cdef public Py_ssize_t queue_size
    cdef public object _inbox        # deque of (MarketData, arrival ns)
    cdef public object _control      # deque of (fn, Future)
    cdef public bint _scheduled
    cdef object _schedule
    cdef object _process             # runner.core.process
    cdef StateMachine _machine
    cdef tuple _closed
    cdef public long long bars
    cdef public long long rejected_bars
    cdef public object last_bar_time
    cdef public double last_lag_ms
    cdef public double max_lag_ms
    cdef public object in_call_since
    cdef public object on_processed

    def __init__(self, runner, schedule, Py_ssize_t queue_size, tuple closed):
        if queue_size < 1:
            raise ValueError(f"queue_size = {queue_size}: must be >= 1")
        self.runner = runner
        self.symbol = runner.symbol
        self.queue_size = queue_size
        self._inbox = deque()
        self._control = deque()
        self._scheduled = False
        self._schedule = schedule
        self._process = runner.core.process
        self._machine = runner.machine
        self._closed = closed
        self.bars = 0
        self.rejected_bars = 0
        self.last_bar_time = None
        self.last_lag_ms = 0.0
        self.max_lag_ms = 0.0
        self.in_call_since = None
        self.on_processed = None

    # -- event-loop side ---------------------------------------------------------------

    def offer(self, MarketData bar not None, long long arrived_ns):
        """Queue a bar (event-loop thread); False if the runner no longer takes bars.

        When the inbox already holds ``queue_size`` bars, the runner is failed
        (`_fail`) and False returned.
        """
        if self.runner.status in self._closed:
            return False
        if len(self._inbox) >= self.queue_size:
            self._fail(f"queue overflow: {self.queue_size} bars waiting (the strategy is slower "
                       f"than the feed); runner disabled")
            return False
        self._inbox.append((bar, arrived_ns))
        self._wake()
        return True

    def add_control(self, fn, fut):
        """Queue ``fn(runner)`` to run between two bars, its result going to `fut`."""
        self._control.append((fn, fut))
        self._wake()

    cdef _wake(self):
        # Put the inbox on the pool's ready queue once per idle -> busy change.
        if not self._scheduled:
            self._scheduled = True
            self._schedule(self)

    def _fail(self, reason):
        """Fail the runner with `reason`; its queued bars are dropped."""
        self._inbox.clear()
        self.runner.fail(reason)

    # -- worker side -------------------------------------------------------------------

    def drain(self, int budget=64):
        """Process up to `budget` queued items (worker thread); True if more wait."""
        cdef int _
        cdef object item
        for _ in range(budget):
            if self._control:
                item = self._control.popleft()
                _run_control(self.runner, item)
            elif self._inbox:
                item = self._inbox.popleft()
                self._bar(item[0], item[1])   # (a checked conversion)
            else:
                self._scheduled = False
                return False
        if self._inbox or self._control:
            return True
        self._scheduled = False
        return False

    cdef _bar(self, MarketData bar, long long arrived_ns):
        cdef StateMachine machine = self._machine
        cdef long long transitions = machine.transition_count
        cdef long long done
        cdef double lag
        runner = self.runner
        if runner.status in self._closed:     # as SymbolRunner.process: a no-op
            return
        self.in_call_since = monotonic()
        try:
            if bar.symbol is self.symbol or bar.symbol == self.symbol:
                self._process(bar)
            else:
                runner.process(bar)           # raises InvalidMarketData naming the symbol
        except InvalidMarketData as exc:      # out of order / wrong symbol: reject the bar, keep going
            self.rejected_bars += 1
            runner.emit("runner_error", timestamp=bar.timestamp, error=type(exc).__name__,
                        message=str(exc)[:1024])
            return
        except Exception as exc:              # a bug outside the strategy: this runner only
            self._fail(f"internal error: {type(exc).__name__}: {exc}"[:1024])
            return
        finally:
            self.in_call_since = None
        done = perf_counter_ns()
        self.bars += 1
        self.last_bar_time = bar.timestamp
        lag = (done - arrived_ns) / 1e6
        self.last_lag_ms = lag
        if lag > self.max_lag_ms:
            self.max_lag_ms = lag
        if machine.transition_count != transitions:
            self._transitions(machine.transition_count - transitions)
        if self.on_processed is not None:
            self.on_processed(self, done)

    def _transitions(self, n):
        """Called after a bar that made `n` state transitions (the handle publishes them)."""


cdef _run_control(runner, tuple item):
    fn, fut = item
    if fut.set_running_or_notify_cancel():
        try:
            fut.set_result(fn(runner))
        except BaseException as exc:  # handed to the caller
            fut.set_exception(exc)
