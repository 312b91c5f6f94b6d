"""The per-bar decision protocol: result codes, `Decision` / `ActionRequest`, the one decoder."""

import enum
from typing import Any, NamedTuple

from tradesim._core.state_machine import ActionType

AMOUNT_NAMES: tuple[str, ...]
"""An action's numeric fields, in the order of the protocol."""

__all__ = ["AMOUNT_NAMES", "ActionRequest", "Decision", "ResultCode", "SyncCode", "STRATEGY_ACTIONS", "decode",
           "lua_codes"]

class ResultCode(enum.IntEnum):
    """First value of what api.lua's ``on_bar`` returns (it returns nothing for no decision)."""
    STARTED = 1
    ACTION = 2
    INVALID_TABLE = 3
    STARTED_ACTION = 4

class SyncCode(enum.IntEnum):
    """api.lua's ``sync(code, ...)``: `Side.LONG` / `Side.SHORT` set that position, or these."""
    SYNC_FLAT = 0
    SYNC_CLEAR_CONTEXT = 2
    SYNC_ORDER_LONG = 3
    SYNC_ORDER_SHORT = 4
    SYNC_NO_ORDER = 5

class ActionRequest(NamedTuple):
    """A validated action from a strategy (prices in quote currency, quantity in base units).

    `quantity` is None when the strategy leaves sizing to the execution model;
    `stop_loss`, `take_profit` and `price` are None when not given.
    """
    action: ActionType
    quantity: float | None
    stop_loss: float | None
    take_profit: float | None
    price: float | None
    reason: str
    function: str
    extra: dict[str, float] = ...

class Decision(NamedTuple):
    """What one bar's strategy call asked for: an analysis started, an action, or both."""
    started: bool
    start_reason: str
    action: ActionRequest | None

#: The actions a strategy may name (as the member's lower-case name), in message order.
STRATEGY_ACTIONS: tuple[ActionType, ...]

def decode(result: Any, script: str = ...) -> Decision:
    """Decode what a lupa call of api.lua's ``on_bar`` returned (not None) into a `Decision`.

    Raises
    ------
    StrategyError
        An invalid action, naming the script, function, field and value.
    """

def lua_codes() -> dict[str, int]:
    """The numbers api.lua uses, by name (``RESULT_*``, ``STATE_*``, ``SIDE_*``, ``SYNC_*``)."""
