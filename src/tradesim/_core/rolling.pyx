"""Rolling window statistics as incremental indicators: highest high, lowest low,
average volume and high-low range over the last `period` bars.

They answer the same questions as `MarketDataWindow.high/low/avg_volume/range`
in O(1) per bar, so a strategy can ask for them on every bar without a scan or
a call back into Python.
"""

from tradesim._core.indicator cimport Indicator, check_period, check_scalar
from tradesim._core.kernels cimport (
    MonoDeque, mono_init, mono_free, mono_push, Sma, sma_init, sma_free, sma_reset, sma_update)
from libc.math cimport NAN


cdef class _Extremes(Indicator):
    # Highest high and lowest low of the last `period` bars (monotonic deques).
    cdef MonoDeque highs
    cdef MonoDeque lows
    cdef int period
    cdef double hh
    cdef double ll

    def __cinit__(self, int period):
        check_period("period", period)
        self.period = period
        mono_init(&self.highs, period)
        mono_init(&self.lows, period)
        self.warmup_period = period
        self.n_outputs = 1
        self._reset()

    def __dealloc__(self):
        mono_free(&self.highs)
        mono_free(&self.lows)

    cdef void push_bar(self, double open, double high, double low,
                       double close, double volume) noexcept nogil:
        # `count` is maintained by the caller (update / IndicatorBank).
        self.hh = mono_push(&self.highs, self.count, high, True)
        self.ll = mono_push(&self.lows, self.count, low, False)

    cdef void _reset(self) noexcept nogil:
        self.highs.head = 0
        self.highs.size = 0
        self.lows.head = 0
        self.lows.size = 0
        self.hh = NAN
        self.ll = NAN

    @property
    def period(self):
        return self.period

    def update(self, double high, double low):
        """Add one bar's high and low (quote currency); return the new value (NaN while warming up)."""
        check_scalar("high", high)
        check_scalar("low", low)
        self.push_bar(NAN, high, low, NAN, 0.0)
        self.count += 1
        return self.output(0)

    @property
    def value(self):
        return self.output(0)


cdef class Highest(_Extremes):
    """Highest high of the last `period` bars (quote currency); NaN until `period` bars."""

    output_names = ("high",)

    cdef double output(self, int i) noexcept nogil:
        return self.hh if self.count >= self.period else NAN


cdef class Lowest(_Extremes):
    """Lowest low of the last `period` bars (quote currency); NaN until `period` bars."""

    output_names = ("low",)

    cdef double output(self, int i) noexcept nogil:
        return self.ll if self.count >= self.period else NAN


cdef class PriceRange(_Extremes):
    """Highest high minus lowest low of the last `period` bars (quote currency); NaN until `period` bars."""

    output_names = ("range",)

    cdef double output(self, int i) noexcept nogil:
        return self.hh - self.ll if self.count >= self.period else NAN


cdef class AverageVolume(Indicator):
    """Mean volume of the last `period` bars (base units); NaN until `period` bars."""

    output_names = ("avg_volume",)
    cdef Sma s

    def __cinit__(self, int period):
        check_period("period", period)
        sma_init(&self.s, period)
        self.warmup_period = period
        self.n_outputs = 1

    def __dealloc__(self):
        sma_free(&self.s)

    cdef void push_bar(self, double open, double high, double low,
                       double close, double volume) noexcept nogil:
        sma_update(&self.s, volume)

    cdef double output(self, int i) noexcept nogil:
        return self.s.value

    cdef void _reset(self) noexcept nogil:
        sma_reset(&self.s)

    @property
    def period(self):
        return self.s.period

    def update(self, double volume):
        """Add one bar's volume (base units, >= 0); return the new mean (NaN while warming up)."""
        check_scalar("volume", volume)
        if volume < 0:
            raise ValueError(f"volume = {volume!r}: must be >= 0; the indicator was not updated")
        self.push_bar(NAN, NAN, NAN, NAN, volume)
        self.count += 1
        return self.s.value

    @property
    def value(self):
        return self.s.value
