"""Runners: one strategy on one symbol (`SymbolRunner`), the shared per-bar step."""

from tradesim.runner.symbol_runner import Rejection, RunnerError, RunnerStatus, SymbolRunner

__all__ = ["Rejection", "RunnerError", "RunnerStatus", "SymbolRunner"]
