"""Runners: one strategy on one symbol (`SymbolRunner`), the shared per-bar step."""

from tradesim.runner.symbol_runner import FINAL_STATUSES, Rejection, RunnerError, RunnerStatus, SymbolRunner

__all__ = ["FINAL_STATUSES", "Rejection", "RunnerError", "RunnerStatus", "SymbolRunner"]
