"""`IndicatorBank`: the indicators one runner keeps, updated together once per bar.

The bank owns a flat float64 array holding every output of every indicator it
holds (NaN while an indicator warms up). The runner calls `push_bar` once per
closed bar at C level; the strategy layer hands the flat values to Lua as
plain numbers, so reading an indicator from a strategy never calls back into
Python.
"""

import numpy as np
from libc.math cimport NAN

from tradesim._core.indicator cimport Indicator
from tradesim._core.window cimport MarketDataWindow


cdef class IndicatorBank:
    """Indicators keyed by name (e.g. ``"ema:10"``), updated together per bar.

    Attributes
    ----------
    n_values : int
        Number of output slots in use (sum of every indicator's outputs).

    Notes
    -----
    Adding an indicator mid-run warms it from a window's stored bars (oldest
    first), so its value equals one that had watched those bars all along
    whenever the window holds at least its warm-up length.
    """

    def __cinit__(self, int capacity=64):
        self._indicators = []
        self._slots = {}
        self.capacity = max(capacity, 1)
        self._values_arr = np.full(self.capacity, NAN)
        cdef double[::1] mv = self._values_arr
        self.values = &mv[0]
        self.n_values = 0

    def __len__(self):
        return len(self._indicators)

    def __contains__(self, key):
        return key in self._slots

    def slot(self, key):
        """(first slot, number of outputs) of the indicator stored under `key`."""
        return self._slots[key]

    def indicator(self, key):
        """The indicator object stored under `key`."""
        return self._indicators[self._index_of(key)]

    def _index_of(self, key):
        first = self._slots[key][0]
        total = 0
        for i, ind in enumerate(self._indicators):
            if total == first:
                return i
            total += (<Indicator>ind).n_outputs
        raise KeyError(key)

    def keys(self):
        return list(self._slots)

    def add(self, key, Indicator indicator not None, MarketDataWindow warm_from=None):
        """Store `indicator` under `key` and return its first output slot.

        If `warm_from` is given, the indicator is first fed every bar the window
        holds, oldest first. Adding an existing key returns its slot unchanged.
        """
        if key in self._slots:
            return self._slots[key][0]
        cdef int n = indicator.n_outputs
        if self.n_values + n > self.capacity:
            self._grow(max(2 * self.capacity, self.n_values + n))
        if warm_from is not None and len(warm_from):
            for o, h, l, c, v in zip(warm_from.opens(), warm_from.highs(), warm_from.lows(),
                                     warm_from.closes(), warm_from.volumes()):
                indicator.push_bar(o, h, l, c, v)
                indicator.count += 1
        first = self.n_values
        self._indicators.append(indicator)
        self._slots[key] = (first, n)
        self.n_values += n
        for i in range(n):
            self.values[first + i] = indicator.output(i)
        return first

    def _grow(self, int capacity):
        arr = np.full(capacity, NAN)
        arr[:self.n_values] = self._values_arr[:self.n_values]
        self._values_arr = arr
        cdef double[::1] mv = arr
        self.values = &mv[0]
        self.capacity = capacity

    cdef void push_bar(self, double open, double high, double low,
                       double close, double volume) noexcept:
        cdef Indicator ind
        cdef int slot = 0, i
        for obj in self._indicators:
            ind = <Indicator>obj
            ind.push_bar(open, high, low, close, volume)
            ind.count += 1
            for i in range(ind.n_outputs):
                self.values[slot + i] = ind.output(i)
            slot += ind.n_outputs

    def update(self, double open, double high, double low, double close, double volume):
        """Feed one closed bar to every indicator (the Python entry to `push_bar`)."""
        self.push_bar(open, high, low, close, volume)

    def value(self, int slot):
        """Output `slot` (float; NaN while its indicator warms up)."""
        if slot < 0 or slot >= self.n_values:
            raise IndexError(f"slot {slot} out of range (0..{self.n_values - 1})")
        return self.values[slot]

    def values_view(self):
        """Read-only float64 view of the used output slots (updated in place by each bar)."""
        v = self._values_arr[:self.n_values].view()
        v.flags.writeable = False
        return v

    def as_dict(self):
        """{key: value or tuple of values} for every indicator (NaN while warming up)."""
        out = {}
        for key, (first, n) in self._slots.items():
            vals = tuple(self.values[first + i] for i in range(n))
            out[key] = vals[0] if n == 1 else vals
        return out
