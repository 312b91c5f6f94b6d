"""Backtest results: closed trades, performance metrics and the self-contained HTML report."""

from tradesim.backtest.metrics import Metrics, compute_metrics, drawdown_series
from tradesim.backtest.report import aggregate_ohlc, write_report
from tradesim.backtest.trades import Trade, trades_to_csv

__all__ = [
    "Backtest", "BacktestResult", "RunResult",
    "Trade", "trades_to_csv", "Metrics", "compute_metrics", "drawdown_series",
    "aggregate_ohlc", "write_report",
]


def __getattr__(name):
    # The engine imports the runner, which imports `trades` from this package:
    # load it on first use to keep the import graph acyclic.
    if name in ("Backtest", "BacktestResult", "RunResult"):
        from tradesim.backtest import engine

        return getattr(engine, name)
    raise AttributeError(f"module 'tradesim.backtest' has no attribute {name!r}")
