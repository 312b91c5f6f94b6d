"""`IndicatorSet`: SMA, EMA, RSI, MACD and Bollinger Bands fused into one update.

One Python call per tick updates all five kernels; the batch form computes all
of them in a single pass over the input.
"""

cimport cython
import numpy as np
from libc.math cimport isfinite

from tradesim._core.indicator cimport check_period, check_finite, check_scalar, output_array
from tradesim._core.kernels cimport (
    Sma, sma_init, sma_free, sma_reset, sma_update,
    Ema, ema_init, ema_reset, ema_update,
    Rsi, rsi_init, rsi_reset, rsi_update,
    Macd, macd_init, macd_reset, macd_update,
    Bollinger, bb_init, bb_free, bb_reset, bb_update)

OUTPUT_NAMES = ("sma", "ema", "rsi", "macd", "macd_signal", "macd_histogram",
                "bb_upper", "bb_middle", "bb_lower")


cdef class IndicatorSet:
    """The five classic close-price indicators updated together in O(1) per tick.

    Input: one close per `update` (float, quote currency). Outputs (floats,
    NaN during each one's warm-up): `sma`, `ema`, `rsi`, `macd`,
    `macd_signal`, `macd_histogram`, `bb_upper`, `bb_middle`, `bb_lower`.
    Each output equals the corresponding standalone indicator's.

    Parameters
    ----------
    sma, ema, rsi : int
        Periods (rsi >= 2, others >= 1).
    macd : tuple of int
        (fast, slow, signal) periods.
    bollinger : tuple
        (period, k): window length and band width in standard deviations.

    Raises
    ------
    ValueError
        For invalid periods, or a NaN/inf input (state unchanged).
    """

    cdef Sma s_sma
    cdef Ema s_ema
    cdef Rsi s_rsi
    cdef Macd s_macd
    cdef Bollinger s_bb
    cdef readonly long long count
    cdef readonly int warmup_period

    def __cinit__(self, int sma=20, int ema=20, int rsi=14, macd=(12, 26, 9), bollinger=(20, 2.0)):
        cdef int fast, slow, signal, bb_period
        cdef double bb_k
        fast, slow, signal = macd
        bb_period, bb_k = bollinger
        for name, p in (("sma", sma), ("ema", ema), ("macd fast", fast), ("macd slow", slow),
                        ("macd signal", signal), ("bollinger period", bb_period)):
            check_period(name, p)
        check_period("rsi", rsi, 2)
        if not isfinite(bb_k) or bb_k < 0:
            raise ValueError(f"bollinger k = {bb_k!r}: must be finite and >= 0")
        sma_init(&self.s_sma, sma)
        ema_init(&self.s_ema, ema)
        rsi_init(&self.s_rsi, rsi)
        macd_init(&self.s_macd, fast, slow, signal)
        bb_init(&self.s_bb, bb_period, bb_k)
        self.warmup_period = max(sma, ema, rsi + 1, max(fast, slow) + signal - 1, bb_period)

    def __dealloc__(self):
        sma_free(&self.s_sma)
        bb_free(&self.s_bb)

    cdef inline void _update(self, double x) noexcept nogil:
        sma_update(&self.s_sma, x)
        ema_update(&self.s_ema, x)
        rsi_update(&self.s_rsi, x)
        macd_update(&self.s_macd, x)
        bb_update(&self.s_bb, x)

    @cython.always_allow_keywords(False)
    def update(self, double x):
        """Feed one close to all five indicators (read the outputs as attributes)."""
        if not isfinite(x):
            check_scalar("x", x)
        self.count += 1
        self._update(x)

    def update_many(self, x, out=None):
        """Feed a 1-D array; return a dict of output name -> float64 array (one pass).

        `out`, if given, is a dict with the same keys whose values are
        preallocated C-contiguous float64 arrays of len(x); it is filled and
        returned (saves allocating and page-faulting nine arrays per call).
        """
        cdef const double[::1] xs = np.ascontiguousarray(x, dtype=np.float64)
        check_finite("x", xs)
        cdef Py_ssize_t i, n = xs.shape[0]
        if out is None:
            out = {name: np.empty(n) for name in OUTPUT_NAMES}
        else:
            for name in OUTPUT_NAMES:
                output_array(out[name], n, name)
        cdef double[::1] o_sma = out["sma"], o_ema = out["ema"], o_rsi = out["rsi"]
        cdef double[::1] o_m = out["macd"], o_s = out["macd_signal"], o_h = out["macd_histogram"]
        cdef double[::1] o_u = out["bb_upper"], o_mid = out["bb_middle"], o_l = out["bb_lower"]
        # Work on local copies of the state: the compiler can keep locals in
        # registers, while fields of `self` must be reloaded after every
        # output store (they might alias). Worth ~2x on this loop.
        cdef Sma s_sma = self.s_sma
        cdef Ema s_ema = self.s_ema
        cdef Rsi s_rsi = self.s_rsi
        cdef Macd s_macd = self.s_macd
        cdef Bollinger s_bb = self.s_bb
        with nogil:
            for i in range(n):
                o_sma[i] = sma_update(&s_sma, xs[i])
                o_ema[i] = ema_update(&s_ema, xs[i])
                o_rsi[i] = rsi_update(&s_rsi, xs[i])
                macd_update(&s_macd, xs[i])
                o_m[i] = s_macd.macd
                o_s[i] = s_macd.signal
                o_h[i] = s_macd.histogram
                bb_update(&s_bb, xs[i])
                o_u[i] = s_bb.upper
                o_mid[i] = s_bb.middle
                o_l[i] = s_bb.lower
        self.s_sma = s_sma
        self.s_ema = s_ema
        self.s_rsi = s_rsi
        self.s_macd = s_macd
        self.s_bb = s_bb
        self.count += n
        return out

    def reset(self):
        """Forget all inputs."""
        sma_reset(&self.s_sma)
        ema_reset(&self.s_ema)
        rsi_reset(&self.s_rsi)
        macd_reset(&self.s_macd)
        bb_reset(&self.s_bb)
        self.count = 0

    @property
    def initialized(self):
        """True once every one of the five has produced a value."""
        return self.count >= self.warmup_period

    @property
    def sma(self):
        return self.s_sma.value

    @property
    def ema(self):
        return self.s_ema.value

    @property
    def rsi(self):
        return self.s_rsi.value

    @property
    def macd(self):
        return self.s_macd.macd

    @property
    def macd_signal(self):
        return self.s_macd.signal

    @property
    def macd_histogram(self):
        return self.s_macd.histogram

    @property
    def bb_upper(self):
        return self.s_bb.upper

    @property
    def bb_middle(self):
        return self.s_bb.middle

    @property
    def bb_lower(self):
        return self.s_bb.lower

    def as_dict(self):
        """Current outputs as {name: float}."""
        return {name: getattr(self, name) for name in OUTPUT_NAMES}


def compute_all(close, int sma=20, int ema=20, int rsi=14, macd=(12, 26, 9), bollinger=(20, 2.0)):
    """Batch form of `IndicatorSet`: all five over a 1-D array in one pass -> dict of arrays."""
    return IndicatorSet(sma, ema, rsi, macd, bollinger).update_many(close)
