"""One OHLCV bar (`MarketData`) and the validation rules every bar must pass."""

from libc.math cimport isfinite, isnan, NAN


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
                         double volume, double bid, double ask):
    """What is wrong with a bar: ``(field, value, reason)``, or None if it is valid.

    The rules: open, high, low and close finite and > 0, volume finite and
    >= 0, low <= open, close <= high, bid and ask each NaN (unknown) or a
    finite price > 0, and bid <= ask. Checked in this order; the first broken
    rule is named. `bar_ok` (market_data.pxd) is the same rule as a C test.
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


def first_invalid_row(const double[:] open, const double[:] high, const double[:] low,
                      const double[:] close, const double[:] volume, const double[:] bid,
                      const double[:] ask):
    """Index of the first row that breaks the bar rule (`bar_problem`), or -1 if none does.

    Parameters
    ----------
    open, high, low, close, volume, bid, ask : ndarray of float64
        Columns of equal length (bid/ask NaN where unknown).

    Raises
    ------
    ValueError
        The columns differ in length.
    """
    cdef Py_ssize_t i, n = open.shape[0], bad = -1
    for length in (high.shape[0], low.shape[0], close.shape[0], volume.shape[0], bid.shape[0], ask.shape[0]):
        if length != n:
            raise ValueError(f"columns differ in length: {length} rows, expected {n}")
    with nogil:
        for i in range(n):
            if not bar_ok(open[i], high[i], low[i], close[i], volume[i], bid[i], ask[i]):
                bad = i
                break
    return bad


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
