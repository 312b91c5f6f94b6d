"""`RunnerCore`: the per-bar step every mode shares; fills, costs and decisions in C."""

from typing import Any

import numpy as np
import numpy.typing as npt

from tradesim._core import IndicatorBank
from tradesim._core.market_data import MarketData
from tradesim._core.state_machine import StateMachine
from tradesim._core.window import MarketDataWindow
from tradesim.strategy.lua_direct import LuaDirect

class RunnerStopped(Exception):
    """Raised by a handler to stop the runner (e.g. too many consecutive errors)."""

class Account:
    """Cash shared by several runners; `equity` is refreshed by its owner after each bar."""
    cash: float
    equity: float
    def __init__(self, cash: float = ...) -> None: ...

class RunnerCore:
    """Per-bar driver of one (symbol, strategy) pair (see the module docstring).

    It carries out the strategy's decisions and simulated execution itself;
    `handler` records and reports what C cannot (see runner_core.pyx).
    """
    window: MarketDataWindow
    bank: IndicatorBank
    machine: StateMachine
    handler: Any
    cash: float
    """Cash in quote currency (kept by the fills)."""
    quantity: float
    """Signed position in base units (> 0 long, < 0 short)."""
    pending: bool
    """A market order waits for the next bar's open."""
    working: bool
    """A limit or stop entry order works (see `working_order`)."""
    entries_blocked: str | None
    """Why new entries are rejected (a risk limit or the owner), or None."""
    halted: bool
    halt_on_breach: bool
    account: Account | None
    gate: Any
    closed: list[tuple[Any, ...]]
    """Closed trades booked since the handler last took them, as raw tuples."""
    fill_close: bool
    allow_short: bool
    deciding: bool
    """Call the strategy (False while paused: indicators stay warm)."""
    errors_in_row: int
    bars: int
    decisions: int
    """Strategy calls that returned something (a setup, an action, or an invalid result)."""
    recording: bool
    """Report every valid decision to ``handler.on_decision`` (a recorded session)."""
    record_buffer: list[tuple] | None
    """While recording: append each decision here as a tuple instead (a recorded backtest)."""
    script: str
    """The strategy's file name, named by the errors of invalid decisions."""
    dispatch: Any
    """The strategy's raw dispatcher (assignable, e.g. after a reload)."""
    sync: LuaDirect | None
    """The strategy's position/context sync function, or None (assignable)."""
    def __init__(self, window: MarketDataWindow, bank: IndicatorBank, machine: StateMachine,
                 dispatch: Any, handler: Any, cash: float = ..., *, slippage_bps: float = ...,
                 commission_bps: float = ..., fixed_fee: float = ..., size_fraction: float = ...,
                 fill_close: bool = ..., allow_short: bool = ..., sync: LuaDirect | None = ...,
                 script: str = ..., lot_size: float = ..., min_notional: float = ...,
                 max_position_notional: float = ..., max_daily_loss_pct: float = ...,
                 max_drawdown_pct: float = ..., halt_on_breach: bool = ...) -> None: ...
    def working_order(self) -> dict[str, Any] | None:
        """The working limit/stop entry order, or None."""
    def lots(self) -> list[dict[str, Any]]:
        """The open position's lots, oldest first."""
    def cancel_pending(self) -> None:
        """Drop a queued market order."""
    def halt(self, ts: int, close: float, reason: str) -> None:
        """Close the position at `close`, drop orders, stop deciding."""
    def block_entries(self, reason: str) -> None: ...
    def unblock_entries(self) -> None: ...
    def resume_trading(self) -> None:
        """After a halt or block: decide and enter again; the risk baseline restarts."""
    def resync(self) -> None:
        """Mirror the position and the working order into Lua again."""
    def exit_market(self, base_price: float, ts: int, reason: str) -> int:
        """Close the open position at `base_price` moved by slippage (InvalidTransition if flat)."""
    @property
    def equity(self) -> float:
        """Cash plus the position marked at the newest close (quote currency)."""
    def process(self, bar: MarketData) -> bool:
        """Run one closed bar through the step; False once the runner stopped itself."""
    def process_values(self, ts: int, o: float, h: float, l: float, c: float, v: float,
                       bid: float = ..., ask: float = ...) -> bool:
        """`process` for a bar given as numbers (trusted: validate before)."""
    def run(self, ts: npt.NDArray[np.int64], o: npt.NDArray[np.float64],
            h: npt.NDArray[np.float64], l: npt.NDArray[np.float64], c: npt.NDArray[np.float64],
            v: npt.NDArray[np.float64], bid: npt.NDArray[np.float64],
            ask: npt.NDArray[np.float64], equity_out: npt.NDArray[np.float64],
            in_position_out: npt.NDArray[np.uint8], start: int = ..., stop: int = ...) -> int:
        """Process bars ``start .. stop-1`` of validated columns (a backtest); the index after the last."""
