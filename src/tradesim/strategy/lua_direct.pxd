# A common decision of the per-bar dispatcher, read in C (see `LuaDirect.call_bar`).
cdef struct Decision:
    bint decoded            # set by call_bar: the fields below are valid
    bint started            # an analysis started (reason: LuaDirect.start_reason)
    int action              # 0 none, 1 enter_long, 2 enter_short, 3 exit (reason: LuaDirect.reason)
    double quantity         # NaN when nil
    double stop_loss
    double take_profit


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
    cdef bint _decode              # lupa decodes Lua strings as UTF-8: Decision can be used
    cdef list _texts               # recent reason strs, newest first (reused when equal)
    cdef readonly str start_reason # of the last Decision
    cdef readonly str reason

    cdef int lock(self) except -1
    cdef int unlock(self) except -1
    cdef object call_bar(self, long long state, long long ts, double o, double h, double l,
                         double c, double v, double bid, double ask, const double* values,
                         int n_values, bint locked, Decision* decided=*)

