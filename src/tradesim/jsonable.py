"""The one conversion of tradesim values into plain JSON (or MessagePack) values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["finite_or_none", "jsonable", "plain"]


def finite_or_none(x: Any) -> Any:
    """A float that JSON can carry: NaN and infinities become None; other values pass through."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    return x


def jsonable(value: Any) -> Any:
    """Plain JSON values, recursively.

    NaN and infinities become None (JSON has no such numbers), numpy scalars and
    arrays become Python numbers and lists, tuples and sets become lists, dict
    keys become strings, an enum with a str/int ``value`` becomes that value;
    anything else becomes its ``str``.
    """
    return _convert(value, True)


def plain(value: Any) -> Any:
    """`jsonable`, but NaN and infinities stay floats (MessagePack carries them) and dict keys are
    sorted (a Lua table's order changes from one process to the next): the same values always
    serialize to the same bytes, as a session log needs."""
    return _convert(value, False)


def _convert(value: Any, finite: bool) -> Any:
    if isinstance(value, dict):
        if finite:
            return {str(k): _convert(v, finite) for k, v in value.items()}
        return {k: _convert(value[k0], finite) for k, k0 in sorted((str(k), k) for k in value)}
    if isinstance(value, (list, tuple, set)):
        return [_convert(v, finite) for v in value]
    if isinstance(value, np.ndarray):
        return _convert(value.tolist(), finite)
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) or not finite else None
    if value is None or isinstance(value, str):
        return value
    inner = getattr(value, "value", None)
    if isinstance(inner, (str, int)):
        return inner
    return str(value)
