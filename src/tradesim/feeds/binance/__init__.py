"""Live Binance klines: the WebSocket feed and its parts.

* `feed`: `BinanceFeed`, connection management, rotation, watchdog and REST backfill.
* `assembler`: `BarAssembler`, frames -> closed bars in strict order (shared with replays).
* `transport`: `FrameConnection`, whole data frames from the socket's read callback
  (header scan in C: `ws_frame`).
* `messages`: strict parsing of stream messages (kline accept path in C: `kline_fast`).
* `retry`: ``Retry-After``, jittered backoff, sliding-window rate limits.
"""

from tradesim.feeds.binance.assembler import BOOK, KLINE, REJECTED, TRADE, BarAssembler, new_stats
from tradesim.feeds.binance.feed import REGIONS, BinanceFeed, BinanceFeedError
from tradesim.feeds.binance.retry import Backoff, RateWindow, parse_retry_after
from tradesim.feeds.binance.transport import FrameConnection

__all__ = ["BOOK", "KLINE", "REGIONS", "REJECTED", "TRADE", "Backoff", "BarAssembler", "BinanceFeed",
           "BinanceFeedError", "FrameConnection", "RateWindow", "new_stats", "parse_retry_after"]
