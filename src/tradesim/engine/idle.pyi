"""Parking and busy-polling of idle threads (compiled; pthread condition variables)."""

class Doorbell:
    """A wake-up counter for worker threads.

    Producers call `ring` after queueing work; a worker reads `seq`, looks for
    work, and if there is none calls ``wait(seq, ...)``, which returns once
    the counter has moved past that value (no wake-up can be lost between the
    look and the wait). MemoryError if the pthread primitives cannot be created.
    """
    def __init__(self) -> None: ...
    @property
    def seq(self) -> int:
        """The counter now (read it before looking for work)."""
    def ring(self) -> None:
        """Bump the counter and wake parked waiters (cheap when nobody is parked)."""
    def add_work(self) -> None:
        """Count one work item handed out and ring (the worker calls `work_done` after it)."""
    def work_done(self) -> None:
        """Count one work item finished (see `add_work`)."""
    @property
    def outstanding(self) -> int:
        """Work items handed out by `add_work` and not yet `work_done`."""
    def wait_quiet(self, max_s: float) -> bool:
        """Release the GIL and spin until no work is outstanding, at most `max_s` seconds.

        Returns True if every item finished within `max_s`.
        """
    def wait(self, last: int, spin_s: float = 0.0, timeout_s: float | None = None) -> int:
        """Wait until the counter differs from `last`; return it (``== last`` on timeout).

        `spin_s`: seconds to spin (GIL released) before parking, 0 parks at once;
        `timeout_s`: give up after this many seconds (None: wait for ever).
        """

def spin_until_readable(fd: int, spin_s: float) -> bool:
    """Spin (GIL released) until `fd` is readable or `spin_s` seconds pass; True if readable."""

def busy_loop_started() -> None:
    """Count a busy-polling event loop (workers wait for it to be idle before taking the GIL)."""

def busy_loop_stopped() -> None:
    """Undo `busy_loop_started`."""
