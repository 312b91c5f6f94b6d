# The strategy's key/value store (see context.pyx). `_data` is visible to
# cimporting modules so the state machine can clear it without a Python call.
cdef class Context:
    cdef dict _data
