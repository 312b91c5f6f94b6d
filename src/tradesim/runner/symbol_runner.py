"""`SymbolRunner`: one strategy trading one symbol, in any mode.

The runner owns a `MarketDataWindow`, the strategy's `IndicatorBank`, a
`StateMachine` and a `LuaStrategy`, and drives them through `RunnerCore`'s
per-bar step. It is also that step's handler for the rare events: it fills
orders with the execution model, books trades, applies strategy decisions and
counts errors. Backtests, simulated feeds and live feeds use the same runner;
only the feed and the clock differ.

A strategy sees only closed bars: the dispatcher receives bar t's values and
the indicators updated with bar t, and an order it places fills at bar t+1's
open (or bar t's close with ``fill="close"``) — nothing of bar t+1 is
reachable while deciding at bar t.
"""

from __future__ import annotations

import enum
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

from tradesim._core import IndicatorBank, MarketData, MarketDataWindow
from tradesim._core.runner_core import RunnerCore, RunnerStopped
from tradesim._core.state_machine import ActionType, InvalidTransition, Side, State, StateMachine
from tradesim.backtest.trades import Trade
from tradesim.execution import ExecutionConfig
from tradesim.strategy import LuaStrategy, StrategyError

__all__ = ["RunnerStatus", "RunnerError", "Rejection", "SymbolRunner"]

log = logging.getLogger(__name__)

# update_fast result codes (state_machine.pxd)
_STOP_LOSS, _TAKE_PROFIT, _TIMEOUT = 1, 2, 3


class RunnerStatus(str, enum.Enum):
    """Lifecycle of a runner."""

    RUNNING = "running"
    PAUSED = "paused"
    STOPPED = "stopped"
    FAILED = "failed"


@dataclass(frozen=True)
class RunnerError:
    """A failed strategy call: bar open time (ms since epoch UTC), error class and message."""

    timestamp: int
    kind: str
    message: str


@dataclass(frozen=True)
class Rejection:
    """An action the strategy asked for that could not be carried out, and why."""

    timestamp: int
    action: str
    reason: str


@dataclass
class _Order:
    kind: str            # "enter" or "exit"
    side: Side | None
    quantity: float | None
    stop_loss: float
    take_profit: float
    reason: str
    signal_time: int


@dataclass
class _OpenTrade:
    side: Side
    quantity: float
    price: float
    time: int
    fee: float
    bar: int


class SymbolRunner:
    """Run one strategy on one symbol's closed bars.

    Parameters
    ----------
    symbol : str
        Instrument, e.g. ``"BTCUSDT"``.
    strategy : LuaStrategy or path
        The strategy (a path is loaded with `params`).
    params : dict, optional
        Parameter overrides when `strategy` is a path.
    window_size : int
        Bars kept in the window (>= 1); indicators added mid-run warm from it.
    execution : ExecutionConfig, optional
        Fill rule, costs, starting cash and sizing (defaults: next-bar open, no costs).
    max_consecutive_errors : int
        After this many failed strategy calls in a row the runner stops itself
        (status FAILED, with the last error as the reason).
    ambiguity_policy : str
        Same-bar stop-loss/take-profit policy of the state machine.
    analysis_timeout_bars : int
        Bars allowed in ANALYZING before returning to IDLE (0 = no limit).
    on_event : callable, optional
        ``on_event(dict)`` receives position, decision, rejection, error and
        status events (not one per bar).

    Raises
    ------
    StrategyLoadError
        The strategy failed to load.
    """

    def __init__(self, symbol: str, strategy: LuaStrategy | str | Path, *,
                 params: dict[str, Any] | None = None, window_size: int = 500,
                 execution: ExecutionConfig | None = None, max_consecutive_errors: int = 10,
                 ambiguity_policy: str = "stop_loss_first", analysis_timeout_bars: int = 0,
                 on_event: Callable[[dict], Any] | None = None) -> None:
        if max_consecutive_errors < 1:
            raise ValueError(f"max_consecutive_errors = {max_consecutive_errors}: must be >= 1")
        self.symbol = symbol
        self.strategy = strategy if isinstance(strategy, LuaStrategy) else LuaStrategy(strategy, params)
        self.execution = execution or ExecutionConfig()
        self.max_consecutive_errors = max_consecutive_errors
        self.window = MarketDataWindow(window_size, symbol)
        self.bank = IndicatorBank()
        self.machine = StateMachine(ambiguity_policy, analysis_timeout_bars)
        self.strategy.bind(self.window, self.bank)
        self.strategy.set_symbol(symbol)
        self.core = RunnerCore(self.window, self.bank, self.machine, self.strategy.dispatch, self,
                               self.execution.starting_cash)
        self.on_event = on_event
        self.trades: list[Trade] = []
        self.errors: list[RunnerError] = []
        self.rejections: list[Rejection] = []
        self.status = RunnerStatus.RUNNING
        self.status_reason = ""
        self.decisions = 0  # strategy calls that returned something (a setup or an action)
        self._pending: _Order | None = None
        self._open: _OpenTrade | None = None

    # -- feeding bars ----------------------------------------------------------

    def process(self, bar: MarketData) -> bool:
        """Run one closed bar (validated by `MarketData`); False once the runner stopped.

        Raises
        ------
        OutOfOrderBar
            The bar is not after the previous one (nothing changes).
        InvalidMarketData
            The bar belongs to another symbol.
        """
        if self.status in (RunnerStatus.STOPPED, RunnerStatus.FAILED):
            return False
        if bar.symbol != self.symbol:
            from tradesim._core import InvalidMarketData

            raise InvalidMarketData(f"bar for {bar.symbol!r} sent to the {self.symbol!r} runner",
                                    "symbol", bar.symbol)
        return self.core.process(bar)

    # -- control ---------------------------------------------------------------

    def reload(self) -> None:
        """Hot-reload the strategy script; state, position, context and indicators are kept.

        Raises
        ------
        StrategyLoadError, StrategyError
            The new version failed to load; the old one keeps running.
        """
        self.strategy.reload()
        self.strategy.set_symbol(self.symbol)
        self.core.dispatch = self.strategy.dispatch
        self._sync_position()
        self._emit("strategy_reloaded", path=str(self.strategy.path))

    def pause(self) -> None:
        """Stop deciding; the window, indicators and state keep updating with each bar."""
        if self.status == RunnerStatus.RUNNING:
            self.core.deciding = False
            self._set_status(RunnerStatus.PAUSED, "paused")

    def resume(self) -> None:
        """Decide again after `pause`."""
        if self.status == RunnerStatus.PAUSED:
            self.core.deciding = True
            self._set_status(RunnerStatus.RUNNING, "resumed")

    def stop(self, reason: str = "stopped") -> None:
        """Stop for good; later bars are ignored."""
        if self.status not in (RunnerStatus.STOPPED, RunnerStatus.FAILED):
            self.core.deciding = False
            self._set_status(RunnerStatus.STOPPED, reason)

    def fail(self, reason: str) -> None:
        """Disable the runner for good with status FAILED (e.g. it fell too far behind a live feed)."""
        if self.status not in (RunnerStatus.STOPPED, RunnerStatus.FAILED):
            self.core.deciding = False
            self._set_status(RunnerStatus.FAILED, reason)

    def _set_status(self, status: RunnerStatus, reason: str) -> None:
        self.status, self.status_reason = status, reason
        self._emit("runner_status", status=status.value, reason=reason)

    # -- RunnerCore handler ----------------------------------------------------

    def fill_pending(self, ts: int, open_price: float) -> None:
        order, self._pending = self._pending, None
        self.core.pending = False
        if order is None:
            return
        if order.kind == "enter":
            self._enter(order, open_price, ts)
        elif self.machine.position is not None:
            self._exit_market(open_price, ts, order.reason)

    def on_update(self, code: int, ts: int, close: float) -> None:
        if code in (_STOP_LOSS, _TAKE_PROFIT):
            pos = self.machine.last_closed
            price = pos.exit_price
            if code == _STOP_LOSS:  # a stop is a market order once triggered
                price = self.execution.slipped(price, buying=pos.side == Side.SHORT)
            self._book_exit(price, ts, pos.exit_reason, pos.ambiguous)
        elif code == _TIMEOUT:
            self.strategy.clear_context()
            self._emit("analysis_timeout", timestamp=ts)

    def on_result(self, result: Any, ts: int, close: float) -> None:
        self.decisions += 1
        try:
            decision = self.strategy.decode(result)
        except StrategyError as exc:
            self._record_error(exc, ts)
            return
        if decision.started and self.machine.state == State.IDLE:
            self.machine.start_analyzing(ts, decision.start_reason)
            if self.on_event is not None:  # the context snapshot is a Lua call: only for a listener
                self._emit("opportunity_detected", timestamp=ts, reason=decision.start_reason,
                           context=self.strategy.context())
        action = decision.action
        if action is not None:
            self._apply(action, ts, close)

    def on_error(self, exc: BaseException, ts: int) -> None:
        error = exc if isinstance(exc, StrategyError) else self.strategy.translate_error(exc)
        self._record_error(error, ts)

    def _record_error(self, error: BaseException, ts: int) -> None:
        self.core.errors_in_row += 1
        if self.machine.state == State.IDLE:
            # A setup found on the failing bar never became an analysis.
            self.strategy.clear_context()
        entry = RunnerError(ts, type(error).__name__, str(error)[:1024])
        self.errors.append(entry)
        self._emit("runner_error", timestamp=ts, error=entry.kind, message=entry.message)
        if self.core.errors_in_row >= self.max_consecutive_errors:
            self.core.deciding = False
            self._set_status(RunnerStatus.FAILED,
                             f"{self.core.errors_in_row} consecutive strategy errors; last: {entry.message}")
            raise RunnerStopped(self.status_reason)

    # -- actions -----------------------------------------------------------------

    def _reject(self, ts: int, action: ActionType, reason: str) -> None:
        entry = Rejection(ts, action.name.lower(), reason)
        self.rejections.append(entry)
        self._emit("action_rejected", timestamp=ts, action=entry.action, reason=reason)

    def _apply(self, action, ts: int, close: float) -> None:
        kind = action.action
        try:
            if kind in (ActionType.ENTER_LONG, ActionType.ENTER_SHORT):
                if self.machine.state == State.IN_POSITION:
                    raise InvalidTransition(f"cannot {kind.name.lower()} in state IN_POSITION",
                                            State.IN_POSITION, kind)
                side = Side.LONG if kind == ActionType.ENTER_LONG else Side.SHORT
                if side == Side.SHORT and not self.execution.allow_short:
                    raise ValueError("short selling is disabled (allow_short=False)")
                order = _Order("enter", side, action.quantity, _nan(action.stop_loss),
                               _nan(action.take_profit), action.reason, ts)
                self._submit(order, close, ts)
            elif kind == ActionType.EXIT:
                if self.machine.state != State.IN_POSITION:
                    raise InvalidTransition(f"cannot exit in state {self.machine.state.name}",
                                            self.machine.state, kind)
                self._submit(_Order("exit", None, None, math.nan, math.nan,
                                    action.reason or "signal", ts), close, ts)
            elif kind == ActionType.CANCEL_ANALYSIS:
                self.machine.cancel_analysis(ts, action.reason)
                self.strategy.clear_context()
            elif kind == ActionType.UPDATE_STOP_LOSS:
                self.machine.update_stop_loss(action.price)
                self._sync_position()
                self._emit("position_updated", timestamp=ts, stop_loss=action.price)
            elif kind == ActionType.UPDATE_TAKE_PROFIT:
                self.machine.update_take_profit(action.price)
                self._sync_position()
                self._emit("position_updated", timestamp=ts, take_profit=action.price)
        except (InvalidTransition, ValueError) as exc:
            self._reject(ts, kind, str(exc))

    def _submit(self, order: _Order, close: float, ts: int) -> None:
        if self.execution.fill == "close":
            if order.kind == "enter":
                self._enter(order, close, ts)
            else:
                self._exit_market(close, ts, order.reason)
        else:
            self._pending = order
            self.core.pending = True

    def _enter(self, order: _Order, base_price: float, ts: int) -> None:
        exe = self.execution
        buying = order.side == Side.LONG
        price = exe.slipped(base_price, buying)
        quantity = order.quantity if order.quantity is not None else exe.size(self.core.cash, price)
        kind = ActionType.ENTER_LONG if buying else ActionType.ENTER_SHORT
        if quantity <= 0:
            self._reject(ts, kind, f"no quantity: equity {self.core.cash:.2f} too small to size an order")
            return
        try:
            enter = self.machine.enter_long if buying else self.machine.enter_short
            enter(quantity, price, ts, order.stop_loss, order.take_profit, order.reason)
        except (InvalidTransition, ValueError) as exc:
            self._reject(ts, kind, str(exc))
            return
        fee = exe.fee(price, quantity)
        self.core.cash += -(quantity * price) - fee if buying else quantity * price - fee
        self.core.quantity = quantity if buying else -quantity
        self._open = _OpenTrade(order.side, quantity, price, ts, fee, self.core.bars - 1)
        self._sync_position()
        if self.on_event is not None:
            self._emit("position_opened", timestamp=ts, side=order.side.name.lower(),
                       quantity=quantity, price=price, fee=fee, reason=order.reason)

    def _exit_market(self, base_price: float, ts: int, reason: str) -> None:
        pos = self.machine.position
        price = self.execution.slipped(base_price, buying=pos.side == Side.SHORT)
        self.machine.exit(price, ts, reason)
        self._book_exit(price, ts, reason, False)

    def _book_exit(self, price: float, ts: int, reason: str, ambiguous: bool) -> None:
        entry, self._open = self._open, None
        fee = self.execution.fee(price, entry.quantity)
        long = entry.side == Side.LONG
        self.core.cash += entry.quantity * price - fee if long else -(entry.quantity * price) - fee
        self.core.quantity = 0.0
        sign = 1.0 if long else -1.0
        gross = (price - entry.price) * entry.quantity * sign
        fees = entry.fee + fee
        trade = Trade(symbol=self.symbol, strategy=self.strategy.name, side="long" if long else "short",
                      quantity=entry.quantity, entry_time=entry.time, entry_price=entry.price,
                      exit_time=ts, exit_price=price, pnl=gross - fees, fees=fees,
                      exit_reason=reason, ambiguous=bool(ambiguous), entry_bar=entry.bar,
                      exit_bar=self.core.bars - 1)
        self.trades.append(trade)
        self.strategy.set_position(None)
        if not self.machine.keep_context:
            self.strategy.clear_context()
        if self.on_event is not None:
            self._emit("position_closed", timestamp=ts, trade=trade.to_dict())

    def _sync_position(self) -> None:
        pos = self.machine.position
        if pos is None:
            self.strategy.set_position(None)
        else:
            self.strategy.set_position(pos.side.name.lower(), pos.quantity, pos.entry_price,
                                       pos.stop_loss, pos.take_profit, pos.entry_time)

    def close_position(self, reason: str = "end_of_data") -> None:
        """Exit an open position at the newest close (market, with slippage); drop a pending order."""
        self._pending = None
        self.core.pending = False
        if self.machine.position is not None and len(self.window):
            last = self.window.latest()
            self._exit_market(last.close, last.timestamp, reason)

    # -- introspection -------------------------------------------------------------

    @property
    def equity(self) -> float:
        """Cash plus the position marked at the newest close (quote currency)."""
        return self.core.equity

    def warmup_bars(self) -> int:
        """Bars the strategy's indicators need before all have values (0 if none used)."""
        return max((self.bank.indicator(k).warmup_period for k in self.bank.keys()), default=0)

    def _emit(self, kind: str, **fields: Any) -> None:
        if self.on_event is not None:
            self.on_event({"type": kind, "symbol": self.symbol, "strategy": self.strategy.name,
                           **fields})


def _nan(value: float | None) -> float:
    return math.nan if value is None else value
