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
An action's ``quantity`` (base units) is used as given; ``notional``,
``equity_fraction`` and ``risk_fraction`` size it at the fill price (see
docs/orders.md). Without any, the order uses ``size_fraction`` of the
runner's cash at the fill price, net of the commission. The quantity is then
rounded down to a multiple of ``lot_size`` and checked against
``min_notional``.
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Literal

from pydantic import ConfigDict, Field
from pydantic.dataclasses import dataclass

__all__ = ["ExecutionConfig", "FILL_RULES"]

FILL_RULES = ("next_open", "close")


@dataclass(frozen=True, config=ConfigDict(extra="forbid"))
class ExecutionConfig:
    """How orders fill and what they cost.

    The one definition of these settings: ``runners.toml``'s ``execution``
    table and the ``tradesim backtest`` options are validated by it.

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
        Fraction of the cash used by an order without a quantity (0 < f <= 1).
    allow_short : bool
        Accept enter_short actions.
    lot_size : float
        Quantity step of the symbol, base units (0: none); quantities are
        rounded down to a multiple of it.
    min_notional : float
        Smallest order value, quote currency (0: none); smaller orders are rejected.

    Raises
    ------
    pydantic.ValidationError
        A `ValueError` naming each field and value out of range.
    """

    fill: Literal["next_open", "close"] = "next_open"
    slippage_bps: float = Field(0.0, ge=0, allow_inf_nan=False)
    commission_bps: float = Field(0.0, ge=0, allow_inf_nan=False)
    fixed_fee: float = Field(0.0, ge=0, allow_inf_nan=False)
    starting_cash: float = Field(10_000.0, gt=0, allow_inf_nan=False)
    size_fraction: float = Field(1.0, gt=0, le=1)
    allow_short: bool = True
    lot_size: float = Field(0.0, ge=0, allow_inf_nan=False)
    min_notional: float = Field(0.0, ge=0, allow_inf_nan=False)

    def as_dict(self) -> dict:
        """The settings as a plain dict (field name -> value)."""
        return asdict(self)
