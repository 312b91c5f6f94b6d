"""Combined-stream frames -> closed bars, per symbol in strict open-time order.

The ordering rule and the gap protocol are those of docs/binance.md (Ordering rule; Gap
detection and backfill).

`BarAssembler` is the pure part of the Binance feed, shared by the live
`BinanceFeed` and the recorded-stream replay (`tradesim.feeds.recorded`): no
socket, no clock but the optional skew check, no REST. It decides which kline
becomes the next bar of its symbol, keeps the latest valid quote, counts and
reports rejects, and says when bars are missing (`Gap`); filling the hole is
the caller's business, which hands the fetched klines back (`fill`) and ends
the catch-up (`end_catch_up`).

Units: timestamps in ms since the Unix epoch (UTC, bar open time), prices in
quote currency, volume in base units.
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections.abc import Callable, Iterable
from typing import Any, NamedTuple

from tradesim._core import MarketData
from tradesim.feeds.base import DataHealth
from tradesim.feeds.binance.messages import (
    INTERVAL_MS,
    SNIPPET,
    FrameError,
    Kline,
    decode,
    message_kind,
    parse_book_ticker,
    parse_kline,
)

__all__ = [
    "ACK",
    "BOOK",
    "ERROR",
    "GAP",
    "KLINE",
    "OTHER",
    "REJECTED",
    "SHUTDOWN",
    "TRADE",
    "UNKNOWN",
    "BarAssembler",
    "Gap",
    "SymbolState",
    "missing_bars",
    "new_stats",
]

log = logging.getLogger(__name__)

# Message kinds returned by BarAssembler.feed (compared by identity on the hot path).
KLINE, BOOK, TRADE, ACK, ERROR, SHUTDOWN, OTHER, UNKNOWN, REJECTED = (
    "kline", "bookTicker", "trade", "ack", "error", "serverShutdown", "other_stream", "unknown", "rejected")
#: A kline that showed bars missing before it (only with ``backfill=True``); see `BarAssembler.last_gap`.
GAP = "gap"


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
        # The live feed's backfill of this symbol: its task, and whether a new hole came up meanwhile.
        self.task: asyncio.Task | None = None
        self.recheck = False


class Gap(NamedTuple):
    """Bars of `state`'s symbol missing: open times from `start` (inclusive) to `stop` (exclusive), ms."""

    state: SymbolState
    start: int
    stop: int
    missing: int


class BarAssembler:
    """Combined-stream frames -> closed bars, per symbol in strict open-time order.

    Shared by `BinanceFeed` and `RecordedFeed`. For each frame: strict decode,
    route by stream name (``<sym>@kline_<iv>``, ``<sym>@bookTicker``), then
    the ordering rule of docs/binance.md per symbol: a closed kline with the expected open time
    is emitted (with the symbol's latest non-crossed quote), an earlier one is a
    duplicate or out of order and dropped, a later one (closed or not) shows a
    gap. While a symbol is catching up, its closed klines are buffered by open
    time instead.

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
    backfill : bool, default False
        What a gap does. False (a replay, which cannot backfill): accept the
        jump, record the hole in `health` and go on from the later kline. True
        (the live feed): start catching up (`begin_catch_up`), buffer the kline,
        and return `GAP` from `feed` with the `Gap` in `last_gap`; the caller
        fetches the missing klines and hands them to `fill`.
    """

    def __init__(self, symbols: Iterable[str], interval: str, emit: Callable[[MarketData], object],
                 stats: dict, health: DataHealth, report: Callable[..., None],
                 start_from: int | None = None, backfill: bool = False):
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
        self.backfill = backfill
        self.last_gap: Gap | None = None
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
        is left in `last_msg`; for `GAP` (a kline, buffered) the `Gap` in `last_gap`.
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
                    if self.kline(st, k) is None:
                        return KLINE
                    return GAP
                if kind == "bookTicker":
                    self.quote(st, data, frame, conn)
                    return BOOK
                self.last_msg, self.last_state = msg, st
                return TRADE if kind == "trade" else OTHER
        self.last_msg, self.last_state = msg, None
        kind = message_kind(msg)
        return kind if kind in (ACK, ERROR, SHUTDOWN) else UNKNOWN

    def kline(self, st: SymbolState, k: Kline) -> Gap | None:
        """Apply the ordering rule of docs/binance.md to one validated kline of `st`; the `Gap` it shows, if any.

        A gap is returned only with ``backfill=True``: `st` is then catching up
        and `k` buffered (also left in `last_gap`).
        """
        t = k.open_time
        if st.catching_up:
            if k.closed:
                if t in st.buffer:
                    self.stats["duplicates"] += 1
                st.buffer[t] = (k, st.bid, st.ask)
            elif st.newest_open is None or t > st.newest_open:
                st.newest_open = t
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
        self.stats["gaps"] += 1
        missing = missing_bars(nt, t, self.step)
        if not self.backfill:
            # Replays cannot backfill: record the hole and go on from the later kline.
            before = st.last_t if st.last_t is not None else nt
            self.health.record_gaps(st.symbol, [(before, t, missing)])
            st.next_t = t
            if k.closed:
                self.emit_kline(st, k, st.bid, st.ask)
            return
        self.begin_catch_up(st)
        self.kline(st, k)  # buffered
        gap = self.last_gap = Gap(st, nt, t, missing)
        return gap

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

    # -- catching up after a gap or a reconnect (the caller fetches the klines) ----------------------
    def begin_catch_up(self, st: SymbolState) -> None:
        """Hold `st`'s live closed klines back (buffered by open time) until `end_catch_up`."""
        if not st.catching_up:
            st.catching_up = True
            st.newest_open = None

    def fill(self, st: SymbolState, klines: Iterable[Kline]) -> int:
        """Emit fetched closed klines (oldest first) that continue `st`; `drain` then emits the buffered ones.

        Klines before the expected open time were emitted already and are
        skipped; a jump between fetched klines is a hole in the exchange's own
        history, recorded in `health`. Bars filled this way carry no quote
        (NaN bid/ask). Returns the number of fetched klines emitted.
        """
        n = 0
        for k in klines:
            if k.open_time >= st.next_t:
                if k.open_time > st.next_t and st.last_t is not None:
                    self.health.record_gaps(st.symbol, [(st.last_t, k.open_time,
                                                         missing_bars(st.next_t, k.open_time, self.step))])
                self.emit_kline(st, k)
                n += 1
        return n

    def drain(self, st: SymbolState) -> None:
        """Emit buffered live klines that continue `st` seamlessly; drop the ones already emitted."""
        buf = st.buffer
        for t in sorted(buf):
            if t < st.next_t:
                del buf[t]
                self.stats["duplicates"] += 1
            elif t == st.next_t:
                self.emit_kline(st, *buf.pop(t))
            else:
                break

    def behind(self, st: SymbolState) -> bool:
        """Whether live klines of `st` are held back that the fetched ones have not reached yet."""
        return bool(st.buffer) or (st.newest_open is not None and st.newest_open > st.next_t)

    def first_held(self, st: SymbolState) -> int | None:
        """Open time of the earliest live kline held back while catching up (None: none seen)."""
        return min(st.buffer) if st.buffer else st.newest_open

    def end_catch_up(self, st: SymbolState, give_up: bool = False) -> None:
        """Stop holding `st`'s live klines back.

        With `give_up` (the missing klines could not be fetched) the bars up to
        the first held-back kline are recorded as a hole in `health`, and `st`
        goes on from that kline.
        """
        if give_up:
            first = self.first_held(st)
            if first is not None and first > st.next_t:
                before = st.last_t if st.last_t is not None else st.next_t
                self.health.record_gaps(st.symbol, [(before, first, missing_bars(st.next_t, first, self.step))])
                st.next_t = first
            self.drain(st)
            st.buffer.clear()
        st.catching_up = False


def missing_bars(start: int, stop: int, step: int | None) -> int:
    """Number of bars with open time in [start, stop) (estimated by 30.44-day months for "1M")."""
    return max(0, (stop - start) // step if step else round((stop - start) / 2_629_800_000))


def new_stats() -> dict:
    """A zeroed counters dict, as in `BinanceFeed.stats`."""
    return {"frames": 0, "bars": 0, "backfilled_bars": 0, "rejected": {}, "duplicates": 0, "out_of_order": 0,
            "stale_quotes": 0, "gaps": 0, "backfills": 0, "backfill_failures": 0, "rest_requests": 0,
            "rest_errors": 0, "connection_attempts": 0, "connections": 0, "reconnects": 0,
            "rotations": 0, "silence_timeouts": 0, "rate_limited": 0, "server_errors": 0,
            "server_shutdowns": 0, "subscribe_messages": 0, "acks": 0, "unmatched_acks": 0,
            "clock_skew": 0, "checks_skipped": 0}
