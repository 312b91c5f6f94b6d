"""Live Binance klines: the WebSocket feed, its bar assembly, transport and REST backfill.

Modules: `feed` (BinanceFeed: connections, rotation, watchdog), `assembler`
(frames -> bars, ordering and gaps), `backfill` (REST klines), `transport`
(FrameConnection), `retry` (backoff, Retry-After, rate budgets), `messages`
(strict parsing; `kline_fast` and `ws_frame` are its compiled helpers).
"""

from tradesim.feeds.binance.assembler import BOOK, KLINE, REJECTED, TRADE, BarAssembler, new_stats
from tradesim.feeds.binance.retry import Backoff, RateWindow, parse_retry_after

# The feed and its transport pull in websockets and httpx (~70 ms): imported on first use, so
# a replay (which needs only the assembler) does not load them.
_LAZY = {"BinanceFeed": "feed", "BinanceFeedError": "feed", "REGIONS": "feed",
         "FrameConnection": "transport"}


def __getattr__(name: str):
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = [
    "BOOK",
    "KLINE",
    "REGIONS",
    "REJECTED",
    "TRADE",
    "Backoff",
    "BarAssembler",
    "BinanceFeed",
    "BinanceFeedError",
    "FrameConnection",
    "RateWindow",
    "new_stats",
    "parse_retry_after",
]
