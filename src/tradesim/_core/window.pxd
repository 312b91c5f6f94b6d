from tradesim._core.market_data cimport MarketData

cdef class MarketDataWindow:
    cdef readonly Py_ssize_t capacity
    cdef readonly str symbol
    cdef Py_ssize_t size
    cdef Py_ssize_t head            # slot of the newest bar
    cdef long long last_ts
    cdef object _arrays             # numpy storage, 2 * capacity per column
    cdef object _readonly           # read-only views handed to callers
    cdef long long* ts
    cdef double* col[7]             # open, high, low, close, volume, bid, ask

    cdef int push_fast(self, long long timestamp, double open, double high, double low,
                       double close, double volume, double bid, double ask) except -1
    cdef _write_rows(self, const long long[::1] tv, const double[::1] o, const double[::1] hi,
                     const double[::1] lo, const double[::1] cl, const double[::1] vo,
                     const double[::1] bi, const double[::1] ak, Py_ssize_t start)
    cdef MarketData _bar_at(self, Py_ssize_t age)
    cdef Py_ssize_t _count(self, object period) except -1
    cpdef double high(self, int period) except? -1
    cpdef double low(self, int period) except? -1
    cpdef double range(self, int period) except? -1
    cpdef double avg_volume(self, int period) except? -1
    cdef double _extreme(self, int which, int period, bint is_max) except? -1
    cdef inline Py_ssize_t start_of_last(self, Py_ssize_t n) noexcept nogil:
        # Mirrored ring: the last n bars are contiguous at [head + cap - n + 1, head + cap].
        return self.head + self.capacity - n + 1
