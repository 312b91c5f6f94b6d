"""Combined-stream frames -> closed bars, per symbol in strict open-time order (`BarAssembler`).

The pure bar-assembly logic shared by the live feed (`BinanceFeed`) and the
replay of recordings (`tradesim.feeds.recorded.RecordedFeed`): strict decode,
routing by stream name, the ordering rule of docs/binance.md, quotes, and the
counting and reporting of rejected frames. No I/O: when bars are missing it
asks its owner (`on_gap`), which may backfill them.

Units: timestamps in ms since the Unix epoch (UTC, bar open time), prices in
quote currency, volume in base units.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any

from tradesim._core import MarketData
from tradesim.feeds.base import DataHealth
from tradesim.feeds.binance.messages import (
    INTERVAL_MS,
    FrameError,
    Kline,
    decode,
    message_kind,
    parse_book_ticker,
    parse_kline,
)

__all__ = ["ACK", "BOOK", "ERROR", "KLINE", "OTHER", "REJECTED", "SHUTDOWN", "TRADE", "UNKNOWN",
           "BarAssembler", "SymbolState", "missing_bars", "new_stats"]

log = logging.getLogger(__name__)

#: Longest snippet of a rejected frame kept in reports and logs (characters).
SNIPPET = 200

# Message kinds returned by BarAssembler.feed (compared by identity on the hot path).
KLINE, BOOK, TRADE, ACK, ERROR, SHUTDOWN, OTHER, UNKNOWN, REJECTED = (
    "kline", "bookTicker", "trade", "ack", "error", "serverShutdown", "other_stream", "unknown", "rejected")


class SymbolState:
    """Per-symbol state: bar ordering (next expected open time), the latest quote, catch-up buffer."""

    __slots__ = (
        "ask",
        "bid",
        "buffer",
        "catching_up",
        "last_t",
        "last_u",
        "newest_open",
        "next_t",
        "recheck",
        "symbol",
        "task",
    )

    def __init__(self, symbol: str, next_t: int | None):
        self.symbol = symbol
        self.next_t = next_t        # open time the next bar must have (ms); None = take the first closed kline
        self.last_t: int | None = None
        self.bid = math.nan
        self.ask = math.nan
        self.last_u = -1
        self.catching_up = False
        self.buffer: dict[int, tuple[Kline, float, float]] = {}  # open time -> (kline, bid, ask)
        self.newest_open: int | None = None
        self.task: asyncio.Task | None = None
        self.recheck = False


class BarAssembler:
    """Combined-stream frames -> closed bars, per symbol in strict open-time order.

    Shared by `BinanceFeed` and `RecordedFeed`. For each frame: strict decode,
    route by stream name (``<sym>@kline_<iv>``, ``<sym>@bookTicker``), then
    the ordering rule of docs/binance.md per symbol: a closed kline with the expected open time
    is emitted (with the symbol's latest non-crossed quote), an earlier one is a
    duplicate or out of order and dropped, a later one (closed or not) is a gap
    handed to `on_gap`. While a symbol is catching up, its closed klines are
    buffered by open time instead.

    Parameters
    ----------
    symbols : iterable of str
        Upper-case symbols.
    interval : str
        Binance interval (``"1m"``, ``"1M"``, ...).
    emit : callable
        Receives each `MarketData` bar.
    stats : dict
        Counters, updated in place (see `BinanceFeed.stats`).
    health : DataHealth
        Bars emitted and rejects per symbol.
    report : callable
        ``report(kind, **fields)`` for status events (``rejected``).
    start_from : int, optional
        First expected open time (ms); None = start at the first closed kline.
    on_gap : callable, optional
        ``on_gap(state, kline) -> bool`` when a kline proves bars are missing. True:
        the owner will backfill them (it set ``state.catching_up``), and the kline is
        held until then; False: the gap was handled. Default: accept the jump
        (replays cannot backfill), record it in `health` and return False.
    """

    def __init__(self, symbols: Iterable[str], interval: str, emit: Callable[[MarketData], object],
                 stats: dict, health: DataHealth, report: Callable[..., None],
                 start_from: int | None = None,
                 on_gap: Callable[[SymbolState, Kline], bool] | None = None):
        self.interval = interval
        self.step = INTERVAL_MS[interval]
        self.kline_kind = "kline_" + interval
        self.syms: dict[str, SymbolState] = {s.lower(): SymbolState(s, start_from) for s in symbols}
        self.by_symbol = {st.symbol: st for st in self.syms.values()}
        self.emit = emit
        self.stats = stats
        self.rejected: dict[str, int] = stats.setdefault("rejected", {})
        self.health = health
        self.report = report
        self.on_gap = on_gap or self._accept_gap
        self.last_msg: dict | None = None
        self.last_state: SymbolState | None = None
        self.skew_ms: int | None = None  # set with wall_ms to count kline event times off the local clock
        self.wall_ms: Callable[[], int] = lambda: time.time_ns() // 1_000_000
        for st in self.syms.values():
            health.add_symbol(st.symbol)

    # -- the per-frame hot path ------------------------------------------------------------------
    def feed(self, frame: str | bytes, conn: str | None = None, binary: bool | None = None) -> str:
        """Process one frame; return its kind (``"kline"``, ``"bookTicker"``, ``"ack"``, ...).

        `frame` is a text frame as str, or as UTF-8 bytes with ``binary=False``
        (decoded by the JSON parser, which rejects invalid UTF-8); bytes are a
        binary frame otherwise. Never raises for bad input: rejects are counted
        in ``stats["rejected"]`` by reason and reported. For control kinds (ack,
        error, serverShutdown, trade, other_stream, unknown) the decoded message
        is left in `last_msg`.
        """
        self.stats["frames"] += 1
        if binary if binary is not None else type(frame) is not str:
            self.reject("binary", "binary frame", frame, conn)
            return REJECTED
        try:
            msg = decode(frame)
        except FrameError as exc:
            self.reject("empty" if not frame else "malformed", str(exc), frame, conn)
            return REJECTED
        stream = msg.get("stream")
        data = msg.get("data")
        if type(stream) is str and type(data) is dict:
            name, _, kind = stream.partition("@")
            st = self.syms.get(name)
            if st is not None:
                if kind == self.kline_kind:
                    try:
                        k = parse_kline(data, self.interval)
                    except FrameError as exc:
                        self.reject("invalid_kline", str(exc), frame, conn, st.symbol)
                        return REJECTED
                    if k.symbol != st.symbol:
                        self.reject("symbol_mismatch", f"kline of {k.symbol} on stream {stream}", frame, conn)
                        return REJECTED
                    if self.skew_ms is not None:
                        event = data.get("E")
                        if type(event) is int and abs(event - self.wall_ms()) > self.skew_ms:
                            self._skewed(event, conn)
                    self.kline(st, k)
                    return KLINE
                if kind == "bookTicker":
                    self.quote(st, data, frame, conn)
                    return BOOK
                self.last_msg, self.last_state = msg, st
                return TRADE if kind == "trade" else OTHER
        self.last_msg, self.last_state = msg, None
        kind = message_kind(msg)
        return kind if kind in (ACK, ERROR, SHUTDOWN) else UNKNOWN

    def kline(self, st: SymbolState, k: Kline) -> None:
        """Apply the ordering rule (docs/binance.md) to one validated kline of `st`."""
        t = k.open_time
        if st.catching_up:
            self._hold(st, k)
            return
        nt = st.next_t
        if nt is None or t == nt:
            if k.closed:
                self.emit_kline(st, k, st.bid, st.ask)
            return
        if t < nt:
            if k.closed:
                self.stats["duplicates" if t == st.last_t else "out_of_order"] += 1
            elif t != st.last_t:
                self.stats["out_of_order"] += 1
            return
        if self.on_gap(st, k):   # the owner backfills the hole: hold this kline until then
            self._hold(st, k)

    def _hold(self, st: SymbolState, k: Kline) -> None:
        # While `st` catches up, closed klines wait in its buffer by open time (deduplicated);
        # an open one only tells how far the live stream has got.
        t = k.open_time
        if k.closed:
            if t in st.buffer:
                self.stats["duplicates"] += 1
            st.buffer[t] = (k, st.bid, st.ask)
        elif st.newest_open is None or t > st.newest_open:
            st.newest_open = t

    def emit_kline(self, st: SymbolState, k: Kline, bid: float = math.nan, ask: float = math.nan) -> None:
        """Emit `k` as the next bar of `st` with quote `bid`/`ask` (NaN for bars fetched over REST)."""
        st.last_t = k.open_time
        st.next_t = k.close_time + 1
        bar = MarketData(st.symbol, k.open_time, k.open, k.high, k.low, k.close, k.volume, bid, ask,
                         validate=False)
        self.stats["bars"] += 1
        self.health.bars_emitted[st.symbol] += 1
        self.emit(bar)

    def quote(self, st: SymbolState, data: dict, frame: str, conn: str | None) -> None:
        """Keep the latest valid quote of `st`; drop stale (``u`` not newer), crossed or empty-sided ones (M4, M6)."""
        try:
            q = parse_book_ticker(data)
        except FrameError as exc:
            self.reject("invalid_quote", str(exc), frame, conn, st.symbol)
            return
        if q.symbol != st.symbol:
            self.reject("symbol_mismatch", f"quote of {q.symbol} on {st.symbol}'s stream", frame, conn)
            return
        if q.update_id <= st.last_u:
            self.stats["stale_quotes"] += 1
            return
        st.last_u = q.update_id
        if q.bid > q.ask:
            self.reject("crossed_quote", f"bid {q.bid} > ask {q.ask}", frame, conn, st.symbol)
            return
        if q.bid_qty == 0 or q.ask_qty == 0:
            self.reject("empty_quote", "bid or ask quantity is 0", frame, conn, st.symbol)
            return
        st.bid = q.bid
        st.ask = q.ask

    def reject(self, reason: str, error: str, frame: Any, conn: str | None, symbol: str | None = None) -> None:
        """Count and report a dropped message (bounded snippet)."""
        rejected = self.rejected
        n = rejected[reason] = rejected.get(reason, 0) + 1
        if symbol is not None:
            self.health.record_rejected(symbol)
        if isinstance(frame, str):
            snippet = frame[:SNIPPET]
        elif isinstance(frame, bytes):  # text frames arrive as bytes too: show them as text
            snippet = frame[:SNIPPET].decode("utf-8", "replace")
        else:
            snippet = repr(frame)[:SNIPPET]
        if n <= 10 or n % 1000 == 0:
            log.warning("rejected frame (%s, #%d) on connection %s: %s | %r", reason, n, conn, error[:SNIPPET],
                        snippet)
        self.report("rejected", reason=reason, connection=conn, error=error[:SNIPPET], snippet=snippet)

    def _skewed(self, event: int, conn: str | None) -> None:
        # M10: bar times come from k.t, never from this clock; the count is a health signal only.
        n = self.stats["clock_skew"] = self.stats["clock_skew"] + 1
        if n == 1 or n % 1000 == 0:
            log.warning("kline event time %d is %+d ms off the local clock (connection %s; %d so far)",
                        event, event - self.wall_ms(), conn, n)

    def _accept_gap(self, st: SymbolState, k: Kline) -> bool:
        # Replays cannot backfill: record the hole and go on from the later kline.
        self.stats["gaps"] += 1
        before = st.last_t if st.last_t is not None else st.next_t
        self.health.record_gaps(st.symbol, [(before, k.open_time, missing_bars(st.next_t, k.open_time, self.step))])
        st.next_t = k.open_time
        if k.closed:
            self.emit_kline(st, k, st.bid, st.ask)
        return False


def missing_bars(start: int, stop: int, step: int | None) -> int:
    """Bars with open time in [start, stop) (estimated by 30.44-day months for "1M")."""
    return max(0, (stop - start) // step if step else round((stop - start) / 2_629_800_000))


def new_stats() -> dict:
    """A zeroed counters dict, as in `BinanceFeed.stats`."""
    return {"frames": 0, "bars": 0, "backfilled_bars": 0, "rejected": {}, "duplicates": 0, "out_of_order": 0,
            "stale_quotes": 0, "gaps": 0, "backfills": 0, "backfill_failures": 0, "rest_requests": 0,
            "rest_errors": 0, "connection_attempts": 0, "connections": 0, "reconnects": 0,
            "rotations": 0, "silence_timeouts": 0, "rate_limited": 0, "server_errors": 0,
            "server_shutdowns": 0, "subscribe_messages": 0, "acks": 0, "unmatched_acks": 0,
            "clock_skew": 0, "checks_skipped": 0}
