"""Live Binance klines: the WebSocket feed, its bar assembly, transport and REST backfill.

Modules: `feed` (BinanceFeed: connections, rotation, watchdog), `assembler`
(frames -> bars, ordering and gaps), `backfill` (REST klines), `transport`
(FrameConnection), `retry` (backoff, Retry-After, rate budgets), `messages`
(strict parsing; `kline_fast` and `ws_frame` are its compiled helpers).
"""

from tradesim.feeds.binance.assembler import BOOK, KLINE, REJECTED, TRADE, BarAssembler, new_stats
from tradesim.feeds.binance.feed import BinanceFeed, BinanceFeedError
from tradesim.feeds.binance.retry import Backoff, RateWindow, parse_retry_after
from tradesim.feeds.binance.transport import FrameConnection

__all__ = [
    "BOOK",
    "KLINE",
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
