"""The portfolio over several runners: shared or per-runner cash, portfolio risk limits and P&L.

See docs/orders.md (Risk limits) for the rules; `PortfolioConfig` holds the
settings, `Portfolio` applies them while runners trade, and
`portfolio_curves` builds a finished run's P&L curves.
"""

from tradesim.portfolio.config import PortfolioConfig
from tradesim.portfolio.pnl import PortfolioCurves, RunPositions, portfolio_curves
from tradesim.portfolio.portfolio import DAY_MS, Portfolio

__all__ = ["DAY_MS", "Portfolio", "PortfolioConfig", "PortfolioCurves", "RunPositions", "portfolio_curves"]
