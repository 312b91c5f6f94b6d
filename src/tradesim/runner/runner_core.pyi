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
                 script: str = ...) -> None: ...
    def act(self, action: int, quantity: float, stop_loss: float, take_profit: float,
            price: float, reason: str, ts: int, close: float) -> int:
        """Carry out an action the strategy asked for on the bar closing at `close`.

        Rejections go to ``handler.reject``; NaN means "not given".
        """
    def submit_enter(self, side: int, quantity: float, stop_loss: float, take_profit: float,
                     reason: str) -> None:
        """Queue a market entry for the next bar's open (`quantity` NaN: size from cash)."""
    def submit_exit(self, reason: str) -> None:
        """Queue a market exit of the open position for the next bar's open."""
    def cancel_pending(self) -> None:
        """Drop a queued market order."""
    def enter(self, side: int, quantity: float, stop_loss: float, take_profit: float,
              reason: str, base_price: float, ts: int) -> int:
        """Open a position at `base_price` moved by slippage; 1, or 0 if rejected."""
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
