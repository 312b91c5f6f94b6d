cdef class IndicatorBank:
    cdef list _indicators          # Indicator objects, in slot order
    cdef dict _slots               # key -> (first slot, n_outputs)
    cdef object _values_arr        # numpy float64 storage
    cdef double* values            # flat outputs of every indicator, NaN while warming up
    cdef readonly int n_values
    cdef int capacity

    cdef void push_bar(self, double open, double high, double low,
                       double close, double volume) noexcept
