"""`SymbolRunner`: one strategy trading one symbol, in any mode.

The runner owns a `MarketDataWindow`, the strategy's `IndicatorBank`, a
`StateMachine` and a `LuaStrategy`, and drives them through `RunnerCore`'s
per-bar step, which also fills orders with the execution model and books
trades (in C), and carries out the strategy's decisions (in C too). The
runner is that step's handler for what C cannot do: it records rejections
and errors, turns booked trades into `Trade` records and emits events.
Backtests, simulated feeds and live feeds use the same runner; only the feed
and the clock differ.

A strategy sees only closed bars: the dispatcher receives bar t's values and
the indicators updated with bar t, and an order it places fills at bar t+1's
open (or bar t's close with ``fill="close"``) — nothing of bar t+1 is
reachable while deciding at bar t.
"""

from __future__ import annotations

import enum
import logging
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from tradesim._core import IndicatorBank, MarketData, MarketDataWindow
from tradesim._core.state_machine import ActionType, Side, State, StateMachine
from tradesim.runner.execution import ExecutionConfig
from tradesim.runner.risk import RiskConfig
from tradesim.runner.runner_core import RunnerCore, RunnerStopped
from tradesim.runner.trades import Trade
from tradesim.strategy import LuaStrategy, StrategyError

__all__ = ["FINAL_STATUSES", "RunnerStatus", "RunnerError", "Rejection", "RiskEvent", "SymbolRunner"]

log = logging.getLogger(__name__)

#: `State` / `ActionType` values -> the names events use (a lookup, not an enum call, per decision).
_STATE_NAMES = {s.value: s.name for s in State}
_ACTION_NAMES = {a.value: a.name.lower() for a in ActionType}


class RunnerStatus(str, enum.Enum):
    """Lifecycle of a runner."""

    RUNNING = "running"
    PAUSED = "paused"
    HALTED = "halted"      # a risk limit closed the position; resumes only by `resume`
    STOPPED = "stopped"
    FAILED = "failed"


#: Statuses a runner never leaves; it takes no more bars in them.
FINAL_STATUSES = (RunnerStatus.STOPPED, RunnerStatus.FAILED)


@dataclass(frozen=True)
class RunnerError:
    """A failed strategy call: bar open time (ms since epoch UTC), error class and message."""

    timestamp: int
    kind: str
    message: str


@dataclass(frozen=True)
class RiskEvent:
    """A risk limit reached: which, its threshold and the value (percent, or quote currency for
    notional), what was done (``"rejected"``, ``"block"``, ``"halt"``) and the bar (ms since epoch UTC)."""

    timestamp: int
    limit: str
    threshold: float
    value: float
    action: str


@dataclass(frozen=True)
class Rejection:
    """An action the strategy asked for that could not be carried out, and why."""

    timestamp: int
    action: str
    reason: str


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
    risk : RiskConfig, optional
        The runner's risk limits (default: none).
    history_limit : int, optional
        Keep only the newest `history_limit` trades, errors, rejections and
        closed positions (``machine.closed_positions``); None (the default)
        keeps all, as a backtest needs. A live runner trades for months: the
        engine sets a limit so its memory stays bounded. `trade_count`,
        `winning_trades`, `error_count` and `rejection_count` count them all.

    Attributes
    ----------
    trades : list or deque of Trade
        Closed trades, oldest first (at most `history_limit`).
    errors : list or deque of RunnerError
    rejections : list or deque of Rejection
    events_wanted : callable or None
        Set by an owner whose listeners come and go (the engine: "does the
        event bus have subscribers?"). While it returns False no event is
        built at all: events cost Lua calls (context snapshots) and dicts on
        the bars where the strategy trades.
    on_record : callable or None
        Set by `record_to`: ``on_record(dict)`` receives every event and every
        decision, whoever else listens (a recorded session).
    record_buffer : list or None
        Set by ``record_to(sink, batch=True)``: the outcomes buffered since the
        last `take_records`, as rows (see `take_records`).

    Raises
    ------
    StrategyLoadError
        The strategy failed to load.
    """

    def __init__(self, symbol: str, strategy: LuaStrategy | str | Path, *,
                 params: dict[str, Any] | None = None, window_size: int = 500,
                 execution: ExecutionConfig | None = None, max_consecutive_errors: int = 10,
                 ambiguity_policy: str = "stop_loss_first", analysis_timeout_bars: int = 0,
                 on_event: Callable[[dict], Any] | None = None,
                 history_limit: int | None = None, risk: RiskConfig | None = None) -> None:
        if max_consecutive_errors < 1:
            raise ValueError(f"max_consecutive_errors = {max_consecutive_errors}: must be >= 1")
        check_history_limit(history_limit)
        self.symbol = symbol
        self.strategy = strategy if isinstance(strategy, LuaStrategy) else LuaStrategy(strategy, params)
        self.execution = execution or ExecutionConfig()
        self.max_consecutive_errors = max_consecutive_errors
        self.window = MarketDataWindow(window_size, symbol)
        self.bank = IndicatorBank()
        self.machine = StateMachine(ambiguity_policy, analysis_timeout_bars)
        self.strategy.bind(self.window, self.bank)
        self.strategy.set_symbol(symbol)
        exe = self.execution
        self.risk = risk or RiskConfig()
        self.core = RunnerCore(self.window, self.bank, self.machine, self.strategy.dispatch, self,
                               exe.starting_cash, slippage_bps=exe.slippage_bps,
                               commission_bps=exe.commission_bps, fixed_fee=exe.fixed_fee,
                               size_fraction=exe.size_fraction, fill_close=exe.fill == "close",
                               allow_short=exe.allow_short, sync=self.strategy.position_sync,
                               script=self.strategy.path.name, lot_size=exe.lot_size,
                               min_notional=exe.min_notional,
                               max_position_notional=self.risk.max_position_notional,
                               max_daily_loss_pct=self.risk.max_daily_loss_pct,
                               max_drawdown_pct=self.risk.max_drawdown_pct,
                               halt_on_breach=self.risk.on_breach == "halt")
        self.risk_events: list[RiskEvent] | deque[RiskEvent] = _history(history_limit)
        self.on_event = on_event
        self.events_wanted: Callable[[], bool] | None = None
        self.on_record: Callable[[dict], Any] | None = None
        self.record_buffer: list | None = None
        self._layout: list[tuple[str, int, int, tuple[str, ...]]] = []   # indicator_values' slots
        self._layout_size = 0
        self.history_limit = history_limit
        # deque(maxlen=None) grows without bound; a backtest keeps plain lists
        self._trades: list[Trade] | deque[Trade] = _history(history_limit)
        self.errors: list[RunnerError] | deque[RunnerError] = _history(history_limit)
        self.rejections: list[Rejection] | deque[Rejection] = _history(history_limit)
        self.error_count = 0
        self.rejection_count = 0
        self._trade_count = 0
        self._wins = 0
        self.status = RunnerStatus.RUNNING
        self.status_reason = ""

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
        if self.status in FINAL_STATUSES:
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
        self._materialize()   # trades booked so far carry the old version's name
        self.strategy.reload()
        self.strategy.set_symbol(self.symbol)
        self.core.dispatch = self.strategy.dispatch
        self.core.sync = self.strategy.position_sync
        self.core.resync()
        self.emit("strategy_reloaded", path=str(self.strategy.path))

    def pause(self) -> None:
        """Stop deciding; the window, indicators and state keep updating with each bar."""
        if self.status == RunnerStatus.RUNNING:
            self.core.deciding = False
            self._set_status(RunnerStatus.PAUSED, "paused")

    def resume(self) -> None:
        """Decide again after `pause`, or trade again after a risk halt or block.

        After a halt (or a drawdown block) the risk baseline restarts from the
        current equity: its running peak and the day's start.
        """
        if self.status in (RunnerStatus.PAUSED, RunnerStatus.HALTED):
            if self.status == RunnerStatus.HALTED:
                self.core.resume_trading()
            self.core.deciding = True
            self._set_status(RunnerStatus.RUNNING, "resumed")
        elif self.status == RunnerStatus.RUNNING and self.core.entries_blocked is not None:
            self.core.resume_trading()
            self.emit("risk_resumed")

    def halt(self, reason: str) -> None:
        """Close the position at the newest close, drop orders and stop deciding (status HALTED).

        Only `resume` undoes it. Used by risk limits (the runner's own, or a portfolio's).
        """
        if self.status in FINAL_STATUSES or self.status == RunnerStatus.HALTED:
            return
        if len(self.window):
            last = self.window.latest()
            self.core.halt(last.timestamp, last.close, reason)
        else:
            self.core.halt(0, float("nan"), reason)
        self._set_status(RunnerStatus.HALTED, reason)

    def block_entries(self, reason: str) -> None:
        """Reject new entries (exits and stops still work) until `unblock_entries` or `resume`."""
        self.core.block_entries(reason)

    def unblock_entries(self) -> None:
        """Accept new entries again."""
        self.core.unblock_entries()

    def stop(self, reason: str = "stopped") -> None:
        """Stop for good; later bars are ignored."""
        if self.status not in FINAL_STATUSES:
            self.core.deciding = False
            self._set_status(RunnerStatus.STOPPED, reason)

    def fail(self, reason: str) -> None:
        """Disable the runner for good with status FAILED (e.g. it fell too far behind a live feed)."""
        if self.status not in FINAL_STATUSES:
            self.core.deciding = False
            self._set_status(RunnerStatus.FAILED, reason)

    def _set_status(self, status: RunnerStatus, reason: str) -> None:
        self.status, self.status_reason = status, reason
        self.emit("runner_status", status=status.value, reason=reason)

    # -- RunnerCore handler ----------------------------------------------------

    def on_timeout(self, ts: int) -> None:
        self.strategy.clear_context()
        self.emit("analysis_timeout", timestamp=ts)

    def sync_lua(self, code: int, entry_time: int, quantity: float, entry_price: float,
                 stop_loss: float, take_profit: float) -> None:
        self.strategy.sync(code, entry_time, quantity, entry_price, stop_loss, take_profit)

    def listening(self) -> bool:
        """True while events are wanted: recorded, or an `on_event` hook and, if set, `events_wanted`."""
        if self.on_record is not None:
            return True
        wanted = self.events_wanted
        return self.on_event is not None and (wanted is None or wanted())

    def record_to(self, sink: Callable[[dict], Any] | None, *, batch: bool = False) -> None:
        """Send every event and every decision to ``sink(dict)`` (None: stop recording).

        Decisions (``{"type": "decision", "timestamp", "state", "started",
        "start_reason", "action", "quantity", "stop_loss", "take_profit",
        "price", "reason", "indicators"}``, amounts NaN when not given; the
        context is in ``opportunity_detected`` events, not repeated here: a
        Lua call per decision would cost a recorded backtest 2 µs each) are
        reported before they are carried out, in the state the strategy was
        called in; they go to the sink only, never to `on_event`.

        With `batch`, nothing goes to the sink: the events are buffered as rows
        (no dict, no call per event; decisions are appended by the core itself)
        until the owner takes them with `take_records` (a recorded backtest writes
        them as one ``outcomes`` event per chunk: `tradesim.recording.outcomes`).
        Listeners (`on_event`) still get every event as a dict.
        """
        self.on_record = sink
        self.core.recording = sink is not None
        self.record_buffer = [] if batch and sink is not None else None
        self.core.record_buffer = self.record_buffer

    def take_records(self) -> list[tuple]:
        """The outcomes buffered since the last call (``record_to(..., batch=True)``), oldest first.

        Rows (`tradesim.recording.outcomes` expands them): ``(0, ts, state, started,
        start_reason, action, quantity, stop_loss, take_profit, price, reason, extra,
        indicator_bytes)`` a decision (`RunnerCore.record_buffer`); ``(1, ts, side,
        quantity, price, fee, reason)`` position_opened; ``(2, ts, side, quantity,
        entry_time, entry_price, exit_time, exit_price, pnl, fees, exit_reason, ambiguous,
        entry_bar, exit_bar)`` position_closed (the booked trade); ``(3, ts, reason,
        context)`` opportunity_detected; ``(type, fields)`` any other event. Empty when
        not buffering.
        """
        rows = self.record_buffer
        if not rows:
            return []
        self.record_buffer = self.core.record_buffer = []
        return rows

    def indicator_layout(self) -> list[list]:
        """``[key, slot, width, output names]`` of each indicator, in the bank's order (slots index
        its values: what a buffered decision's indicator bytes hold)."""
        self.indicator_values()   # (refreshes the layout)
        return [[key, slot, n, list(names)] for key, slot, n, names in self._layout]

    def on_decision(self, ts: int, state: int, started: bool, start_reason: str, action: int,
                    quantity: float, stop_loss: float, take_profit: float, price: float,
                    reason: str, extra: dict | None = None) -> None:
        sink = self.on_record
        if sink is not None:
            event = {"type": "decision", "symbol": self.symbol, "strategy": self.strategy.name,
                     "timestamp": ts, "state": _STATE_NAMES[state], "started": bool(started),
                     "start_reason": start_reason,
                     "action": _ACTION_NAMES[action] if action >= 0 else None,
                     "quantity": quantity, "stop_loss": stop_loss, "take_profit": take_profit,
                     "price": price, "reason": reason, "indicators": self.indicator_values()}
            if extra:
                event["fields"] = extra
            sink(event)

    def on_order(self, ts: int, what: str, side: str, kind: str, price: float, reason: str) -> None:
        # (the core calls this only for a listener)
        self.emit(f"order_{what}", timestamp=ts, side=side, order_type=kind, price=price, reason=reason)

    def on_reduced(self, ts: int, quantity: float, price: float, n: int = 1) -> None:
        # A partial exit (the core calls this only for a listener) and the `n` trades it booked.
        pos = self.machine.position
        self.emit("position_reduced", timestamp=ts, quantity=quantity, price=price,
                  remaining=pos.quantity if pos is not None else 0.0,
                  trades=[t.to_dict() for t in self._last_trades(n)])

    def on_risk_limit(self, ts: int, limit: str, threshold: float, value: float, action: str) -> None:
        entry = RiskEvent(ts, limit, threshold, value, action)
        self.risk_events.append(entry)
        self.emit("risk_limit", scope="runner", timestamp=ts, limit=limit, threshold=threshold,
                  value=value, action=action)
        if action == "halt" and self.status not in FINAL_STATUSES:
            self._set_status(RunnerStatus.HALTED, f"{limit}: {value:.2f} > {threshold:.2f}")

    def indicator_slot(self, kind: str, period: int) -> int:
        """The bank slot of indicator `kind` with `period` (created and warmed from the window if new)."""
        from tradesim import indicators as registry

        info, params = registry.parse_spec(f"{kind}:{period}")
        return self.bank.add(registry.spec_name(info, params), info.cls(*params), self.window)

    def on_opened(self, ts: int, side: int, quantity: float, price: float, fee: float,
                  reason: str) -> None:
        side_name = "long" if side == Side.LONG else "short"
        rows = self.record_buffer
        if rows is not None:
            rows.append((1, ts, side_name, quantity, price, fee, reason))
            if self.on_event is None:
                return
        self.emit("position_opened", _buffered=rows is not None, timestamp=ts, side=side_name,
                  quantity=quantity, price=price, fee=fee, reason=reason)

    def on_closed(self, ts: int, n: int = 1) -> None:
        # The position closed, booking `n` trades (one per lot): a position_closed event for each.
        rows = self.record_buffer
        if rows is not None:   # the core's record of the trades: no Trade built per close
            raw = self.core.closed
            for trade in (raw[-n:] if len(raw) >= n else [_raw_trade(t) for t in self._last_trades(n)]):
                rows.append((2, ts, *trade))
            if self.on_event is None:
                return
        for t in self._last_trades(n):
            self.emit("position_closed", _buffered=rows is not None, timestamp=ts, trade=t.to_dict())

    def _last_trades(self, n: int) -> list[Trade]:
        trades = self.trades
        return [trades[k] for k in range(max(0, len(trades) - n), len(trades))]

    def on_opportunity(self, ts: int, reason: str) -> None:
        # the context snapshot is a Lua call: the core calls this only for a listener
        context = self.strategy.context()
        rows = self.record_buffer
        if rows is not None:
            rows.append((3, ts, reason, context))
            if self.on_event is None:
                return
        self.emit("opportunity_detected", _buffered=rows is not None, timestamp=ts, reason=reason,
                  context=context)

    def on_position_updated(self, ts: int, field: str, price: float) -> None:
        # (the core calls this only for a listener)
        self.emit("position_updated", timestamp=ts, **{field: price})

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
        self.error_count += 1
        self.emit("runner_error", timestamp=ts, error=entry.kind, message=entry.message)
        if self.core.errors_in_row >= self.max_consecutive_errors:
            self.core.deciding = False
            self._set_status(RunnerStatus.FAILED,
                             f"{self.core.errors_in_row} consecutive strategy errors; last: {entry.message}")
            raise RunnerStopped(self.status_reason)

    # -- actions -----------------------------------------------------------------

    def reject(self, ts: int, action: int, reason: str) -> None:
        """Record an action the core could not carry out (`action` an `ActionType` value)."""
        entry = Rejection(ts, ActionType(action).name.lower(), reason)
        self.rejections.append(entry)
        self.rejection_count += 1
        self.emit("action_rejected", timestamp=ts, action=entry.action, reason=reason)

    def close_position(self, reason: str = "end_of_data") -> None:
        """Exit an open position at the newest close (market, with slippage); drop a pending order.

        A working limit/stop entry order is left as it is (it is not a position).
        """
        self.core.cancel_pending()
        if self.machine.position is not None and len(self.window):
            last = self.window.latest()
            self.core.exit_market(last.close, last.timestamp, reason)

    @property
    def trades(self) -> list[Trade] | deque[Trade]:
        """Closed trades, oldest first (built from the core's booked fills on first read)."""
        self._materialize()
        return self._trades

    @property
    def trade_count(self) -> int:
        """Trades closed so far, including those `history_limit` no longer keeps."""
        return self._trade_count + len(self.core.closed)

    @property
    def winning_trades(self) -> int:
        """Trades closed with pnl > 0 so far, including those no longer kept."""
        self._materialize()
        return self._wins

    def _materialize(self) -> None:
        # Takes the core's raw records (it keeps none once they are Trades).
        raw = self.core.closed
        if not raw:
            return
        symbol, name = self.symbol, self.strategy.name
        new = [Trade(symbol, name, side, quantity, entry_time, entry_price, exit_time, exit_price,
                     pnl, fees, reason, bool(ambiguous), entry_bar, exit_bar)
               for side, quantity, entry_time, entry_price, exit_time, exit_price, pnl, fees, reason,
               ambiguous, entry_bar, exit_bar in raw]
        raw.clear()
        self._trades.extend(new)
        self._trade_count += len(new)
        self._wins += sum(t.pnl > 0 for t in new)

    def trim_history(self) -> None:
        """Apply `history_limit` to the trades and closed positions booked since the last call.

        Errors and rejections are bounded as they are recorded; trades are
        booked in C, so an owner that never reads `trades` (a live engine)
        calls this after bars that changed state.
        """
        limit = self.history_limit
        if limit is None:
            return
        self._materialize()
        closed = self.machine.closed_positions
        if len(closed) > limit:
            del closed[:len(closed) - limit]

    # -- introspection -------------------------------------------------------------

    @property
    def decisions(self) -> int:
        """Strategy calls that returned something (a setup or an action)."""
        return self.core.decisions

    @property
    def equity(self) -> float:
        """Cash plus the position marked at the newest close (quote currency)."""
        return self.core.equity

    def warmup_bars(self) -> int:
        """Bars the strategy's indicators need before all have values (0 if none used)."""
        return max((self.bank.indicator(k).warmup_period for k in self.bank.keys()), default=0)

    def emit(self, kind: str, _buffered: bool = False, **fields: Any) -> None:
        """Send event `kind` with `fields` to `on_event`, tagged with symbol and strategy.

        Nothing is built unless someone listens (see `listening`). The runner
        emits its own events; an owner reports what happened to the runner
        outside its step through this too (the engine's inbox: a bar it
        refused, as ``"runner_error"``).
        """
        record, wanted = self.on_record, self.events_wanted
        rows = self.record_buffer
        if rows is not None:   # batch recording: a row, not a dict (`_buffered`: its caller made the row)
            if not _buffered:
                rows.append((kind, fields))
            record = None
        send = self.on_event is not None and (wanted is None or wanted())   # (asked once per event)
        if record is None and not send:
            return
        event = {"type": kind, "symbol": self.symbol, "strategy": self.strategy.name, **fields}
        if record is not None:
            record(event)
        if send:
            self.on_event(event)

    def indicator_values(self) -> dict[str, Any]:
        """The strategy's indicators' newest values by key.

        A number, or a dict of outputs for multi-output indicators (MACD ...); NaN before warm-up.
        """
        bank = self.bank
        if self._layout_size != len(bank):   # indicators are added as the strategy asks for them
            self._layout = [(str(k), *bank.slot(k), bank.indicator(k).output_names) for k in bank.keys()]
            self._layout_size = len(bank)
        values = bank.values_view().tolist()
        return {key: values[slot] if n == 1 else dict(zip(names, values[slot:slot + n]))
                for key, slot, n, names in self._layout}

    def state(self) -> dict[str, Any]:
        """Status, state machine state, position, pending order, context, indicators, cash and equity.

        Prices and money in quote currency, times in ms since epoch UTC; NaN
        where a value is not known yet (JSON-ready callers pass it through
        `tradesim.jsonable.jsonable`).
        """
        pos = self.machine.position
        return {
            "status": self.status.value, "reason": self.status_reason,
            "state": self.machine.state.name,
            "position": pos.to_dict() if pos is not None else None,
            "lots": self.core.lots(),
            "pending_order": self.core.pending,
            "working_order": self.core.working_order(),
            "entries_blocked": self.core.entries_blocked,
            "context": self.strategy.context(),
            "indicators": self.indicator_values(),
            "bars": int(self.core.bars), "decisions": int(self.core.decisions),
            "trades": self.trade_count,
            "cash": float(self.core.cash), "equity": float(self.equity),
        }


def _raw_trade(t: Trade) -> tuple:
    # A Trade as the core books it (`RunnerCore.closed`).
    return (t.side, t.quantity, t.entry_time, t.entry_price, t.exit_time, t.exit_price, t.pnl, t.fees,
            t.exit_reason, t.ambiguous, t.entry_bar, t.exit_bar)


def check_history_limit(limit: int | None) -> None:
    """Raise ValueError unless `limit` is None (keep all) or >= 1."""
    if limit is not None and limit < 1:
        raise ValueError(f"history_limit = {limit}: must be >= 1 (or None: keep all)")


def _history(limit: int | None) -> list | deque:
    return [] if limit is None else deque(maxlen=limit)
