"""Lua strategy layer: the sandboxed runtime and its errors."""

from tradesim.strategy.errors import (
    StrategyError,
    StrategyLoadError,
    StrategyMemoryError,
    StrategyTimeout,
)
from tradesim.strategy.sandbox import LuaSandbox, StrategyFunction

__all__ = [
    "LuaSandbox",
    "StrategyError",
    "StrategyFunction",
    "StrategyLoadError",
    "StrategyMemoryError",
    "StrategyTimeout",
]
