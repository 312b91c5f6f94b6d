"""Times and intervals: the one parser and formatter every module uses.

Units everywhere in tradesim: timestamps are int milliseconds since the Unix
epoch, UTC; intervals (bar lengths) are int milliseconds.
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime

import numpy as np

__all__ = [
    "BINANCE_INTERVAL_MS",
    "format_duration",
    "format_time",
    "parse_interval",
    "parse_time",
    "parse_epoch_text",
]

_UNIT_MS = {"ms": 1, "s": 1_000, "m": 60_000, "h": 3_600_000, "d": 86_400_000, "w": 604_800_000}
_INTERVAL_RE = re.compile(r"^\s*(\d+)\s*(ms|s|m|h|d|w)\s*$")


def parse_interval(interval: str | int) -> int:
    """Bar interval in milliseconds from ``"1s"``, ``"15m"``, ``"4h"``, ``"1d"``, ... or an int (ms).

    Units: ``ms``, ``s``, ``m`` (minutes), ``h``, ``d``, ``w``. Binance's
    ``"1M"`` (calendar month) is refused: months have no fixed length.

    Raises
    ------
    ValueError
        If the interval is not a positive whole number of milliseconds.
    """
    if isinstance(interval, (int, np.integer)) and not isinstance(interval, bool):
        if interval <= 0:
            raise ValueError(f"interval must be > 0 ms, got {interval!r}")
        return int(interval)
    if isinstance(interval, str):
        m = _INTERVAL_RE.match(interval)
        if m and int(m.group(1)) > 0:
            return int(m.group(1)) * _UNIT_MS[m.group(2)]
    raise ValueError(f"interval must be like '1s', '1m', '1h', '1d' or a positive int of ms, "
                     f"got {interval!r}")


#: Binance's kline intervals in ms; ``"1M"`` (a calendar month) has no fixed
#: length and maps to None (checked by open/close times only).
BINANCE_INTERVAL_MS: dict[str, int | None] = {
    **{iv: parse_interval(iv) for iv in ("1s", "1m", "3m", "5m", "15m", "30m", "1h", "2h", "4h",
                                         "6h", "8h", "12h", "1d", "3d", "1w")},
    "1M": None,
}


def _iso_to_ms(text: str) -> int:
    value = datetime.fromisoformat(text.replace("Z", "+00:00"))
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return int(value.timestamp() * 1000)


def parse_time(value: int | str | datetime | date | None) -> int | None:
    """A point in time as int ms since the epoch UTC (None passes through).

    Accepts an int (already ms), a string of digits (ms), an ISO-8601 date or
    date-time string (``"2025-06-01"``, ``"2025-06-01T12:30"``, ``"...Z"``;
    no time zone means UTC), or a `datetime`/`date` (naive = UTC).

    Raises
    ------
    ValueError
        If a string is neither digits nor ISO-8601.
    TypeError
        If the value is of another type.
    """
    if value is None:
        return None
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        return int(value)
    if isinstance(value, str):
        text = value.strip()
        if text.lstrip("-").isdigit():
            return int(text)
        try:
            return _iso_to_ms(text)
        except ValueError:
            raise ValueError(f"time must be ms since the epoch or an ISO-8601 date, got {text!r}") from None
    if isinstance(value, date) and not isinstance(value, datetime):
        value = datetime(value.year, value.month, value.day)
    if isinstance(value, datetime):
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return int(value.timestamp() * 1000)
    raise TypeError(f"time must be int ms, an ISO-8601 string or a datetime, got {type(value).__name__}")


def parse_epoch_text(text: str) -> int:
    """A timestamp field of a bar file as int ms since the epoch UTC.

    Digits are seconds, milliseconds or microseconds since the epoch, told
    apart by size (< 1e11: seconds; >= 1e14: microseconds); anything else is
    read as ISO-8601 (no time zone means UTC).

    Raises
    ------
    ValueError
        If the text is neither digits nor ISO-8601.
    """
    text = text.strip()
    if text.lstrip("-").isdigit():
        value = int(text)
        if abs(value) < 10**11:
            return value * 1000
        if abs(value) >= 10**14:
            return value // 1000
        return value
    return _iso_to_ms(text)


def format_time(ms: int, spec: str = "%Y-%m-%d %H:%M:%S") -> str:
    """A timestamp (ms since the epoch) as a UTC date/time string."""
    return datetime.fromtimestamp(ms / 1000, tz=UTC).strftime(spec)


def format_duration(ms: int | float) -> str:
    """A duration in ms as its two largest units: 90_000 -> ``'1m 30s'``, 86_400_000 -> ``'1d'``."""
    ms = int(ms)
    if ms < 1000:
        return f"{ms} ms"
    parts = []
    for unit, size in (("d", 86_400_000), ("h", 3_600_000), ("m", 60_000), ("s", 1000)):
        if ms >= size:
            parts.append(f"{ms // size}{unit}")
            ms %= size
    return " ".join(parts[:2])
