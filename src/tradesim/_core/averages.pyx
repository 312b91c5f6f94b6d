"""Moving averages: SMA, EMA and rolling VWAP, updated in O(1) per input."""

cimport cython
import numpy as np
from libc.math cimport isfinite

from tradesim._core.indicator cimport (
    Indicator, check_period, check_finite, check_scalar, check_same_length, output_array)
from tradesim._core.kernels cimport (
    Sma, sma_init, sma_free, sma_reset, sma_update,
    Ema, ema_init, ema_reset, ema_update,
    Vwap, vwap_init, vwap_free, vwap_reset, vwap_update)


cdef class SMA(Indicator):
    """Simple moving average of the last `period` inputs, updated in O(1).

    Input: one price per `update` call (float, quote currency) or a 1-D
    float64 array to `update_many`. Output: float, NaN until `initialized`.

    Parameters
    ----------
    period : int
        Window length in inputs (>= 1).

    Raises
    ------
    ValueError
        If `period` < 1, or an input is NaN or infinite (state unchanged).

    Notes
    -----
    Running window sum, recomputed exactly from the ring every 1024 inputs
    so rounding drift stays bounded however long the run. Matches TA-Lib SMA
    to ~1e-12 relative.
    """

    output_names = ("sma",)
    cdef Sma s

    def __cinit__(self, int period):
        check_period("period", period)
        sma_init(&self.s, period)
        self.warmup_period = period
        self.n_outputs = 1

    def __dealloc__(self):
        sma_free(&self.s)

    @property
    def period(self):
        return self.s.period

    @property
    def value(self):
        """Current SMA (float, quote currency); NaN during warm-up."""
        return self.s.value

    @cython.always_allow_keywords(False)
    def update(self, double x):
        """Add one input and return the new value (NaN during warm-up)."""
        if not isfinite(x):
            check_scalar("x", x)
        self.count += 1
        return sma_update(&self.s, x)

    def update_many(self, x, out=None):
        """Feed a 1-D array; return (or fill `out` with) the value after each input."""
        cdef const double[::1] xs = np.ascontiguousarray(x, dtype=np.float64)
        check_finite("x", xs)
        cdef Py_ssize_t i, n = xs.shape[0]
        cdef double[::1] o = output_array(out, n, "sma")
        with nogil:
            for i in range(n):
                o[i] = sma_update(&self.s, xs[i])
        self.count += n
        return np.asarray(o) if out is None else out

    cdef void push_bar(self, double open, double high, double low,
                       double close, double volume) noexcept nogil:
        sma_update(&self.s, close)

    cdef double output(self, int i) noexcept nogil:
        return self.s.value

    cdef void _reset(self) noexcept nogil:
        sma_reset(&self.s)


cdef class EMA(Indicator):
    """Exponential moving average, seeded like TA-Lib, updated in O(1).

    Input: one price per `update` call (float, quote currency) or a 1-D
    float64 array to `update_many`. Output: float, NaN until `initialized`.

    Parameters
    ----------
    period : int
        Smoothing period (>= 1); alpha = 2 / (period + 1).

    Raises
    ------
    ValueError
        If `period` < 1, or an input is NaN or infinite (state unchanged).

    Notes
    -----
    The first value is the SMA of the first `period` inputs, then
    ema = ema + alpha * (x - ema). Matches TA-Lib EMA to 1e-9 relative.
    """

    output_names = ("ema",)
    cdef Ema s

    def __cinit__(self, int period):
        check_period("period", period)
        ema_init(&self.s, period)
        self.warmup_period = period
        self.n_outputs = 1

    @property
    def period(self):
        return self.s.period

    @property
    def value(self):
        """Current EMA (float, quote currency); NaN during warm-up."""
        return self.s.value

    @cython.always_allow_keywords(False)
    def update(self, double x):
        """Add one input and return the new value (NaN during warm-up)."""
        if not isfinite(x):
            check_scalar("x", x)
        self.count += 1
        return ema_update(&self.s, x)

    def update_many(self, x, out=None):
        """Feed a 1-D array; return (or fill `out` with) the value after each input."""
        cdef const double[::1] xs = np.ascontiguousarray(x, dtype=np.float64)
        check_finite("x", xs)
        cdef Py_ssize_t i, n = xs.shape[0]
        cdef double[::1] o = output_array(out, n, "ema")
        with nogil:
            for i in range(n):
                o[i] = ema_update(&self.s, xs[i])
        self.count += n
        return np.asarray(o) if out is None else out

    cdef void push_bar(self, double open, double high, double low,
                       double close, double volume) noexcept nogil:
        ema_update(&self.s, close)

    cdef double output(self, int i) noexcept nogil:
        return self.s.value

    cdef void _reset(self) noexcept nogil:
        ema_reset(&self.s)


cdef class VWAP(Indicator):
    """Rolling volume-weighted average price over the last `period` bars.

    Input per bar: high, low, close (quote currency) and volume (base units).
    Output: sum(tp * volume) / sum(volume) with typical price
    tp = (high + low + close) / 3; NaN during warm-up and while the window's
    volume is zero.

    Parameters
    ----------
    period : int
        Window length in bars (>= 1).

    Raises
    ------
    ValueError
        If `period` < 1, an input is not finite, or volume < 0 (state unchanged).

    Notes
    -----
    Both window sums are recomputed exactly every 1024 bars (bounded drift).
    TA-Lib has no rolling VWAP; this
    is checked against a plain numpy computation.
    """

    output_names = ("vwap",)
    cdef Vwap s

    def __cinit__(self, int period):
        check_period("period", period)
        vwap_init(&self.s, period)
        self.warmup_period = period
        self.n_outputs = 1

    def __dealloc__(self):
        vwap_free(&self.s)

    @property
    def period(self):
        return self.s.period

    @property
    def value(self):
        """Current VWAP (float, quote currency); NaN during warm-up."""
        return self.s.value

    def update(self, double high, double low, double close, double volume):
        """Add one bar and return the new value (NaN during warm-up)."""
        check_scalar("high", high)
        check_scalar("low", low)
        check_scalar("close", close)
        check_scalar("volume", volume)
        if volume < 0:
            raise ValueError(f"volume = {volume!r}: must be >= 0; the indicator was not updated")
        self.count += 1
        return vwap_update(&self.s, high, low, close, volume)

    def update_many(self, high, low, close, volume, out=None):
        """Feed 1-D arrays of equal length; return (or fill `out`) the value after each bar."""
        cdef const double[::1] h = np.ascontiguousarray(high, dtype=np.float64)
        cdef const double[::1] l = np.ascontiguousarray(low, dtype=np.float64)
        cdef const double[::1] c = np.ascontiguousarray(close, dtype=np.float64)
        cdef const double[::1] v = np.ascontiguousarray(volume, dtype=np.float64)
        cdef Py_ssize_t i, n = h.shape[0]
        check_same_length(n, ("high", "low", "close", "volume"), (h, l, c, v))
        check_finite("high", h)
        check_finite("low", l)
        check_finite("close", c)
        check_finite("volume", v)
        if n and np.min(np.asarray(v)) < 0:
            bad = int(np.argmin(np.asarray(v)))
            raise ValueError(f"volume[{bad}] = {v[bad]!r}: must be >= 0; nothing was updated")
        cdef double[::1] o = output_array(out, n, "vwap")
        with nogil:
            for i in range(n):
                o[i] = vwap_update(&self.s, h[i], l[i], c[i], v[i])
        self.count += n
        return np.asarray(o) if out is None else out

    cdef void push_bar(self, double open, double high, double low,
                       double close, double volume) noexcept nogil:
        vwap_update(&self.s, high, low, close, volume)

    cdef double output(self, int i) noexcept nogil:
        return self.s.value

    cdef void _reset(self) noexcept nogil:
        vwap_reset(&self.s)


def sma(close, int period):
    """Batch SMA over a 1-D array: float64 array of the same length, NaN for the first `period` - 1."""
    return SMA(period).update_many(close)


def ema(close, int period):
    """Batch EMA over a 1-D array (TA-Lib seeding): NaN for the first `period` - 1."""
    return EMA(period).update_many(close)


def vwap(high, low, close, volume, int period):
    """Batch rolling VWAP over 1-D arrays: NaN for the first `period` - 1 and where volume is zero."""
    return VWAP(period).update_many(high, low, close, volume)
