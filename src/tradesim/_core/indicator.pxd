# Base class shared by every incremental indicator, so the runner's indicator
# bank can drive any of them through one C-level virtual call per bar.

cdef class Indicator:
    cdef readonly int warmup_period
    cdef readonly int n_outputs
    cdef readonly long long count

    # Feed one closed bar; each indicator takes the fields it needs.
    cdef void push_bar(self, double open, double high, double low,
                       double close, double volume) noexcept nogil
    # Output i (0-based, in the order of `output_names`); NaN during warm-up.
    cdef double output(self, int i) noexcept nogil
    cdef void _reset(self) noexcept nogil


cdef int check_finite(str name, const double[::1] values) except -1
cdef int check_scalar(str name, double value) except -1
cdef int check_same_length(Py_ssize_t n, tuple names, tuple arrays) except -1
cdef double[::1] output_array(object out, Py_ssize_t n, str name)
cdef int check_period(str name, int period, int minimum=*) except -1
