"""The per-symbol trading state machine (IDLE -> ANALYZING -> IN_POSITION -> IDLE) and its positions.

State, Side and ActionType are cpdef enums of state_machine.pxd: the same
definition gives C its constants and Python these IntEnums (a test checks
that the members listed here agree).
"""

import enum
from typing import Any, Literal, NamedTuple

from tradesim._core.context import Context
from tradesim._core.market_data import MarketData

_Policy = Literal["stop_loss_first", "take_profit_first", "open_distance"]

class State(enum.IntEnum):
    """Where the machine is in the trading cycle."""
    IDLE = 0
    ANALYZING = 1
    IN_POSITION = 2

class Side(enum.IntEnum):
    """Direction of a position; the value is the sign of its P&L per unit price rise."""
    LONG = 1
    SHORT = -1

class ActionType(enum.IntEnum):
    """What a strategy can ask of the machine (the lower-case name is the method name)."""
    START_ANALYZING = 0
    CANCEL_ANALYSIS = 1
    ENTER_LONG = 2
    ENTER_SHORT = 3
    EXIT = 4
    UPDATE_STOP_LOSS = 5
    UPDATE_TAKE_PROFIT = 6
    PLACE_ORDER = 7
    CANCEL_ORDER = 8

class Transition(NamedTuple):
    """One recorded state change (timestamp in ms since epoch UTC)."""
    from_state: State
    to_state: State
    reason: str
    timestamp: int
    action: ActionType

class InvalidTransition(RuntimeError):
    """An action is not allowed in the machine's current state; nothing was changed."""
    state: State | None
    action: ActionType | None
    def __init__(self, message: str, state: State | None = ...,
                 action: ActionType | None = ...) -> None: ...

class Position:
    """One position: opened by an entry, marked at each bar's close, closed by an exit (P&L gross)."""
    quantity: float
    entry_price: float
    entry_time: int
    stop_loss: float
    take_profit: float
    mark_price: float
    unrealized_pnl: float
    realized_pnl: float
    exit_price: float
    exit_reason: str | None
    entry_reason: str
    ambiguous: bool
    is_open: bool
    bars_held: int
    entry_kind: int
    """0 market, 1 limit, 2 stop (how the first lot was entered)."""
    stop_reason: str
    """The exit reason when the stop-loss fills: stop_loss, trailing_stop or breakeven_stop."""
    def __init__(self, side: Side | int | str, quantity: float, entry_price: float,
                 entry_time: int, stop_loss: float = ..., take_profit: float = ...,
                 reason: str = ...) -> None: ...
    @property
    def side(self) -> Side: ...
    @property
    def exit_time(self) -> int | None: ...
    @property
    def pnl(self) -> float: ...
    def to_dict(self) -> dict[str, Any]: ...

class StateMachine:
    """The trading cycle of one symbol; `update` feeds it bars (SL/TP exits, marks, timeout)."""
    analysis_timeout_bars: int
    keep_context: bool
    bars_processed: int
    bars_in_state: int
    n_trades: int
    transition_count: int
    realized_pnl: float
    position: Position | None
    last_closed: Position | None
    closed_positions: list[Position]
    context: Context
    order_working: bool
    """A limit or stop entry order works (flat, ANALYZING)."""
    def __init__(self, ambiguity_policy: _Policy = ..., analysis_timeout_bars: int = ...,
                 keep_context: bool = ...) -> None: ...
    @property
    def state(self) -> State: ...
    @property
    def ambiguity_policy(self) -> _Policy: ...
    def allowed_actions(self) -> tuple[ActionType, ...]: ...
    def reset(self) -> None: ...
    def start_analyzing(self, timestamp: int, reason: str = ...) -> None: ...
    def cancel_analysis(self, timestamp: int, reason: str = ...) -> None: ...
    def enter_long(self, quantity: float, price: float, timestamp: int, stop_loss: float = ...,
                   take_profit: float = ..., reason: str = ...) -> Position: ...
    def enter_short(self, quantity: float, price: float, timestamp: int, stop_loss: float = ...,
                    take_profit: float = ..., reason: str = ...) -> Position: ...
    def exit(self, price: float, timestamp: int, reason: str = ...) -> Position: ...
    def place_order(self, timestamp: int, reason: str = ...) -> None: ...
    def cancel_order(self) -> None: ...
    def add_to_position(self, quantity: float, price: float) -> None: ...
    def reduce_position(self, quantity: float, price: float, cost: float | None = ...) -> float: ...
    def update_stop_loss(self, price: float) -> None: ...
    def update_take_profit(self, price: float) -> None: ...
    def apply(self, action: ActionType | int | str, timestamp: int | None = ..., *,
              quantity: float | None = ..., price: float | None = ...,
              stop_loss: float = ..., take_profit: float = ...,
              reason: str | None = ...) -> Position | None: ...
    def update(self, bar: MarketData) -> Position | None: ...
    def update_values(self, timestamp: int, open: float, high: float, low: float,
                      close: float) -> Position | None: ...
    def history(self) -> list[Transition]: ...
    def to_dict(self, history: bool = ...) -> dict[str, Any]: ...
