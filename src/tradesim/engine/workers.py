"""Worker threads that run strategies off the event-loop thread.

Runners are actors: each has its own inbox and is run by at most one worker at
a time. A runner with work is put once on a shared ready queue; a free worker
takes it, drains a few items and puts it back if more wait. So a slow runner
only ever occupies one worker, and `WorkerPool.check` adds a worker when every
worker has been stuck in one call for longer than ``stall_after`` seconds
(up to ``max_workers``): the other runners keep flowing. Extra workers retire
after ``idle_retire`` seconds without work.

Why not the event loop: a Lua call may run for up to its CPU budget, and a
blocked loop misses Binance's pings (docs/binance.md, Slow readers and
blocked loops).

Idle workers wait on a `Doorbell`: they park at once by default, or spin for
``spin_s`` seconds first (busy polling, for the lowest latency at the price of
busy cores; see `tradesim.engine.idle`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Protocol

from tradesim.engine.idle import Doorbell

__all__ = ["Schedulable", "WorkerPool"]

log = logging.getLogger(__name__)

_STOP = object()


class Schedulable(Protocol):
    def drain(self) -> bool:
        """Process some queued work; True if more is waiting (reschedule)."""


class WorkerPool:
    """A growable pool of daemon threads running `Schedulable.drain`.

    Parameters
    ----------
    workers : int
        Threads kept at all times (>= 1).
    max_workers : int
        Upper bound when stuck workers force growth.
    stall_after : float
        Seconds one ``drain`` call may run before its worker counts as stuck.
    idle_retire : float
        Seconds an extra (above `workers`) thread waits for work before exiting.
    spin_s : float
        Seconds an idle worker spins (GIL released) before parking; 0 (the
        default) parks at once. Spinning keeps a core busy and saves the
        wake-up (5-50 µs on a virtual machine) when work arrives.
    """

    def __init__(self, workers: int = 2, max_workers: int = 32, stall_after: float = 0.25,
                 idle_retire: float = 30.0, name: str = "tradesim-worker", spin_s: float = 0.0) -> None:
        if workers < 1 or max_workers < workers:
            raise ValueError(f"need 1 <= workers ({workers}) <= max_workers ({max_workers})")
        if not spin_s >= 0:
            raise ValueError(f"spin_s = {spin_s!r}: must be >= 0")
        self.base_workers = workers
        self.max_workers = max_workers
        self.stall_after = stall_after
        self.idle_retire = idle_retire
        self.name = name
        self.spin_s = float(spin_s)
        self._ready: deque = deque()   # append/popleft are atomic; the doorbell does the waking
        self._bell = Doorbell()
        self._lock = threading.Lock()
        self._threads: dict[int, threading.Thread] = {}
        self._busy_since: dict[int, float] = {}   # worker id -> monotonic start of its current drain
        self._next_id = 0
        self._closed = False
        self.grown = 0

    def start(self) -> None:
        """Start the base workers (idempotent)."""
        with self._lock:
            while len(self._threads) < self.base_workers:
                self._spawn_locked(extra=False)

    def _spawn_locked(self, extra: bool) -> None:
        wid = self._next_id
        self._next_id += 1
        thread = threading.Thread(target=self._work, args=(wid, extra), daemon=True,
                                  name=f"{self.name}-{wid}")
        self._threads[wid] = thread
        thread.start()

    def schedule(self, item: Schedulable) -> None:
        """Queue `item` to be drained by some worker (the caller guarantees it is queued once)."""
        self._ready.append(item)
        self._bell.add_work()

    def _work(self, wid: int, extra: bool) -> None:
        ready, busy, bell, spin = self._ready, self._busy_since, self._bell, self.spin_s
        timeout = self.idle_retire if extra else None
        while True:
            seq = bell.seq   # read before looking: a ring after this wakes the wait below
            try:
                item = ready.popleft()
            except IndexError:
                if bell.wait(seq, spin, timeout) == seq:   # timed out: an extra worker retires
                    with self._lock:
                        self._threads.pop(wid, None)
                    return
                continue
            if item is _STOP:
                with self._lock:
                    self._threads.pop(wid, None)
                return
            busy[wid] = time.monotonic()
            try:
                again = item.drain()
            except BaseException:  # drain must not raise; never lose the worker over it
                log.exception("worker %s: drain raised", wid)
                again = False
            finally:
                busy.pop(wid, None)
            if again:
                self.schedule(item)
            bell.work_done()

    def wait_quiet(self, max_s: float) -> bool:
        """Let the workers run what is queued now, GIL released, for at most `max_s` s.

        For a busy-polling event loop right after it queued a bar: the worker
        (spinning, see `spin_s`) takes the GIL at once instead of waiting for
        the loop to finish its own work first. True if all queued work finished.
        """
        return self._bell.wait_quiet(max_s)

    def check(self) -> int:
        """Add a worker if all are stuck and work waits; return the number of workers."""
        with self._lock:
            n = len(self._threads)
            if self._closed or n >= self.max_workers:
                return n
            now = time.monotonic()
            stuck = sum(now - t > self.stall_after for t in list(self._busy_since.values()))
            if stuck >= n and self._ready:
                self._spawn_locked(extra=True)
                self.grown += 1
                log.warning("all %d workers busy for > %.2f s: added a worker", n, self.stall_after)
                return n + 1
            return n

    @property
    def size(self) -> int:
        return len(self._threads)

    def stuck(self) -> int:
        """Workers whose current call has run longer than ``stall_after``."""
        now = time.monotonic()
        return sum(now - t > self.stall_after for t in list(self._busy_since.values()))

    def shutdown(self, timeout: float = 2.0) -> None:
        """Ask every worker to exit once the queued work is done; wait up to `timeout` s."""
        with self._lock:
            self._closed = True
            threads = list(self._threads.values())
        for _ in threads:
            self._ready.append(_STOP)
        self._bell.ring()
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
