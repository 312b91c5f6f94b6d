"""Replay of recorded Binance combined-stream messages through the live feed's bar assembly.

A recording is a text file (``.txt`` or ``.txt.gz``) with one message per line,
either ``<receive time, ns since epoch> <message>`` (the layout of
``shared/data/binance/ws-samples/recordings``) or just the JSON message. Each
message goes through the same strict parser and the same `BarAssembler` as
`tradesim.feeds.binance.BinanceFeed`: ``@kline_<iv>`` frames become closed bars,
``@bookTicker`` frames the bid/ask attached to them; other streams (trade,
depth) and REST snapshot lines are counted as ignored, malformed lines as
rejected. A replay cannot backfill, so a hole in the recording is recorded in
`health` and the replay goes on from the later bar.

Recordings without kline streams can still give bars: ``klines_from_trades``
aggregates ``@trade`` messages into closed bars of that interval, the way
Binance builds klines (open time aligned to the interval, OHLC from trade
prices, volume the sum of quantities, an interval without trades a flat bar at
the previous close with volume 0). A bar is emitted when a later trade proves
it closed, so the last, unproven one never is.

Units: timestamps in ms since the Unix epoch (UTC, bar open time), prices in
quote currency, volume in base units.
"""

from __future__ import annotations

import asyncio
import gzip
import heapq
import io
import logging
import math
import os
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Self

from tradesim._core import MarketData
from tradesim.feeds.base import DataHealth
from tradesim.feeds.binance.assembler import BOOK, KLINE, REJECTED, TRADE, BarAssembler
from tradesim.feeds.binance.messages import INTERVAL_MS, FrameError, Kline, decode, parse_trade
from tradesim.feeds.pacing import Pacer, check_speed

__all__ = ["RecordedFeed", "TradeBarBuilder", "read_recording", "recorded_streams"]

log = logging.getLogger(__name__)

#: Trade quantities are summed exactly in units of 1e-8 (Binance's 8 decimals).
QTY_UNITS = 100_000_000


def _new_stats() -> dict:
    return {"lines": 0, "frames": 0, "bars": 0, "rejected": {}, "ignored": 0, "duplicates": 0, "out_of_order": 0,
            "stale_quotes": 0, "gaps": 0, "late_trades": 0}


def read_recording(path: str | os.PathLike) -> Iterator[tuple[int | None, str, int]]:
    """Lines of a recording as ``(receive time ns or None, message text, line number)``.

    Blank lines are skipped. A line that starts with ``{`` is a bare message;
    otherwise the text before the first space must be an integer receive time
    (a line breaking that rule is returned with receive time None and the whole
    line as the message, so the parser rejects it).
    """
    path = Path(path)
    with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as raw, \
            io.TextIOWrapper(raw, encoding="utf-8", errors="replace", newline="\n") as fh:
        for number, line in enumerate(fh, 1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            if line[0] != "{":
                stamp, _, message = line.partition(" ")
                if stamp.isdigit():
                    yield int(stamp), message, number
                    continue
            yield None, line, number


def recorded_streams(paths: str | os.PathLike | Sequence[str | os.PathLike],
                     stop_when: set[str] | None = None) -> set[str]:
    """The kinds of stream a recording holds, without the symbol: ``{"kline_1m", "trade", "bookTicker"}``.

    Each line is decoded as the replay decodes it (`messages.decode`; lines it rejects are
    skipped). Reading stops early once every kind in `stop_when` has been seen.
    """
    kinds: set[str] = set()
    for path in [paths] if isinstance(paths, (str, os.PathLike)) else paths:
        for _, message, _ in read_recording(path):
            try:
                stream = decode(message).get("stream")
            except FrameError:
                continue
            if type(stream) is str and "@" in stream:
                kinds.add(stream.partition("@")[2])
                if stop_when and stop_when <= kinds:
                    return kinds
    return kinds


class TradeBarBuilder:
    """Closed bars of one symbol from its trades, in the order trades arrive.

    Parameters
    ----------
    symbol : str
        Symbol of the bars.
    interval : str
        Fixed-length Binance interval (``"1s"``, ``"1m"``, ... not ``"1M"``).

    Notes
    -----
    A trade older than the bar being built (its bar was already emitted) or
    with a trade id not above the last one is dropped and counted in
    `late_trades`.
    """

    def __init__(self, symbol: str, interval: str):
        step = INTERVAL_MS.get(interval)
        if not step:
            raise ValueError(f"klines_from_trades needs a fixed-length interval, got {interval!r}")
        self.symbol, self.interval, self.step = symbol, interval, step
        self.open_time: int | None = None
        self.o = self.h = self.l = self.c = math.nan
        self.units = 0
        self.last_id = -1
        self.late_trades = 0

    def add(self, trade_id: int, time_ms: int, price: float, qty: float) -> list[Kline]:
        """Add one trade (time ms since epoch UTC, price quote currency, qty base units); return bars it closed."""
        if trade_id <= self.last_id:
            self.late_trades += 1
            return []
        bucket = time_ms - time_ms % self.step
        closed: list[Kline] = []
        if self.open_time is not None:
            if bucket < self.open_time:
                self.late_trades += 1
                return []
            if bucket > self.open_time:
                closed.append(self._bar())
                prev = self.c
                for t in range(self.open_time + self.step, bucket, self.step):  # no trades: flat, volume 0
                    closed.append(Kline(self.symbol, self.interval, t, t + self.step - 1, prev, prev, prev, prev,
                                        0.0, True))
                self.open_time = None
        self.last_id = trade_id
        units = round(qty * QTY_UNITS)
        if self.open_time is None:
            self.open_time = bucket
            self.o = self.h = self.l = self.c = price
            self.units = units
        else:
            if price > self.h:
                self.h = price
            elif price < self.l:
                self.l = price
            self.c = price
            self.units += units
        return closed

    def _bar(self) -> Kline:
        t = self.open_time
        return Kline(self.symbol, self.interval, t, t + self.step - 1, self.o, self.h, self.l, self.c,
                     self.units / QTY_UNITS, True)


class RecordedFeed:
    """Closed bars replayed from recorded Binance combined-stream messages.

    ``async for bar in feed`` yields `MarketData` per symbol in open-time
    order (timestamp = bar open time, ms since epoch UTC; OHLC quote currency;
    volume base units; bid/ask the latest valid book-ticker quote of the symbol,
    NaN if none yet), across symbols in recording order. Each ``async for``
    replays from the start.

    Parameters
    ----------
    paths : path or sequence of paths
        Recording files (``.txt``/``.txt.gz``). Several files are merged by
        receive time (lines without one keep the time of the line before).
    symbols : str or sequence of str, optional
        Symbols to replay; default: every symbol with a kline, bookTicker or
        trade stream in the files (one extra pass over them).
    interval : str, optional
        Kline interval of the recorded ``@kline_<iv>`` streams (default "1m").
    klines_from_trades : str, optional
        Build bars of this fixed interval (``"1s"``, ``"1m"``, ...) from
        ``@trade`` messages instead (recorded kline frames are then ignored).
    speed : float, default 0
        0 = as fast as possible; N = N times the recording's pace, from the
        receive times (or, for lines without one, the bar's close time).
    on_status : callable, optional
        ``on_status(kind, **fields)`` for ``rejected`` messages (reason,
        connection = ``file:line``, snippet); exceptions are swallowed.
    clock, sleep
        Injectable monotonic clock (s) and async sleep, for tests.

    Attributes
    ----------
    symbols : tuple of str
    interval, interval_ms : str, int
    health : DataHealth
        Bars emitted, rejects and holes in the recording per symbol.
    stats : dict
        Counters: lines, frames, bars, rejected (by reason), ignored (other
        streams, snapshots, control messages), duplicates, out_of_order,
        stale_quotes, gaps, late_trades.

    Raises
    ------
    ValueError
        Unknown interval, both `interval` and `klines_from_trades` given and
        different, or no symbols found.
    FileNotFoundError
        A recording is missing.
    """

    def __init__(self, paths: str | os.PathLike | Sequence[str | os.PathLike],
                 symbols: str | Sequence[str] | None = None, interval: str | None = None, *,
                 klines_from_trades: str | None = None, speed: float = 0.0,
                 on_status: Callable[..., object] | None = None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep):
        self.paths = [Path(p) for p in ([paths] if isinstance(paths, (str, os.PathLike)) else paths)]
        for p in self.paths:
            if not p.exists():
                raise FileNotFoundError(f"recording not found: {p}")
        if klines_from_trades is not None:
            if interval is not None and interval != klines_from_trades:
                raise ValueError(f"interval {interval!r} differs from klines_from_trades {klines_from_trades!r}")
            if not INTERVAL_MS.get(klines_from_trades):
                raise ValueError(f"klines_from_trades needs a fixed-length interval, got {klines_from_trades!r}")
            interval = klines_from_trades
        interval = interval or "1m"
        if interval not in INTERVAL_MS:
            raise ValueError(f"interval must be one of {', '.join(INTERVAL_MS)}, got {interval!r}")
        self.interval = interval
        self.interval_ms = INTERVAL_MS[interval] or 30 * 86_400_000
        self.from_trades = klines_from_trades is not None
        if symbols is None:
            symbols = self._scan_symbols()
        names = [symbols] if isinstance(symbols, str) else list(symbols)
        self.symbols = tuple(dict.fromkeys(s.strip().upper() for s in names))
        if not self.symbols:
            raise ValueError(f"no symbols given or found in {[str(p) for p in self.paths]}")
        self.speed = check_speed(speed)
        self.on_status = on_status
        self._clock, self._sleep = clock, sleep
        self.health = DataHealth()
        self.stats = _new_stats()
        self.closed = False
        self.status = "idle"

    def _scan_symbols(self) -> list[str]:
        found: dict[str, None] = {}
        wanted = ("@trade",) if self.from_trades else (f"@kline_{self.interval}", "@bookTicker")
        for path in self.paths:
            for _, message, _ in read_recording(path):
                head = message[:80]
                start = head.find('"stream":"')
                if start >= 0:
                    stream = head[start + 10:head.find('"', start + 10)]
                    name = stream.partition("@")[0]
                    if any(stream.endswith(w) for w in wanted) and name:
                        found[name.upper()] = None
        return list(found)

    def _lines(self) -> Iterator[tuple[int | None, str, str]]:
        """(receive ns, message, "file:line") in replay order."""
        def tagged(path: Path) -> Iterator[tuple[int, int, str, str]]:
            last = 0
            for stamp, message, number in read_recording(path):
                if stamp is not None:
                    last = stamp
                yield (last, stamp, message, f"{path.name}:{number}")
        if len(self.paths) == 1:
            for _, stamp, message, where in tagged(self.paths[0]):
                yield stamp, message, where
            return
        for _, stamp, message, where in heapq.merge(*(tagged(p) for p in self.paths), key=lambda x: x[0]):
            yield stamp, message, where

    def _report(self, kind: str, **fields: Any) -> None:
        if self.on_status is not None:
            try:
                self.on_status(kind, **fields)
            except Exception:  # a status consumer must never break the replay
                log.exception("on_status(%r) raised; ignored", kind)

    async def __aiter__(self) -> AsyncIterator[MarketData]:
        """Replay the recording from the start (see the class docstring)."""
        if self.closed:
            raise RuntimeError("RecordedFeed is closed")
        self.health = DataHealth()
        self.stats = stats = _new_stats()
        out: deque[MarketData] = deque()
        asm = BarAssembler(self.symbols, self.interval, out.append, stats, self.health, self._report)
        builders = {}
        if self.from_trades:
            asm.kline_kind = None  # recorded klines are ignored: bars come from trades
            builders = {st.symbol: TradeBarBuilder(st.symbol, self.interval) for st in asm.syms.values()}
        pacer = Pacer(self.speed, clock=self._clock, sleep=self._sleep)
        self.status = "replaying"
        feed = asm.feed
        try:
            for stamp, message, where in self._lines():
                stats["lines"] += 1
                kind = feed(message, where)
                if kind is TRADE and builders:
                    self._trade(asm, builders, where)
                elif kind is not KLINE and kind is not BOOK and kind is not REJECTED:
                    stats["ignored"] += 1
                while out:
                    bar = out.popleft()
                    await pacer.wait(stamp / 1e6 if stamp is not None else bar.timestamp + self.interval_ms)
                    if self.closed:
                        return
                    yield bar
        finally:
            stats["late_trades"] = sum(b.late_trades for b in builders.values())
            if self.status == "replaying":
                self.status = "finished" if not self.closed else "closed"

    def _trade(self, asm: BarAssembler, builders: dict, where: str) -> None:
        msg, st = asm.last_msg, asm.last_state
        try:
            trade = parse_trade(msg["data"])
        except FrameError as exc:
            asm.reject("invalid_trade", str(exc), str(msg)[:200], where, st.symbol)
            return
        if trade.symbol != st.symbol:
            asm.reject("symbol_mismatch", f"trade of {trade.symbol} on {st.symbol}'s stream", str(msg)[:200], where)
            return
        for k in builders[st.symbol].add(trade.trade_id, trade.time, trade.price, trade.qty):
            asm.kline(st, k)

    def close(self) -> None:
        """Stop: an iteration in progress ends before its next bar. Idempotent."""
        self.closed = True
        self.status = "closed"

    async def aclose(self) -> None:
        """Same as `close()` (nothing to release)."""
        self.close()

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"RecordedFeed({[str(p) for p in self.paths]!r}, symbols={self.symbols!r}, "
                f"interval={self.interval!r}, speed={self.speed})")

