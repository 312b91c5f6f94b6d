"""Common base of the incremental indicators and shared argument checks."""

import numpy as np
from libc.math cimport isfinite, NAN


cdef class Indicator:
    """Base of every incremental indicator (not instantiated directly).

    Attributes
    ----------
    warmup_period : int
        Number of inputs needed before the first value is available.
    n_outputs : int
        Number of output values (1 for SMA, 3 for MACD, ...).
    count : int
        Number of inputs accepted since construction or the last `reset`.
    """

    output_names = ()

    cdef void push_bar(self, double open, double high, double low,
                       double close, double volume) noexcept nogil:
        pass

    cdef double output(self, int i) noexcept nogil:
        return NAN

    cdef void _reset(self) noexcept nogil:
        pass

    @property
    def initialized(self):
        """True once the indicator has produced its first value."""
        return self.count >= self.warmup_period

    @property
    def values(self):
        """All outputs as a tuple of floats, in `output_names` order (NaN during warm-up)."""
        return tuple(self.output(i) for i in range(self.n_outputs))

    def reset(self):
        """Forget all inputs; the next `update` starts a fresh warm-up."""
        self._reset()
        self.count = 0

    def update_bar(self, double open, double high, double low, double close, double volume):
        """Feed one OHLCV bar (each indicator uses the fields it needs)."""
        check_scalar("open", open)
        check_scalar("high", high)
        check_scalar("low", low)
        check_scalar("close", close)
        check_scalar("volume", volume)
        self.push_bar(open, high, low, close, volume)
        self.count += 1

    def __repr__(self):
        state = "initialized" if self.initialized else f"warming up {self.count}/{self.warmup_period}"
        return f"<{self.__class__.__name__} {state} values={self.values}>"


cdef int check_finite(str name, const double[::1] values) except -1:
    cdef Py_ssize_t i, n = values.shape[0]
    cdef Py_ssize_t bad = -1
    with nogil:
        for i in range(n):
            if not isfinite(values[i]):
                bad = i
                break
    if bad >= 0:
        raise ValueError(f"{name}[{bad}] = {values[bad]!r}: indicator inputs must be finite; nothing was updated")
    return 0


cdef int check_scalar(str name, double value) except -1:
    if not isfinite(value):
        raise ValueError(f"{name} = {value!r}: indicator inputs must be finite; the indicator was not updated")
    return 0


cdef int check_same_length(Py_ssize_t n, tuple names, tuple arrays) except -1:
    for name, arr in zip(names, arrays):
        if len(arr) != n:
            raise ValueError(f"{name} has length {len(arr)}, expected {n} like {names[0]}")
    return 0


cdef double[::1] output_array(object out, Py_ssize_t n, str name):
    if out is None:
        return np.empty(n, dtype=np.float64)
    if not isinstance(out, np.ndarray) or out.dtype != np.float64 or out.ndim != 1 or not out.flags.c_contiguous:
        raise TypeError(f"out {name} must be a C-contiguous 1-D float64 numpy array")
    if out.shape[0] != n:
        raise ValueError(f"out {name} has length {out.shape[0]}, expected {n}")
    return out


cdef int check_period(str name, int period, int minimum=1) except -1:
    if period < minimum:
        raise ValueError(f"{name} = {period}: must be >= {minimum}")
    return 0
