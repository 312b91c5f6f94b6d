"""One OHLCV bar (`MarketData`) and the validation rules every bar must pass."""

from libc.math cimport isfinite, isnan, NAN

import numpy as np


class InvalidMarketData(ValueError):
    """A bar failed validation. `field` and `value` name the offending input.

    Attributes
    ----------
    field : str
        Name of the offending field (``"high"``, ``"bid"``, ``"timestamp"``, ...).
    value : object
        The offending value.
    """

    def __init__(self, message, field=None, value=None):
        super().__init__(message)
        self.field = field
        self.value = value


cpdef object bar_problem(double open, double high, double low, double close,
                         double volume, double bid=NAN, double ask=NAN):
    """Why a bar breaks the rule, as ``(field, value, reason)``, or None when it is valid.

    Prices (quote currency) must be finite and > 0 with open and close inside
    [low, high]; volume (base units) finite and >= 0; bid and ask NaN (unknown)
    or finite prices > 0, not crossed (bid <= ask). `bar_ok` (C) applies the
    same rule without saying why; `first_invalid_row` to whole columns.
    """
    for name, v in (("open", open), ("high", high), ("low", low), ("close", close)):
        if not isfinite(v):
            return name, v, "must be a finite price"
        if v <= 0:
            return name, v, "must be > 0"
    if not isfinite(volume):
        return "volume", volume, "must be finite"
    if volume < 0:
        return "volume", volume, "must be >= 0"
    if high < low:
        return "high", high, f"is below low ({low!r})"
    if open < low or open > high:
        return "open", open, f"is outside [low, high] = [{low!r}, {high!r}]"
    if close < low or close > high:
        return "close", close, f"is outside [low, high] = [{low!r}, {high!r}]"
    # bid/ask are optional: NaN means unknown; anything else must be a price.
    for name, v in (("bid", bid), ("ask", ask)):
        if not isnan(v) and (not isfinite(v) or v <= 0):
            return name, v, "must be a finite price > 0, or NaN when unknown"
    if bid > ask:
        return "bid", bid, f"is above ask ({ask!r}): crossed quote"
    return None


cdef Py_ssize_t _first_bad(const double[:] o, const double[:] h, const double[:] l,
                           const double[:] c, const double[:] v, const double[:] b,
                           const double[:] a, bint quotes) noexcept nogil:
    cdef Py_ssize_t i
    for i in range(o.shape[0]):
        if not bar_ok(o[i], h[i], l[i], c[i], v[i], b[i] if quotes else NAN, a[i] if quotes else NAN):
            return i
    return -1


def first_invalid_row(open, high, low, close, volume, bid=None, ask=None):
    """Index of the first row that breaks the bar rule (`bar_ok`), or -1.

    Parameters
    ----------
    open, high, low, close, volume : ndarray of float64, shape (n,)
        Bar columns (prices in quote currency, volume in base units).
    bid, ask : ndarray of float64, shape (n,), optional
        Quotes (NaN = unknown); None when the bars carry none.

    Raises
    ------
    ValueError
        If the columns differ in length.
    """
    cols = [np.ascontiguousarray(x, dtype=np.float64) for x in (open, high, low, close, volume)]
    quotes = bid is not None or ask is not None
    n = cols[0].shape[0]
    for x in (bid, ask):
        cols.append(np.full(n, NAN) if x is None else np.ascontiguousarray(x, dtype=np.float64))
    if any(x.shape != (n,) for x in cols):
        raise ValueError(f"bar columns must be 1-D of one length, got shapes {[x.shape for x in cols]}")
    if n == 0:
        return -1
    return _first_bad(cols[0], cols[1], cols[2], cols[3], cols[4], cols[5], cols[6], quotes)


cdef int raise_if_invalid(str symbol, long long timestamp, double open, double high,
                          double low, double close, double volume,
                          double bid, double ask) except -1:
    problem = bar_problem(open, high, low, close, volume, bid, ask)
    if problem is not None:
        field, value, reason = problem
        raise InvalidMarketData(
            f"invalid bar {symbol or '?'} @ {timestamp}: {field} = {value!r} {reason}",
            field, value)
    return 0


cdef class MarketData:
    """One bar (kline) of market data.

    Parameters
    ----------
    symbol : str
        Instrument, e.g. ``"BTCUSDT"``.
    timestamp : int
        Bar open time in milliseconds since the Unix epoch (UTC).
    open, high, low, close : float
        Prices in quote currency (> 0, with low <= open, close <= high).
    volume : float
        Traded volume in base units (>= 0).
    bid, ask : float, optional
        Best bid / ask at bar close in quote currency; NaN when unknown.
    validate : bool, default True
        Run `validate()` on construction (pass False for trusted data).

    Raises
    ------
    InvalidMarketData
        On construction (unless ``validate=False``) or from `validate()`: NaN
        or infinite prices or volume, a price <= 0, high < low, open or close
        outside [low, high], volume < 0, or bid > ask. The message and the
        exception's ``field``/``value`` name the offending field.
    """

    def __init__(self, str symbol, long long timestamp, double open, double high,
                 double low, double close, double volume=0.0,
                 double bid=NAN, double ask=NAN, *, bint validate=True):
        self.symbol = symbol
        self.timestamp = timestamp
        self.open = open
        self.high = high
        self.low = low
        self.close = close
        self.volume = volume
        self.bid = bid
        self.ask = ask
        if validate:
            raise_if_invalid(symbol, timestamp, open, high, low, close, volume, bid, ask)

    def validate(self):
        """Check the bar; raise `InvalidMarketData` naming the field and value if it is bad."""
        raise_if_invalid(self.symbol, self.timestamp, self.open, self.high, self.low,
                         self.close, self.volume, self.bid, self.ask)

    @property
    def mid_price(self):
        """(bid + ask) / 2 when both are known, else the close (quote currency)."""
        if isnan(self.bid) or isnan(self.ask):
            return self.close
        return (self.bid + self.ask) * 0.5

    def as_dict(self):
        """The bar as a plain dict (JSON-serializable except NaN bid/ask)."""
        return {"symbol": self.symbol, "timestamp": self.timestamp, "open": self.open,
                "high": self.high, "low": self.low, "close": self.close,
                "volume": self.volume, "bid": self.bid, "ask": self.ask}

    def __eq__(self, other):
        if not isinstance(other, MarketData):
            return NotImplemented
        a, b = self.as_dict(), (<MarketData>other).as_dict()
        # NaN bid/ask compare equal to NaN here: both mean "unknown".
        return all(a[k] == b[k] or (a[k] != a[k] and b[k] != b[k]) for k in a)

    def __hash__(self):
        return hash((self.symbol, self.timestamp))

    def __reduce__(self):
        return (_rebuild, (self.symbol, self.timestamp, self.open, self.high, self.low,
                           self.close, self.volume, self.bid, self.ask))

    def __repr__(self):
        return (f"MarketData({self.symbol!r}, {self.timestamp}, open={self.open!r}, "
                f"high={self.high!r}, low={self.low!r}, close={self.close!r}, "
                f"volume={self.volume!r}, bid={self.bid!r}, ask={self.ask!r})")


def _rebuild(*args):
    return MarketData(*args, validate=False)
