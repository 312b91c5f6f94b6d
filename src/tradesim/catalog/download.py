"""Download klines from Binance's REST ``GET /api/v3/klines`` into the catalog.

See docs/catalog.md (Download; Resume and atomicity; Rate limits). Per month of
the asked range, only what the catalog does not cover is requested, in windows
of 1000 intervals (one request each, `workers` in flight); every page is
checked (rows by `parse_rest_klines`, the rules of `parse_rest_kline`; open
times strictly increasing, inside the window and on the interval grid) and a
month is written only once all its windows are in.

Requests stay under the request-weight limit (the ``X-MBX-USED-WEIGHT-1M``
header says what this IP has used in the current minute), wait ``Retry-After``
on 429/418, and back off (tenacity, jittered exponential) on 5xx, timeouts,
transport errors, malformed or truncated JSON and invalid pages.

Units: times in ms since the epoch UTC, durations in seconds.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import httpx
import numpy as np
import orjson
import tenacity

from tradesim.catalog.store import Catalog, grid_ceil, interval_ms, month_bounds, months_between
from tradesim.feeds.binance.messages import FrameError, parse_rest_klines
from tradesim.feeds.binance.retry import parse_retry_after

__all__ = ["REST_URLS", "DownloadError", "DownloadResult", "Downloader"]

#: REST base URL per ``--region``.
REST_URLS = {"com": "https://api.binance.com", "us": "https://api.binance.us"}
#: Request weight per minute allowed per IP (``exchangeInfo`` rateLimits REQUEST_WEIGHT; .us kept low, to be safe).
WEIGHT_LIMITS = {"com": 6000, "us": 1200}
#: Weight of one klines request (docs/binance.md, REST klines and rate limits).
KLINES_WEIGHT = 2
PAGE_LIMIT = 1000
#: A missing tail newer than this (ms before now) is not yet covered: REST may publish it late.
RECENT_MS = 10 * 60_000


class DownloadError(RuntimeError):
    """The exchange did not deliver: retries exhausted, a client error (4xx), or a long ban."""


class _Transient(Exception):
    """A failure worth retrying after a backoff (5xx, timeout, bad page)."""


class _Stopped(Exception):
    """Another window failed or the user interrupted: this one gives up without retrying."""


class _RateLimited(Exception):
    """429/418: wait `retry_after` seconds."""

    def __init__(self, status: int, retry_after: float) -> None:
        super().__init__(f"HTTP {status}, Retry-After {retry_after:g} s")
        self.status, self.retry_after = status, retry_after


@dataclass
class DownloadResult:
    """What one `Downloader.download` call did."""

    symbol: str
    interval: str
    requests: int = 0
    bars: int = 0
    months_written: list[str] = field(default_factory=list)
    months_skipped: list[str] = field(default_factory=list)
    retries: int = 0
    rate_limited: int = 0
    weight_waits: int = 0


class Downloader:
    """Fill the catalog from Binance REST klines (resumable, idempotent).

    Parameters
    ----------
    catalog : Catalog
        Where bars go.
    region : {"com", "us"}
        ``api.binance.com`` or ``api.binance.us``.
    rest_url : str, optional
        Base URL overriding the region's (e.g. a test server).
    client : httpx.Client, optional
        Injected client (tests); by default one with `timeout` seconds.
    max_attempts : int
        Tries per request before `DownloadError` (429/418 waits count too).
    weight_limit : int, optional
        Request weight per minute to stay under; default the region's.
    max_retry_after : float
        Longest ``Retry-After`` honoured (s); a longer 418 ban raises `DownloadError`.
    backoff : (float, float)
        First backoff delay and the cap, seconds (exponential with jitter).
    workers : int
        Requests in flight at once (threads; the weight budget is shared).
    sleep, clock : callable
        ``sleep(seconds)`` and the wall clock in seconds (injectable for tests).
    progress : callable, optional
        ``progress(symbol, bars_done_in_this_call)`` after every page.
    """

    def __init__(self, catalog: Catalog, *, region: str = "com", rest_url: str | None = None,
                 client: httpx.Client | None = None, timeout: float = 10.0, max_attempts: int = 8,
                 weight_limit: int | None = None, max_retry_after: float = 600.0,
                 backoff: tuple[float, float] = (0.5, 30.0), workers: int = 4,
                 sleep: Callable[[float], object] = time.sleep, clock: Callable[[], float] = time.time,
                 progress: Callable[[str, int], object] | None = None) -> None:
        if region not in REST_URLS:
            raise ValueError(f"region {region!r}: expected one of {sorted(REST_URLS)}")
        self.catalog = catalog
        self.base_url = (rest_url or REST_URLS[region]).rstrip("/")
        self.client = client or httpx.Client(timeout=timeout, headers={"User-Agent": "tradesim"})
        self._own_client = client is None
        self.weight_limit = weight_limit or WEIGHT_LIMITS[region]
        self.max_retry_after = max_retry_after
        self.sleep, self.clock, self.progress = sleep, clock, progress
        self._used_weight = 0
        self.workers = workers
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._weight_minute = -1
        self._not_before = 0.0  # clock time before which no request may go out (Retry-After)
        self._result = DownloadResult("", "")
        self._retrying = tenacity.Retrying(
            retry=tenacity.retry_if_exception_type((_Transient, _RateLimited)),
            stop=tenacity.stop_after_attempt(max_attempts),
            wait=self._wait(tenacity.wait_random_exponential(multiplier=backoff[0], max=backoff[1])),
            sleep=self._sleep_between, before_sleep=self._count_retry, reraise=True)

    def close(self) -> None:
        """Close the HTTP client if this object made it."""
        if self._own_client:
            self.client.close()

    def __enter__(self) -> Downloader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- retry plumbing ------------------------------------------------------------------

    def _wait(self, backoff):
        def wait(state: tenacity.RetryCallState) -> float:
            exc = state.outcome.exception() if state.outcome else None
            if isinstance(exc, _RateLimited):
                return exc.retry_after
            return backoff(state)
        return wait

    def _sleep_between(self, seconds: float) -> None:
        if self._stop.is_set():
            raise _Stopped("stopped")
        self.sleep(seconds)

    def _count_retry(self, state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        with self._lock:
            if isinstance(exc, _RateLimited):
                self._result.rate_limited += 1
            else:
                self._result.retries += 1

    # -- one request ---------------------------------------------------------------------

    def _respect_weight(self) -> None:
        """Take this request's weight; first wait out any ``Retry-After`` another request received,
        and sleep to the next minute if this request would pass 90 % of the weight limit.

        Binance counts weight per IP per clock minute and reports it in
        ``X-MBX-USED-WEIGHT-1M`` (which may include other programs' requests).
        """
        with self._lock:
            now = self.clock()
            if self._not_before > now:  # a 429/418 answered another request: everyone waits
                self.sleep(self._not_before - now)
                self._not_before = 0.0
                now = self.clock()
            if int(now // 60) != self._weight_minute:
                self._weight_minute, self._used_weight = int(now // 60), 0
            if self._used_weight + KLINES_WEIGHT > self.weight_limit * 0.9:
                self.sleep(60.0 - now % 60.0 + 0.5)
                self._weight_minute, self._used_weight = int(self.clock() // 60), 0
                self._result.weight_waits += 1
            self._result.requests += 1
            self._used_weight += KLINES_WEIGHT

    def _get_page(self, params: dict) -> list:
        self._respect_weight()
        try:
            r = self.client.get(f"{self.base_url}/api/v3/klines", params=params)
        except (httpx.TimeoutException, httpx.TransportError) as exc:
            raise _Transient(f"{type(exc).__name__}: {exc}") from exc
        used = r.headers.get("X-MBX-USED-WEIGHT-1M")
        if used is not None and used.strip().isdigit():
            with self._lock:
                self._used_weight = max(self._used_weight, int(used))
        code = r.status_code
        if code in (429, 418):
            wait = parse_retry_after(r.headers.get("Retry-After"))
            if wait > self.max_retry_after:
                raise DownloadError(f"HTTP {code} from {self.base_url}: Retry-After {wait:g} s exceeds "
                                    f"{self.max_retry_after:g} s (IP banned?): {r.text[:200]}")
            with self._lock:
                self._not_before = max(self._not_before, self.clock() + wait)
            raise _RateLimited(code, wait)
        if code >= 500:
            raise _Transient(f"HTTP {code}")
        if code != 200:
            raise DownloadError(f"HTTP {code} from {self.base_url}/api/v3/klines {params}: {r.text[:200]}")
        try:
            rows = orjson.loads(r.content)
        except orjson.JSONDecodeError as exc:
            raise _Transient(f"malformed JSON: {exc}") from None
        if type(rows) is not list:
            raise _Transient(f"klines response is not an array: {r.text[:200]}")
        return rows

    def _page(self, symbol: str, interval: str, start: int, end: int) -> np.ndarray:
        """Checked klines with open time in ``[start, end)``: array (n, 6) of open_time, o, h, l, c, v."""
        step = interval_ms(interval)
        params = {"symbol": symbol, "interval": interval, "startTime": start, "endTime": end - 1,
                  "limit": PAGE_LIMIT}
        rows = self._get_page(params)
        try:
            arr = parse_rest_klines(rows, symbol, interval)
        except FrameError as exc:
            raise _Transient(f"invalid kline: {exc}") from None
        if not len(arr):
            return arr
        ts = arr[:, 0]
        if ts[0] < start or ts[-1] >= end:
            raise _Transient(f"open times {int(ts[0])}..{int(ts[-1])} outside the asked [{start}, {end})")
        d = np.diff(ts)
        if (d <= 0).any():
            i = int(np.argmax(d <= 0)) + 1
            raise _Transient(f"open_time {int(ts[i])} not after {int(ts[i - 1])} (duplicate or out of order)")
        if ((ts - grid_ceil(start, step)) % step).any():
            raise _Transient(f"open times not on the {interval} grid")
        return arr

    # -- a range -------------------------------------------------------------------------

    def _fetch(self, symbol: str, interval: str, start: int, end: int) -> np.ndarray:
        """All klines in ``[start, end)``: windows of 1000 intervals, `workers` requests at a time.

        A window holds at most 1000 open times, so one request returns all of
        its klines (fewer when the exchange has a gap; none past its history).
        """
        step = interval_ms(interval)
        span = PAGE_LIMIT * step
        windows = [(w, min(w + span, end)) for w in range(start, end, span)]

        def one(window: tuple[int, int]) -> np.ndarray:
            if self._stop.is_set():
                raise _Stopped("stopped")
            page = self._retrying.copy()(self._page, symbol, interval, *window)
            with self._lock:
                self._result.bars += len(page)
            if self.progress:
                self.progress(symbol, len(page))
            return page

        if self.workers > 1 and len(windows) > 1:
            pool = ThreadPoolExecutor(self.workers)
            try:
                pages = list(pool.map(one, windows))
            except BaseException:
                # Ctrl-C or a failed window: no new request or retry starts; requests in flight
                # end by their timeout. Nothing of this month has been written.
                self._stop.set()
                raise
            finally:
                pool.shutdown(wait=True, cancel_futures=True)
                self._stop.clear()
        else:
            pages = [one(w) for w in windows]
        return np.concatenate(pages) if pages else np.empty((0, 6))

    def plan(self, symbol: str, interval: str, start_ms: int, end_ms: int) -> list[tuple[int, int]]:
        """The ``[start, end)`` pieces to request: the asked range minus what is covered, per month.

        Each month's covered range stays one range: a piece also fills any hole
        between the asked range and what the month already covers.
        """
        covered = self.catalog.covered(symbol, interval)
        pieces = []
        for key in months_between(start_ms, end_ms):
            m0, m1 = month_bounds(key)
            a, b = max(start_ms, m0), min(end_ms, m1)
            if key not in covered:
                pieces.append((a, b))
                continue
            ca, cb = covered[key]
            if a < ca:
                pieces.append((a, ca))
            if b > cb:
                pieces.append((cb, b))
        return pieces

    def download(self, symbol: str, interval: str, start_ms: int, end_ms: int | None = None) -> DownloadResult:
        """Bring ``[start_ms, end_ms)`` of one series into the catalog (end default: now).

        Only closed klines are asked for; a missing tail younger than 10 minutes
        is left uncovered (the next run asks again) instead of becoming a gap.

        Raises
        ------
        DownloadError
            Retries exhausted, a 4xx other than 429/418, or a ban longer than `max_retry_after`.
        CatalogError
            Bad symbol/interval, or a downloaded bar disagrees with a stored one.
        """
        symbol = symbol.strip().upper()
        step = interval_ms(interval)
        now_ms = int(self.clock() * 1000)
        closed_end = now_ms - step + 1  # a bar opening before this has closed (open + step <= now)
        end = closed_end if end_ms is None else min(int(end_ms), closed_end)
        start = grid_ceil(start_ms, step)
        result = self._result = DownloadResult(symbol, interval)
        if start >= end:
            return result
        pieces = self.plan(symbol, interval, start, end)
        todo = {k for a, b in pieces for k in months_between(a, b)}
        result.months_skipped = [k for k in months_between(start, end) if k not in todo]
        for a, b in pieces:
            try:
                arr = self._fetch(symbol, interval, a, b)
            except (_Transient, _RateLimited) as exc:
                raise DownloadError(f"{symbol} {interval} from {a}: retries exhausted; last: {exc}") from None
            cover_end = b
            if b > now_ms - RECENT_MS:
                tail = int(arr[-1, 0]) + step if len(arr) else a
                cover_end = max(tail, min(b, now_ms - RECENT_MS))
            if cover_end <= a:
                continue
            ts = arr[:, 0].astype(np.int64)
            self.catalog.write(symbol, interval, ts, *(arr[:, i] for i in range(1, 6)), a, cover_end)
            result.months_written.extend(k for k in months_between(a, cover_end)
                                         if k not in result.months_written)
        return result
