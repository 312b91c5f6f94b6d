"""Backtests: the backtester, performance metrics and the self-contained HTML report."""

from tradesim.backtest.backtester import Backtest, BacktestResult, RunResult
from tradesim.backtest.metrics import Metrics, compute_metrics, drawdown_series
from tradesim.backtest.report import aggregate_ohlc, write_report
from tradesim.runner.trades import Trade, trades_to_csv

__all__ = [
    "Backtest", "BacktestResult", "RunResult",
    "Trade", "trades_to_csv", "Metrics", "compute_metrics", "drawdown_series",
    "aggregate_ohlc", "write_report",
]
