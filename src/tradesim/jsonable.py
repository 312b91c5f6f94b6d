"""The one conversion of tradesim values into plain JSON values."""

from __future__ import annotations

import math
from typing import Any

import numpy as np

__all__ = ["finite_or_none", "jsonable"]


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
    if isinstance(value, dict):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.ndarray):
        return jsonable(value.tolist())
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    if isinstance(value, (int, np.integer)):
        return int(value)
    if isinstance(value, (float, np.floating)):
        v = float(value)
        return v if math.isfinite(v) else None
    if value is None or isinstance(value, str):
        return value
    inner = getattr(value, "value", None)
    if isinstance(inner, (str, int)):
        return inner
    return str(value)
