"""tradesim: a trading simulator for scripted strategies with a Cython core."""

from importlib.metadata import PackageNotFoundError
from importlib.metadata import version as _version

try:
    __version__ = _version("tradesim")
except PackageNotFoundError:  # running from a source tree without install
    __version__ = "0.0.0"

from tradesim._core import (  # noqa: E402
    ATR,
    EMA,
    MACD,
    RSI,
    SMA,
    VWAP,
    ActionType,
    BollingerBands,
    Context,
    InvalidMarketData,
    InvalidTransition,
    MarketData,
    MarketDataWindow,
    OutOfOrderBar,
    Position,
    Side,
    State,
    StateMachine,
    Stochastic,
)

__all__ = [
    "__version__", "MarketData", "InvalidMarketData", "MarketDataWindow", "OutOfOrderBar",
    "SMA", "EMA", "VWAP", "RSI", "MACD", "Stochastic", "BollingerBands", "ATR",
    "State", "Side", "ActionType", "InvalidTransition", "Position", "Context", "StateMachine",
    "LuaStrategy",
]


def __getattr__(name):
    # LuaStrategy pulls in lupa; import it only when asked for.
    if name == "LuaStrategy":
        from tradesim.strategy import LuaStrategy

        return LuaStrategy
    raise AttributeError(f"module 'tradesim' has no attribute {name!r}")
