"""Market-data feeds: where bars come from.

* `SimulatedFeed`: seeded geometric Brownian motion, the embedded default (no network, no files).
* `HistoricalFeed`: bar files (Binance kline CSV, generic CSV, Parquet) or `Bars` objects.

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
           "DataHealth",
           "HistoricalFeed",
           "MarketDataSource",
           "Pacer",
           "SimulatedFeed",
           "parse_interval",
           "parse_time",
]
