"""Errors raised by the Lua strategy layer.

Every failure of user Lua code reaches the host as one of these, never as a raw ``lupa``
exception: :class:`StrategyError` and its subclasses :class:`StrategyTimeout`,
:class:`StrategyMemoryError` and :class:`StrategyLoadError`.

Messages are bounded (:data:`MAX_MESSAGE_BYTES`, UTF-8) and say where the error happened
when that is known, in the form Lua users expect::

    ema_crossover.lua:12: in detect_opportunity: attempt to call a nil value (global 'os')

The errors pickle with all their fields, so a runner in a worker process can send them to
the parent unchanged.
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "MAX_MESSAGE_BYTES",
    "StrategyError",
    "StrategyLoadError",
    "StrategyMemoryError",
    "StrategyTimeout",
]

#: Upper bound of ``str(error)`` in UTF-8 bytes (an event-log record must stay small).
MAX_MESSAGE_BYTES = 1024

_MAX_VALUE_CHARS = 200
_ELLIPSIS = "..."


def _truncate_utf8(text: str, limit: int) -> str:
    """Cut `text` to at most `limit` UTF-8 bytes, marking the cut with ``...``."""
    data = text.encode("utf-8", "replace")
    if len(data) <= limit:
        return text
    cut = data[: limit - len(_ELLIPSIS)].decode("utf-8", "ignore")
    return cut + _ELLIPSIS


def _bounded_value(value: Any) -> Any:
    """Keep scalars as they are; shorten long strings and replace anything else by its repr."""
    if value is None or isinstance(value, (bool, int, float)):
        return value
    if isinstance(value, bytes):
        value = value.decode("utf-8", "replace")
    if not isinstance(value, str):
        value = repr(value)
    if len(value) > _MAX_VALUE_CHARS:
        value = value[: _MAX_VALUE_CHARS - len(_ELLIPSIS)] + _ELLIPSIS
    return value


class StrategyError(Exception):
    """A strategy script failed: runtime error, bad result, or misuse of the host API.

    Parameters
    ----------
    reason : str
        What went wrong, without the location (e.g. ``"attempt to call a nil value (global
        'os')"``). An empty reason is replaced by ``"unknown error"``.
    script : str, optional
        Chunk name of the script (e.g. ``"ema_crossover.lua"``).
    function : str, optional
        Entry point or Lua function in which the error happened, when known.
    line : int, optional
        Line number in `script`, when Lua reported one.
    field : str or int, optional
        For invalid results or actions: the offending field (a table key or the 1-based
        position of a return value).
    value : object, optional
        For invalid results or actions: the offending value or a description of its type.
        Long strings are shortened to 200 characters.

    Attributes
    ----------
    reason, script, function, line, field, value
        As given. ``str(error)`` is the formatted message, at most
        :data:`MAX_MESSAGE_BYTES` bytes of UTF-8.
    """

    def __init__(
        self,
        reason: str,
        *,
        script: str | None = None,
        function: str | None = None,
        line: int | None = None,
        field: str | int | None = None,
        value: Any = None,
    ) -> None:
        self.reason = _truncate_utf8(str(reason).strip() or "unknown error", MAX_MESSAGE_BYTES)
        self.script = script
        self.function = function
        self.line = line
        self.field = field
        self.value = _bounded_value(value)
        super().__init__(self._format())

    def _format(self) -> str:
        where = self.script or ""
        if self.line is not None:
            where = f"{where}:{self.line}"
        parts = [where] if where else []
        if self.function:
            parts.append(f"in {self.function}")
        parts.append(self.reason)
        return _truncate_utf8(": ".join(parts), MAX_MESSAGE_BYTES)

    def __reduce__(self):  # keyword-only fields would otherwise be lost when pickling
        fields = {
            "script": self.script,
            "function": self.function,
            "line": self.line,
            "field": self.field,
            "value": self.value,
        }
        return (_rebuild, (type(self), self.reason, fields))


def _rebuild(cls: type[StrategyError], reason: str, fields: dict[str, Any]) -> StrategyError:
    return cls(reason, **fields)


class StrategyTimeout(StrategyError):
    """A call exceeded its instruction budget or its CPU-time deadline.

    Raised for infinite loops, also inside ``pcall``, ``xpcall`` handlers and coroutines, and
    for library calls whose charged cost exceeds what is left of the budget. `line` is where
    user code was running when the budget ran out.
    """


class StrategyMemoryError(StrategyError):
    """The runtime hit its ``max_memory`` limit.

    Lua reports this with an empty message; the reason is always
    ``"memory limit exceeded (<limit>)"``. The runtime stays usable: the aborted allocations
    are collected before this is raised.
    """


class StrategyLoadError(StrategyError):
    """A script could not be loaded.

    Raised for a syntax error, a precompiled (binary) chunk, source larger than the limit,
    source that is not valid UTF-8, or an entry point that the script does not define.
    Runtime errors in a script's top-level code are :class:`StrategyError` (or a subclass),
    not load errors.
    """
