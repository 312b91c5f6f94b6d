"""Closed trades: the record a backtest produces for each round trip, and its CSV export.

Units everywhere: prices and money in quote currency, quantities in base units, times as int
milliseconds since the Unix epoch (UTC), bar indices into the backtest's bar/equity arrays.
"""

from __future__ import annotations

import csv
import math
from collections.abc import Iterable
from dataclasses import dataclass, fields
from pathlib import Path

__all__ = ["Trade", "TRADE_CSV_COLUMNS", "trades_to_csv"]

SIDES = ("long", "short")


@dataclass(frozen=True)
class Trade:
    """One closed position (entry and exit), immutable.

    Attributes
    ----------
    symbol : str
        Instrument, e.g. ``"BTCUSDT"``.
    strategy : str
        Name of the strategy that opened the position.
    side : str
        ``"long"`` or ``"short"``.
    quantity : float
        Position size in base units (> 0; the side gives the direction).
    entry_time, exit_time : int
        Fill times, ms since the epoch UTC (``exit_time >= entry_time``).
    entry_price, exit_price : float
        Fill prices in quote currency, after slippage (> 0).
    pnl : float
        Net profit or loss in quote currency, after fees.
    fees : float
        Fees paid on both fills, quote currency (>= 0).
    exit_reason : str
        Why the position closed: ``"stop_loss"``, ``"take_profit"``, ``"signal"``,
        ``"end_of_data"``, ...
    ambiguous : bool
        True when stop loss and take profit were both inside the exit bar's range, so the
        order in which they were hit is unknown from OHLC data (the engine's tie rule decided).
    entry_bar, exit_bar : int
        Indices of the entry and exit bars (``exit_bar >= entry_bar >= 0``).

    Raises
    ------
    ValueError
        On construction, if `side` is not long/short, `quantity` or a price is not a finite
        positive number, `pnl`/`fees` are not finite or `fees` < 0, or exit precedes entry
        (in time or bar index).
    """

    symbol: str
    strategy: str
    side: str
    quantity: float
    entry_time: int
    entry_price: float
    exit_time: int
    exit_price: float
    pnl: float
    fees: float
    exit_reason: str
    ambiguous: bool
    entry_bar: int
    exit_bar: int

    def __post_init__(self) -> None:
        # Normalise numpy scalars to Python types so to_dict() is JSON- and CSV-friendly.
        # A value already of the exact type is kept (converting it would give an equal value).
        for name, kind in _FIELD_TYPES.items():
            value = getattr(self, name)
            if type(value) is kind:
                continue
            if (kind is bool and isinstance(value, str)) or (kind is int and isinstance(value, float)):
                raise ValueError(f"{name} must be {kind.__name__}, got {value!r}")
            object.__setattr__(self, name, kind(value))
        if self.side not in SIDES:
            raise ValueError(f"side must be 'long' or 'short', got {self.side!r}")
        for name in ("quantity", "entry_price", "exit_price"):
            value = getattr(self, name)
            if not (math.isfinite(value) and value > 0):
                raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
        for name in ("pnl", "fees"):
            if not math.isfinite(getattr(self, name)):
                raise ValueError(f"{name} must be finite, got {getattr(self, name)!r}")
        if self.fees < 0:
            raise ValueError(f"fees must be >= 0, got {self.fees!r}")
        if self.exit_time < self.entry_time:
            raise ValueError(f"exit_time {self.exit_time} is before entry_time {self.entry_time}")
        if not 0 <= self.entry_bar <= self.exit_bar:
            raise ValueError(f"need 0 <= entry_bar <= exit_bar, got entry_bar={self.entry_bar}, "
                             f"exit_bar={self.exit_bar}")

    @property
    def gross_pnl(self) -> float:
        """Profit or loss before fees, quote currency (``pnl + fees``)."""
        return self.pnl + self.fees

    @property
    def return_pct(self) -> float:
        """Net return on the entry notional, in percent (2.5 means +2.5 %).

        ``100 * pnl / (quantity * entry_price)``; the same formula for longs and shorts.
        """
        return 100.0 * self.pnl / (self.quantity * self.entry_price)

    def to_dict(self) -> dict[str, object]:
        """All fields plus ``gross_pnl`` and ``return_pct``, in `TRADE_CSV_COLUMNS` order."""
        out = {name: getattr(self, name) for name in _FIELD_NAMES}   # (asdict deep-copies: slow)
        out["gross_pnl"] = self.gross_pnl
        out["return_pct"] = self.return_pct
        return out


_FIELD_NAMES = tuple(f.name for f in fields(Trade))

_FIELD_TYPES = {"symbol": str, "strategy": str, "side": str, "quantity": float,
                "entry_time": int, "entry_price": float, "exit_time": int, "exit_price": float,
                "pnl": float, "fees": float, "exit_reason": str, "ambiguous": bool,
                "entry_bar": int, "exit_bar": int}

TRADE_CSV_COLUMNS: tuple[str, ...] = (*(f.name for f in fields(Trade)), "gross_pnl", "return_pct")


def trades_to_csv(trades: Iterable[Trade], path: str | Path) -> Path:
    """Write trades to a CSV file with a header row of `TRADE_CSV_COLUMNS`.

    Floats are written with ``repr`` precision (they read back exactly), times as int ms,
    `ambiguous` as ``true``/``false``.

    Parameters
    ----------
    trades : iterable of Trade
        Written in the given order.
    path : str or Path
        Destination; parent directories must exist; overwritten if present.

    Returns
    -------
    Path
        The path written.
    """
    path = Path(path)
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(TRADE_CSV_COLUMNS)
        for trade in trades:
            row = trade.to_dict()
            row["ambiguous"] = "true" if trade.ambiguous else "false"
            writer.writerow([row[name] for name in TRADE_CSV_COLUMNS])
    return path
