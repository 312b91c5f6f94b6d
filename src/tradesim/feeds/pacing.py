"""Replay pacing: release bars at `speed` times the pace of their timestamps.

The schedule is absolute: bar k is due at ``wall0 + (t_k - t_0) / speed``
(seconds of the monotonic clock), where ``wall0`` is the clock when the first
bar went out. Each wait sleeps only until the next due time, so an oversleep
or a slow consumer never accumulates as drift; a consumer that fell behind gets
the overdue bars at once until it has caught up.
"""

from __future__ import annotations

import asyncio
import math
import time
from collections.abc import Awaitable, Callable

__all__ = ["Pacer", "check_speed"]

#: With no pacing, hand control back to the event loop every this many bars so
#: other tasks still run while an infinite feed is drained as fast as possible.
YIELD_EVERY = 1024


def check_speed(speed: float) -> float:
    """Validate a replay speed (0 = unpaced, 1 = real time, N = N times faster).

    Raises
    ------
    ValueError
        If `speed` is negative, NaN or infinite.
    """
    speed = float(speed)
    if not math.isfinite(speed) or speed < 0:
        raise ValueError(f"speed must be a finite number >= 0 (0 = as fast as possible), got {speed!r}")
    return speed


class Pacer:
    """Waits until each bar is due on a monotonic schedule.

    Parameters
    ----------
    speed : float
        0 = never sleep (only yield to the event loop every ``YIELD_EVERY``
        bars); 1 = bars are released as far apart in wall time as their
        timestamps are; N = N times faster than that.
    clock : callable, default `time.monotonic`
        Returns the current time in seconds; injectable for tests.
    sleep : async callable, default `asyncio.sleep`
        Sleeps for a number of seconds; injectable for tests.

    Notes
    -----
    The first bar is released at once and fixes the origin ``(wall0, t_0)``;
    gaps in the data are replayed as pauses of the same (scaled) length.
    """

    def __init__(self, speed: float = 0.0, *, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep):
        self.speed = check_speed(speed)
        self.clock = clock
        self.sleep = sleep
        self._origin: tuple[float, int] | None = None
        self._unslept = 0

    def reset(self) -> None:
        """Forget the origin: the next bar is released at once."""
        self._origin = None
        self._unslept = 0

    async def wait(self, timestamp_ms: int) -> None:
        """Return when the bar with open time `timestamp_ms` (ms since epoch UTC) is due."""
        if self.speed > 0:
            if self._origin is None:
                self._origin = (self.clock(), timestamp_ms)
            else:
                wall0, t0 = self._origin
                delay = wall0 + (timestamp_ms - t0) / (1000.0 * self.speed) - self.clock()
                if delay > 0:
                    self._unslept = 0
                    await self.sleep(delay)
                    return
        # Unpaced (or catching up): still let other tasks run now and then.
        self._unslept += 1
        if self._unslept >= YIELD_EVERY:
            self._unslept = 0
            await self.sleep(0)
