"""`MarketDataWindow`: the last N bars of one symbol in a column-oriented ring."""

import numpy as np
from libc.math cimport NAN

from tradesim._core.market_data cimport MarketData, bar_ok, raise_if_invalid
from tradesim._core.market_data import InvalidMarketData, first_invalid_row

cdef tuple COLUMNS = ("open", "high", "low", "close", "volume", "bid", "ask")
cdef enum:
    OPEN = 0
    HIGH = 1
    LOW = 2
    CLOSE = 3
    VOLUME = 4
    BID = 5
    ASK = 6


class OutOfOrderBar(InvalidMarketData):
    """A bar's timestamp is not greater than the newest bar's in the window."""


cdef class MarketDataWindow:
    """The most recent `capacity` bars of one symbol, oldest dropped first.

    Columns are stored separately (int64 timestamps in ms since the epoch UTC;
    float64 open, high, low, close, volume, bid, ask) in a *mirrored* ring:
    every slot is written twice, at ``i`` and ``i + capacity``, so the last
    ``n`` bars always form one contiguous block and column queries return
    zero-copy numpy views. `push` is O(1) and never allocates.

    Parameters
    ----------
    capacity : int
        Maximum number of bars kept (>= 1).
    symbol : str, optional
        Instrument; by default taken from the first bar pushed. Bars of another
        symbol are rejected.

    Notes
    -----
    View lifetime: an array returned by a column query (``closes(n)`` ...) is
    a read-only view of the ring. It stays correct for the next
    ``capacity - n`` pushes; after that its slots are reused. Copy it
    (``np.array(view)``) to keep it longer. `clear()` does not change memory.
    """

    def __cinit__(self, Py_ssize_t capacity, str symbol=None):
        if capacity < 1:
            raise ValueError(f"capacity = {capacity}: must be >= 1")
        self.capacity = capacity
        self.symbol = symbol
        ts = np.zeros(2 * capacity, dtype=np.int64)
        # One block for the seven price/volume columns: fewer objects per window
        # (a runner's memory counts; see the engine's memory benchmark).
        block = np.full((7, 2 * capacity), NAN)
        self._arrays = [ts, block]
        cdef long long[::1] ts_mv = ts
        cdef double[:, ::1] mv = block
        self.ts = &ts_mv[0]
        for i in range(7):
            self.col[i] = &mv[i, 0]
        views = [ts.view()] + [block[i] for i in range(7)]
        for v in views:
            v.flags.writeable = False
        self._readonly = views
        self.size = 0
        self.head = capacity - 1
        self.last_ts = 0

    # -- writing -------------------------------------------------------------

    cdef int push_fast(self, long long timestamp, double open, double high, double low,
                       double close, double volume, double bid, double ask) except -1:
        cdef Py_ssize_t h
        if self.size > 0 and timestamp <= self.last_ts:
            raise OutOfOrderBar(
                f"bar {self.symbol or '?'} @ {timestamp} rejected: timestamp must be greater "
                f"than the newest bar's ({self.last_ts}); the window is unchanged",
                "timestamp", timestamp)
        h = self.head + 1
        if h == self.capacity:
            h = 0
        self.head = h
        self.ts[h] = timestamp
        self.ts[h + self.capacity] = timestamp
        self.col[OPEN][h] = open
        self.col[OPEN][h + self.capacity] = open
        self.col[HIGH][h] = high
        self.col[HIGH][h + self.capacity] = high
        self.col[LOW][h] = low
        self.col[LOW][h + self.capacity] = low
        self.col[CLOSE][h] = close
        self.col[CLOSE][h + self.capacity] = close
        self.col[VOLUME][h] = volume
        self.col[VOLUME][h + self.capacity] = volume
        self.col[BID][h] = bid
        self.col[BID][h + self.capacity] = bid
        self.col[ASK][h] = ask
        self.col[ASK][h + self.capacity] = ask
        self.last_ts = timestamp
        if self.size < self.capacity:
            self.size += 1
        return 0

    def push(self, MarketData bar not None):
        """Append one bar in O(1), dropping the oldest when full.

        The bar is trusted to be valid (`MarketData` validates itself on
        construction); use `push_values` for raw numbers.

        Raises
        ------
        OutOfOrderBar
            If ``bar.timestamp`` is not greater than the newest bar's; the
            window is unchanged.
        InvalidMarketData
            If the bar's symbol differs from the window's.
        """
        if self.symbol is None:
            self.symbol = bar.symbol
        elif bar.symbol != self.symbol and bar.symbol is not None:
            raise InvalidMarketData(
                f"bar for {bar.symbol!r} pushed into the window of {self.symbol!r}",
                "symbol", bar.symbol)
        self.push_fast(bar.timestamp, bar.open, bar.high, bar.low, bar.close,
                       bar.volume, bar.bid, bar.ask)

    def push_values(self, long long timestamp, double open, double high, double low,
                    double close, double volume, double bid=NAN, double ask=NAN):
        """Validate and append one bar given as numbers (same rules as `MarketData`).

        Raises
        ------
        InvalidMarketData
            Naming the field and value; the window is unchanged.
        OutOfOrderBar
            If the timestamp is not greater than the newest bar's.
        """
        if not bar_ok(open, high, low, close, volume, bid, ask):
            raise_if_invalid(self.symbol, timestamp, open, high, low, close, volume, bid, ask)
        self.push_fast(timestamp, open, high, low, close, volume, bid, ask)

    def push_columns(self, timestamp, open, high, low, close, volume, bid=None, ask=None):
        """Bulk-append bars given as equal-length 1-D arrays (oldest first).

        All rows are validated before anything is written: on any error the
        window is unchanged. Only the last `capacity` rows end up stored.

        Raises
        ------
        InvalidMarketData
            Naming the row index, field and value of the first bad row.
        OutOfOrderBar
            If timestamps are not strictly increasing (also against the
            newest bar already in the window).
        """
        ts = np.ascontiguousarray(timestamp, dtype=np.int64)
        n = ts.shape[0]
        cols = [np.ascontiguousarray(c, dtype=np.float64) for c in (open, high, low, close, volume)]
        for c in (bid, ask):
            cols.append(np.full(n, NAN) if c is None else np.ascontiguousarray(c, dtype=np.float64))
        for name, c in zip(COLUMNS, cols):
            if c.shape != (n,):
                raise ValueError(f"{name} has shape {c.shape}, expected ({n},) like timestamp")
        if n == 0:
            return
        bad = first_invalid_row(*cols)
        if bad >= 0:
            try:
                raise_if_invalid(self.symbol, ts[bad], cols[0][bad], cols[1][bad], cols[2][bad],
                                 cols[3][bad], cols[4][bad], cols[5][bad], cols[6][bad])
            except InvalidMarketData as exc:
                raise InvalidMarketData(f"row {bad}: {exc}", exc.field, exc.value) from None
        steps = np.diff(ts)
        if n > 1 and (steps <= 0).any():
            j = int(np.argmax(steps <= 0)) + 1
            raise OutOfOrderBar(
                f"row {j}: timestamp {ts[j]} is not greater than row {j - 1}'s ({ts[j - 1]}); "
                "nothing was pushed", "timestamp", int(ts[j]))
        if self.size > 0 and ts[0] <= self.last_ts:
            raise OutOfOrderBar(
                f"row 0: timestamp {ts[0]} is not greater than the newest bar's ({self.last_ts}); "
                "nothing was pushed", "timestamp", int(ts[0]))
        self._write_rows(ts, cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6],
                         max(0, n - self.capacity))

    cdef _write_rows(self, const long long[::1] tv, const double[::1] o, const double[::1] hi,
                     const double[::1] lo, const double[::1] cl, const double[::1] vo,
                     const double[::1] bi, const double[::1] ak, Py_ssize_t start):
        cdef Py_ssize_t i
        for i in range(start, tv.shape[0]):
            self.push_fast(tv[i], o[i], hi[i], lo[i], cl[i], vo[i], bi[i], ak[i])

    def clear(self):
        """Remove all bars (capacity and symbol are kept)."""
        self.size = 0
        self.head = self.capacity - 1
        self.last_ts = 0

    # -- reading -------------------------------------------------------------

    def __len__(self):
        return self.size

    cdef MarketData _bar_at(self, Py_ssize_t age):
        # age 0 = newest
        cdef Py_ssize_t p = self.head + self.capacity - age
        return MarketData(self.symbol, self.ts[p], self.col[OPEN][p], self.col[HIGH][p],
                          self.col[LOW][p], self.col[CLOSE][p], self.col[VOLUME][p],
                          self.col[BID][p], self.col[ASK][p], validate=False)

    def get(self, Py_ssize_t i):
        """Bar `i` in chronological order (0 = oldest); negative `i` counts from the newest (-1).

        Raises
        ------
        IndexError
            If `i` is out of range.
        """
        if i < 0:
            i += self.size
        if i < 0 or i >= self.size:
            raise IndexError(f"window index out of range (len {self.size})")
        return self._bar_at(self.size - 1 - i)

    def __getitem__(self, Py_ssize_t i):
        return self.get(i)

    def latest(self):
        """The newest bar. Raises IndexError if the window is empty."""
        return self.get(-1)

    def oldest(self):
        """The oldest bar kept. Raises IndexError if the window is empty."""
        return self.get(0)

    def __iter__(self):
        cdef Py_ssize_t age
        for age in range(self.size - 1, -1, -1):
            yield self._bar_at(age)

    @property
    def last_timestamp(self):
        """Timestamp of the newest bar (ms since epoch UTC), or None when empty."""
        return self.last_ts if self.size else None

    cdef Py_ssize_t _count(self, object period) except -1:
        if period is None:
            return self.size
        if period < 1:
            raise ValueError(f"period = {period}: must be >= 1")
        return min(<Py_ssize_t> period, self.size)

    def _column(self, int which, period):
        cdef Py_ssize_t n = self._count(period)
        cdef Py_ssize_t s = self.start_of_last(n)
        return self._readonly[which][s:s + n]

    def timestamps(self, period=None):
        """Last `period` (default all) bar open times, int64 ms since epoch UTC, oldest first (view)."""
        return self._column(0, period)

    def opens(self, period=None):
        """Last `period` (default all) opens, float64, oldest first (read-only view; see Notes)."""
        return self._column(1 + OPEN, period)

    def highs(self, period=None):
        """Last `period` (default all) highs, float64, oldest first (read-only view)."""
        return self._column(1 + HIGH, period)

    def lows(self, period=None):
        """Last `period` (default all) lows, float64, oldest first (read-only view)."""
        return self._column(1 + LOW, period)

    def closes(self, period=None):
        """Last `period` (default all) closes, float64, oldest first (read-only view, no copy)."""
        return self._column(1 + CLOSE, period)

    def volumes(self, period=None):
        """Last `period` (default all) volumes in base units, float64, oldest first (view)."""
        return self._column(1 + VOLUME, period)

    def bids(self, period=None):
        """Last `period` (default all) bids, float64 (NaN when unknown), oldest first (view)."""
        return self._column(1 + BID, period)

    def asks(self, period=None):
        """Last `period` (default all) asks, float64 (NaN when unknown), oldest first (view)."""
        return self._column(1 + ASK, period)

    # Aggregates over the last `period` bars; NaN while fewer bars are stored.

    cpdef double high(self, int period) except? -1:
        """Highest high of the last `period` bars (quote currency); NaN if fewer bars."""
        return self._extreme(HIGH, period, True)

    cpdef double low(self, int period) except? -1:
        """Lowest low of the last `period` bars (quote currency); NaN if fewer bars."""
        return self._extreme(LOW, period, False)

    cpdef double range(self, int period) except? -1:
        """high(period) - low(period) (quote currency); NaN if fewer bars."""
        return self._extreme(HIGH, period, True) - self._extreme(LOW, period, False)

    cpdef double avg_volume(self, int period) except? -1:
        """Mean volume of the last `period` bars (base units); NaN if fewer bars."""
        cdef Py_ssize_t s, i
        cdef double acc = 0.0
        if period < 1:
            raise ValueError(f"period = {period}: must be >= 1")
        if period > self.size:
            return NAN
        s = self.start_of_last(period)
        for i in range(s, s + period):
            acc += self.col[VOLUME][i]
        return acc / period

    cdef double _extreme(self, int which, int period, bint is_max) except? -1:
        cdef Py_ssize_t s, i
        cdef double best, v
        if period < 1:
            raise ValueError(f"period = {period}: must be >= 1")
        if period > self.size:
            return NAN
        s = self.start_of_last(period)
        best = self.col[which][s]
        for i in range(s + 1, s + period):
            v = self.col[which][i]
            if (is_max and v > best) or (not is_max and v < best):
                best = v
        return best

    def __repr__(self):
        return f"<MarketDataWindow {self.symbol or '?'} {self.size}/{self.capacity} bars>"
