from typing import Any

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

def bar_problem(open: float, high: float, low: float, close: float, volume: float,
                bid: float = ..., ask: float = ...) -> tuple[str, float, str] | None:
    """Why a bar breaks the rule, as ``(field, value, reason)``, or None when it is valid.

    Prices (quote currency) finite and > 0 with open and close inside [low, high];
    volume (base units) finite and >= 0; bid and ask NaN (unknown) or finite
    prices > 0, not crossed.
    """

def first_invalid_row(open: Any, high: Any, low: Any, close: Any, volume: Any,
                      bid: Any = ..., ask: Any = ...) -> int:
    """Index of the first row (float64 columns of one length) breaking the bar rule, or -1.

    ValueError if the columns differ in length.
    """
