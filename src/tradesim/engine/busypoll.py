"""A busy-polling asyncio event loop: the live engine's low-latency mode.

The loop spins on its selector's descriptor (GIL released) for up to
``spin_us`` microseconds before blocking, so a frame arriving on the socket is
picked up by a CPU that is awake with warm caches instead of one woken from
idle (see `tradesim.engine.idle` for the figures behind this). Pair it with a
`TradingEngine` built with the same ``busy_poll_us`` so its workers spin too;
both cost a busy core each while they spin.

    engine = TradingEngine(busy_poll_us=1e6)
    with asyncio.Runner(loop_factory=engine.new_event_loop) as runner:
        runner.run(engine.run())
"""

from __future__ import annotations

import asyncio
import selectors
from typing import Any

from tradesim.engine.idle import busy_loop_started, busy_loop_stopped, spin_until_readable

__all__ = ["BusyPollSelector", "new_busy_poll_loop"]


class BusyPollSelector(selectors.DefaultSelector):  # type: ignore[misc,valid-type]
    """`selectors.DefaultSelector` that spins before each blocking `select`.

    Parameters
    ----------
    spin_us : float
        Microseconds to spin per `select` before blocking for the rest of the
        timeout (``math.inf``: never block).

    Raises
    ------
    ValueError
        `spin_us` <= 0, or the platform's default selector has no pollable
        descriptor (select/poll based).
    """

    def __init__(self, spin_us: float) -> None:
        if not spin_us > 0:
            raise ValueError(f"spin_us = {spin_us!r}: must be > 0")
        super().__init__()
        inner = getattr(self, "_selector", None)
        if inner is None or not hasattr(inner, "fileno"):
            super().close()
            raise ValueError(f"{type(self).__mro__[1].__name__} has no pollable descriptor to spin on")
        self._fd = inner.fileno()
        self.spin_s = spin_us / 1e6
        busy_loop_started()
        self._counted = True

    def select(self, timeout: float | None = None) -> list[tuple[Any, int]]:
        if timeout is None or timeout > 0:
            spin = self.spin_s if timeout is None else min(timeout, self.spin_s)
            if spin_until_readable(self._fd, spin):
                return super().select(0)
            if timeout is not None:
                timeout = max(0.0, timeout - spin)
        return super().select(timeout)

    def close(self) -> None:
        if self._counted:
            self._counted = False
            busy_loop_stopped()
        super().close()


def new_busy_poll_loop(spin_us: float) -> asyncio.AbstractEventLoop:
    """A new `asyncio.SelectorEventLoop` on a `BusyPollSelector` (pass as a ``loop_factory``)."""
    return asyncio.SelectorEventLoop(BusyPollSelector(spin_us))
