"""What every market-data feed offers: the `MarketDataSource` protocol, its health ledger
(`DataHealth`), and `BaseFeed`, the shared async replay machinery.

A feed serves the same bars two ways:

* Backtests pull whole columns: ``feed.bars(symbol, limit)`` returns a
  `tradesim.data.Bars` (numpy arrays), which the runner hands to Cython without
  building one Python object per bar.
* Live and simulated runs iterate: ``async for bar in feed`` yields `MarketData`
  in timestamp order across symbols (ties in the order of ``feed.symbols``),
  paced by ``speed``.

Units everywhere: prices in quote currency, volume in base units, timestamps in
milliseconds since the Unix epoch (UTC, bar open time).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Protocol, runtime_checkable

import numpy as np

from tradesim._core.market_data import MarketData
from tradesim.data import Bars
from tradesim.feeds.pacing import Pacer, check_speed
from tradesim.timeframes import parse_interval, parse_time

__all__ = ["BaseFeed", "DataHealth", "MarketDataSource", "parse_interval", "parse_time"]

@dataclass
class DataHealth:
    """Ledger of what a feed delivered and what was wrong with its data.

    Attributes
    ----------
    bars_emitted : dict[str, int]
        Bars handed out per symbol, by `bars()` and by async iteration alike.
    gap_count : dict[str, int]
        Number of gaps (missing stretches of one or more bars) per symbol.
    missing_bars : dict[str, int]
        Bars missing across all gaps, per symbol.
    gap_examples : dict[str, list[tuple[int, int, int]]]
        The first `max_gap_examples` gaps per symbol as (last timestamp before,
        first timestamp after, bars missing); timestamps in ms since epoch UTC.
    rows_rejected : dict[str, int]
        Rows or messages dropped as invalid, per symbol (file feeds raise on a
        bad row instead, so they leave this at 0).
    max_gap_examples : int
        How many gaps per symbol are kept as examples.
    """

    bars_emitted: dict[str, int] = field(default_factory=dict)
    gap_count: dict[str, int] = field(default_factory=dict)
    missing_bars: dict[str, int] = field(default_factory=dict)
    gap_examples: dict[str, list[tuple[int, int, int]]] = field(default_factory=dict)
    rows_rejected: dict[str, int] = field(default_factory=dict)
    max_gap_examples: int = 5

    def add_symbol(self, symbol: str) -> None:
        """Start every counter of `symbol` at 0 (so reports list it even when clean)."""
        for ledger in (self.bars_emitted, self.gap_count, self.missing_bars, self.rows_rejected):
            ledger.setdefault(symbol, 0)
        self.gap_examples.setdefault(symbol, [])

    def record_emitted(self, symbol: str, count: int = 1) -> None:
        """Count `count` bars of `symbol` as handed out."""
        self.bars_emitted[symbol] = self.bars_emitted.get(symbol, 0) + count

    def record_gaps(self, symbol: str, gaps: Sequence[tuple[int, int, int]]) -> None:
        """Add gaps as returned by `tradesim.data.find_gaps`: (before, after, missing)."""
        self.add_symbol(symbol)
        self.gap_count[symbol] += len(gaps)
        self.missing_bars[symbol] += sum(int(g[2]) for g in gaps)
        room = self.max_gap_examples - len(self.gap_examples[symbol])
        if room > 0:
            self.gap_examples[symbol].extend(tuple(int(x) for x in g) for g in gaps[:room])

    def record_rejected(self, symbol: str, count: int = 1) -> None:
        """Count `count` rows or messages of `symbol` dropped as invalid."""
        self.rows_rejected[symbol] = self.rows_rejected.get(symbol, 0) + count

    @property
    def total_emitted(self) -> int:
        """Bars handed out over all symbols."""
        return sum(self.bars_emitted.values())

    @property
    def clean(self) -> bool:
        """True when no gaps were found and no rows were rejected."""
        return not any(self.gap_count.values()) and not any(self.rows_rejected.values())

    def as_dict(self) -> dict:
        """The ledger as plain JSON-serializable data."""
        return {"bars_emitted": dict(self.bars_emitted), "gap_count": dict(self.gap_count),
                "missing_bars": dict(self.missing_bars),
                "gap_examples": {s: [list(g) for g in gs] for s, gs in self.gap_examples.items()},
                "rows_rejected": dict(self.rows_rejected)}


@runtime_checkable
class MarketDataSource(Protocol):
    """A source of OHLCV bars for one or more symbols.

    Attributes
    ----------
    symbols : list[str]
        Instruments served, in tie-break order for async iteration.
    interval_ms : int
        Bar length in ms (for mixed files: the shortest).
    health : DataHealth
        What was emitted and what was wrong with the data.

    Notes
    -----
    ``bars(symbol, limit)`` is the synchronous fast path for backtests: whole
    numpy columns at once. ``async for bar in source`` yields `MarketData` in
    timestamp order across symbols (ties in `symbols` order), paced in wall
    time; it is the path for live and simulated runs. ``close()`` ends any
    iteration in progress after the current bar and is idempotent.
    """

    symbols: list[str]
    interval_ms: int
    health: DataHealth

    def bars(self, symbol: str, limit: int | None = None) -> Bars: ...

    def __aiter__(self) -> AsyncIterator[MarketData]: ...

    def close(self) -> None: ...


class Chunk(NamedTuple):
    """Bars of several symbols already in emission order (parallel arrays)."""

    symbol_index: np.ndarray  # intp, index into feed.symbols
    timestamp: np.ndarray     # int64 ms since epoch UTC
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    bid: np.ndarray | None    # None = unknown (NaN)
    ask: np.ndarray | None


class BaseFeed:
    """Shared machinery of the bundled feeds: async replay, pacing, health, closing.

    Subclasses set `symbols`, `interval_ms` and implement `bars()` and
    `_chunks()` (an iterator of `Chunk` in emission order). Usable as a
    context manager, sync or async (closes on exit).

    Parameters
    ----------
    speed : float
        0 = as fast as possible, 1 = real time (bars as far apart as their
        timestamps), N = N times real time.
    clock : callable, default `time.monotonic`
        Seconds, monotonic; injectable for tests.
    sleep : async callable, default `asyncio.sleep`
        Injectable for tests.
    """

    symbols: list[str]
    interval_ms: int

    def __init__(self, *, speed: float = 0.0, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep):
        self.speed = check_speed(speed)
        self._clock = clock
        self._sleep = sleep
        self.health = DataHealth()
        self.closed = False

    # -- synchronous fast path ---------------------------------------------------------------
    def bars(self, symbol: str, limit: int | None = None) -> Bars:  # pragma: no cover - abstract
        raise NotImplementedError

    def all_bars(self, limit: int | None = None) -> dict[str, Bars]:
        """`bars(symbol, limit)` for every symbol, keyed by symbol."""
        return {s: self.bars(s, limit) for s in self.symbols}

    def _check_symbol(self, symbol: str) -> None:
        if symbol not in self.symbols:
            raise KeyError(f"unknown symbol {symbol!r}; this feed serves {self.symbols}")

    # -- async path ----------------------------------------------------------------------------
    def _chunks(self) -> Iterator[Chunk]:  # pragma: no cover - abstract
        raise NotImplementedError

    async def __aiter__(self) -> AsyncIterator[MarketData]:
        """Yield `MarketData` bars in timestamp order (ties: `symbols` order), paced by `speed`.

        Each ``async for`` replays from the first bar. The bars were validated
        in bulk when loaded or generated, so they are built with
        ``validate=False``.
        """
        if self.closed:
            raise RuntimeError(f"{type(self).__name__} is closed")
        pacer = Pacer(self.speed, clock=self._clock, sleep=self._sleep)
        names = np.array(self.symbols, dtype=object)
        emitted = self.health.bars_emitted
        for chunk in self._chunks():
            n = len(chunk.timestamp)
            nan = [float("nan")] * n
            rows = zip(names[chunk.symbol_index].tolist(), chunk.timestamp.tolist(),
                       chunk.open.tolist(), chunk.high.tolist(), chunk.low.tolist(),
                       chunk.close.tolist(), chunk.volume.tolist(),
                       nan if chunk.bid is None else chunk.bid.tolist(),
                       nan if chunk.ask is None else chunk.ask.tolist())
            for sym, ts, o, h, lo, c, v, b, a in rows:
                await pacer.wait(ts)
                if self.closed:
                    return
                emitted[sym] = emitted.get(sym, 0) + 1
                yield MarketData(sym, ts, o, h, lo, c, v, b, a, validate=False)

    # -- lifecycle -----------------------------------------------------------------------------
    def close(self) -> None:
        """Stop: an iteration in progress ends before its next bar. Idempotent."""
        self.closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    async def __aenter__(self):
        return self

    async def __aexit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(symbols={self.symbols!r}, interval_ms={self.interval_ms}, "
                f"speed={self.speed})")
