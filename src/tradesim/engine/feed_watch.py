"""Watch a run's live feeds: say why they fail, and give up when one stays offline too long.

A live feed (``feed.live`` is true, e.g. `BinanceFeed`) retries for ever on its
own. A person running ``tradesim run`` needs to see why (the cause of each
failed attempt, e.g. ``gaierror: Name or service not known``) and a clear end
when the network is not there: `FeedWatch` prints the cause of each failure to
stderr, at most once per `report_every` seconds per feed (repeats are counted),
and stops the engine when a live feed has had no connection for `max_offline`
seconds (0 = keep retrying for ever, for long-lived deployments).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from tradesim.engine.events import FeedStatus
from tradesim.engine.trading_engine import TradingEngine

__all__ = ["FeedOffline", "FeedWatch", "DEFAULT_MAX_OFFLINE_S"]

#: Seconds a live feed may go without a connection before `tradesim run` gives up.
DEFAULT_MAX_OFFLINE_S = 120.0

#: A live feed's own status values that mean it is serving data.
_ONLINE = ("connected", "backfilling", "closed", "ended")

#: Feed statuses that mean an attempt failed or the connection went away.
_TROUBLE = ("disconnected", "reconnecting", "rate_limited", "rest_error", "server_error",
            "backfill_failed", "failed")


class FeedOffline(RuntimeError):
    """A live feed had no connection for longer than ``max_offline`` seconds."""


class FeedWatch:
    """Report feed trouble and stop the engine when a live feed stays offline.

    Parameters
    ----------
    engine : TradingEngine
        The engine whose feeds (``engine.feeds``) are watched.
    say : callable
        ``say(text)`` prints one line for the user (stderr).
    max_offline : float
        Seconds without a connection before giving up; 0 never gives up.
    report_every : float
        At most one trouble line per feed per this many seconds.
    clock : callable
        Monotonic seconds (tests pass a fake).
    """

    def __init__(self, engine: TradingEngine, say: Callable[[str], Any], *,
                 max_offline: float = DEFAULT_MAX_OFFLINE_S, report_every: float = 5.0,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if not max_offline >= 0:
            raise ValueError(f"max_offline = {max_offline!r}: must be >= 0 seconds")
        self.engine = engine
        self.say = say
        self.max_offline = max_offline
        self.report_every = report_every
        self.clock = clock
        now = clock()
        self.live = [name for name, feed in engine.feeds.items() if getattr(feed, "live", False)]
        self.offline_since: dict[str, float | None] = {name: now for name in self.live}
        self.last_reason: dict[str, str] = {}
        self._last_said: dict[str, float] = {}
        self._unsaid: dict[str, int] = {}
        self.gave_up: str | None = None

    def observe(self, event: FeedStatus) -> None:
        """Take one feed_status event: say why an attempt failed (rate-limited)."""
        name, status = event.feed, event.status
        if status not in _TROUBLE or event.detail.get("reason") == "rotated":
            return   # a rotation's old connection closing is planned, not trouble
        reason = str(event.detail.get("reason") or event.detail.get("error") or status)
        self.last_reason[name] = reason
        now = self.clock()
        if now - self._last_said.get(name, -1e18) >= self.report_every:
            repeats = self._unsaid.pop(name, 0)
            more = f" (+{repeats} more since the last report)" if repeats else ""
            retry = event.detail.get("delay")
            then = f"; retrying in {retry:g} s" if isinstance(retry, (int, float)) else ""
            self.say(f"feed {name}: {status}: {reason}{then}{more}")
            self._last_said[name] = now
        else:
            self._unsaid[name] = self._unsaid.get(name, 0) + 1

    def check(self) -> bool:
        """Stop the engine if a live feed is offline too long; True when it gave up.

        Online or not is the feed's own ``status`` (BinanceFeed: connected or
        backfilling means at least one connection serves every stream group; a
        rotation keeps it connected), read at each check.
        """
        if self.gave_up:
            return True
        now = self.clock()
        for name in self.live:
            status = getattr(self.engine.feeds[name], "status", "connected")
            if status in _ONLINE:
                self.offline_since[name] = None
            elif self.offline_since.get(name) is None:
                self.offline_since[name] = now
        if not self.max_offline:
            return False
        for name, since in self.offline_since.items():
            if since is not None and now - since > self.max_offline:
                reason = self.last_reason.get(name, "no connection yet")
                self.gave_up = (f"feed {name}: no connection for {now - since:.0f} s "
                                f"(--max-offline {self.max_offline:g}); last error: {reason}")
                self.say(f"giving up: {self.gave_up}")
                self.engine.stop()
                return True
        return False

    async def run(self) -> None:
        """Follow the engine's feed_status events until cancelled (a task of the run)."""
        if not self.live:
            return
        sub = self.engine.subscribe(types=["feed_status"], maxsize=10_000)

        async def ticker() -> None:
            while not self.check():
                await asyncio.sleep(0.5)

        tick = asyncio.get_running_loop().create_task(ticker())
        try:
            async for event in sub:
                self.observe(event)
        finally:
            tick.cancel()
            sub.close()
            await asyncio.gather(tick, return_exceptions=True)
