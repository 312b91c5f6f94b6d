"""`PortfolioConfig`: limits and cash of a portfolio of runners (an engine or a multi-runner backtest).

The one definition of these settings: ``runners.toml``'s ``[portfolio]`` table
and the ``tradesim backtest`` / ``tradesim run`` options are validated by it
(docs/orders.md, Risk limits).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

__all__ = ["PortfolioConfig"]


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class PortfolioConfig:
    """Cash and risk limits shared by every runner of an engine or a backtest.

    Parameters
    ----------
    cash : {"per_runner", "shared"}
        ``per_runner`` (default): each runner sizes from its own cash (a
        backtest splits the starting cash evenly). ``shared``: one account
        holds the whole starting cash; every fill moves it and every runner
        sizes from it (first come, first served within a bar, in runner order).
    max_open_positions : int
        Positions open at once across all runners (0 = no limit). An entry
        fill that would open one more is rejected; scale-ins are not counted.
    max_daily_loss_pct : float
        Percent (``5`` = 5 %): portfolio equity at a bar's close below the
        equity at the previous UTC day's last close (the starting cash on the
        first day) by more than this is a breach (0 = no limit).
    max_drawdown_pct : float
        Percent: portfolio equity below its running peak by more than this is
        a breach (0 = no limit).
    on_breach : {"block", "halt"}
        ``block`` (default): reject new entries of every runner — until the
        next UTC day for a daily loss, until `Portfolio.resume` for a
        drawdown. ``halt``: close every position at that bar's close and halt
        every runner until resumed.

    Raises
    ------
    pydantic.ValidationError
        A `ValueError` naming each field and value out of range.
    """

    cash: Literal["per_runner", "shared"] = "per_runner"
    max_open_positions: int = Field(0, ge=0)
    max_daily_loss_pct: float = Field(0.0, ge=0, lt=100, allow_inf_nan=False)
    max_drawdown_pct: float = Field(0.0, ge=0, lt=100, allow_inf_nan=False)
    on_breach: Literal["block", "halt"] = "block"

    @property
    def limited(self) -> bool:
        """True when any limit is set (the runners need the portfolio's entry gate)."""
        return bool(self.max_open_positions or self.max_daily_loss_pct or self.max_drawdown_pct)

    @property
    def active(self) -> bool:
        """True when the portfolio changes how runners trade (a limit, or shared cash)."""
        return self.limited or self.cash == "shared"

    def as_dict(self) -> dict:
        """The settings as a plain dict (field name -> value)."""
        return asdict(self)
