"""Metrics as people read them: labels, sections and units (percentages, UTC dates,
durations). The terminal summary and the HTML report both show metrics through this."""

from __future__ import annotations

from collections.abc import Callable

from tradesim.backtest.metrics import Metrics
from tradesim.display import format_number, format_percent
from tradesim.timeframes import format_duration, format_time

__all__ = ["metric_rows"]


def _drawdown_duration(bars: int, ms: int, recovered: bool | None = None) -> str:
    if not bars:
        return "0 bars"
    text = f"{bars:,} bars ({format_duration(ms)})"
    return text + ("" if recovered in (None, True) else ", not recovered")


def _count(v: int) -> str:
    return f"{v:,}"


def _money(v: float) -> str:
    return format_number(v, ",.2f")


def _ratio(v: float) -> str:
    return format_number(v, ".3f")


# (field, label, formatter) per section; Metrics fields not listed are shown under "Other".
_SECTIONS: list[tuple[str, list[tuple[str, str, Callable]]]] = [
    ("Period", [
        ("start_time", "Start (UTC)", format_time),
        ("end_time", "End (UTC)", format_time),
        ("n_bars", "Bars", _count),
        ("interval_ms", "Bar interval", format_duration),
        ("years", "Years", lambda v: format_number(v, ".3f")),
    ]),
    ("Returns", [
        ("starting_cash", "Starting cash", _money),
        ("final_equity", "Final equity", _money),
        ("total_return", "Total return", format_percent),
        ("cagr", "CAGR", format_percent),
        ("volatility", "Volatility (annualized)", format_percent),
        ("sharpe", "Sharpe ratio", _ratio),
        ("sortino", "Sortino ratio", _ratio),
        ("calmar", "Calmar ratio", _ratio),
        ("risk_free_rate", "Risk-free rate (annual)", format_percent),
        ("bars_per_year", "Bars per year", lambda v: format_number(v, ",.1f")),
    ]),
    ("Drawdown", [
        ("max_drawdown", "Max drawdown", format_percent),
        ("max_drawdown_bars", "Max drawdown duration", None),
        ("longest_drawdown_bars", "Longest drawdown", None),
    ]),
    ("Trades", [
        ("n_trades", "Trades", _count),
        ("n_wins", "Wins", _count),
        ("n_losses", "Losses", _count),
        ("win_rate", "Win rate", format_percent),
        ("profit_factor", "Profit factor", _ratio),
        ("expectancy", "Expectancy (per trade)", _money),
        ("avg_win", "Average win", _money),
        ("avg_loss", "Average loss", _money),
        ("best_trade", "Best trade", _money),
        ("worst_trade", "Worst trade", _money),
        ("total_fees", "Fees paid", _money),
        ("exposure", "Exposure (time in market)", format_percent),
        ("n_ambiguous", "Ambiguous exits (SL and TP in one bar)", _count),
    ]),
]
# Shown inside the drawdown rows above.
_SHOWN_ELSEWHERE = {"max_drawdown_ms", "max_drawdown_recovered", "longest_drawdown_ms"}


def metric_rows(metrics: Metrics) -> list[tuple[str, str, str, str]]:
    """Every metric as ``(section, label, field, text)`` in display order.

    Fractions read as percentages, times as UTC dates, durations as e.g. ``90d 17h``,
    undefined values (NaN) as "n/a".
    """
    values = metrics.to_dict()
    listed = {f for _, fields in _SECTIONS for f, _, _ in fields} | _SHOWN_ELSEWHERE
    sections = list(_SECTIONS)
    other = [(k, k.replace("_", " ").capitalize(), str) for k in values if k not in listed]
    if other:
        sections.append(("Other", other))
    rows = []
    for heading, fields in sections:
        for key, label, fmt in fields:
            if key == "max_drawdown_bars":
                text = _drawdown_duration(values[key], values["max_drawdown_ms"],
                                          values["max_drawdown_recovered"])
            elif key == "longest_drawdown_bars":
                text = _drawdown_duration(values[key], values["longest_drawdown_ms"])
            else:
                text = fmt(values[key])
            rows.append((heading, label, key, text))
    return rows
