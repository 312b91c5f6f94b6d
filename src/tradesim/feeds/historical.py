"""Historical bars from files (Binance kline CSV, generic CSV, Parquet) or `Bars` objects.

Files are read in full when the feed is built, so bad data fails early with the
loader's `DataFileError` (file, line, field). Gaps are reported in the health
ledger, never filled.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections.abc import Awaitable, Callable, Iterator, Sequence
from dataclasses import replace
from datetime import datetime

import numpy as np

from tradesim.data import Bars, find_gaps, load_bars
from tradesim.feeds.base import BaseFeed, Chunk, parse_interval, parse_time

__all__ = ["HistoricalFeed"]

log = logging.getLogger(__name__)

Source = str | os.PathLike | Bars
#: Bars per chunk handed to the async loop.
CHUNK = 4096


class HistoricalFeed(BaseFeed):
    """Replays recorded bars of one or more symbols.

    Parameters
    ----------
    sources : path, `Bars`, or a sequence of them
        One per symbol: Binance kline CSV (``.csv``/``.csv.gz``), generic
        ``timestamp,open,high,low,close,volume`` CSV, or Parquet (needs
        ``pip install 'tradesim[parquet]'``); see `tradesim.data.load_bars`.
    symbols : str or sequence of (str or None), optional
        Names for the sources, in the same order; None (or a None entry)
        keeps the name from the file name (``BTCUSDT-1m-...`` -> ``BTCUSDT``)
        or the `Bars` object.
    start, end : int, str or datetime, optional
        Keep bars with ``start <= open time < end``: ms since epoch UTC or an
        ISO-8601 date/date-time (no zone = UTC). ``end="2025-06-01"`` keeps
        bars up to 2025-05-31 23:59 for 1m data.
    interval : str or int, optional
        Bar length ("1m", "1h", ... or ms); default: each file's median step.
        Used for gap detection; ``interval_ms`` is the shortest over symbols.
    speed : float, default 0
        0 = as fast as possible, 1 = bars as far apart in wall time as their
        timestamps (gaps included), N = N times faster.
    clock, sleep
        Injectable monotonic clock (seconds) and async sleep, for tests.

    Raises
    ------
    DataFileError
        From the loader: file, 1-based line and field of the bad data.
    ImportError
        A Parquet file without pyarrow installed.
    ValueError
        The same symbol twice, no sources, ``start >= end``, or no interval
        could be inferred (pass `interval`).

    Notes
    -----
    Gaps (missing stretches longer than one interval) within the date range
    are counted in ``health`` with the first few as examples; they are not
    filled. Async iteration merges symbols by timestamp, ties in `symbols` order.
    """

    def __init__(self, sources: Source | Sequence[Source],
                 symbols: str | Sequence[str | None] | None = None, *,
                 start: int | str | datetime | None = None, end: int | str | datetime | None = None,
                 interval: str | int | None = None, speed: float = 0.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep):
        super().__init__(speed=speed, clock=clock, sleep=sleep)
        if isinstance(sources, (str, os.PathLike, Bars)):
            sources = [sources]
        sources = list(sources)
        if not sources:
            raise ValueError("HistoricalFeed needs at least one file or Bars")
        names = [symbols] if isinstance(symbols, str) else list(symbols or [None] * len(sources))
        if len(names) != len(sources):
            raise ValueError(f"{len(names)} symbols given for {len(sources)} sources")
        self.start_ms, self.end_ms = parse_time(start), parse_time(end)
        if self.start_ms is not None and self.end_ms is not None and self.start_ms >= self.end_ms:
            raise ValueError(f"start ({start!r}) must be before end ({end!r})")
        fixed_interval = None if interval is None else parse_interval(interval)

        self._bars: dict[str, Bars] = {}
        self.intervals: dict[str, int] = {}
        for src, name in zip(sources, names):
            t0 = time.perf_counter()
            if isinstance(src, Bars):
                full = src if name is None or name == src.symbol else replace(src, symbol=name)
            else:
                full = load_bars(src, name)
            if full.symbol in self._bars:
                raise ValueError(f"symbol {full.symbol} appears twice: "
                                 f"{self._bars[full.symbol].source or '<Bars>'} and "
                                 f"{full.source or '<Bars>'}")
            step = fixed_interval or full.interval_ms
            if step is None and len(full) > 1:
                step = int(np.median(np.diff(full.timestamp)))
            if not step:
                raise ValueError(f"cannot infer the bar interval of {full.symbol} "
                                 f"({len(full)} bar(s)); pass interval=")
            bars = full.slice(self.start_ms, self.end_ms)
            self._bars[bars.symbol] = bars
            self.intervals[bars.symbol] = step
            self.health.add_symbol(bars.symbol)
            gaps = find_gaps(bars, step)
            self.health.record_gaps(bars.symbol, gaps)
            log.info("loaded %s: %d bars in range from %s in %.0f ms", bars.symbol, len(bars),
                     full.source or "<Bars>", 1000 * (time.perf_counter() - t0))
            if not len(bars):
                log.warning("%s: no bars between start=%s and end=%s (file has %d)", bars.symbol,
                            self.start_ms, self.end_ms, len(full))
            if gaps:
                log.warning("%s: %d gap(s), %d bar(s) missing; first after %d", bars.symbol,
                            len(gaps), self.health.missing_bars[bars.symbol], gaps[0][0])
        self.symbols = list(self._bars)
        self.interval_ms = min(self.intervals.values())

    @property
    def sources(self) -> dict[str, str]:
        """Where each symbol's bars came from (path, or "" for a `Bars` object)."""
        return {s: b.source for s, b in self._bars.items()}

    def bars(self, symbol: str, limit: int | None = None) -> Bars:
        """The bars of `symbol` within [start, end) as numpy columns.

        Parameters
        ----------
        symbol : str
            One of `symbols`.
        limit : int, optional
            At most this many bars (the oldest first); default all.

        Returns
        -------
        Bars
            timestamp int64 ms since epoch UTC (bar open), prices in quote
            currency, volume in base units. The arrays are shared with the
            feed: treat them as read-only.
        """
        self._check_symbol(symbol)
        bars = self._bars[symbol]
        if limit is not None:
            if int(limit) != limit or limit < 0:
                raise ValueError(f"limit must be an int >= 0, got {limit!r}")
            if limit < len(bars):
                end = int(bars.timestamp[limit])
                bars = bars.slice(None, end)
        self.health.record_emitted(symbol, len(bars))
        return bars

    def _chunks(self) -> Iterator[Chunk]:
        parts = [self._bars[s] for s in self.symbols]
        index = np.concatenate([np.full(len(b), i, dtype=np.intp) for i, b in enumerate(parts)])
        cols = [np.concatenate([getattr(b, name) for b in parts])
                for name in ("timestamp", "open", "high", "low", "close", "volume")]
        # Stable merge: by timestamp, then by position in `symbols`.
        order = np.lexsort((index, cols[0]))
        for i in range(0, len(order), CHUNK):
            sel = order[i:i + CHUNK]
            yield Chunk(index[sel], *(col[sel] for col in cols), None, None)
