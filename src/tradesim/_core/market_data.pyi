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
