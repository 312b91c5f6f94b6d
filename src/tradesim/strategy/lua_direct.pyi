"""`LuaDirect`: call one host Lua function of a sandbox through the Lua C API (see lua_direct.pyx)."""

from collections.abc import Callable
from typing import Any

class DirectCallUnavailable(RuntimeError):
    """This lupa build does not allow direct calls (the caller then uses lupa's own call)."""

class LuaDirect:
    """A host Lua function of a sandbox, callable from C with numbers.

    `RunnerCore` calls it from C (reading valid decisions off the Lua stack);
    calling the object from Python goes through lupa.

    Raises
    ------
    DirectCallUnavailable
        lupa's Lua does not export its C API, is not a default Lua 5.4 build,
        or its lock or main thread cannot be found.
    """
    lua: Any
    """The function itself, as a lupa object."""
    def __init__(self, runtime: Any, lua_function: Any,
                 eval_host: Callable[..., Any]) -> None: ...
    def call(self, state: int, ts: int, o: float, h: float, l: float, c: float, v: float,
             bid: float, ask: float, *values: float) -> Any:
        """The direct call from Python: `state` and `ts` as Lua integers, the rest as floats.

        Returns or raises what a lupa call would have (at most 64 `values`).
        """
    def scalar_entries(self) -> dict[str, Any] | None:
        """Call the function (no arguments; it returns a table): the table's entries with a string
        key and a number, string or boolean value, sorted by key, read in C; None when the result
        is anything else or a string is not UTF-8. Raises what a lupa call of it would."""
    def __call__(self, *args: Any) -> Any:
        """Call `lua` through lupa."""
