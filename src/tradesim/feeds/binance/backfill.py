"""REST backfill for the live Binance feed: missing klines from ``GET /api/v3/klines``.

See docs/binance.md (Gap detection and backfill; REST klines and rate limits).

`KlineBackfill.catch_up` fills one symbol's hole while the `BarAssembler`
holds that symbol's live klines back: it pages through the REST klines from
the expected open time, hands the closed ones to the assembler, and asks again
until the fetched klines reach the live stream. Requests stay within a weight
budget per minute, back off on timeouts, transport errors, 5xx and malformed
JSON, and honour ``Retry-After`` on 429/418.

Units: timestamps in ms since the Unix epoch (UTC), durations in seconds.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import httpx
import orjson

from tradesim.feeds.binance.assembler import BarAssembler, SymbolState
from tradesim.feeds.binance.messages import SNIPPET, FrameError, Kline, parse_rest_kline
from tradesim.feeds.binance.retry import RateWindow, backoff_delay, parse_retry_after

__all__ = ["BackfillError", "KlineBackfill"]

log = logging.getLogger(__name__)

#: Weight Binance charges for one klines request (limit <= 1000).
KLINES_WEIGHT = 2


class BackfillError(Exception):
    """REST could not deliver the missing klines (retries exhausted, bad status or response)."""


class KlineBackfill:
    """Fetches missing klines over REST and hands them to the feed's `BarAssembler`.

    Parameters
    ----------
    asm : BarAssembler
        The feed's assembler (``backfill=True``): takes the fetched klines.
    rest_url : str
        REST base URL (``https://api.binance.com``).
    stats : dict
        The feed's counters (rest_requests, rest_errors, rate_limited,
        backfills, backfilled_bars, backfill_failures), updated in place.
    report : callable
        ``report(kind, **fields)`` for status events (backfilled,
        backfill_failed, rest_error, rate_limited).
    limit : int
        Klines per page (<= 1000).
    timeout : float
        Seconds per request.
    retries : int
        Consecutive failed requests (or rounds without progress) before giving up.
    backoff : (float, float)
        Seconds: first retry delay and the cap (doubling, jittered).
    weight_per_min : int
        Client-side REST weight budget per minute.
    proxy : str, True or None
        Proxy (True = from the environment, None = direct).
    clock, wall_ms, random, sleep
        Monotonic clock (s), wall clock (ms since epoch), U[0,1) source and
        async sleep; injectable for tests.
    """

    def __init__(self, asm: BarAssembler, rest_url: str, stats: dict, report: Callable[..., None], *,
                 limit: int, timeout: float, retries: int, backoff: tuple[float, float],
                 weight_per_min: int, proxy: str | bool | None, clock: Callable[[], float],
                 wall_ms: Callable[[], int], random: Callable[[], float],
                 sleep: Callable[[float], Awaitable[object]]):
        self.asm, self.rest_url, self.stats, self.report = asm, rest_url, stats, report
        self.limit, self.timeout, self.retries, self.backoff = limit, timeout, retries, backoff
        self.proxy = proxy
        self._clock, self._wall_ms, self._random, self._sleep = clock, wall_ms, random, sleep
        self._weight = RateWindow(weight_per_min, 60.0, clock)
        self._not_before = 0.0  # clock time before which no request goes out (Retry-After)
        self._http: httpx.AsyncClient | None = None
        self._sem: asyncio.Semaphore | None = None

    def open(self) -> None:
        """Create the HTTP client (on the event loop that will use it)."""
        self._sem = asyncio.Semaphore(4)
        self._http = httpx.AsyncClient(base_url=self.rest_url, timeout=self.timeout,
                                       trust_env=self.proxy is True,
                                       proxy=self.proxy if isinstance(self.proxy, str) else None)

    async def aclose(self) -> None:
        """Release the HTTP client; idempotent."""
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    async def catch_up(self, st: SymbolState) -> None:
        """Fill `st`'s hole until the fetched klines meet the held-back live ones, then end its catch-up.

        Asks again while `st.recheck` is set (a new hole came up meanwhile). On
        failure reports ``backfill_failed`` and gives the hole up
        (`BarAssembler.end_catch_up`); never raises `BackfillError`.
        """
        asm = self.asm
        idle_rounds = 0
        try:
            while True:
                st.recheck = False
                rows = await self.fetch_klines(st.symbol, st.next_t, self._wall_ms())
                n = asm.fill(st, rows)
                if n:
                    self.stats["backfilled_bars"] += n
                    self.stats["backfills"] += 1
                    self.report("backfilled", symbol=st.symbol, bars=n, **{"from": rows[-n].open_time,
                                                                            "to": rows[-1].open_time})
                asm.drain(st)
                pending = asm.behind(st)
                if not pending and not st.recheck:
                    asm.end_catch_up(st)
                    return
                if not pending:
                    continue
                # REST has not caught up with the live stream yet: wait a little and ask again.
                idle_rounds = 0 if n else idle_rounds + 1
                if idle_rounds > self.retries:
                    raise BackfillError(f"REST never returned the klines from {st.next_t} to {asm.first_held(st)}")
                if idle_rounds:
                    await self._sleep(self._delay(idle_rounds))
        except BackfillError as exc:
            self.stats["backfill_failures"] += 1
            self.report("backfill_failed", symbol=st.symbol, **{"from": st.next_t, "to": asm.first_held(st)},
                        error=str(exc)[:SNIPPET])
            log.error("backfill of %s failed: %s", st.symbol, exc)
            asm.end_catch_up(st, give_up=True)

    async def fetch_klines(self, symbol: str, start: int, end: int) -> list[Kline]:
        """Closed klines of `symbol` with open time in [start, end] (ms), oldest first, all pages.

        Raises
        ------
        BackfillError
            The requests failed (see `KlineBackfill`) or a response is not an array.
        """
        interval = self.asm.interval
        out: list[Kline] = []
        while start <= end:
            params = {"symbol": symbol, "interval": interval, "startTime": start, "endTime": end,
                      "limit": self.limit}
            # `now` is the wall clock when the request went out: a kline closing later may still
            # have been open when the server answered (it matters for 1s bars), so it is left to
            # the live stream or the next round.
            rows, now = await self._get("/api/v3/klines", params, KLINES_WEIGHT)
            if type(rows) is not list:
                raise BackfillError(f"klines response is not an array: {str(rows)[:SNIPPET]}")
            last_close = None
            for row in rows:
                try:
                    k = parse_rest_kline(row, symbol, interval)
                except FrameError as exc:
                    self.asm.reject("invalid_rest_kline", str(exc), orjson.dumps(row).decode(), "rest", symbol)
                    continue
                last_close = k.close_time
                if out and k.open_time <= out[-1].open_time:
                    self.asm.reject("rest_out_of_order", f"open time {k.open_time} not increasing",
                                    orjson.dumps(row).decode(), "rest", symbol)
                    continue
                if k.close_time >= now:
                    break  # still open (docs/binance.md, Gap detection and backfill)
                out.append(k)
            if len(rows) < self.limit or last_close is None or last_close >= now:
                break
            start = last_close + 1
        return out

    def _delay(self, attempt: int) -> float:
        initial, maximum = self.backoff
        return backoff_delay(attempt, initial, maximum, 2.0, 0.5, self._random)

    async def _get(self, path: str, params: dict, weight: int) -> tuple[Any, int]:
        """GET with retries: timeouts, transport errors, 5xx and bad JSON back off; 429/418 wait Retry-After.

        Returns the decoded JSON and the wall clock (ms) when the successful request was sent.
        """
        failures = 0
        async with self._sem:
            while True:
                while (wait := max(self._not_before - self._clock(), self._weight.wait_time(weight))) > 0:
                    await self._sleep(wait)
                self._weight.take(weight)
                self.stats["rest_requests"] += 1
                sent = self._wall_ms()
                try:
                    r = await self._http.get(path, params=params)
                except (httpx.TimeoutException, httpx.TransportError) as exc:
                    error = f"{type(exc).__name__}: {exc}"
                else:
                    code = r.status_code
                    if code == 200:
                        try:
                            return orjson.loads(r.content), sent
                        except orjson.JSONDecodeError as exc:
                            error = f"malformed JSON: {exc}"
                    elif code in (429, 418):
                        retry = parse_retry_after(r.headers.get("Retry-After"))
                        self._not_before = max(self._not_before, self._clock() + retry)
                        self.stats["rate_limited"] += 1
                        self.report("rate_limited", source="rest", status=code, retry_after=retry)
                        continue
                    elif code >= 500:
                        error = f"HTTP {code}"
                    else:
                        raise BackfillError(f"HTTP {code}: {r.text[:SNIPPET]}")
                failures += 1
                self.stats["rest_errors"] += 1
                if failures > self.retries:
                    raise BackfillError(f"{failures} failed requests, last: {error}")
                delay = self._delay(failures)
                self.report("rest_error", path=path, error=error[:SNIPPET], attempt=failures,
                            delay=round(delay, 3))
                await self._sleep(delay)
