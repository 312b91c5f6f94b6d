"""Numbers as people read them: n/a for undefined values, percentages."""

from __future__ import annotations

import math

__all__ = ["format_number", "format_percent"]


def format_number(x: float, spec: str) -> str:
    """`x` formatted with `spec`; NaN (or None) reads "n/a" and infinities "∞" / "−∞"."""
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return "n/a"
    if isinstance(x, float) and math.isinf(x):
        return "∞" if x > 0 else "−∞"
    return format(x, spec)


def format_percent(x: float) -> str:
    """A fraction as a percentage: 0.1234 -> '12.34 %'."""
    return f"{100.0 * x:,.2f} %" if math.isfinite(x) else format_number(x, "")
