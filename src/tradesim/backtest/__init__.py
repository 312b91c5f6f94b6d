"""Backtest results: closed trades, performance metrics and the self-contained HTML report."""

from tradesim.backtest.metrics import Metrics, compute_metrics, drawdown_series
from tradesim.backtest.report import aggregate_ohlc, write_report
from tradesim.backtest.trades import Trade, trades_to_csv
from tradesim.backtest.engine import Backtest, BacktestResult, RunResult  # noqa: E402  (needs trades)

__all__ = [
    "Backtest", "BacktestResult", "RunResult",
    "Trade", "trades_to_csv", "Metrics", "compute_metrics", "drawdown_series",
    "aggregate_ohlc", "write_report",
]
