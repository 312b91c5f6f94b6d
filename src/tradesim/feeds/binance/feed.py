"""Live Binance spot klines over WebSocket combined streams, with REST backfill.

`BinanceFeed` yields closed bars (kline ``"x": true``) as `MarketData`, per
symbol strictly in open-time order with none missing and none duplicated, each
carrying the latest non-crossed book-ticker quote of its symbol. It follows
docs/binance.md:

* streams ``<sym>@kline_<iv>`` and ``<sym>@bookTicker`` on combined-stream
  connections of at most `streams_per_connection` streams; streams beyond the
  URL's share are added with SUBSCRIBE messages throttled per connection, acks
  matched to request ids;
* reconnects with jittered exponential backoff (`Backoff`) that resets only
  after a connection lived `stable_after` seconds, under a global budget of
  connection attempts (`RateWindow`, <= 250 per 5 minutes); HTTP 429/418 at the
  handshake or on REST is honoured through ``Retry-After``;
* a silence watchdog, proactive rotation before Binance's 24 h limit and on
  ``serverShutdown`` (the replacement opens first; duplicates are dropped);
* gap detection and backfill exactly per docs/binance.md (Gap detection and backfill): per symbol the expected next
  open time; after every (re)connect, and on any kline that jumps past it, REST
  ``GET /api/v3/klines`` fills the hole (paginated, still-open klines dropped)
  while live klines are buffered and deduplicated by open time;
* strict parsing (`tradesim.feeds.binance.messages`): every bad frame is counted,
  reported through ``on_status("rejected", ...)`` and dropped; the reader never dies.

This module manages connections; the other concerns have their own modules:
`assembler` (frames -> bars, ordering, gaps), `transport` (the WebSocket
connection's frame fast path), `backfill` (REST), `retry` (backoff and rate
budgets) and `messages` (strict parsing).

Units: timestamps in ms since the Unix epoch (UTC, bar open time), prices in
quote currency, volume in base units, durations in seconds.
"""

from __future__ import annotations

import asyncio
import functools
import itertools
import logging
import random as _random
import re
import time
from collections.abc import Awaitable, Callable, Iterable
from typing import Any, Self

import orjson
from websockets.asyncio.client import connect as ws_connect
from websockets.exceptions import (
    ConnectionClosed,
    InvalidHandshake,
    InvalidStatus,
    InvalidURI,
)

from tradesim._core import MarketData
from tradesim.feeds.base import DataHealth
from tradesim.feeds.binance.assembler import (
    ACK,
    BOOK,
    ERROR,
    GAP,
    KLINE,
    REJECTED,
    SHUTDOWN,
    BarAssembler,
    Gap,
    SymbolState,
    new_stats,
)
from tradesim.feeds.binance.backfill import KlineBackfill
from tradesim.feeds.binance.messages import INTERVAL_MS, MAX_FRAME_BYTES, SNIPPET
from tradesim.feeds.binance.retry import Backoff, RateWindow, parse_retry_after
from tradesim.feeds.binance.transport import FrameConnection, abort

__all__ = ["REGIONS", "BinanceFeed", "BinanceFeedError"]

log = logging.getLogger(__name__)

#: WebSocket and REST base URLs per Binance region.
REGIONS = {"com": ("wss://stream.binance.com:9443", "https://api.binance.com"),
           "us": ("wss://stream.binance.us:9443", "https://api.binance.us")}
#: Nominal length of "1M" (for `interval_ms` only; gap checks use close time + 1).
MONTH_MS = 30 * 86_400_000
# The shortest calendar month (the "1M" interval has no fixed length), ms.
_SHORTEST_MONTH_MS = 28 * 86_400_000
_SYMBOL_RE = re.compile(r"^[A-Z0-9]{2,20}$")
#: Handshake statuses that retrying cannot fix (bad URL, forbidden, region-blocked).
_FATAL_HTTP = frozenset({400, 401, 403, 404, 451})


class BinanceFeedError(RuntimeError):
    """The feed gave up (fatal handshake status or too many failed attempts); raised by iteration."""


class _Conn:
    """One WebSocket connection of a group."""

    __slots__ = (
        "control",
        "end_reason",
        "first_data",
        "group",
        "has_data",
        "id",
        "last_data",
        "opened",
        "pending",
        "reader",
        "tasks",
        "ws",
    )

    def __init__(self, cid: str, ws: Any, group: _Group, now: float, control: RateWindow):
        self.id, self.ws, self.group = cid, ws, group
        self.opened = self.last_data = now
        self.has_data = False
        self.first_data = asyncio.Event()
        self.reader: asyncio.Task | None = None
        self.tasks: list[asyncio.Task] = []
        self.end_reason = "closed"
        self.pending: dict[int, list[str]] = {}
        self.control = control


class _Group:
    """Streams served by one connection at a time (two during a rotation)."""

    def __init__(self, gid: int, streams: list[str], syms: list[SymbolState], backoff: Backoff):
        self.id, self.streams, self.syms, self.backoff = gid, streams, syms, backoff
        self.state = "connecting"
        self.rotate_now = asyncio.Event()
        self.conns: set[_Conn] = set()
        self.task: asyncio.Task | None = None


_END = object()


class BinanceFeed:
    """Closed Binance spot klines of several symbols, live, gap-free and in order per symbol.

    ``async for bar in feed`` yields `MarketData` (timestamp = bar open time, ms
    since epoch UTC; OHLC in quote currency; volume in base units; bid/ask the
    latest non-crossed book-ticker quote of the symbol when the closed kline
    arrived, NaN if none yet and for bars filled in over REST). Per symbol the
    open times are strictly increasing with no bar missing: holes in the live
    stream are filled from REST before any later live bar. Symbols are not
    interleaved by time across each other.

    Parameters
    ----------
    symbols : str or iterable of str
        Spot symbols (``"BTCUSDT"``; case-insensitive; 2-20 letters/digits).
    interval : str, default "1m"
        Binance kline interval: 1s 1m 3m 5m 15m 30m 1h 2h 4h 6h 8h 12h 1d 3d 1w 1M.
    region : {"com", "us"}
        Binance (``stream.binance.com:9443`` / ``api.binance.com``) or Binance.US.
    base_url, rest_url : str, optional
        Override the WebSocket and REST base URLs (tests: ``ws://127.0.0.1:PORT``).
    on_status : callable, optional
        ``on_status(kind, **fields)``, called on the event-loop thread for
        connecting, connected, reconnecting (reason, delay), disconnected,
        gap_detected (symbol, from, to, missing), backfilled (symbol, bars,
        from, to), backfill_failed, rest_error, rejected (reason, connection,
        snippet), server_error (code, msg), server_shutdown, rotating,
        rate_limited (retry_after), failed. Exceptions it raises are logged and
        swallowed.
    streams_per_connection : int, default 1024
        Streams per connection (Binance's maximum is 1024); more streams open
        more connections.
    url_streams : int, default 100
        Streams named in the connection URL; the rest of a connection's streams
        are added with SUBSCRIBE messages (keeps the request line short).
    subscribe_batch : int, default 100
        Streams per SUBSCRIBE message.
    control_rate : float, default 4.0
        SUBSCRIBE messages per second per connection (Binance allows 5 incoming
        messages/s including pongs).
    silence_timeout : float, default 10.0
        Seconds without a data frame before the connection is dropped and
        reopened (klines push every 2 s, so 10 s of silence means dead).
    rotate_after : float, default 23 h
        Seconds after which a replacement connection is opened (Binance cuts at 24 h).
    stable_after : float, default 10.0
        Seconds a connection must live to reset the reconnect backoff.
    backoff_initial, backoff_max, backoff_factor : float
        Reconnect delays in seconds (see `Backoff`).
    max_attempts_per_5min : int, default 250
        Global budget of connection attempts (Binance: 300 per 5 min per IP).
    max_failures : int, optional
        Give up (status ``failed``) after this many consecutive failed
        attempts; None = never (reconnecting forever, visibly, is better than
        silently stopping).
    open_timeout : float, default 10.0
        Seconds for the TCP + TLS + WebSocket handshake.
    ping_interval, ping_timeout : float or None, default 20.0
        Client keepalive pings (seconds; Binance forbids pinging faster than
        every 20 s; None = rely on the server's pings, which are always answered).
    rest_limit : int, default 1000
        Klines per REST page (<= 1000).
    rest_timeout : float, default 10.0
        Seconds per REST request.
    rest_retries : int, default 8
        Consecutive failed REST requests (timeout, 5xx, malformed) before a
        backfill is given up (``backfill_failed``; the hole stays in `health`).
    rest_backoff_initial, rest_backoff_max : float
        Seconds between REST retries (doubling, jittered).
    rest_weight_per_min : int, default 3000
        Client-side REST weight budget per minute (klines cost 2; Binance allows 6000).
    backfill_from : int, optional
        Open time (ms since epoch UTC) of the first wanted bar: history from
        there is fetched over REST first. None = start at the first live closed kline.
    max_clock_skew : float or None, default 5.0
        Seconds between a kline's event time ``E`` and the local wall clock
        beyond which ``stats["clock_skew"]`` counts it (and logs; M10). Bar
        times always come from ``k.t``. None = no check.
    proxy : str, True or None, default True
        Proxy for WebSocket and REST (True = from the environment, None = direct).
    clock, wall_ms, random, sleep
        Injectable monotonic clock (s), wall clock (ms since epoch), U[0,1) source
        and async sleep, for tests.

    Attributes
    ----------
    symbols : tuple of str
        Upper-case symbols.
    interval, interval_ms : str, int
        Kline interval and its length in ms (nominal 30 days for "1M").
    health : DataHealth
        Bars emitted, rejects and unfilled gaps per symbol.
    on_status : callable or None
        The status callback; may be replaced at any time (an engine sets it).
    status : str
        The state now (see the `status` property).
    stats : dict
        Counters: frames, bars, backfilled_bars, rejected (by reason), duplicates,
        out_of_order, stale_quotes, gaps, backfills, backfill_failures,
        rest_requests, rest_errors, connection_attempts, connections, reconnects,
        rotations, silence_timeouts, rate_limited, server_errors,
        server_shutdowns, subscribe_messages, acks, unmatched_acks, clock_skew,
        checks_skipped (post-connect backfill checks that needed no REST request).

    Raises
    ------
    ValueError
        Bad symbol, interval, region or limits.
    """

    #: Bars arrive in real time: a consumer can't make the exchange wait (the engine
    #: disables a runner that falls too far behind instead of pausing the feed).
    live = True
    #: The websockets connection class (a `FrameConnection`; tests and benchmarks subclass it).
    connection_class: type[FrameConnection] = FrameConnection

    def __init__(self, symbols: str | Iterable[str], interval: str = "1m", *, region: str = "com",
                 base_url: str | None = None, rest_url: str | None = None,
                 on_status: Callable[..., object] | None = None,
                 streams_per_connection: int = 1024, url_streams: int = 100, subscribe_batch: int = 100,
                 control_rate: float = 4.0, silence_timeout: float = 10.0, rotate_after: float = 23 * 3600.0,
                 stable_after: float = 10.0, backoff_initial: float = 1.0, backoff_max: float = 30.0,
                 backoff_factor: float = 2.0, max_attempts_per_5min: int = 250, max_failures: int | None = None,
                 open_timeout: float = 10.0, ping_interval: float | None = 20.0,
                 ping_timeout: float | None = 20.0, rest_limit: int = 1000, rest_timeout: float = 10.0,
                 rest_retries: int = 8, rest_backoff_initial: float = 0.5, rest_backoff_max: float = 30.0,
                 rest_weight_per_min: int = 3000, backfill_from: int | None = None,
                 max_clock_skew: float | None = 5.0, proxy: str | bool | None = True,
                 clock: Callable[[], float] = time.monotonic,
                 wall_ms: Callable[[], int] | None = None,
                 random: Callable[[], float] = _random.random,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep):
        names = [symbols] if isinstance(symbols, str) else list(symbols)
        syms = tuple(dict.fromkeys(str(s).strip().upper() for s in names))
        if not syms:
            raise ValueError("symbols must name at least one symbol")
        for s in syms:
            if not _SYMBOL_RE.match(s):
                raise ValueError(f"symbol {s!r} is not 2-20 letters/digits")
        if interval not in INTERVAL_MS:
            raise ValueError(f"interval must be one of {', '.join(INTERVAL_MS)}, got {interval!r}")
        if region not in REGIONS:
            raise ValueError(f"region must be 'com' or 'us', got {region!r}")
        if not 1 <= streams_per_connection <= 1024:
            raise ValueError(f"streams_per_connection must be 1..1024, got {streams_per_connection!r}")
        if url_streams < 1 or subscribe_batch < 1:
            raise ValueError("url_streams and subscribe_batch must be >= 1")
        if not 0 < control_rate <= 5:
            raise ValueError(f"control_rate must be in (0, 5] messages/s, got {control_rate!r}")
        if not (silence_timeout > 0 and 0 < rotate_after <= 24 * 3600.0):
            raise ValueError(f"need silence_timeout > 0 and 0 < rotate_after <= 24 h, got "
                             f"{silence_timeout!r}, {rotate_after!r}")
        if ping_interval is not None and ping_interval < 20:
            raise ValueError(f"ping_interval must be >= 20 s (Binance rule) or None, got {ping_interval!r}")
        if not 1 <= max_attempts_per_5min <= 300:
            raise ValueError(f"max_attempts_per_5min must be 1..300, got {max_attempts_per_5min!r}")
        if not 1 <= rest_limit <= 1000:
            raise ValueError(f"rest_limit must be 1..1000, got {rest_limit!r}")
        ws_default, rest_default = REGIONS[region]
        self.symbols = syms
        self.interval = interval
        self.interval_ms = INTERVAL_MS[interval] or MONTH_MS
        self.base_url = (base_url or ws_default).rstrip("/")
        self.rest_url = (rest_url or rest_default).rstrip("/")
        self.health = DataHealth()
        self.stats = new_stats()
        self.on_status = on_status
        self._spc, self._url_streams, self._sub_batch = streams_per_connection, url_streams, subscribe_batch
        self._control_rate = control_rate
        self.silence_timeout, self.rotate_after = float(silence_timeout), float(rotate_after)
        self._backoff_args = {"initial": backoff_initial, "maximum": backoff_max, "factor": backoff_factor,
                              "stable_after": stable_after, "random": random}
        Backoff(**self._backoff_args)  # validate now
        self._max_failures = max_failures
        self._open_timeout, self._ping_interval, self._ping_timeout = open_timeout, ping_interval, ping_timeout
        self._proxy = proxy
        self._clock, self._sleep = clock, sleep
        self._wall_ms = wall_ms or (lambda: time.time_ns() // 1_000_000)
        self.attempts = RateWindow(max_attempts_per_5min, 300.0, clock)
        self._ws_not_before = 0.0
        self._conn_ids = itertools.count(1)
        self._req_ids = itertools.count(1)
        self._out: asyncio.Queue | None = None
        self._consumer: Callable[[MarketData], object] | None = None
        self._asm = BarAssembler(syms, interval, self._put, self.stats, self.health, self._report,
                                 start_from=backfill_from, backfill=True)
        self._asm.skew_ms = None if max_clock_skew is None else int(max_clock_skew * 1000)
        self._close_margin_ms = self._asm.skew_ms if self._asm.skew_ms is not None else 5_000
        self._asm.wall_ms = self._wall_ms
        self._rest = KlineBackfill(self._asm, self.rest_url, self.stats, self._report, limit=rest_limit,
                                   timeout=rest_timeout, retries=rest_retries,
                                   backoff=(rest_backoff_initial, rest_backoff_max),
                                   weight_per_min=rest_weight_per_min, proxy=proxy, clock=clock,
                                   wall_ms=self._wall_ms, random=random, sleep=sleep)
        self._groups: list[_Group] = []
        self._tasks: set[asyncio.Task] = set()
        self._started = False
        self._closed = False
        self._failed: BinanceFeedError | None = None
        self._status = "idle"

    # -- public surface ----------------------------------------------------------------------------
    @property
    def status(self) -> str:
        """idle, connecting, connected, reconnecting, backfilling, closed or failed."""
        if self._status in ("idle", "closed", "failed"):
            return self._status
        states = {g.state for g in self._groups}
        if "reconnecting" in states:
            return "reconnecting"
        if "connecting" in states:
            return "connecting"
        if any(st.catching_up for st in self._asm.syms.values()):
            return "backfilling"
        return "connected"

    def streams(self) -> list[list[str]]:
        """Stream names per connection group (``<sym>@kline_<iv>``, ``<sym>@bookTicker``)."""
        names = []
        for s in self.symbols:
            low = s.lower()
            names += [f"{low}@kline_{self.interval}", f"{low}@bookTicker"]
        return [names[i:i + self._spc] for i in range(0, len(names), self._spc)]

    def __aiter__(self) -> BinanceFeed:
        return self

    async def __anext__(self) -> MarketData:
        """The next closed bar; raises `BinanceFeedError` if the feed failed, stops once closed."""
        if not self._started:
            self._start()
        item = await self._out.get()
        if item.__class__ is MarketData:
            return item
        self._out.put_nowait(_END)  # keep the end visible to later calls
        if self._failed is not None:
            raise self._failed
        raise StopAsyncIteration

    async def stream_to(self, consumer: Callable[[MarketData], object]) -> None:
        """Push mode: call ``consumer(bar)`` for each bar as soon as its frame is parsed.

        The lowest-latency way to take bars: the consumer runs synchronously on
        the event-loop thread inside the socket's read callback, with no queue
        or task switch in between (`async for` adds both). It must be quick and
        must not block; an exception it raises is logged and that bar is lost
        to it. Same bars, same order as iteration. Returns when the feed is
        closed.

        Raises
        ------
        BinanceFeedError
            The feed failed (fatal handshake status, too many failed attempts).
        RuntimeError
            The feed was already started (iterated or streamed).
        """
        if self._started:
            raise RuntimeError("BinanceFeed already started: stream_to() or iteration, not both")
        self._start(consumer)
        await self._out.get()   # in push mode the queue only ever carries the end marker
        self._out.put_nowait(_END)
        if self._failed is not None:
            raise self._failed

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def close(self) -> None:
        """Stop now: cancel every task, end iteration; idempotent. Sockets close in the background."""
        if self._closed:
            return
        self._closed = True
        if self._status != "failed":
            self._status = "closed"
        for task in list(self._tasks):
            task.cancel()
        for g in self._groups:
            for conn in g.conns:
                abort(conn.ws)
        if self._out is not None:
            self._out.put_nowait(_END)
        self._report("closed")

    async def aclose(self) -> None:
        """`close()`, then wait for the tasks to finish and release the HTTP client."""
        self.close()
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self._rest.aclose()

    def __repr__(self) -> str:
        return f"BinanceFeed(symbols={self.symbols!r}, interval={self.interval!r}, status={self.status!r})"

    # -- plumbing ------------------------------------------------------------------------------------
    def _report(self, kind: str, **fields: Any) -> None:
        if kind in ("connected", "disconnected", "reconnecting", "gap_detected", "backfilled",
                    "backfill_failed", "rate_limited", "server_shutdown", "rotating", "failed"):
            log.info("binance feed %s %s", kind, fields)
        cb = self.on_status
        if cb is not None:
            try:
                cb(kind, **fields)
            except Exception:
                log.exception("on_status(%r) raised; ignored", kind)

    def _put(self, bar: MarketData) -> None:
        try:
            self._consumer(bar)
        except Exception:  # a consumer's bug must not stop the stream (stream_to's contract)
            log.exception("bar consumer raised on %s %s; bar dropped for it", bar.symbol, bar.timestamp)

    def _spawn(self, coro: Awaitable[Any], name: str) -> asyncio.Task:
        task = asyncio.create_task(coro, name=name)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    def _start(self, consumer: Callable[[MarketData], object] | None = None) -> None:
        if self._closed:
            raise RuntimeError("BinanceFeed is closed")
        self._started = True
        self._status = "connecting"
        self._out = asyncio.Queue()
        self._consumer = consumer or self._out.put_nowait
        if self._closed:
            self._out.put_nowait(_END)
        self._rest.open()
        by_stream = {st.symbol.lower(): st for st in self._asm.syms.values()}
        for gid, streams in enumerate(self.streams()):
            syms = [by_stream[s.partition("@")[0]] for s in streams if "@kline_" in s]
            g = _Group(gid, streams, syms, Backoff(**self._backoff_args))
            self._groups.append(g)
            g.task = self._spawn(self._run_group(g), f"binance-group-{gid}")

    def _fail(self, reason: str) -> None:
        if self._closed:
            return
        self._failed = BinanceFeedError(reason)
        self._status = "failed"
        self._report("failed", reason=reason)
        log.error("binance feed failed: %s", reason)
        self.close()
        self._status = "failed"

    # -- connections ---------------------------------------------------------------------------------
    async def _run_group(self, g: _Group) -> None:
        conn: _Conn | None = None
        try:
            reason = "start"
            while not self._closed:
                conn = await self._open(g, reason)
                if conn is None:
                    return
                while True:
                    if await self._wait_rotation(conn, g):
                        reason = conn.end_reason
                        break
                    conn = await self._rotate(g, conn)
                    if conn is None:
                        return
                lived = self._clock() - conn.opened
                g.conns.discard(conn)
                abort(conn.ws)
                for t in conn.tasks:
                    t.cancel()
                g.backoff.connection_ended(lived)
                g.state = "reconnecting"
                self.stats["reconnects"] += 1
                self._report("disconnected", connection=conn.id, reason=reason, lived=round(lived, 3))
        finally:
            for c in list(g.conns):
                abort(c.ws)
                for t in c.tasks:
                    t.cancel()

    async def _wait_rotation(self, conn: _Conn, g: _Group) -> bool:
        """Wait until `conn` ends (True) or must be rotated (False)."""
        rotate = asyncio.ensure_future(g.rotate_now.wait())
        try:
            timeout = max(0.0, conn.opened + self.rotate_after - self._clock())
            done, _ = await asyncio.wait({conn.reader, rotate}, timeout=timeout,
                                         return_when=asyncio.FIRST_COMPLETED)
        finally:
            rotate.cancel()
        if conn.reader in done:
            return True
        g.rotate_now.clear()
        return False

    async def _rotate(self, g: _Group, old: _Conn) -> _Conn | None:
        """Open a replacement for `old`; switch once it delivers data; close `old`."""
        self.stats["rotations"] += 1
        self._report("rotating", connection=old.id, age=round(self._clock() - old.opened, 3))
        while True:
            new = await self._open(g, "rotation")
            if new is None:
                return None
            first = asyncio.ensure_future(new.first_data.wait())
            try:
                await asyncio.wait({first, new.reader}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                first.cancel()
            if new.has_data:
                break
            # The replacement died before any data: drop it and try again (old still serves).
            g.conns.discard(new)
            abort(new.ws)
            self._report("disconnected", connection=new.id, reason=new.end_reason, lived=0.0)
        g.conns.discard(old)
        old.end_reason = "rotated"
        for t in old.tasks:
            t.cancel()
        abort(old.ws)
        self._report("disconnected", connection=old.id, reason="rotated",
                     lived=round(self._clock() - old.opened, 3))
        return new

    async def _open(self, g: _Group, reason: str) -> _Conn | None:
        """Connect (with backoff, attempt budget and Retry-After) until it works, the feed closes or fails."""
        quiet = reason == "start"
        while not self._closed:
            delay = g.backoff.next_delay()
            if self._max_failures is not None and g.backoff.failures > self._max_failures:
                self._fail(f"{g.backoff.failures - 1} consecutive failed connection attempts (last: {reason})")
                return None
            wait = max(delay, self._ws_not_before - self._clock(), self.attempts.wait_time())
            if not quiet or wait > 0:
                if reason != "rotation":
                    g.state = "reconnecting"
                self._report("reconnecting", group=g.id, reason=reason, delay=round(wait, 3),
                             attempt=g.backoff.failures)
            quiet = False
            while wait > 0:
                await self._sleep(wait)
                wait = max(self._ws_not_before - self._clock(), self.attempts.wait_time())
            if self._closed:
                return None
            self.attempts.take()
            self.stats["connection_attempts"] += 1
            cid = f"c{next(self._conn_ids)}"
            url = f"{self.base_url}/stream?streams=" + "/".join(g.streams[:self._url_streams])
            self._report("connecting", connection=cid, group=g.id, url=url[:SNIPPET])
            # The connection record exists before the handshake: frames that arrive with
            # the handshake's response are handed over at once, in order, like all later ones.
            conn = _Conn(cid, None, g, self._clock(), RateWindow(self._control_rate, 1.0, self._clock))
            sink = functools.partial(self._on_frame, conn)
            # Symbols that had bars before this connection are checked for a hole once it is up
            # (docs/binance.md, Gap detection and backfill); a symbol's first bars may come with
            # the handshake and need no check.
            known = [st for st in self._kline_syms(g.streams[:self._url_streams]) if st.next_t is not None]
            try:
                ws = await ws_connect(url, open_timeout=self._open_timeout, ping_interval=self._ping_interval,
                                      ping_timeout=self._ping_timeout, close_timeout=2.0,
                                      max_size=MAX_FRAME_BYTES, max_queue=64, compression=None,
                                      proxy=self._proxy,
                                      create_connection=functools.partial(self.connection_class,
                                                                          frame_sink=sink))
            except InvalidStatus as exc:
                code = exc.response.status_code
                reason = f"HTTP {code} at handshake"
                if code in (429, 418):
                    retry = parse_retry_after(exc.response.headers.get("Retry-After"))
                    self._ws_not_before = max(self._ws_not_before, self._clock() + retry)
                    self.stats["rate_limited"] += 1
                    self._report("rate_limited", source="websocket", status=code, retry_after=retry,
                                 connection=cid)
                elif code in _FATAL_HTTP:
                    self._fail(f"{reason} for {url[:SNIPPET]} (not retryable"
                               f"{'; region-blocked: try region=' + repr('us') if code == 451 else ''})")
                    return None
                continue
            except InvalidURI as exc:
                self._fail(f"bad WebSocket URL: {exc}")
                return None
            except (OSError, TimeoutError, InvalidHandshake, ConnectionClosed, EOFError) as exc:
                reason = f"connect failed: {type(exc).__name__}: {exc}"[:SNIPPET]
                continue
            except Exception as exc:
                log.exception("unexpected error connecting to %s", url[:SNIPPET])
                reason = f"connect failed: {type(exc).__name__}: {exc}"[:SNIPPET]
                continue
            if self._closed:
                abort(ws)
                return None
            conn.ws = ws
            conn.opened = self._clock()
            if not conn.has_data:
                conn.last_data = conn.opened
            g.conns.add(conn)
            g.state = "connected"
            self.stats["connections"] += 1
            conn.reader = self._spawn(self._read(conn), f"binance-read-{cid}")
            conn.tasks = [conn.reader, self._spawn(self._watchdog(conn), f"binance-watch-{cid}")]
            rest = g.streams[self._url_streams:]
            if rest:
                conn.tasks.append(self._spawn(self._subscribe(conn, rest), f"binance-sub-{cid}"))
            self._report("connected", connection=cid, group=g.id, streams=len(g.streams))
            for st in known:
                self._check(st)
            return conn
        return None

    async def _subscribe(self, conn: _Conn, streams: list[str]) -> None:
        for i in range(0, len(streams), self._sub_batch):
            await conn.control.acquire(1.0, self._sleep)
            rid = next(self._req_ids)
            batch = streams[i:i + self._sub_batch]
            conn.pending[rid] = batch
            self.stats["subscribe_messages"] += 1
            try:
                await conn.ws.send(orjson.dumps({"method": "SUBSCRIBE", "params": batch, "id": rid}).decode())
            except ConnectionClosed:
                return

    async def _watchdog(self, conn: _Conn) -> None:
        limit = self.silence_timeout
        while True:
            idle = self._clock() - conn.last_data
            if idle >= limit:
                conn.end_reason = f"no data for {idle:.1f} s"
                self.stats["silence_timeouts"] += 1
                abort(conn.ws)
                if conn.reader is not None:
                    conn.reader.cancel()
                return
            await self._sleep(limit - idle + 0.01)

    def _on_frame(self, conn: _Conn, frame: str | bytes, binary: bool | None = None) -> None:
        """One data frame of `conn`: parse it, hand bars over (`FrameConnection` calls this)."""
        if self._closed:
            return
        kind = self._asm.feed(frame, conn.id, binary)
        if kind is GAP:
            self._gap(self._asm.last_gap)
        elif kind is not KLINE and kind is not BOOK:
            if kind is not REJECTED:
                self._control(conn, kind)
            return
        conn.last_data = self._clock()
        if not conn.has_data:
            conn.has_data = True
            conn.first_data.set()

    async def _read(self, conn: _Conn) -> None:
        """Waits for the connection to end; takes only the frames websockets queued (fragmented ones)."""
        ws = conn.ws
        cid = conn.id
        try:
            while True:
                self._on_frame(conn, await ws.recv())
        except ConnectionClosed as exc:
            conn.end_reason = f"{type(exc).__name__}: {exc}"[:SNIPPET]
        except asyncio.CancelledError:
            if conn.end_reason == "closed":
                conn.end_reason = "cancelled"
        except Exception as exc:
            log.exception("reader of connection %s failed", cid)
            conn.end_reason = f"reader error: {type(exc).__name__}: {exc}"[:SNIPPET]

    def _control(self, conn: _Conn, kind: str) -> None:
        msg = self._asm.last_msg or {}
        if kind is ACK:
            rid = msg.get("id")
            batch = conn.pending.pop(rid, None)
            if batch is not None:
                self.stats["acks"] += 1
                # Streams subscribed now: their backfill check can run (docs/binance.md, Gap
                # detection and backfill: after every resubscribe).
                for st in self._kline_syms(batch):
                    self._check(st)
            else:
                self.stats["unmatched_acks"] += 1
                log.warning("unmatched ack %r on connection %s", rid, conn.id)
        elif kind is ERROR:
            self.stats["server_errors"] += 1
            rid = msg.get("id")
            request = conn.pending.pop(rid, None) if rid is not None else None
            self._report("server_error", connection=conn.id, code=msg.get("code"),
                         msg=str(msg.get("msg"))[:SNIPPET], request=request)
        elif kind is SHUTDOWN:
            self.stats["server_shutdowns"] += 1
            self._report("server_shutdown", connection=conn.id)
            if conn in conn.group.conns:
                conn.group.rotate_now.set()
        else:  # unknown event, stream or symbol (M9): logged and ignored
            self._asm.reject("unknown", "unrecognized message", orjson.dumps(msg)[:SNIPPET].decode("utf-8", "replace"),
                             conn.id)

    # -- gaps and backfill (docs/binance.md, Gap detection and backfill) ----------------------
    def _gap(self, gap: Gap) -> None:
        """A kline jumped past the expected open time (the assembler holds it): backfill the hole."""
        self._report("gap_detected", symbol=gap.state.symbol, **{"from": gap.start, "to": gap.stop},
                     missing=gap.missing)
        self._catch_up(gap.state)

    def _kline_syms(self, streams: list[str]) -> list[SymbolState]:
        syms = self._asm.syms
        return [syms[name] for name, _, kind in (s.partition("@") for s in streams)
                if kind == self._asm.kline_kind and name in syms]

    def _check(self, st: SymbolState) -> None:
        """After a (re)connect: hold live bars of `st` until REST says nothing is missing.

        No REST request when nothing can be missing: the bar expected next has
        not closed yet on the exchange's clock, taken as the local clock plus
        `max_clock_skew` (5 s when the check is off). A reconnect within a bar,
        the common case, then costs no request per symbol (Binance counts them
        against the IP's weight limit). Should the clocks disagree by more, the
        live stream's next kline still shows any hole, and that is backfilled.
        """
        if st.next_t is None:
            return
        shortest = self._asm.step or _SHORTEST_MONTH_MS
        if self._wall_ms() + self._close_margin_ms < st.next_t + shortest:
            self.stats["checks_skipped"] += 1
            return
        self._catch_up(st)

    def _catch_up(self, st: SymbolState) -> None:
        self._asm.begin_catch_up(st)
        if st.task is None:
            st.task = self._spawn(self._backfill(st), f"binance-backfill-{st.symbol}")
        else:
            st.recheck = True

    async def _backfill(self, st: SymbolState) -> None:
        try:
            await self._rest.catch_up(st)
        finally:
            st.task = None
