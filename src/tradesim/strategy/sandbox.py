"""A sandboxed Lua 5.4 runtime for one strategy script (pure Python around ``lupa.lua54``).

What a script can use
---------------------
User chunks run in their own environment table, never in the real globals:

- base: ``assert error ipairs next pairs select tonumber tostring type rawequal rawget
  rawlen rawset getmetatable setmetatable pcall xpcall _G _VERSION`` and ``log``;
- ``math``: ``abs ceil floor fmod huge log exp max maxinteger min mininteger modf pi sqrt
  tointeger type ult sin cos tan asin acos atan`` (no ``random``: backtests must replay);
- ``string``: ``byte char format len lower rep reverse sub upper``; also through method
  syntax (``s:upper()``); ``getmetatable("")`` is ``false``;
- ``table``: ``concat insert move pack remove sort unpack``;
- ``coroutine``: ``create resume wrap yield status isyieldable running`` (no ``close``);
- ``os``: ``time clock``.

Everything else is absent (``nil``): ``load loadfile dofile require package io debug
collectgarbage print warn utf8 python``, ``string.dump/find/match/gmatch/gsub/pack/unpack``,
``os.execute/getenv/...``. Lua patterns are left out because one pattern match can run for
seconds inside C, where no hook can stop it.

Limits, per call from the host
------------------------------
- ``instruction_budget`` VM instructions, counted by a permanent count hook every
  1000 instructions and shared by all coroutines; library functions whose work grows with
  their input (``table.sort/insert/remove/concat/unpack/move``, ``string.rep/byte/format/
  lower/upper/reverse/sub``) are charged their estimated work before or right after running.
- ``cpu_seconds`` of process CPU time (``os.clock``), counted from the second hook firing
  of a call (after at least 1000 of its instructions; the count carries over between calls)
  and checked at each later firing, so short calls never read the clock, which costs ~0.5 us.
  It is the CPU time of the whole process, so other busy threads make it trip earlier; the
  instruction budget is the primary limit.
- ``max_memory`` bytes of Lua allocations for the whole runtime.
- ``string.rep`` results and counts of at most :data:`REP_LIMIT_BYTES`.
- ``log``: :data:`LOG_MESSAGE_BYTES` per message, :data:`LOG_MESSAGES_PER_CALL` per call.

A timeout cannot be caught by ``pcall``, ``xpcall`` or ``coroutine.resume``: once the budget
is gone the hook fires on every instruction until the call has returned to the host.
``xpcall`` handlers run after the stack has unwound (a real handler would run with hooks off).
``setmetatable`` refuses metatables with ``__gc`` and tables that the host owns.

Not thread-safe: use one sandbox from one thread at a time (lupa releases the GIL while Lua
runs, so sandboxes on different threads do run in parallel). Do not run it on an asyncio loop
thread.
"""

from __future__ import annotations

import logging
import math
import numbers
import re
from collections.abc import Callable, Iterable, Mapping
from functools import lru_cache
from importlib import resources
from typing import Any

from lupa import lua54

from tradesim.strategy.errors import (
    StrategyError,
    StrategyLoadError,
    StrategyMemoryError,
    StrategyTimeout,
)

__all__ = [
    "HOOK_EVERY",
    "LOG_MESSAGES_PER_CALL",
    "LOG_MESSAGE_BYTES",
    "MAX_SOURCE_BYTES",
    "REP_LIMIT_BYTES",
    "LuaSandbox",
    "StrategyFunction",
]

MiB = 1 << 20

#: The count hook fires every this many VM instructions (budget granularity).
HOOK_EVERY = 1000
#: Largest accepted script, in bytes of UTF-8.
MAX_SOURCE_BYTES = 1 * MiB
#: Longest ``log`` message in bytes; longer ones are cut and marked ``[truncated]``.
LOG_MESSAGE_BYTES = 1024
#: ``log`` messages passed on per call; the rest are counted in :attr:`LuaSandbox.log_dropped`.
LOG_MESSAGES_PER_CALL = 100
#: Largest ``string.rep`` result and count.
REP_LIMIT_BYTES = 1 * MiB

_logger = logging.getLogger("tradesim.strategy")

_LuaError = lua54.LuaError
_lua_type = lua54.lua_type
_SCALARS = (bool, int, float, str, bytes, type(None))
_FAST_SCALARS = frozenset(_SCALARS)
# Line -1: a runtime error in host Lua, which runs without debug info ("?:-1: ").
_POSITION = re.compile(r"(?P<chunk>[^\n:]{1,100}):(?P<line>-?\d+): ")
_CHUNK_FORBIDDEN = re.compile(r"[^A-Za-z0-9_.\-/]")
_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_BOM = b"\xef\xbb\xbf"
_NOT_A_STRING = "error raised with a value that is not a string (e.g. error(nil) or error({...}))"


@lru_cache(maxsize=1)
def _guard_source() -> str:
    return resources.files("tradesim.strategy").joinpath("_guard.lua").read_text("utf-8")


@lru_cache(maxsize=64)
def _host_bytecode(source: str, chunk_name: str) -> bytes | None:
    """Host Lua compiled once per process, without debug info; None if it does not compile.

    Why: every runner keeps the guard's and the strategy API's function prototypes, and
    their line tables, local and upvalue names are ~15% of a runner's Lua memory. Host
    positions mean nothing to users (`_split_position` drops them anyway). Only text the
    project wrote is compiled here, as text, in a throwaway runtime of the same Lua build;
    user chunks never go through this and stay text-only with full debug info.
    """
    helper = lua54.LuaRuntime(register_eval=False, register_builtins=False, encoding=None)
    dump = helper.eval("function(src, name) local f = load(src, name, 't') "
                       "return f and string.dump(f, true) end")
    code = dump(source.encode("utf-8"), chunk_name.encode("utf-8"))
    return code if isinstance(code, bytes) else None


def _deny_get(obj: object, name: object) -> object:
    raise AttributeError(f"access to {_short(name)} of a Python object is not allowed in strategies")


def _deny_set(obj: object, name: object, value: object) -> None:
    raise AttributeError(f"assignment to {_short(name)} of a Python object is not allowed in strategies")


def _short(value: object, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _size(nbytes: int) -> str:
    if nbytes % MiB == 0:
        return f"{nbytes // MiB} MiB"
    if nbytes % 1024 == 0:
        return f"{nbytes // 1024} KiB"
    return f"{nbytes} bytes"


def _chunk_name(name: str) -> str:
    """A chunk name safe for Lua positions: no ':' or newlines, short of LUA_IDSIZE (60)."""
    clean = _CHUNK_FORBIDDEN.sub("_", name)[:48]
    return clean or "strategy"


def _make_sink(name: str, handler: Callable[[str, str], Any] | None) -> Callable[[str], None]:
    # The sink closes over the name and handler only: the Lua registry keeps it alive, and a
    # reference back to the sandbox would be a cycle that Python's GC cannot see.
    if handler is None:

        def sink(text: str) -> None:
            _logger.info("%s: %s", name, text)

    else:

        def sink(text: str) -> None:
            try:
                handler(name, text)
            except Exception:
                _logger.exception("log handler failed for strategy %s", name)

    return sink


class LuaSandbox:
    """One restricted Lua 5.4 runtime for one strategy script.

    Construct it, :meth:`load` the script, then call its functions with :meth:`call` (any
    entry point, results converted to Python) or through a host-side Lua dispatcher made
    with :meth:`host_function` (the fast path for per-bar calls).

    Parameters
    ----------
    name : str
        Name of the strategy (runner), used in log records and as the default chunk name.
    max_memory : int, default 16 MiB
        Bytes of Lua allocations the runtime may hold, including the sandbox itself
        (about 60 KiB). Must be at least 1 MiB.
    instruction_budget : int, default 5_000_000
        VM instructions per call from the host (granularity :data:`HOOK_EVERY`); >= 1000.
    cpu_seconds : float, default 0.05
        Process CPU time per call from the host, in seconds; > 0.
    log_handler : callable, optional
        ``log_handler(name, text)`` receives each ``log`` message. Default: the logger
        ``tradesim.strategy`` at INFO level. Exceptions it raises are logged and dropped.

    Raises
    ------
    ValueError
        If a limit is out of range or `name` is empty.

    Notes
    -----
    The runtime is built as ``lua54.LuaRuntime(register_eval=False, register_builtins=False,
    unpack_returned_tuples=True, attribute_handlers=(deny, deny), max_memory=...)``, so no
    Python object is reachable by attribute or item access from Lua. The guard itself is the
    host-side Lua file ``_guard.lua`` next to this module.
    """

    def __init__(
        self,
        name: str,
        max_memory: int = 16 * MiB,
        instruction_budget: int = 5_000_000,
        cpu_seconds: float = 0.05,
        log_handler: Callable[[str, str], Any] | None = None,
    ) -> None:
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty string, got {name!r}")
        if not isinstance(max_memory, int) or max_memory < MiB:
            raise ValueError(f"max_memory must be an int >= {MiB} bytes, got {max_memory!r}")
        if not isinstance(instruction_budget, int) or instruction_budget < HOOK_EVERY:
            raise ValueError(f"instruction_budget must be an int >= {HOOK_EVERY}, got {instruction_budget!r}")
        if not (isinstance(cpu_seconds, (int, float)) and math.isfinite(cpu_seconds) and cpu_seconds > 0):
            raise ValueError(f"cpu_seconds must be a finite number > 0, got {cpu_seconds!r}")
        self.name = name
        self.max_memory = max_memory
        self.instruction_budget = instruction_budget
        self.cpu_seconds = float(cpu_seconds)
        self._script = _chunk_name(name)
        self._chunks: set[str] = set()
        self._checked_names: set[str] = set()
        self._lua = lua54.LuaRuntime(
            register_eval=False,
            register_builtins=False,
            unpack_returned_tuples=True,
            attribute_handlers=(_deny_get, _deny_set),
            max_memory=max_memory,
        )
        g = self._lua.execute(
            _host_bytecode(_guard_source(), "=(guard)"),
            -(-instruction_budget // HOOK_EVERY),
            self.cpu_seconds,
            HOOK_EVERY,
            LOG_MESSAGE_BYTES,
            LOG_MESSAGES_PER_CALL,
            REP_LIMIT_BYTES,
            _make_sink(name, log_handler),
            name="=(guard)",
            mode="b",
        )
        self._sethook = g["sethook"]
        self._hook = g["hook"]
        self._compile = g["compile"]
        self._exec = g["exec"]
        self._run = g["run"]
        self._call_entry = g["call_entry"]
        self._convert_table = g["convert_table"]
        self._guarded = g["guarded"]
        self._compile_host = g["compile_host"]
        self._run_host = g["run_host"]
        self._take_state = g["take_state"]
        self._function_at = g["function_at"]
        self._get_function = g["get_function"]
        self._protect = g["protect"]
        self._new_table = g["new_table"]
        self._log_dropped = g["log_dropped"]

    # ------------------------------------------------------------------ loading

    def load(
        self, source: str | bytes, chunk_name: str | None = None, *, required: Iterable[str] = ()
    ) -> None:
        """Compile a script as text and run its top-level code under the budget.

        Parameters
        ----------
        source : str or bytes
            Lua source; bytes must be UTF-8. A leading UTF-8 byte-order mark is ignored.
        chunk_name : str, optional
            Name used in error positions (``name:line:``); default: the sandbox name.
            Characters other than ``A-Za-z0-9_.-/`` become ``_``; at most 48 are kept.
        required : iterable of str
            Global functions the script must define (e.g. ``("detect_opportunity",)``).

        Raises
        ------
        StrategyLoadError
            Source over :data:`MAX_SOURCE_BYTES`, not valid UTF-8, a binary (precompiled)
            chunk, a syntax error, or a required function missing after the top-level code ran.
        StrategyTimeout, StrategyMemoryError, StrategyError
            The top-level code ran out of budget or memory, or raised an error.
        """
        name = _chunk_name(chunk_name or self.name)
        if isinstance(source, str):
            try:
                data = source.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise StrategyLoadError(
                    f"source is not valid UTF-8 text ({exc.reason})", script=name
                ) from None
        elif isinstance(source, (bytes, bytearray, memoryview)):
            data = bytes(source)
        else:
            raise TypeError(f"source must be str or bytes, got {type(source).__name__}")
        if len(data) > MAX_SOURCE_BYTES:
            raise StrategyLoadError(
                f"source is too large: {len(data)} bytes (limit {_size(MAX_SOURCE_BYTES)})", script=name
            )
        if data[:1] == b"\x1b":  # Lua's signature byte: a precompiled chunk (often also not UTF-8)
            raise StrategyLoadError(
                "precompiled (binary) chunks are not accepted; load source text", script=name
            )
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise StrategyLoadError(f"source is not valid UTF-8 (byte {exc.start})", script=name) from None
        if data.startswith(_BOM):
            data = data[len(_BOM) :]
        try:
            compiled = self._compile(data, name)
        except Exception as exc:
            raise self._translate(exc) from None
        if isinstance(compiled, tuple):  # (nil, message)
            _, line, reason = self._split_position(str(compiled[1]), extra=name)
            raise StrategyLoadError(reason, script=name, line=line)
        self._chunks.add(name)
        self._script = name
        try:
            self._exec(compiled)
        except Exception as exc:
            raise self._translate(exc, "main chunk") from None
        for fname in required:
            if self.get_function(fname) is None:
                raise StrategyLoadError(
                    f"script does not define function '{fname}'", script=name, function=fname
                )

    def get_function(self, name: str) -> StrategyFunction | None:
        """The global function `name` of the loaded script, or None if it is not defined.

        Looked up with ``rawget`` in the script's environment, so no metamethod runs. The
        result is bound to the function object found now (a later redefinition of the global
        does not change it); calling it is :meth:`call` with this function.

        Raises
        ------
        StrategyLoadError
            If `name` is defined but is not a Lua function (e.g. a number or a callable table).
        """
        self._check_identifier(name)
        try:
            found = self._get_function(name)
        except Exception as exc:
            raise self._translate(exc) from None
        if isinstance(found, tuple):
            kind = found[1]
            if kind == "nil":
                return None
            raise StrategyLoadError(
                f"'{name}' is a {kind}, not a function", script=self._script, function=name
            )
        return StrategyFunction(self, name, found)

    # ------------------------------------------------------------------ calling

    def call(self, fn: str | Any, *args: Any) -> Any:
        """Call a script function under a fresh budget and return its results as Python values.

        Parameters
        ----------
        fn : str, StrategyFunction or Lua function
            Name of a global function of the script (looked up with ``rawget`` at call time),
            a function from :meth:`get_function`, or a Lua function from host code.
        *args
            ``None``, bool, int, float, str, bytes; dicts, lists and tuples of those (copied
            into fresh Lua tables the script cannot put metatables on); Lua tables or
            functions of this runtime.

        Returns
        -------
        object
            ``None`` for no result, the value for one, a tuple for several. Lua tables become
            dicts built with raw access inside the guarded call (no user metamethod runs in
            the host); nil, booleans, numbers (nan and inf included) and UTF-8 strings of at
            most 4096 bytes are returned as they are.

        Raises
        ------
        StrategyTimeout
            Instruction budget or CPU deadline exceeded.
        StrategyMemoryError
            The runtime's ``max_memory`` was reached (the runtime stays usable).
        StrategyLoadError
            `fn` is a name the script does not define as a function.
        StrategyError
            Any other Lua error; or a result that is a function, coroutine, userdata, a table
            with nested tables, non-string/integer keys or more than 256 fields, an invalid
            UTF-8 or too long string, or more than 32 results (`field` and `value` say which).
        TypeError
            An argument of an unsupported Python type.
        """
        to_lua = self._to_lua
        lua_args = [a if type(a) in _FAST_SCALARS else to_lua(a) for a in args]
        if isinstance(fn, str):
            entry, lua_fn = fn, None
            if entry not in self._checked_names:
                self._check_identifier(entry)
                self._checked_names.add(entry)
        elif isinstance(fn, StrategyFunction):
            entry, lua_fn = fn.name, fn.lua
        else:
            entry, lua_fn = None, fn
        try:
            if lua_fn is None:
                res = self._call_entry(entry, *lua_args)
            else:
                res = self._run(lua_fn, *lua_args)
        except StrategyError:
            raise
        except Exception as exc:
            raise self._translate(exc, entry) from None
        return self._results(res, entry)

    def host_function(self, lua_src: str, *args: Any, name: str = "host") -> Callable[..., Any]:
        """Compile host-side Lua that returns a function, and return it as a guarded callable.

        The chunk runs with the real globals (the safe standard library, ``string`` in full,
        no ``io``/``os.execute``/``debug``/``load``/``python``), receives the host API table
        and `args` as ``...``, and must return a Lua function. Every call of the returned
        Python callable starts a fresh budget and log quota, runs that function, and maps
        errors like :meth:`call`. It is the fast path for per-event dispatchers: pass numbers
        positionally, fill reusable tables in Lua with ``rawset``, call the user's functions
        (for example ``rawget(H.env, "detect_opportunity")``), and return scalars.

        The host API table ``H`` holds: ``env`` (the script's environment), ``log``,
        ``new_table()`` and ``protect(t)`` (tables the script cannot set metatables on),
        ``scalar_copy(t)`` (raw copy of a table of scalars, or ``nil, key, reason``) and
        ``charge(units)`` (charge work to the budget, in instruction equivalents).

        Parameters
        ----------
        lua_src : str
            Host Lua chunk; ``local H, a, b = ...`` gives the API table and `args`.
        *args
            Passed to the chunk as they are (Python objects become userdata; never store
            them in ``H.env`` - wrap them in a Lua closure instead).
        name : str
            Used in the chunk name ``(host name)``.

        Returns
        -------
        callable
            ``f(*args)`` -> whatever the Lua function returns (multiple values as a tuple).
            ``f.lua`` is the guarded Lua function itself, for callers that batch many calls
            inside one ``try``; if it raises, pass the exception to :meth:`translate_error`
            before the next call (that re-arms the hook after a timeout).

        Notes
        -----
        Host Lua must return only scalars to Python: a table returned to Python could carry
        user metamethods that would run outside the budget when Python reads it.
        Host ``pcall``/``xpcall``/``coroutine`` are the timeout-safe versions.

        Raises
        ------
        StrategyLoadError
            Syntax error in `lua_src`, or the chunk did not return a function.
        StrategyError
            The chunk raised while running.
        """
        fn = self.eval_host(lua_src, *args, name=name)
        if _lua_type(fn) != "function":
            raise StrategyLoadError(f"host chunk returned {type(fn).__name__}, not a Lua function",
                                    script=f"(host {name})")
        return self.guard(fn, name=f"host_function[{name}]")

    def guard(self, lua_function: Any, name: str = "host") -> Callable[..., Any]:
        """Wrap a host Lua function (e.g. one of several returned by :meth:`eval_host`).

        Like the callable from :meth:`host_function`: each call starts a fresh budget and
        maps errors; ``.lua`` is the raw guarded function for hot paths (pass its exceptions
        to :meth:`translate_error` before the next call).
        """
        if _lua_type(lua_function) != "function":
            raise TypeError(f"guard() needs a Lua function, got {type(lua_function).__name__}")
        return _HostCall(self, self._guarded(lua_function), name)

    def direct(self, lua_function: Any) -> Any:
        """A C-callable handle of a guarded host function, or None where lupa does not allow one.

        Parameters
        ----------
        lua_function : lupa function
            A guarded host function of this sandbox (``guard(...).lua``), taking numbers.

        Returns
        -------
        tradesim.strategy.lua_direct.LuaDirect or None
            Called from C it skips lupa's per-call work and returns or raises exactly what
            calling `lua_function` through lupa would (pass its exceptions to
            :meth:`translate_error` before the next call); called from Python it is
            `lua_function`. None if lupa's Lua cannot be reached through its C API.
        """
        from tradesim.strategy.lua_direct import DirectCallUnavailable, LuaDirect

        try:
            return LuaDirect(self._lua, lua_function, self.eval_host)
        except DirectCallUnavailable as exc:
            _logger.debug("direct Lua calls unavailable, using lupa's: %s", exc)
            return None

    def eval_host(self, lua_src: str, *args: Any, name: str = "host") -> Any:
        """Run a host-side Lua chunk under the budget and return its results unconverted.

        Same environment and arguments as :meth:`host_function`. Meant for setup code and
        helpers written by the project, not for user input. The chunk is loaded without
        debug info (less memory per runtime), so its own runtime errors carry no line.

        Raises
        ------
        StrategyLoadError
            Syntax error in `lua_src`.
        StrategyError
            The chunk raised (or a subclass for timeouts and memory).
        """
        label = _chunk_name(name)
        # Stripped bytecode when the source compiles; otherwise the text, so that the
        # syntax error is reported exactly as before (with its line).
        code = _host_bytecode(lua_src, f"=(host {label})") if isinstance(lua_src, str) else None
        try:
            fn = self._compile_host(lua_src if code is None else code, label, code is not None)
        except _LuaError as exc:
            if isinstance(exc, MemoryError):
                raise self._translate(exc) from None
            _, line, reason = self._split_position(str(exc), extra=f"(host {label})")
            raise StrategyLoadError(reason, script=f"(host {label})", line=line) from None
        try:
            return self._run_host(fn, *args)
        except Exception as exc:
            raise self._translate(exc) from None

    # ------------------------------------------------------------------ tables

    def new_table(self) -> Any:
        """An empty Lua table that scripts cannot set a metatable on (for reuse by the host)."""
        return self._new_table()

    def table_from(self, data: Mapping[Any, Any] | Iterable[Any]) -> Any:
        """Copy a dict (or list/tuple) of scalars, nested at most 8 deep, into a protected Lua table.

        Raises
        ------
        TypeError
            If any value is not None, bool, int, float, str, bytes, dict, list or tuple.
        """
        _check_plain(data, 0, set())
        table = self._lua.table_from(data, recursive=True)
        return self._protect(table)

    def table_to_dict(self, table: Any) -> dict[Any, Any]:
        """Convert a Lua table of scalars to a dict with raw access only, inside the guard.

        Raises
        ------
        StrategyError
            As for results of :meth:`call` (nested tables, functions, bad strings, ...).
        """
        try:
            res = self._convert_table(table)
        except Exception as exc:
            raise self._translate(exc) from None
        return self._results(res, None)

    # ------------------------------------------------------------------ state

    def collect_garbage(self) -> None:
        """Run a full Lua garbage collection (host side; scripts cannot)."""
        if self._lua is not None:
            self._lua.gccollect()

    def memory_used(self) -> int:
        """Bytes of Lua memory in use by scripts and the sandbox (excluding lupa's base); 0 once closed."""
        if self._lua is None:
            return 0
        return self._lua.get_memory_used()

    @property
    def log_dropped(self) -> int:
        """``log`` messages dropped so far because a call exceeded the per-call limit."""
        return int(self._log_dropped())

    def close(self) -> None:
        """Drop this sandbox's references to the runtime.

        The Lua state is closed when the last reference goes away (functions obtained from
        :meth:`get_function` or :meth:`host_function` keep it alive). No user code runs at
        close: ``__gc`` metamethods cannot be set. Further use of the sandbox raises
        :class:`StrategyError`.
        """
        for attr in list(vars(self)):
            if attr.startswith("_") and attr not in ("_script", "_chunks", "_checked_names"):
                setattr(self, attr, _closed)
        self._lua = None

    def __enter__(self) -> LuaSandbox:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    # ------------------------------------------------------------------ errors

    def translate_error(self, exc: BaseException) -> StrategyError:
        """Map an exception from a raw guarded call to a :class:`StrategyError`, re-arming the hook.

        Only needed with ``host_function(...).lua``; every other method does this itself.
        """
        if isinstance(exc, StrategyError):
            return exc
        return self._translate(exc)

    def _translate(self, exc: BaseException, entry: str | None = None) -> StrategyError:
        lua = self._lua
        if lua is None:
            return StrategyError("sandbox is closed", script=self._script)
        if isinstance(exc, MemoryError):
            lua.gccollect()
        expired, why, src, line = False, None, None, None
        try:
            # A timeout leaves the hook firing on every instruction. The bare C sethook runs
            # no Lua code, so it cannot trip; then take_state clears the expired flag.
            self._sethook(self._hook, "", HOOK_EVERY)
            state = self._take_state()
            expired, why, src, line = state
        except Exception:  # a broken runtime: still report the original error
            _logger.exception("could not reset the Lua sandbox of %s after an error", self.name)

        if expired:
            script = src[1:] if isinstance(src, str) and src.startswith("=") else self._script
            if why == "cpu":
                reason = f"timeout: CPU time limit of {self.cpu_seconds * 1000:g} ms exceeded"
            else:
                reason = f"timeout: instruction budget of {self.instruction_budget:,} exceeded"
            return StrategyTimeout(
                reason, script=script, line=line, function=entry or self._function_name(script, line)
            )
        if isinstance(exc, MemoryError):
            return StrategyMemoryError(
                f"memory limit exceeded ({_size(self.max_memory)})", script=self._script, function=entry
            )
        if isinstance(exc, _LuaError):
            chunk, line, reason = self._split_position(str(exc))
            script = chunk or self._script
            return StrategyError(
                reason or _NOT_A_STRING,
                script=script,
                line=line,
                function=entry or self._function_name(script, line),
            )
        if isinstance(exc, AttributeError):
            return StrategyError(str(exc), script=self._script, function=entry)
        if isinstance(exc, UnicodeDecodeError):
            return StrategyError(
                "a string passed to the host is not valid UTF-8", script=self._script, function=entry
            )
        return StrategyError(f"{type(exc).__name__}: {exc}", script=self._script, function=entry)

    def _split_position(self, message: str, extra: str | None = None) -> tuple[str | None, int | None, str]:
        """Split ``chunk:line: text``; positions inside host Lua are dropped (they mean nothing to users)."""
        m = _POSITION.match(message)
        if not m:
            return None, None, message
        chunk = m.group("chunk")
        if chunk in self._chunks or chunk == extra:
            return chunk, int(m.group("line")), message[m.end() :]
        return None, None, message[m.end() :]

    def _function_name(self, script: str, line: int | None) -> str | None:
        if line is None or script not in self._chunks:
            return None
        try:
            found = self._function_at("=" + script, line)
        except Exception:
            return None
        return found if isinstance(found, str) else None

    # ------------------------------------------------------------------ conversions

    def _to_lua(self, value: Any) -> Any:
        if isinstance(value, _SCALARS):
            return value
        if isinstance(value, numbers.Integral):  # numpy scalars would become opaque userdata
            return int(value)
        if isinstance(value, numbers.Real):
            return float(value)
        if isinstance(value, (dict, list, tuple)):
            return self.table_from(value)
        if _lua_type(value) in ("table", "function"):
            return value
        raise TypeError(f"cannot pass a {type(value).__name__} to a strategy")

    def _results(self, res: Any, entry: str | None) -> Any:
        status, n = res[0], res[1]
        if status == 0:
            if n == 0:
                return None
            if n == 1 and type(res[2]) in _FAST_SCALARS:
                return res[2]
            values = [dict(v.items()) if _lua_type(v) == "table" else v for v in res[2 : 2 + n]]
            if n == 0:
                return None
            return values[0] if n == 1 else tuple(values)
        if status == 2:
            _, fname, kind = res
            what = "not defined" if kind == "nil" else f"a {kind}, not a function"
            raise StrategyLoadError(f"function '{fname}' is {what}", script=self._script, function=fname)
        _, position, field, what = res
        if field is None:
            where = f"return value {position}" if position else "the results"
            field = position
        else:
            where = f"field {field!r} of return value {position}"
        raise StrategyError(
            f"invalid result: {where} is {what}", script=self._script, function=entry, field=field, value=what
        )

    @staticmethod
    def _check_identifier(name: Any) -> None:
        if not isinstance(name, str) or not _IDENTIFIER.match(name):
            raise ValueError(f"not a Lua identifier: {name!r}")


class StrategyFunction:
    """A script function bound to its sandbox: ``f(*args)`` is ``sandbox.call(f, *args)``.

    Attributes
    ----------
    name : str
        The global name it was looked up by (used in error messages).
    lua : lupa LuaFunction
        The function itself, for passing to host-side Lua. Calling ``lua`` directly from
        Python would skip the budget reset and the error mapping: use the wrapper.
    """

    __slots__ = ("_sandbox", "lua", "name")

    def __init__(self, sandbox: LuaSandbox, name: str, lua: Any) -> None:
        self._sandbox = sandbox
        self.name = name
        self.lua = lua

    def __call__(self, *args: Any) -> Any:
        return self._sandbox.call(self, *args)

    def __repr__(self) -> str:
        return f"<StrategyFunction {self.name} of {self._sandbox.name}>"


class _HostCall:
    """What :meth:`LuaSandbox.guard` returns: ``f(*args)`` calls the guarded function ``f.lua``.

    A slotted object, not a closure with attributes: every runner keeps ten of these, and a
    function's ``__dict__``, cells and name strings cost ~0.5 KB each.
    """

    __slots__ = ("_name", "_sandbox", "lua")

    def __init__(self, sandbox: LuaSandbox, guarded: Any, name: str) -> None:
        self._sandbox = sandbox
        self.lua = guarded
        self._name = name

    def __call__(self, *call_args: Any) -> Any:
        try:
            return self.lua(*call_args)
        except Exception as exc:
            raise self._sandbox._translate(exc) from None

    @property
    def __name__(self) -> str:
        name = self._name
        return name if name.startswith("host_function[") else f"guard[{name}]"

    def __repr__(self) -> str:
        return f"<{self.__name__} of {self._sandbox.name}>"


class _Closed:
    """Stands in for every Lua handle of a closed sandbox."""

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        raise StrategyError("sandbox is closed")

    def __getattr__(self, name: str) -> Any:
        raise StrategyError("sandbox is closed")


_closed = _Closed()


def _check_plain(value: Any, depth: int, seen: set[int]) -> None:
    if isinstance(value, _SCALARS):
        return
    if isinstance(value, (dict, list, tuple)):
        if depth >= 8:
            raise TypeError("tables passed to a strategy may be nested at most 8 deep")
        if id(value) in seen:
            return
        seen.add(id(value))
        items = value.items() if isinstance(value, dict) else enumerate(value)
        for k, v in items:
            if not isinstance(k, (bool, int, float, str, bytes)):
                raise TypeError(f"table keys passed to a strategy must be scalars, got {type(k).__name__}")
            _check_plain(v, depth + 1, seen)
        return
    raise TypeError(f"cannot pass a {type(value).__name__} to a strategy")
