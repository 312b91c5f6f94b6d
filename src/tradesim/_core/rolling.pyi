"""Rolling window statistics as incremental indicators (O(1) per bar)."""

from tradesim._core.indicator import Indicator

class _Extremes(Indicator):
    """Highest high and lowest low of the last `period` bars (monotonic deques)."""
    def __init__(self, period: int) -> None: ...
    @property
    def period(self) -> int: ...
    def update(self, high: float, low: float) -> float:
        """Add one bar's high and low (quote currency); return the new value (NaN while warming up)."""
    @property
    def value(self) -> float: ...

class Highest(_Extremes):
    """Highest high of the last `period` bars (quote currency); NaN until `period` bars."""

class Lowest(_Extremes):
    """Lowest low of the last `period` bars (quote currency); NaN until `period` bars."""

class PriceRange(_Extremes):
    """Highest high minus lowest low of the last `period` bars (quote currency); NaN until `period` bars."""

class AverageVolume(Indicator):
    """Mean volume of the last `period` bars (base units); NaN until `period` bars."""
    def __init__(self, period: int) -> None: ...
    @property
    def period(self) -> int: ...
    def update(self, volume: float) -> float:
        """Add one bar's volume (base units); return the new mean (NaN while warming up)."""
    @property
    def value(self) -> float: ...
