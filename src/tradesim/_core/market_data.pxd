cdef class MarketData:
    cdef readonly str symbol
    cdef readonly long long timestamp
    cdef readonly double open
    cdef readonly double high
    cdef readonly double low
    cdef readonly double close
    cdef readonly double volume
    cdef readonly double bid
    cdef readonly double ask

# The bar rule, in three forms side by side (market_data.pyx has the array form,
# first_invalid_row): bar_problem says what is wrong, bar_ok below only whether.
# Returns None when the bar is valid, else (field, value, reason).
cpdef object bar_problem(double open, double high, double low, double close,
                         double volume, double bid, double ask)
cdef int raise_if_invalid(str symbol, long long timestamp, double open, double high,
                          double low, double close, double volume,
                          double bid, double ask) except -1

from libc.math cimport isfinite, isnan

# Fast C check of the same rules as bar_problem (True = valid); callers build
# the detailed message with bar_problem only when this says no.
cdef inline bint bar_ok(double open, double high, double low, double close,
                        double volume, double bid, double ask) noexcept nogil:
    if not (isfinite(open) and isfinite(high) and isfinite(low) and isfinite(close)
            and isfinite(volume)):
        return False
    if low <= 0 or high < low or volume < 0:
        return False
    if open < low or open > high or close < low or close > high:
        return False
    if not isnan(bid) and (not isfinite(bid) or bid <= 0):
        return False
    if not isnan(ask) and (not isfinite(ask) or ask <= 0):
        return False
    if bid > ask:
        return False
    return True
