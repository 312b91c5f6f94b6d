"""The accept path of Binance kline validation, in C (a live frame's largest parsing cost).

`kline_or_none` applies exactly the rules of
`tradesim.feeds.binance.messages.parse_kline` and returns the `Kline`, or
None when any rule fails; the caller then runs the Python parser, which
raises the `FrameError` naming the field and value. So error messages have
one source, and this path only has to agree on what is valid (a property
test checks that it does, field by field).

Decimal strings must be plain: ASCII digits with at most one '.', at least
one digit, at most 41 characters; converted by CPython's own
``PyOS_string_to_double``, so values equal ``float(text)`` bit for bit. The
values then pass the bar rule of `tradesim._core.market_data` (`bar_ok`):
prices > 0, volume >= 0, open and close within [low, high].
"""

from libc.math cimport NAN

from tradesim._core.market_data cimport bar_ok

cdef extern from "Python.h":
    double PyOS_string_to_double(const char *s, char **endptr, object overflow_exception) except? -1.0
    const char *PyUnicode_AsUTF8AndSize(object text, Py_ssize_t *size) except NULL
    bint PyUnicode_IS_ASCII(object text)


cdef double _plain(object text):
    """The value of a plain decimal string (finite, >= 0), or NaN if it is not one."""
    cdef Py_ssize_t n, i
    cdef const char *p
    cdef int dots = 0
    cdef int digits = 0
    cdef char c
    if type(text) is not str or not PyUnicode_IS_ASCII(text):
        return NAN
    p = PyUnicode_AsUTF8AndSize(text, &n)
    if n == 0 or n > 41:
        return NAN
    for i in range(n):
        c = p[i]
        if c == b'.':
            dots += 1
        elif b'0' <= c <= b'9':
            digits += 1
        else:
            return NAN
    if dots > 1 or digits == 0:
        return NAN
    return PyOS_string_to_double(p, NULL, None)


def kline_or_none(object data, object stream_interval, dict interval_ms, object kline_type):
    """A `Kline` (built by `kline_type`) from a kline event payload, or None if any rule fails.

    Parameters
    ----------
    data : dict
        The ``data`` object of a combined-stream kline message.
    stream_interval : str or None
        The interval named by the stream; the kline's must match.
    interval_ms : dict
        Interval name -> length in ms (None for "1M").
    kline_type : type
        Called with (symbol, interval, open_time, close_time, open, high, low,
        close, volume, closed).
    """
    if type(data) is not dict:
        return None
    k = (<dict>data).get("k")
    if type(k) is not dict or (<dict>data).get("e") != "kline":
        return None
    cdef dict kd = <dict>k
    symbol = kd.get("s")
    interval = kd.get("i")
    if type(symbol) is not str or not symbol:
        return None
    if type(interval) is not str or interval not in interval_ms:
        return None
    if stream_interval is not None and interval != stream_interval:
        return None
    t = kd.get("t")
    close_time = kd.get("T")
    if type(t) is not int or t < 0 or type(close_time) is not int or close_time < 0:
        return None
    step = interval_ms[interval]
    if (step is not None and close_time != t + step - 1) or close_time <= t:
        return None
    cdef double o = _plain(kd.get("o"))
    cdef double h = _plain(kd.get("h"))
    cdef double l = _plain(kd.get("l"))
    cdef double c = _plain(kd.get("c"))
    cdef double v = _plain(kd.get("v"))
    # A rejected field is NaN, which the bar rule refuses; no quote here (NaN bid/ask).
    if not bar_ok(o, h, l, c, v, NAN, NAN):
        return None
    closed = kd.get("x")
    if type(closed) is not bool:
        return None
    return kline_type(symbol, interval, t, close_time, o, h, l, c, v, closed)


def rest_klines_into(list rows, long long step, double[:, ::1] out):
    """Fill `out` from REST ``/api/v3/klines`` rows while they are valid; return how many were.

    Row i is ``[openTime, "open", "high", "low", "close", "volume", closeTime, ...]``
    and is valid under the rules of `tradesim.feeds.binance.messages.parse_rest_kline`
    (an array of >= 7 items; non-negative integer times with closeTime = openTime +
    `step` - 1; plain decimal strings; the bar rule). ``out[i]`` gets (openTime, open,
    high, low, close, volume) as float64 (openTime exact below 2**53 ms). The count
    returned is the index of the first invalid row (or ``len(rows)``): the caller
    runs `parse_rest_kline` on that row for the error naming the field and value.

    Parameters
    ----------
    rows : list
        Decoded JSON rows.
    step : int
        Interval length in ms (> 0).
    out : float64 array of shape (>= len(rows), 6), C-contiguous
    """
    cdef Py_ssize_t i, n = len(rows)
    cdef double o, h, l, c, v
    if out.shape[0] < n or out.shape[1] != 6:
        raise ValueError(f"out has shape ({out.shape[0]}, {out.shape[1]}), need ({n}, 6)")
    for i in range(n):
        row = rows[i]
        if type(row) is not list or len(<list>row) < 7:
            return i
        t = (<list>row)[0]
        close_time = (<list>row)[6]
        if type(t) is not int or t < 0 or type(close_time) is not int or close_time < 0:
            return i
        if close_time != t + step - 1 or close_time <= t:
            return i
        o = _plain((<list>row)[1])
        h = _plain((<list>row)[2])
        l = _plain((<list>row)[3])
        c = _plain((<list>row)[4])
        v = _plain((<list>row)[5])
        if not bar_ok(o, h, l, c, v, NAN, NAN):
            return i
        out[i, 0] = <double>t
        out[i, 1] = o
        out[i, 2] = h
        out[i, 3] = l
        out[i, 4] = c
        out[i, 5] = v
    return n
