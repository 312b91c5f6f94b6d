"""Simulated execution settings: fill rule, trading costs and sizing (`ExecutionConfig`).

The rules below are carried out in one place, `tradesim.runner.runner_core`
(`RunnerCore`'s fills), for backtests and paper trading alike; this module
only holds and checks their settings.

Fill rules
----------
- Market orders (entries and strategy exits) fill at the **next bar's open**
  (``fill="next_open"``, the default: a decision made on bar t's close cannot
  trade before bar t+1 opens) or at the **signal bar's close** (``fill="close"``).
- Stop-loss exits fill at the stop level, or at the bar's open when the bar
  gapped through it; take-profit exits at the level, or at the open when it
  gapped through (see `tradesim.StateMachine`). When one bar touches both,
  the state machine's ambiguity policy decides and the trade is flagged.

Costs
-----
- Slippage (bps) moves every market fill and every stop-loss fill against the
  trader (buys higher, sells lower). Take-profit fills are limit fills at the
  level (or the better gapped open) and get no slippage.
- Commission (bps of notional) on each side, plus an optional fixed fee per
  order (quote currency).

Sizing
------
An action's ``quantity`` (base units) is used as given. Without one, the
order uses ``size_fraction`` of current equity at the fill price, net of the
commission.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

__all__ = ["ExecutionConfig", "FILL_RULES"]

FILL_RULES = ("next_open", "close")


@dataclass(frozen=True)
class ExecutionConfig:
    """How orders fill and what they cost.

    Parameters
    ----------
    fill : {"next_open", "close"}
        Market order fill rule (see the module docs).
    slippage_bps : float
        Adverse price move per market or stop fill, in basis points (>= 0).
    commission_bps : float
        Commission per side in basis points of notional (>= 0).
    fixed_fee : float
        Fee per order in quote currency (>= 0).
    starting_cash : float
        Cash at the start, quote currency (> 0).
    size_fraction : float
        Fraction of equity used by an order without a quantity (0 < f <= 1).
    allow_short : bool
        Accept enter_short actions.

    Raises
    ------
    ValueError
        Naming the field and value when one is out of range.
    """

    fill: str = "next_open"
    slippage_bps: float = 0.0
    commission_bps: float = 0.0
    fixed_fee: float = 0.0
    starting_cash: float = 10_000.0
    size_fraction: float = 1.0
    allow_short: bool = True

    def __post_init__(self) -> None:
        if self.fill not in FILL_RULES:
            raise ValueError(f"fill = {self.fill!r}: expected one of {', '.join(FILL_RULES)}")
        for name in ("slippage_bps", "commission_bps", "fixed_fee"):
            value = getattr(self, name)
            if not (isinstance(value, (int, float)) and math.isfinite(value) and value >= 0):
                raise ValueError(f"{name} = {value!r}: must be a finite number >= 0")
        if not (math.isfinite(self.starting_cash) and self.starting_cash > 0):
            raise ValueError(f"starting_cash = {self.starting_cash!r}: must be > 0")
        if not (0 < self.size_fraction <= 1):
            raise ValueError(f"size_fraction = {self.size_fraction!r}: must be in (0, 1]")

    def as_dict(self) -> dict:
        return asdict(self)
