from typing import Any

import numpy as np
import numpy.typing as npt

class InvalidMarketData(ValueError):
    field: str | None
    value: Any
    def __init__(self, message: str, field: str | None = ..., value: Any = ...) -> None: ...

class MarketData:
    """One bar: prices in quote currency, volume in base units, timestamp in ms since epoch UTC."""
    symbol: str
    timestamp: int
    open: float
    high: float
    low: float
    close: float
    volume: float
    bid: float
    ask: float
    def __init__(self, symbol: str, timestamp: int, open: float, high: float, low: float,
                 close: float, volume: float = ..., bid: float = ..., ask: float = ..., *,
                 validate: bool = ...) -> None: ...
    def validate(self) -> None: ...
    @property
    def mid_price(self) -> float: ...
    def as_dict(self) -> dict[str, Any]: ...

def bar_problem(open: float, high: float, low: float, close: float, volume: float, bid: float,
                ask: float) -> tuple[str, float, str] | None:
    """What is wrong with a bar: ``(field, value, reason)``, or None if it is valid.

    The rules: open, high, low and close finite and > 0, volume finite and
    >= 0, low <= open, close <= high, bid and ask each NaN (unknown) or a
    finite price > 0, and bid <= ask; the first broken rule is named.
    """

def first_invalid_row(open: npt.NDArray[np.float64], high: npt.NDArray[np.float64],
                      low: npt.NDArray[np.float64], close: npt.NDArray[np.float64],
                      volume: npt.NDArray[np.float64], bid: npt.NDArray[np.float64],
                      ask: npt.NDArray[np.float64]) -> int:
    """Index of the first row that breaks the bar rule (`bar_problem`), or -1 if none does.

    Columns are float64 arrays of equal length (bid/ask NaN where unknown);
    raises ValueError if the lengths differ.
    """
