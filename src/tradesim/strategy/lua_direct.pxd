from tradesim.strategy.decision cimport Decoded


cdef class LuaDirect:
    cdef void* L                   # lua_State* of the runtime's main thread
    cdef int fn_ref                # registry reference of the called function
    cdef int stash_ref             # registry reference of the stash table
    cdef object _runtime           # keeps the Lua state open
    cdef object _lock              # lupa's runtime lock
    cdef object _acquire
    cdef object _release
    cdef object _replay            # lupa handle of the replay closure
    cdef readonly object lua       # the function itself, as a lupa object
    cdef bint _decode              # lupa decodes Lua strings as UTF-8: decisions can be read in C
    cdef list _texts               # recent reason strs, newest first (reused when equal)

    cdef int lock(self) except -1
    cdef int unlock(self) except -1
    cdef object call_bar(self, long long state, long long ts, double o, double h, double l,
                         double c, double v, double bid, double ask, const double* values,
                         int n_values, bint locked, Decoded decided=*)
