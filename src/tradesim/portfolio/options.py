"""The command-line options of issue 15's settings, the same for `tradesim backtest` and `tradesim run`.

`risk_options` adds them to a click command and hands the command one
`LimitOptions` (keyword ``limits``) instead of a dozen values: the
execution fields (``--lot-size``, ``--min-notional``), the per-runner
`RiskConfig` (``--risk-*``) and the `PortfolioConfig` (``--portfolio-*``,
``--max-open-positions``). Only options given on the command line are set;
a bad value is a usage error naming the option and the value.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass, field
from typing import Any

import click

__all__ = ["LimitOptions", "risk_options"]

# option name -> (section, field); help text
_OPTIONS: dict[str, tuple[str, str, type | click.ParamType, str]] = {
    "lot_size": ("execution", "lot_size", float,
                 "Round order quantities down to a multiple of this, base units (0 = no rounding)."),
    "min_notional": ("execution", "min_notional", float,
                     "Reject orders below this notional, quote currency (0 = no minimum)."),
    "risk_max_position_notional": ("risk", "max_position_notional", float,
                                   "Per runner: reject an entry or scale-in taking the position's notional "
                                   "above this, quote currency (0 = no limit)."),
    "risk_max_daily_loss_pct": ("risk", "max_daily_loss_pct", float,
                                "Per runner: breach when equity falls more than this % below the previous "
                                "UTC day's last close."),
    "risk_max_drawdown_pct": ("risk", "max_drawdown_pct", float,
                              "Per runner: breach when equity falls more than this % below its peak."),
    "risk_on_breach": ("risk", "on_breach", click.Choice(["block", "halt"]),
                       "Per runner, on a breach: block new entries (default) or close and halt."),
    "portfolio_cash": ("portfolio", "cash", click.Choice(["per_runner", "shared"]),
                       "Cash per runner (the starting cash split evenly; default) or one shared account."),
    "max_open_positions": ("portfolio", "max_open_positions", int,
                           "Positions open at once across all runners (0 = no limit)."),
    "portfolio_max_daily_loss_pct": ("portfolio", "max_daily_loss_pct", float,
                                     "Portfolio: breach when equity falls more than this % below the "
                                     "previous UTC day's last close."),
    "portfolio_max_drawdown_pct": ("portfolio", "max_drawdown_pct", float,
                                   "Portfolio: breach when equity falls more than this % below its peak."),
    "portfolio_on_breach": ("portfolio", "on_breach", click.Choice(["block", "halt"]),
                            "Portfolio, on a breach: block new entries of every runner (default) or "
                            "close every position and halt every runner."),
}


@dataclass
class LimitOptions:
    """The settings given on the command line, as plain dicts of the fields that were set.

    Attributes
    ----------
    execution : dict
        `ExecutionConfig` fields (``lot_size``, ``min_notional``).
    risk : dict
        `RiskConfig` fields (empty: no per-runner limits given).
    portfolio : dict
        `PortfolioConfig` fields (empty: none given).
    """

    execution: dict[str, Any] = field(default_factory=dict)
    risk: dict[str, Any] = field(default_factory=dict)
    portfolio: dict[str, Any] = field(default_factory=dict)

    def risk_config(self) -> Any:
        """The `RiskConfig`, or None when no ``--risk-*`` option was given.

        Raises
        ------
        click.BadParameter
            A value out of range (naming the option and the value).
        """
        if not self.risk:
            return None
        from tradesim.runner.risk import RiskConfig

        return _build(RiskConfig, self.risk, "risk")

    def portfolio_config(self) -> Any:
        """The `PortfolioConfig`, or None when no portfolio option was given (see `risk_config`)."""
        if not self.portfolio:
            return None
        from tradesim.portfolio.config import PortfolioConfig

        return _build(PortfolioConfig, self.portfolio, "portfolio")


def _option_name(section: str, name: str) -> str:
    for key, (sec, fname, _, _) in _OPTIONS.items():
        if sec == section and fname == name:
            return "--" + key.replace("_", "-")
    return name


def _build(cls: type, values: dict[str, Any], section: str) -> Any:
    from pydantic import ValidationError

    try:
        return cls(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        name = str(err["loc"][0]) if err["loc"] else section
        raise click.BadParameter(f"{err['msg']} (got {err.get('input')!r})",
                                 param_hint=_option_name(section, name)) from None


def risk_options(fn):
    """Add the lot-size, min-notional, risk and portfolio options to a click command, which then
    receives them as one keyword argument ``limits`` (a `LimitOptions`)."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        limits = LimitOptions()
        for key, (section, name, _, _) in _OPTIONS.items():
            value = kwargs.pop(key, None)
            if value is not None:
                getattr(limits, section)[name] = value
        if limits.execution:
            from tradesim.runner.execution import ExecutionConfig

            _build(ExecutionConfig, limits.execution, "execution")
        limits.risk_config()
        limits.portfolio_config()
        return fn(*args, limits=limits, **kwargs)

    for key, (_, _, kind, text) in reversed(_OPTIONS.items()):
        wrapper = click.option("--" + key.replace("_", "-"), key, type=kind, default=None, show_default=False,
                               help=text)(wrapper)
    return wrapper
