"""Market-data feeds: where bars come from.

* `SimulatedFeed`: seeded geometric Brownian motion, the embedded default (no network, no files).
* `HistoricalFeed`: bar files (Binance kline CSV, generic CSV, Parquet) or `Bars` objects.
* `BinanceFeed`: live Binance spot klines over WebSocket, gap-free via REST backfill.
* `RecordedFeed`: recorded Binance combined-stream messages replayed through the live feed's assembly.

Every feed follows `MarketDataSource`: ``bars(symbol, limit)`` returns whole numpy columns
for backtests; ``async for bar in feed`` yields `MarketData` in timestamp order across
symbols, paced by ``speed``; ``health`` is a `DataHealth` ledger. Prices are in quote
currency, volume in base units, timestamps in ms since the Unix epoch (UTC, bar open time).
"""

from tradesim.feeds.base import (
           BaseFeed,
           DataHealth,
           MarketDataSource,
           parse_interval,
           parse_time,
)
from tradesim.feeds.historical import HistoricalFeed
from tradesim.feeds.pacing import Pacer
from tradesim.feeds.simulated import SimulatedFeed

__all__ = [
           "BaseFeed",
           "BinanceFeed",
           "BinanceFeedError",
           "DataHealth",
           "HistoricalFeed",
           "MarketDataSource",
           "Pacer",
           "RecordedFeed",
           "SimulatedFeed",
           "parse_interval",
           "parse_time",
]

_LAZY = {"BinanceFeed": "tradesim.feeds.binance", "BinanceFeedError": "tradesim.feeds.binance",
         "RecordedFeed": "tradesim.feeds.recorded"}


def __getattr__(name: str):
    # The Binance feeds pull in websockets and httpx (~70 ms): imported on first use only.
    if name in _LAZY:
        import importlib

        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
