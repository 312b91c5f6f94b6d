"""Per-runner risk limits (`RiskConfig`); the checks run in `RunnerCore` (docs/orders.md).

The portfolio-wide limits (max open positions across runners, the
portfolio's daily loss and drawdown) build on these primitives.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

__all__ = ["RiskConfig"]


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class RiskConfig:
    """One runner's risk limits (0 = no limit).

    Parameters
    ----------
    max_position_notional : float
        Largest position value at the fill price, quote currency; an entry or
        scale-in beyond it is rejected (a ``risk_limit`` event).
    max_daily_loss_pct : float
        Percent of the equity at the previous UTC day's last close the runner
        may lose by a close of the current day.
    max_drawdown_pct : float
        Percent below the running peak of equity (at closes).
    on_breach : {"block", "halt"}
        ``"block"`` (default): reject new entries — until the next UTC day for
        a daily loss, until `SymbolRunner.resume` for a drawdown. ``"halt"``:
        close the position at that close, drop orders and stop deciding until
        `SymbolRunner.resume`.

    Raises
    ------
    pydantic.ValidationError
        A `ValueError` naming each field and value out of range.
    """

    max_position_notional: float = Field(0.0, ge=0, allow_inf_nan=False)
    max_daily_loss_pct: float = Field(0.0, ge=0, lt=100, allow_inf_nan=False)
    max_drawdown_pct: float = Field(0.0, ge=0, lt=100, allow_inf_nan=False)
    on_breach: Literal["block", "halt"] = "block"

    def as_dict(self) -> dict:
        """The settings as a plain dict (field name -> value)."""
        return asdict(self)

    @property
    def active(self) -> bool:
        """Any limit set."""
        return bool(self.max_position_notional or self.max_daily_loss_pct or self.max_drawdown_pct)
