"""Runners: one strategy on one symbol (`SymbolRunner`), the shared per-bar step."""

from tradesim.runner.risk import RiskConfig
from tradesim.runner.symbol_runner import FINAL_STATUSES, Rejection, RiskEvent, RunnerError, RunnerStatus, SymbolRunner

__all__ = ["FINAL_STATUSES", "Rejection", "RiskConfig", "RiskEvent", "RunnerError", "RunnerStatus",
           "SymbolRunner"]
