"""The accept path of Binance kline validation, in C (same rules as `messages.parse_kline`)."""

from collections.abc import Callable
from typing import TypeVar

_K = TypeVar("_K")

def kline_or_none(data: object, stream_interval: str | None, interval_ms: dict[str, int | None],
                  kline_type: Callable[..., _K]) -> _K | None:
    """A kline built by `kline_type` from a kline event payload, or None if any rule fails.

    `data` is the ``data`` object of a combined-stream kline message;
    `stream_interval` the interval the stream names (the kline's must match;
    None: any); `interval_ms` maps interval names to lengths in ms (None for
    "1M"). `kline_type` is called with (symbol, interval, open_time,
    close_time, open, high, low, close, volume, closed). On None the caller
    runs the Python parser, which names the field and value at fault.
    """


def rest_klines_into(rows: list[object], step: int, out: object) -> int:
    """Fill `out` (float64, shape (>= len(rows), 6)) from REST kline rows while they are valid; return how many were.

    Same rules as `messages.parse_rest_kline`; the count is the index of the first
    invalid row (the caller asks `parse_rest_kline` for the error).
    """
