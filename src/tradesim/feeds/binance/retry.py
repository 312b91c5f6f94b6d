"""When to try again: ``Retry-After``, jittered exponential backoff and sliding-window budgets.

Binance limits connection attempts (300 per 5 minutes per IP), messages per
connection (5 per second) and REST request weight (per minute), and answers
429/418 with a ``Retry-After`` header (docs/binance.md, Reconnects). These helpers hold
no connection: the feed and the REST backfill own one of each they need.
Durations in seconds.
"""

from __future__ import annotations

import asyncio
import email.utils
import random as _random
import time
from collections import deque
from collections.abc import Awaitable, Callable

__all__ = ["Backoff", "RateWindow", "backoff_delay", "parse_retry_after"]


def parse_retry_after(value: str | None, default: float = 60.0) -> float:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or an HTTP date); `default` if unusable."""
    if value:
        text = value.strip()
        if text.isdigit():
            return float(text)
        try:
            when = email.utils.parsedate_to_datetime(text)
            return max(0.0, when.timestamp() - time.time())
        except (TypeError, ValueError):
            pass
    return default


def backoff_delay(attempt: int, initial: float, maximum: float, factor: float, jitter: float,
                  random: Callable[[], float]) -> float:
    """Seconds before retry number `attempt` (1 = the first retry): exponential, capped, jittered.

    ``min(maximum, initial * factor**(attempt-1)) * (1 - jitter * U)`` with
    ``U = random()`` in [0, 1): the jitter spreads clients that failed together.
    """
    return min(maximum, initial * factor ** min(attempt - 1, 64)) * (1.0 - jitter * random())


class Backoff:
    """Jittered exponential delays between connection attempts.

    The delay before attempt n (n consecutive failures so far) is 0 for n = 0,
    else ``min(maximum, initial * factor**(n-1)) * (1 - jitter * U)`` with U
    uniform in [0, 1). A failure is any attempt that does not end in a
    connection that lived at least `stable_after` seconds; only such a stable
    connection resets the count (websockets resets on every open, which turns
    an accept-then-close server into a tight loop: docs/binance.md, Reconnects).

    Parameters
    ----------
    initial, maximum : float
        Seconds: first non-zero delay and the cap.
    factor : float
        Growth per consecutive failure (> 1).
    jitter : float
        Fraction of the delay taken off at random, in [0, 1).
    stable_after : float
        Seconds a connection must live to reset the backoff.
    random : callable
        Returns U in [0, 1); injectable for tests.
    """

    def __init__(self, initial: float = 1.0, maximum: float = 30.0, factor: float = 2.0,
                 jitter: float = 0.5, stable_after: float = 10.0,
                 random: Callable[[], float] = _random.random):
        if not (initial > 0 and maximum >= initial and factor > 1 and 0 <= jitter < 1 and stable_after >= 0):
            raise ValueError(f"bad backoff: initial={initial!r} maximum={maximum!r} factor={factor!r} "
                             f"jitter={jitter!r} stable_after={stable_after!r}")
        self.initial, self.maximum, self.factor = float(initial), float(maximum), float(factor)
        self.jitter, self.stable_after, self.random = float(jitter), float(stable_after), random
        self.failures = 0

    def next_delay(self) -> float:
        """Seconds to wait before the next attempt; counts that attempt as a failure until proven stable."""
        n = self.failures
        self.failures += 1
        if n == 0:
            return 0.0
        return backoff_delay(n, self.initial, self.maximum, self.factor, self.jitter, self.random)

    def connection_ended(self, lived: float) -> None:
        """Record that a connection closed after `lived` seconds; a stable one resets the backoff."""
        if lived >= self.stable_after:
            self.failures = 0


class RateWindow:
    """At most `limit` units in any window of `period` seconds (an exact sliding log).

    Used for connection attempts (250 per 300 s), SUBSCRIBE messages (per
    connection, per second) and REST request weight (per minute). A token bucket
    of the same capacity would allow up to twice the limit inside one window.

    Parameters
    ----------
    limit : float
        Units allowed per window (> 0).
    period : float
        Window length in seconds (> 0).
    clock : callable, default `time.monotonic`
        Seconds; injectable for tests.
    """

    def __init__(self, limit: float, period: float, clock: Callable[[], float] = time.monotonic):
        if not (limit > 0 and period > 0):
            raise ValueError(f"limit and period must be > 0, got {limit!r}, {period!r}")
        self.limit, self.period, self.clock = limit, period, clock
        self._log: deque[tuple[float, float]] = deque()
        self._used = 0.0

    def _expire(self, now: float) -> None:
        log_, horizon = self._log, now - self.period
        while log_ and log_[0][0] <= horizon:
            self._used -= log_.popleft()[1]

    def used(self) -> float:
        """Units taken in the current window."""
        self._expire(self.clock())
        return self._used

    def wait_time(self, cost: float = 1.0) -> float:
        """Seconds until `cost` units fit in the window (0 = now)."""
        if cost > self.limit:
            raise ValueError(f"cost {cost} exceeds the window limit {self.limit}")
        now = self.clock()
        self._expire(now)
        excess = self._used + cost - self.limit
        if excess <= 0:
            return 0.0
        for stamp, units in self._log:
            excess -= units
            if excess <= 0:
                return stamp + self.period - now
        return self.period  # pragma: no cover - unreachable: cost <= limit

    def take(self, cost: float = 1.0) -> None:
        """Spend `cost` units now (call when `wait_time(cost)` is 0)."""
        now = self.clock()
        self._expire(now)
        self._log.append((now, cost))
        self._used += cost

    async def acquire(self, cost: float = 1.0,
                      sleep: Callable[[float], Awaitable[object]] = asyncio.sleep) -> None:
        """Wait until `cost` units fit, then take them."""
        while (wait := self.wait_time(cost)) > 0:
            await sleep(wait)
        self.take(cost)
