import numpy as np
import numpy.typing as npt

_F64 = npt.NDArray[np.float64]
OUTPUT_NAMES: tuple[str, ...]

class IndicatorSet:
    count: int
    warmup_period: int
    def __init__(self, sma: int = ..., ema: int = ..., rsi: int = ...,
                 macd: tuple[int, int, int] = ..., bollinger: tuple[int, float] = ...) -> None: ...
    def update(self, x: float) -> None: ...
    def update_many(self, x: npt.ArrayLike, out: dict[str, _F64] | None = ...) -> dict[str, _F64]: ...
    def reset(self) -> None: ...
    @property
    def initialized(self) -> bool: ...
    sma: float
    ema: float
    rsi: float
    macd: float
    macd_signal: float
    macd_histogram: float
    bb_upper: float
    bb_middle: float
    bb_lower: float
    def as_dict(self) -> dict[str, float]: ...

def compute_all(close: npt.ArrayLike, sma: int = ..., ema: int = ..., rsi: int = ...,
                macd: tuple[int, int, int] = ..., bollinger: tuple[int, float] = ...) -> dict[str, _F64]: ...
