"""Live Binance klines: the WebSocket feed, its bar assembly, transport and REST backfill."""

from tradesim.feeds.binance.feed import (  # noqa: F401
    BOOK,
    KLINE,
    REJECTED,
    TRADE,
    BarAssembler,
    Backoff,
    BinanceFeed,
    BinanceFeedError,
    FrameConnection,
    RateWindow,
    new_stats,
    parse_retry_after,
)
