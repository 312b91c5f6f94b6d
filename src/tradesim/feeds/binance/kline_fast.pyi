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

