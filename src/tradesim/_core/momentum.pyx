"""Momentum indicators: RSI, MACD and the stochastic oscillator, O(1) per input."""

cimport cython
import numpy as np
from libc.math cimport isfinite

from tradesim._core.indicator cimport (
    Indicator, check_period, check_finite, check_scalar, check_same_length, output_array)
from tradesim._core.kernels cimport (
    Rsi, rsi_init, rsi_reset, rsi_update,
    Macd, macd_init, macd_reset, macd_update,
    Stoch, stoch_init, stoch_free, stoch_reset, stoch_update)


cdef class RSI(Indicator):
    """Relative strength index with Wilder smoothing, updated in O(1).

    Input: one close price per `update` call (float, quote currency), or a 1-D
    float64 array to `update_many`. Output: float in [0, 100]; NaN until
    `initialized` (period + 1 inputs).

    Parameters
    ----------
    period : int
        Number of price changes in the smoothing window (>= 2, like TA-Lib).

    Raises
    ------
    ValueError
        If `period` < 2, or an input is NaN or infinite (state unchanged).

    Notes
    -----
    Seeded with the simple average of the first `period` gains and losses,
    then avg = (avg * (period - 1) + x) / period (Wilder, 1978). 0 when there
    was no movement at all, like TA-Lib. Matches TA-Lib RSI to 1e-9.
    """

    output_names = ("rsi",)
    cdef Rsi s

    def __cinit__(self, int period):
        check_period("period", period, 2)
        rsi_init(&self.s, period)
        self.warmup_period = period + 1
        self.n_outputs = 1

    @property
    def period(self):
        return self.s.period

    @property
    def value(self):
        """Current RSI in [0, 100]; NaN during warm-up."""
        return self.s.value

    @cython.always_allow_keywords(False)
    def update(self, double x):
        """Add one close and return the new value (NaN during warm-up)."""
        if not isfinite(x):
            check_scalar("x", x)
        self.count += 1
        return rsi_update(&self.s, x)

    def update_many(self, x, out=None):
        """Feed a 1-D array; return (or fill `out` with) the value after each input."""
        cdef const double[::1] xs = np.ascontiguousarray(x, dtype=np.float64)
        check_finite("x", xs)
        cdef Py_ssize_t i, n = xs.shape[0]
        cdef double[::1] o = output_array(out, n, "rsi")
        with nogil:
            for i in range(n):
                o[i] = rsi_update(&self.s, xs[i])
        self.count += n
        return np.asarray(o) if out is None else out

    cdef void push_bar(self, double open, double high, double low,
                       double close, double volume) noexcept nogil:
        rsi_update(&self.s, close)

    cdef double output(self, int i) noexcept nogil:
        return self.s.value

    cdef void _reset(self) noexcept nogil:
        rsi_reset(&self.s)


cdef class MACD(Indicator):
    """Moving average convergence/divergence (Appel), TA-Lib alignment, O(1) per input.

    Input: one close per `update` (float, quote currency) or a 1-D float64
    array to `update_many`. Outputs: `macd` = EMA(fast) - EMA(slow), `signal`
    = EMA(signal) of macd, `histogram` = macd - signal; all NaN until
    `initialized` (slow + signal - 1 inputs).

    Parameters
    ----------
    fast, slow, signal : int
        EMA periods (>= 1); swapped if fast > slow, like TA-Lib.

    Raises
    ------
    ValueError
        If a period < 1, or an input is NaN or infinite (state unchanged).

    Notes
    -----
    Both EMAs are seeded at input slow - 1 (the fast one with the SMA of the
    `fast` inputs ending there) exactly as TA-Lib's MACD aligns them; the
    signal EMA is seeded with the SMA of the first `signal` MACD values.
    Matches TA-Lib MACD to 1e-9 relative.
    """

    output_names = ("macd", "signal", "histogram")
    cdef Macd s

    def __cinit__(self, int fast=12, int slow=26, int signal=9):
        check_period("fast", fast)
        check_period("slow", slow)
        check_period("signal", signal)
        macd_init(&self.s, fast, slow, signal)
        self.warmup_period = self.s.slow + signal - 1
        self.n_outputs = 3

    @property
    def fast(self):
        return self.s.fast

    @property
    def slow(self):
        return self.s.slow

    @property
    def signal_period(self):
        return self.s.signal_ema.period

    @property
    def macd(self):
        """MACD line (quote currency); NaN during warm-up."""
        return self.s.macd

    @property
    def signal(self):
        """Signal line (quote currency); NaN during warm-up."""
        return self.s.signal

    @property
    def histogram(self):
        """macd - signal (quote currency); NaN during warm-up."""
        return self.s.histogram

    @cython.always_allow_keywords(False)
    def update(self, double x):
        """Add one close; read the outputs from `macd`, `signal`, `histogram`."""
        if not isfinite(x):
            check_scalar("x", x)
        self.count += 1
        macd_update(&self.s, x)

    def update_many(self, x, out=None):
        """Feed a 1-D array; return (macd, signal, histogram) arrays (or fill the `out` triple)."""
        cdef const double[::1] xs = np.ascontiguousarray(x, dtype=np.float64)
        check_finite("x", xs)
        cdef Py_ssize_t i, n = xs.shape[0]
        if out is not None and len(out) != 3:
            raise ValueError("out must be a (macd, signal, histogram) triple of arrays")
        cdef double[::1] m = output_array(None if out is None else out[0], n, "macd")
        cdef double[::1] sg = output_array(None if out is None else out[1], n, "signal")
        cdef double[::1] h = output_array(None if out is None else out[2], n, "histogram")
        with nogil:
            for i in range(n):
                macd_update(&self.s, xs[i])
                m[i] = self.s.macd
                sg[i] = self.s.signal
                h[i] = self.s.histogram
        self.count += n
        return (np.asarray(m), np.asarray(sg), np.asarray(h)) if out is None else tuple(out)

    cdef void push_bar(self, double open, double high, double low,
                       double close, double volume) noexcept nogil:
        macd_update(&self.s, close)

    cdef double output(self, int i) noexcept nogil:
        if i == 0:
            return self.s.macd
        if i == 1:
            return self.s.signal
        return self.s.histogram

    cdef void _reset(self) noexcept nogil:
        macd_reset(&self.s)


cdef class Stochastic(Indicator):
    """Stochastic oscillator (Lane) %K/%D, TA-Lib STOCH with SMA smoothing, O(1) per bar.

    Input per bar: high, low, close (quote currency). Outputs: slow `k` and
    `d` in [0, 100]; both NaN until `initialized`
    (k_period + k_slowing + d_period - 2 bars).

    Parameters
    ----------
    k_period : int
        Look-back for the highest high / lowest low (>= 1).
    k_slowing : int
        SMA period applied to fast %K (>= 1).
    d_period : int
        SMA period applied to slow %K (>= 1).

    Raises
    ------
    ValueError
        If a period < 1, or an input is NaN or infinite (state unchanged).

    Notes
    -----
    fast %K = 100 * (close - LL) / (HH - LL), 0 when HH == LL (as TA-Lib).
    The window extremes come from monotonic deques (amortized O(1)).
    Matches TA-Lib STOCH(slowk_matype=0, slowd_matype=0) to 1e-9 relative.
    """

    output_names = ("k", "d")
    cdef Stoch s

    def __cinit__(self, int k_period=14, int k_slowing=3, int d_period=3):
        check_period("k_period", k_period)
        check_period("k_slowing", k_slowing)
        check_period("d_period", d_period)
        stoch_init(&self.s, k_period, k_slowing, d_period)
        self.warmup_period = k_period + k_slowing + d_period - 2
        self.n_outputs = 2

    def __dealloc__(self):
        stoch_free(&self.s)

    @property
    def k(self):
        """Slow %K in [0, 100]; NaN during warm-up."""
        return self.s.k

    @property
    def d(self):
        """%D in [0, 100]; NaN during warm-up."""
        return self.s.d

    def update(self, double high, double low, double close):
        """Add one bar; read the outputs from `k` and `d`."""
        check_scalar("high", high)
        check_scalar("low", low)
        check_scalar("close", close)
        self.count += 1
        stoch_update(&self.s, high, low, close)

    def update_many(self, high, low, close, out=None):
        """Feed 1-D arrays of equal length; return (k, d) arrays (or fill the `out` pair)."""
        cdef const double[::1] h = np.ascontiguousarray(high, dtype=np.float64)
        cdef const double[::1] l = np.ascontiguousarray(low, dtype=np.float64)
        cdef const double[::1] c = np.ascontiguousarray(close, dtype=np.float64)
        cdef Py_ssize_t i, n = h.shape[0]
        check_same_length(n, ("high", "low", "close"), (h, l, c))
        check_finite("high", h)
        check_finite("low", l)
        check_finite("close", c)
        if out is not None and len(out) != 2:
            raise ValueError("out must be a (k, d) pair of arrays")
        cdef double[::1] ko = output_array(None if out is None else out[0], n, "k")
        cdef double[::1] do = output_array(None if out is None else out[1], n, "d")
        with nogil:
            for i in range(n):
                stoch_update(&self.s, h[i], l[i], c[i])
                ko[i] = self.s.k
                do[i] = self.s.d
        self.count += n
        return (np.asarray(ko), np.asarray(do)) if out is None else tuple(out)

    cdef void push_bar(self, double open, double high, double low,
                       double close, double volume) noexcept nogil:
        stoch_update(&self.s, high, low, close)

    cdef double output(self, int i) noexcept nogil:
        return self.s.k if i == 0 else self.s.d

    cdef void _reset(self) noexcept nogil:
        stoch_reset(&self.s)


def rsi(close, int period=14):
    """Batch RSI over a 1-D array: NaN for the first `period` values (TA-Lib alignment)."""
    return RSI(period).update_many(close)


def macd(close, int fast=12, int slow=26, int signal=9):
    """Batch MACD: (macd, signal, histogram) arrays, NaN for the first slow + signal - 2."""
    return MACD(fast, slow, signal).update_many(close)


def stochastic(high, low, close, int k_period=14, int k_slowing=3, int d_period=3):
    """Batch stochastic oscillator: (k, d) arrays, NaN for the first k_period + k_slowing + d_period - 3."""
    return Stochastic(k_period, k_slowing, d_period).update_many(high, low, close)
