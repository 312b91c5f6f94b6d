"""Worker threads that run strategies off the event-loop thread.

Runners are actors: each has its own inbox and is run by at most one worker at
a time. A runner with work is put once on a shared ready queue; a free worker
takes it, drains a few items and puts it back if more wait. So a slow runner
only ever occupies one worker, and `WorkerPool.check` adds a worker when every
worker has been stuck in one call for longer than ``stall_after`` seconds
(up to ``max_workers``): the other runners keep flowing. Extra workers retire
after ``idle_retire`` seconds without work.

Why not the event loop: a Lua call may run for up to its CPU budget, and a
blocked loop misses Binance's pings (reliability.md §2.3, E10).
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from typing import Protocol

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
    """

    def __init__(self, workers: int = 2, max_workers: int = 32, stall_after: float = 0.25,
                 idle_retire: float = 30.0, name: str = "tradesim-worker") -> None:
        if workers < 1 or max_workers < workers:
            raise ValueError(f"need 1 <= workers ({workers}) <= max_workers ({max_workers})")
        self.base_workers = workers
        self.max_workers = max_workers
        self.stall_after = stall_after
        self.idle_retire = idle_retire
        self.name = name
        self._ready: queue.SimpleQueue = queue.SimpleQueue()
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
        self._ready.put(item)

    def _work(self, wid: int, extra: bool) -> None:
        ready, busy = self._ready, self._busy_since
        timeout = self.idle_retire if extra else None
        while True:
            try:
                item = ready.get(timeout=timeout)
            except queue.Empty:
                with self._lock:
                    self._threads.pop(wid, None)
                return
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
                ready.put(item)

    def check(self) -> int:
        """Add a worker if all are stuck and work waits; return the number of workers."""
        with self._lock:
            n = len(self._threads)
            if self._closed or n >= self.max_workers:
                return n
            now = time.monotonic()
            stuck = sum(now - t > self.stall_after for t in list(self._busy_since.values()))
            if stuck >= n and not self._ready.empty():
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
            self._ready.put(_STOP)
        deadline = time.monotonic() + timeout
        for thread in threads:
            thread.join(max(0.0, deadline - time.monotonic()))
