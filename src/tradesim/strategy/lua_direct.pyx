"""`LuaDirect`: call one host Lua function of a sandbox through the Lua C API.

Why: a call through lupa spends ~200 ns in Python-level work around Lua (the
argument tuple, a type dispatch per argument, locking, result unpacking). The
per-bar dispatcher takes only numbers and usually returns nothing, so
`RunnerCore` pushes the numbers from C and runs it with ``lua_pcall`` on
lupa's own Lua state, through the C API that lupa's bundled Lua exports.

Results: the dispatcher's valid decisions (an analysis started, a valid
action, or both) are read off the Lua stack in C into a `Decoded`, with the
rules of `tradesim.strategy.decision` and no Python object but the reason
strings (reused when a strategy repeats them). On a live feed these are the
slow bars; reading them here halves their cost when caches are cold.

Exactness: any other result, or an error, is moved into a preallocated stash
table and handed to Python through lupa after all: a small C closure, called
via lupa, returns the stashed values or raises the stashed error value.
Python therefore receives exactly what a lupa call of the function would have
produced (value conversions, `LuaError` messages, Python exceptions re-raised
from callbacks); the C reading accepts only what that path would carry out
the same way (a test runs both on every shape of result). Only a memory
error, which carries no value, is raised here, the way lupa raises it:
``LuaMemoryError()``.

Locking: like a lupa call, a call holds lupa's runtime lock and releases the
GIL while Lua runs.
"""

import gc

cimport cython
from libc.math cimport NAN
from libc.string cimport memcmp

from tradesim.strategy.decision cimport (
    ACTION_LENGTH, AT_ACTION, AT_AMOUNTS, AT_REASON, CHECK_OK, N_AMOUNTS, Decoded, ResultCode,
    action_named, check_amounts)

cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size) except NULL

from lupa import lua54

cdef extern from *:
    """
    #include <dlfcn.h>
    #include <math.h>
    #include <stdint.h>
    #include <string.h>

    typedef struct lua_State lua_State;
    typedef int (*ts_CFunction)(lua_State *L);
    typedef void (*ts_Hook)(lua_State *L, void *ar);

    /* Constants of a default Lua 5.4 build (luaconf.h: LUAI_MAXSTACK = 1000000). */
    #define TS_REGISTRY (-1000000 - 1000)
    #define TS_UPVALUE1 (TS_REGISTRY - 1)
    #define TS_MULTRET (-1)
    #define TS_ERRMEM 4
    #define TS_TNIL 0
    #define TS_TBOOLEAN 1
    #define TS_TNUMBER 3
    #define TS_TSTRING 4
    #define TS_TTABLE 5
    #define TS_TFUNCTION 6
    #define TS_RIDX_MAINTHREAD 1
    /* Most values a call can hand back (api.lua's on_bar returns at most 10). */
    #define TS_STASH 64
    /* Host global used once per LuaDirect to pass functions between lupa and C. */
    #define TS_KEY "__tradesim_lua_direct"

    typedef struct {
        int (*gettop)(lua_State *);
        void (*settop)(lua_State *, int);
        int (*checkstack)(lua_State *, int);
        int (*rawgeti)(lua_State *, int, long long);
        void (*rawseti)(lua_State *, int, long long);
        void (*pushinteger)(lua_State *, long long);
        void (*pushnumber)(lua_State *, double);
        void (*pushnil)(lua_State *);
        void (*pushvalue)(lua_State *, int);
        void (*pushcclosure)(lua_State *, ts_CFunction, int);
        int (*pcallk)(lua_State *, int, int, int, intptr_t, void *);
        int (*getglobal)(lua_State *, const char *);
        void (*setglobal)(lua_State *, const char *);
        void (*createtable)(lua_State *, int, int);
        int (*error)(lua_State *);
        lua_State *(*tothread)(lua_State *, int);
        long long (*tointegerx)(lua_State *, int, int *);
        int (*ref)(lua_State *, int);
        void (*unref)(lua_State *, int, int);
        void (*checkstack_or_raise)(lua_State *, int, const char *);
        double (*version)(lua_State *);
        int (*type)(lua_State *, int);
        const char *(*tolstring)(lua_State *, int, size_t *);
        double (*tonumberx)(lua_State *, int, int *);
        int (*isinteger)(lua_State *, int);
        int (*toboolean)(lua_State *, int);
        int (*next)(lua_State *, int);
    } ts_lua_api;

    static ts_lua_api ts_lua;

    #define TS_SYM(field, name) \
        if (!(*(void **)(&ts_lua.field) = dlsym(handle, name))) return name;

    /* Resolve the C API in the already loaded library `path`: NULL, or what is missing. */
    static const char *ts_lua_load(const char *path) {
        void *handle = dlopen(path, RTLD_NOW | RTLD_NOLOAD);
        if (!handle) return "the library itself";
        TS_SYM(gettop, "lua_gettop") TS_SYM(settop, "lua_settop")
        TS_SYM(checkstack, "lua_checkstack") TS_SYM(rawgeti, "lua_rawgeti")
        TS_SYM(rawseti, "lua_rawseti") TS_SYM(pushinteger, "lua_pushinteger")
        TS_SYM(pushnumber, "lua_pushnumber") TS_SYM(pushnil, "lua_pushnil")
        TS_SYM(pushvalue, "lua_pushvalue") TS_SYM(pushcclosure, "lua_pushcclosure")
        TS_SYM(pcallk, "lua_pcallk") TS_SYM(getglobal, "lua_getglobal")
        TS_SYM(setglobal, "lua_setglobal") TS_SYM(createtable, "lua_createtable")
        TS_SYM(error, "lua_error") TS_SYM(tothread, "lua_tothread")
        TS_SYM(tointegerx, "lua_tointegerx") TS_SYM(ref, "luaL_ref")
        TS_SYM(unref, "luaL_unref") TS_SYM(version, "lua_version")
        TS_SYM(checkstack_or_raise, "luaL_checkstack")
        TS_SYM(type, "lua_type") TS_SYM(tolstring, "lua_tolstring")
        TS_SYM(tonumberx, "lua_tonumberx") TS_SYM(isinteger, "lua_isinteger")
        TS_SYM(toboolean, "lua_toboolean") TS_SYM(next, "lua_next")
        return NULL;  /* the handle stays open: lupa never unloads */
    }

    /* Called through lupa (a closure over the stash table): returns what a direct call
       left, stash[1] = n >= 0 values in stash[2 .. n+1], or raises the error value in
       stash[2] when stash[1] = -1. Clears the stash so it keeps nothing alive. */
    static int ts_replay(lua_State *L) {
        int i, n;
        ts_lua.rawgeti(L, TS_UPVALUE1, 1);
        n = (int)ts_lua.tointegerx(L, -1, NULL);
        ts_lua.settop(L, 0);
        ts_lua.pushinteger(L, 0);
        ts_lua.rawseti(L, TS_UPVALUE1, 1);
        if (n < 0) {
            ts_lua.rawgeti(L, TS_UPVALUE1, 2);
            ts_lua.pushnil(L);
            ts_lua.rawseti(L, TS_UPVALUE1, 2);
            return ts_lua.error(L);
        }
        ts_lua.checkstack_or_raise(L, n + 1, "too many results");
        for (i = 2; i <= n + 1; i++) {
            ts_lua.rawgeti(L, TS_UPVALUE1, i);
            ts_lua.pushnil(L);
            ts_lua.rawseti(L, TS_UPVALUE1, i);
        }
        return n;
    }

    /* Run under lua_pcall, since it allocates: references the function found in the
       global TS_KEY, creates the stash (its array preallocated, so that filling it
       later never allocates) and leaves the replay closure in TS_KEY for Python.
       Returns fn_ref, stash_ref (-1, -1 if TS_KEY held no function). */
    static int ts_setup(lua_State *L) {
        int fn_ref, stash_ref;
        if (ts_lua.getglobal(L, TS_KEY) != TS_TFUNCTION) {
            ts_lua.pushinteger(L, -1);
            ts_lua.pushinteger(L, -1);
            return 2;
        }
        fn_ref = ts_lua.ref(L, TS_REGISTRY);
        ts_lua.createtable(L, TS_STASH + 1, 0);
        ts_lua.pushvalue(L, -1);
        stash_ref = ts_lua.ref(L, TS_REGISTRY);
        ts_lua.pushcclosure(L, ts_replay, 1);
        ts_lua.setglobal(L, TS_KEY);
        ts_lua.pushinteger(L, fn_ref);
        ts_lua.pushinteger(L, stash_ref);
        return 2;
    }

    /* Moves the results base+1 .. top (nres of them, or one error value if nres = -1)
       into the stash; never allocates. Returns nres, -2 (no stack space: out of memory)
       or -3 (more results than the stash holds). The stack is back at `base`. */
    static int ts_stash(lua_State *L, int base, int stash_ref, int nres) {
        int i, count = nres < 0 ? 1 : nres;
        if (count > TS_STASH) { ts_lua.settop(L, base); return -3; }
        if (!ts_lua.checkstack(L, 2)) { ts_lua.settop(L, base); return -2; }
        ts_lua.rawgeti(L, TS_REGISTRY, stash_ref);
        for (i = 1; i <= count; i++) {
            ts_lua.pushvalue(L, base + i);
            ts_lua.rawseti(L, -2, i + 1);
        }
        ts_lua.pushinteger(L, nres);
        ts_lua.rawseti(L, -2, 1);
        ts_lua.settop(L, base);
        return nres;
    }

    /* registry[fn_ref](state, ts, o, h, l, c, v, bid, ask, values...) in protected mode.
       Returns 0 (no results), n > 0 (n results left on the stack above *base), -1 (the
       error value left there) or -2 (out of memory; nothing left). With 0 or -2 the
       stack is as found; otherwise the caller decodes or stashes what is left. */
    static int ts_call_bar(lua_State *L, int fn_ref, long long state,
                           long long ts, double o, double h, double l, double c, double v,
                           double bid, double ask, const double *values, int n, int *base) {
        int i, status, nres;
        *base = ts_lua.gettop(L);
        if (!ts_lua.checkstack(L, 10 + n)) return -2;
        ts_lua.rawgeti(L, TS_REGISTRY, fn_ref);
        ts_lua.pushinteger(L, state);
        ts_lua.pushinteger(L, ts);
        ts_lua.pushnumber(L, o);
        ts_lua.pushnumber(L, h);
        ts_lua.pushnumber(L, l);
        ts_lua.pushnumber(L, c);
        ts_lua.pushnumber(L, v);
        ts_lua.pushnumber(L, bid);
        ts_lua.pushnumber(L, ask);
        for (i = 0; i < n; i++) ts_lua.pushnumber(L, values[i]);
        status = ts_lua.pcallk(L, 9 + n, TS_MULTRET, 0, 0, NULL);
        if (status == TS_ERRMEM) { ts_lua.settop(L, *base); return -2; }
        nres = status ? -1 : ts_lua.gettop(L) - *base;
        return nres;
    }

    /* registry[fn_ref]() in protected mode: as ts_call_bar, without arguments. */
    static int ts_call0(lua_State *L, int fn_ref, int *base) {
        int status;
        *base = ts_lua.gettop(L);
        if (!ts_lua.checkstack(L, 1)) return -2;
        ts_lua.rawgeti(L, TS_REGISTRY, fn_ref);
        status = ts_lua.pcallk(L, 0, TS_MULTRET, 0, 0, NULL);
        if (status == TS_ERRMEM) { ts_lua.settop(L, *base); return -2; }
        return status ? -1 : ts_lua.gettop(L) - *base;
    }

    /* Checks that L is a live main thread (its registry knows it as such) and runs
       ts_setup. Returns 0 and the two references, or -1 (wrong state) / the pcall status. */
    static int ts_attach(lua_State *L, int *fn_ref, int *stash_ref) {
        int base = ts_lua.gettop(L), status;
        lua_State *main;
        if (!ts_lua.checkstack(L, 3)) return -1;
        ts_lua.rawgeti(L, TS_REGISTRY, TS_RIDX_MAINTHREAD);
        main = ts_lua.tothread(L, -1);
        ts_lua.settop(L, base);
        if (main != L) return -1;
        ts_lua.pushcclosure(L, ts_setup, 0);
        status = ts_lua.pcallk(L, 0, 2, 0, 0, NULL);
        if (status == 0) {
            *fn_ref = (int)ts_lua.tointegerx(L, -2, NULL);
            *stash_ref = (int)ts_lua.tointegerx(L, -1, NULL);
        }
        ts_lua.settop(L, base);
        return status;
    }

    static void ts_detach(lua_State *L, int fn_ref, int stash_ref) {
        ts_lua.unref(L, TS_REGISTRY, fn_ref);
        ts_lua.unref(L, TS_REGISTRY, stash_ref);
    }
    """
    ctypedef struct lua_State:
        pass
    const char* TS_KEY
    int TS_STASH
    const char* ts_lua_load(const char* path)
    double ts_lua_version "ts_lua.version"(lua_State* L)
    int ts_call_bar(lua_State* L, int fn_ref, long long state, long long ts,
                    double o, double h, double l, double c, double v, double bid, double ask,
                    const double* values, int n, int* base) nogil
    int ts_call0(lua_State* L, int fn_ref, int* base) nogil
    int ts_stash(lua_State* L, int base, int stash_ref, int nres) nogil
    void ts_settop "ts_lua.settop"(lua_State* L, int idx) nogil
    int ts_type "ts_lua.type"(lua_State* L, int idx)
    const char* ts_tolstring "ts_lua.tolstring"(lua_State* L, int idx, size_t* length)
    double ts_tonumber "ts_lua.tonumberx"(lua_State* L, int idx, int* isnum)
    int ts_isinteger "ts_lua.isinteger"(lua_State* L, int idx)
    long long ts_tointeger "ts_lua.tointegerx"(lua_State* L, int idx, int* isnum)
    int ts_toboolean "ts_lua.toboolean"(lua_State* L, int idx)
    int ts_next "ts_lua.next"(lua_State* L, int idx)
    void ts_pushnil "ts_lua.pushnil"(lua_State* L)
    int ts_checkstack "ts_lua.checkstack"(lua_State* L, int n)
    int TS_TNIL, TS_TBOOLEAN, TS_TNUMBER, TS_TSTRING, TS_TTABLE
    int ts_attach(lua_State* L, int* fn_ref, int* stash_ref)
    void ts_detach(lua_State* L, int fn_ref, int stash_ref)


# Reason strs kept for reuse per LuaDirect (see `_text`).
cdef Py_ssize_t _TEXTS = 8


class DirectCallUnavailable(RuntimeError):
    """This lupa build does not allow direct calls (the caller then uses lupa's own call)."""


cdef bint _api_loaded = False


cdef _load_api():
    global _api_loaded
    if _api_loaded:
        return
    missing = ts_lua_load(lua54.__file__.encode())
    if missing is not NULL:
        raise DirectCallUnavailable(f"lupa.lua54 does not export the Lua C API ({missing.decode()})")
    # lua_Integer must be a 64-bit long long, as declared above.
    if ts_lua_version(NULL) != 504 or lua54.LUA_MAXINTEGER != 2 ** 63 - 1:
        raise DirectCallUnavailable("lupa.lua54 is not a default 64-bit Lua 5.4 build")
    _api_loaded = True


def _runtime_lock(runtime):
    # lupa keeps its FastRLock in a C field of LuaRuntime; the GC protocol exposes it.
    found = [x for x in gc.get_referents(runtime)
             if type(x).__name__ == "FastRLock" and type(x).__module__ == lua54.__name__]
    if len(found) != 1:
        raise DirectCallUnavailable("cannot find lupa's runtime lock")
    return found[0]


@cython.no_gc_clear
cdef class LuaDirect:
    """A host Lua function of a sandbox, callable from C with numbers.

    Parameters
    ----------
    runtime : lupa.lua54.LuaRuntime
        The sandbox's runtime.
    lua_function : lupa function
        The function, from that runtime (the guarded per-bar dispatcher).
    eval_host : callable
        ``eval_host(src, *args)`` runs host Lua in the runtime and returns its
        results unconverted (`LuaSandbox.eval_host`).

    Raises
    ------
    DirectCallUnavailable
        lupa's Lua does not export its C API, is not a default Lua 5.4 build,
        or its lock or main thread cannot be found.

    Notes
    -----
    Calling the object from Python (``d(*args)``) calls ``lua`` through lupa,
    with lupa's conversions of the Python arguments. The direct path is for
    Cython (`call_bar`) and :meth:`call`.
    """

    def __cinit__(self):
        self.fn_ref = -1
        self.stash_ref = -1
        self._texts = []

    def __init__(self, runtime, lua_function, eval_host):
        cdef int fn_ref = -1, stash_ref = -1, status
        _load_api()
        lock = _runtime_lock(runtime)
        # tostring of a thread is its lua_State address (lua_topointer; "%p").
        text, is_main = eval_host("return tostring((coroutine.running())), "
                                  "select(2, coroutine.running())")
        if is_main is not True or not isinstance(text, str) or not text.startswith("thread: "):
            raise DirectCallUnavailable(f"cannot find the Lua main thread ({text!r})")
        try:
            address = int(text[len("thread: "):], 16)
        except ValueError:
            raise DirectCallUnavailable(f"cannot parse the Lua main thread address ({text!r})") from None
        key = TS_KEY.decode()
        eval_host(f"local H, f = ...; rawset(_G, '{key}', f)", lua_function)
        lock.acquire()
        try:
            status = ts_attach(<lua_State*><size_t>address, &fn_ref, &stash_ref)
        finally:
            lock.release()
        if status != 0 or fn_ref < 0:
            eval_host(f"rawset(_G, '{key}', nil)")
            if status == 4:
                raise lua54.LuaMemoryError()
            raise DirectCallUnavailable(f"cannot attach to the Lua state (status {status})")
        self.L = <void*><size_t>address
        self.fn_ref = fn_ref
        self.stash_ref = stash_ref
        self._runtime = runtime
        self._lock = lock
        self._acquire = lock.acquire
        self._release = lock.release
        self.lua = lua_function
        # Results are read in C only if lupa hands Lua strings over as UTF-8 str.
        self._decode = eval_host("return '\\195\\169'") == "\u00e9"
        self._replay = eval_host(f"local f = rawget(_G, '{key}'); rawset(_G, '{key}', nil); return f")

    def __dealloc__(self):
        # As lupa does for its own references: release them only if the lock is free now.
        if self.L is NULL or self.fn_ref < 0 or self._lock is None:
            return
        try:
            if self._lock.acquire(False):
                try:
                    ts_detach(<lua_State*>self.L, self.fn_ref, self.stash_ref)
                finally:
                    self._lock.release()
        except Exception:
            pass

    cdef int lock(self) except -1:
        """Take lupa's runtime lock (reentrant), e.g. once around a batch of `call_bar`."""
        self._acquire()
        return 0

    cdef int unlock(self) except -1:
        self._release()
        return 0

    cdef object call_bar(self, long long state, long long ts, double o, double h, double l,
                         double c, double v, double bid, double ask, const double* values,
                         int n_values, bint locked, Decoded decided=None):
        """Call the function with these numbers; None if it returned nothing.

        Otherwise returns or raises whatever a lupa call would have (see the
        module docstring). `locked`: the caller holds the lock (`lock`).

        With `decided` given, a valid decision of api.lua's ``on_bar`` (see
        `tradesim.strategy.decision`) is read in C instead: `decided` is
        filled (``decided.ready`` set) and None returned. Any other result
        takes the lupa path.
        """
        cdef int r, base = 0
        cdef lua_State* L = <lua_State*>self.L
        if not locked:
            self._acquire()
        try:
            with nogil:
                r = ts_call_bar(L, self.fn_ref, state, ts, o, h, l, c, v, bid, ask, values,
                                n_values, &base)
            if r == 0:
                return None
            if r == -2:
                raise lua54.LuaMemoryError()
            if r > 0 and decided is not None and self._decode:
                try:
                    if _read_decision(self, L, base, r, decided):
                        ts_settop(L, base)
                        return None
                except BaseException:   # (no memory for a str) the results go too
                    ts_settop(L, base)
                    raise
            r = ts_stash(L, base, self.stash_ref, r)   # (leaves the stack at base)
            if r == -2:
                raise lua54.LuaMemoryError()
            if r == -3:
                raise lua54.LuaError(f"a host function returned more than {TS_STASH} values")
            return self._replay()
        finally:
            if not locked:
                self._release()

    def call(self, long long state, long long ts, double o, double h, double l, double c,
             double v, double bid, double ask, *values):
        """`call_bar` from Python: the dispatcher's arguments, converted to C numbers.

        `state` and `ts` are passed to Lua as integers, everything else as
        floats (at most 64 `values`), as `RunnerCore` passes them.
        """
        cdef double buf[64]
        cdef Py_ssize_t i, n = len(values)
        if n > 64:
            raise ValueError(f"at most 64 values, got {n}")
        for i in range(n):
            buf[i] = values[i]
        return self.call_bar(state, ts, o, h, l, c, v, bid, ask, buf, <int>n, False)

    def scalar_entries(self):
        """Call the function (no arguments), which returns a table: its entries with a string key
        and a number, string or boolean value, as a dict sorted by key, read in C with raw
        access (api.lua's ``context_table``: the strategy's context, as ``context_snapshot``
        gives it). None, handing nothing over, when the function returns anything else or an
        entry's string is not UTF-8: the caller then takes lupa's path.

        Raises
        ------
        Exception
            Whatever a lupa call of the function raises (pass it to `translate_error`).
        """
        cdef int r, base = 0
        cdef lua_State* L = <lua_State*>self.L
        self._acquire()
        try:
            with nogil:
                r = ts_call0(L, self.fn_ref, &base)
            if r == -2:
                raise lua54.LuaMemoryError()
            if r == -1:
                r = ts_stash(L, base, self.stash_ref, r)   # the error value (leaves the stack at base)
                if r == -2:
                    raise lua54.LuaMemoryError()
                return self._replay()
            try:
                if r != 1 or not self._decode or ts_type(L, base + 1) != TS_TTABLE:
                    return None
                return _scalar_entries(self, L, base + 1)
            finally:
                ts_settop(L, base)
        finally:
            self._release()

    def __call__(self, *args):
        return self.lua(*args)


cdef inline long long _code(lua_State* L, int i):
    # A result code: the Lua integer at i, or -1.
    return ts_tointeger(L, i, NULL) if ts_isinteger(L, i) else -1


cdef bint _read_decision(LuaDirect self, lua_State* L, int base, int nres,
                         Decoded out) except -1:
    # The results base+1 .. base+nres as a valid decision, by the protocol's rules
    # (decision.pxd), into `out`; False, with `out` not ready, for any other shape
    # (it goes through the stash and lupa unchanged, and `decode_result` reports it).
    cdef long long code = _code(L, base + 1)
    cdef int at, i, t, action = -1, field, other
    cdef double amounts[N_AMOUNTS]
    cdef bint given[N_AMOUNTS]
    cdef const char* p
    cdef size_t n
    if code == ResultCode.STARTED:
        at = 0
    elif code == ResultCode.STARTED_ACTION:
        at = base + 3
    elif code == ResultCode.ACTION:
        at = base + 1
    else:
        return False
    if at:
        # An ACTION result (an INVALID_TABLE one has another length or code).
        if base + nres - at + 1 != ACTION_LENGTH or _code(L, at) != ResultCode.ACTION:
            return False
        if ts_type(L, at + AT_ACTION) != TS_TSTRING:
            return False
        p = ts_tolstring(L, at + AT_ACTION, &n)
        action = action_named(p, n)
        if action < 0:
            return False
        for i in range(N_AMOUNTS):
            t = ts_type(L, at + AT_AMOUNTS + i)
            if t == TS_TNIL:
                given[i], amounts[i] = False, NAN
            elif t == TS_TNUMBER:
                given[i], amounts[i] = True, ts_tonumber(L, at + AT_AMOUNTS + i, NULL)
            else:
                return False
        if check_amounts(action, amounts, given, &field, &other) != CHECK_OK:
            return False
    # The reasons as str, as lupa would decode them; None if one is not UTF-8 (lupa
    # then raises, through the stash, which still has the results).
    start = _string(self, L, base + 2) if code != ResultCode.ACTION and nres > 1 else ""
    reason = _string(self, L, at + AT_REASON) if at else ""
    if start is None or reason is None:
        return False
    out.started = code != ResultCode.ACTION
    out.start_reason = start
    out.action = action
    for i in range(N_AMOUNTS):
        out.amounts[i] = amounts[i] if at else NAN
    out.reason = reason
    out.function = None     # (named only in errors, which decode_result reports)
    out.ready = True
    return True


cdef object _scalar_entries(LuaDirect self, lua_State* L, int table):
    # The entries of the table at `table` with a string key and a number, string or boolean
    # value, converted as lupa converts them, sorted by key; None if a string is not UTF-8
    # (`_text`: a context's keys repeat, so their strs are reused).
    # lua_next is raw (no metamethod runs); a key is read with tolstring only if it is a
    # string, which leaves it unchanged for the next lua_next.
    cdef int t
    cdef list items = []
    cdef size_t n
    cdef const char* p
    if not ts_checkstack(L, 3):
        raise lua54.LuaMemoryError()
    ts_pushnil(L)
    while ts_next(L, table):
        t = ts_type(L, -1)
        if ts_type(L, -2) == TS_TSTRING and (t == TS_TNUMBER or t == TS_TSTRING or t == TS_TBOOLEAN):
            p = ts_tolstring(L, -2, &n)
            key = _text(self, p, n)
            if t == TS_TNUMBER:
                value = ts_tointeger(L, -1, NULL) if ts_isinteger(L, -1) else ts_tonumber(L, -1, NULL)
            elif t == TS_TSTRING:
                p = ts_tolstring(L, -1, &n)
                value = _text(self, p, n)
            else:
                value = ts_toboolean(L, -1) != 0
            if key is None or value is None:
                return None
            items.append((key, value))
        ts_settop(L, -2)   # pop the value, keep the key for lua_next
    items.sort()
    return dict(items)


cdef inline object _string(LuaDirect self, lua_State* L, int i):
    cdef size_t n = 0
    cdef const char* p = NULL
    if ts_type(L, i) == TS_TSTRING:
        p = ts_tolstring(L, i, &n)
    return _text(self, p, n)


cdef object _text(LuaDirect self, const char* p, size_t n):
    # A Lua string as str ("" for a value that is not a string, as RunnerCore reads
    # it); None if not valid UTF-8. Strategies repeat a few reasons: the str of the
    # last _TEXTS distinct ones are reused when the bytes are the same.
    cdef Py_ssize_t size, i
    cdef const char* have
    cdef list texts = self._texts
    if p is NULL:
        return ""
    for i in range(len(texts)):
        have = PyUnicode_AsUTF8AndSize(texts[i], &size)
        if <size_t>size == n and memcmp(have, p, n) == 0:
            return texts[i]
    try:
        text = p[:n].decode("utf-8")
    except UnicodeDecodeError:
        return None
    if len(texts) == _TEXTS:
        texts.pop()
    texts.insert(0, text)
    return text
