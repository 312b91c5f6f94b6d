"""Lua strategy layer: the sandboxed runtime, its errors and `LuaStrategy`."""

from tradesim.strategy.decision import ActionRequest, Decision
from tradesim.strategy.errors import (
    StrategyError,
    StrategyLoadError,
    StrategyMemoryError,
    StrategyTimeout,
)
from tradesim.strategy.lua_strategy import LuaStrategy
from tradesim.strategy.sandbox import LuaSandbox, StrategyFunction

__all__ = [
    "ActionRequest",
    "Decision",
    "LuaStrategy",
    "LuaSandbox",
    "StrategyError",
    "StrategyFunction",
    "StrategyLoadError",
    "StrategyMemoryError",
    "StrategyTimeout",
]
