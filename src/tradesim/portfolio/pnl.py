"""Portfolio P&L curves of a finished run: cash, realised and unrealised P&L, exposure per symbol.

Built after the run from each runner's bars, trades and equity curve, so a
backtest's fast path (each runner over its whole array) pays nothing per bar
for them. A lot (a trade) is held at the closes of bars ``entry_bar`` ..
``exit_bar - 1`` of its runner: it fills at or inside its entry bar, and is
gone at the close of its exit bar.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

__all__ = ["PortfolioCurves", "RunPositions", "portfolio_curves"]


@dataclass
class RunPositions:
    """What `portfolio_curves` needs of one runner.

    Attributes
    ----------
    symbol : str
    timestamps, close : ndarray
        The runner's bars: open times (ms UTC) and closes (quote currency).
    equity : ndarray
        Its equity at each close (quote currency).
    trades : sequence of Trade
        Its closed trades (``entry_bar`` / ``exit_bar`` index its bars).
    starting_cash : float
    bars_processed : int
        Bars it ran (fewer than its bars when it stopped itself: later bars
        are marked at its last processed close, as its equity is).
    open_lots : sequence of (side, quantity, entry_price, entry_bar)
        Lots still open after the run (none when positions were closed at the end).
    """

    symbol: str
    timestamps: np.ndarray
    close: np.ndarray
    equity: np.ndarray
    trades: Sequence[Any]
    starting_cash: float
    bars_processed: int
    open_lots: Sequence[tuple[str, float, float, int]] = ()


@dataclass
class PortfolioCurves:
    """Per-bar portfolio P&L on the portfolio's timestamps (money in quote currency).

    ``equity = cash + sum(exposure.values())`` and
    ``equity = starting_cash + realised + unrealised`` at every bar.
    Unrealised P&L is the open lots' signed quantity × (close − entry price);
    realised is the rest (closed trades net of fees, and entry fees of open lots).
    `cash` is the ledger's cash when the run recorded it (an interleaved
    backtest), else equity minus exposure.
    """

    timestamps: np.ndarray
    equity: np.ndarray
    cash: np.ndarray
    realised: np.ndarray
    unrealised: np.ndarray
    exposure: dict[str, np.ndarray]
    starting_cash: float
    config: dict = field(default_factory=dict)
    events: list[dict] = field(default_factory=list)
    event_count: int = 0
    interleaved: bool = False

    def summary(self) -> dict[str, Any]:
        """Final cash, equity, realised / unrealised P&L, exposure per symbol (final, largest
        absolute, and the share of bars with a position), the configuration and the risk events."""
        last = -1 if self.equity.size else None
        exposure = {}
        for symbol, values in self.exposure.items():
            exposure[symbol] = {
                "final": float(values[last]) if last is not None else 0.0,
                "max_abs": float(np.abs(values).max()) if values.size else 0.0,
                "time_in_market": float((values != 0).mean()) if values.size else 0.0,
            }
        return {"starting_cash": self.starting_cash,
                "cash": float(self.cash[last]) if last is not None else self.starting_cash,
                "equity": float(self.equity[last]) if last is not None else self.starting_cash,
                "realised_pnl": float(self.realised[last]) if last is not None else 0.0,
                "unrealised_pnl": float(self.unrealised[last]) if last is not None else 0.0,
                "exposure": exposure, "config": self.config, "interleaved": self.interleaved,
                "risk_event_count": self.event_count, "risk_events": self.events}


def _forward_fill(src_ts: np.ndarray, values: np.ndarray, ts: np.ndarray, before: float) -> np.ndarray:
    idx = np.searchsorted(src_ts, ts, side="right") - 1
    return np.where(idx >= 0, values[np.maximum(idx, 0)], before)


def portfolio_curves(ts: np.ndarray, equity: np.ndarray, runs: Sequence[RunPositions], *,
                     starting_cash: float, cash: np.ndarray | None = None) -> PortfolioCurves:
    """Cash, realised / unrealised P&L and exposure per symbol of a run, on timestamps `ts`.

    Parameters
    ----------
    ts, equity : ndarray
        The portfolio's bar open times (ms UTC) and equity at each close.
    runs : sequence of RunPositions
    starting_cash : float
        The portfolio's starting cash (quote currency).
    cash : ndarray, optional
        The ledger's cash at each close; default: equity minus exposure.
    """
    n = len(ts)
    exposure: dict[str, np.ndarray] = {}
    unrealised = np.zeros(n)
    for run in runs:
        m = len(run.timestamps)
        lots = [(t.side == "long", t.quantity, t.entry_price, t.entry_bar, t.exit_bar) for t in run.trades]
        lots += [(side == "long", q, price, bar, m) for side, q, price, bar in run.open_lots]
        # difference arrays of the signed quantity held and its signed cost, per bar
        qty = np.zeros(m + 1)
        cost = np.zeros(m + 1)
        if lots:
            long_, q, price, start, stop = (np.array(col) for col in zip(*lots))
            signed = np.where(long_, q, -q).astype(np.float64)
            start, stop = start.astype(np.int64), stop.astype(np.int64)
            np.add.at(qty, start, signed)
            np.add.at(qty, stop, -signed)
            np.add.at(cost, start, signed * price)
            np.add.at(cost, stop, -signed * price)
        held, basis = np.cumsum(qty)[:m], np.cumsum(cost)[:m]
        close = np.asarray(run.close, dtype=np.float64)
        done = min(run.bars_processed, m)
        if 0 < done < m:   # a runner that stopped itself is marked at its last close
            close = close.copy()
            close[done:] = close[done - 1]
        value = held * close
        same = run.timestamps is ts or (m == n and np.array_equal(run.timestamps, ts))
        if run.symbol in exposure:
            exposure[run.symbol] += value if same else _forward_fill(run.timestamps, value, ts, 0.0)
        else:
            exposure[run.symbol] = value if same else _forward_fill(run.timestamps, value, ts, 0.0)
        unrealised += (value - basis) if same else _forward_fill(run.timestamps, value - basis, ts, 0.0)
    total_exposure = np.sum(list(exposure.values()), axis=0) if exposure else np.zeros(n)
    equity = np.asarray(equity, dtype=np.float64)
    realised = equity - starting_cash - unrealised
    cash = equity - total_exposure if cash is None else np.asarray(cash, dtype=np.float64)
    return PortfolioCurves(ts, equity, cash, realised, unrealised, exposure, starting_cash)
