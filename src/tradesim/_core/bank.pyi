"""A runner's indicators, keyed by spec and updated together per bar."""

from collections.abc import Hashable

import numpy as np
import numpy.typing as npt

from tradesim._core.indicator import Indicator
from tradesim._core.window import MarketDataWindow

class IndicatorBank:
    """Indicators keyed by name (e.g. ``"ema:10"``), updated together per bar.

    Adding an indicator mid-run warms it from a window's stored bars (oldest
    first), so its value equals one that had watched those bars all along
    whenever the window holds at least its warm-up length.
    """
    n_values: int
    def __init__(self, capacity: int = 64) -> None: ...
    def __len__(self) -> int: ...
    def __contains__(self, key: object, /) -> bool: ...
    def slot(self, key: Hashable) -> tuple[int, int]:
        """(first slot, number of outputs) of the indicator stored under `key`; KeyError if absent."""
    def indicator(self, key: Hashable) -> Indicator:
        """The indicator object stored under `key`; KeyError if absent."""
    def keys(self) -> list[Hashable]:
        """Keys in the order the indicators were added."""
    def add(self, key: Hashable, indicator: Indicator, warm_from: MarketDataWindow | None = None) -> int:
        """Store `indicator` under `key` and return its first output slot.

        If `warm_from` is given, the indicator is first fed every bar the window
        holds, oldest first. Adding an existing key returns its slot unchanged.
        """
    def update(self, open: float, high: float, low: float, close: float, volume: float) -> None:
        """Feed one closed bar (prices in quote currency, volume in base units) to every indicator."""
    def value(self, slot: int) -> float:
        """Output `slot` (NaN while its indicator warms up); IndexError outside ``0..n_values-1``."""
    def values_view(self) -> npt.NDArray[np.float64]:
        """Read-only float64 view, shape (n_values,), of the output slots (updated in place each bar)."""
    def as_dict(self) -> dict[Hashable, float | tuple[float, ...]]:
        """{key: value or tuple of values} for every indicator (NaN while warming up)."""
