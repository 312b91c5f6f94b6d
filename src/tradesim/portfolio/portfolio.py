"""`Portfolio`: the account-level risk layer over several runners (docs/orders.md, Risk limits).

A portfolio watches a set of `SymbolRunner`s that trade at the same time (a
multi-runner backtest, or an engine's runners) and

- is every runner's entry gate (``RunnerCore.gate``): before each entry or
  scale-in fill it answers whether the fill may happen — not while the
  portfolio blocks entries, and not when a new position would exceed
  ``max_open_positions``;
- holds the shared `Account` when cash is shared (``RunnerCore.account``);
- after each bar (`after_bar`) marks the portfolio's equity, refreshes the
  account's equity (sizing by equity reads it), and checks the daily loss
  (from the equity at the previous UTC day's last close) and the drawdown
  (from the running peak); on a breach it emits one ``risk_limit`` event and
  blocks new entries or halts every runner (``on_breach``).

Thread safety: an engine's runners decide on several worker threads; the gate
and `after_bar` hold one lock. A runner whose entry passed the gate counts as
open until its next `after_bar`, so two runners deciding at once cannot both
take the last free position.
"""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from tradesim.portfolio.config import PortfolioConfig
from tradesim.runner import RunnerStatus, SymbolRunner

__all__ = ["DAY_MS", "Portfolio"]

#: One UTC day in ms (days start at multiples of it: the epoch began at midnight UTC).
DAY_MS = 86_400_000


class Portfolio:
    """Risk limits and P&L across runners (see the module docstring).

    Parameters
    ----------
    runners : sequence of SymbolRunner
        The runners it watches; their cores get this portfolio as ``gate``
        (when a limit is set) and the shared account (when cash is shared).
    config : PortfolioConfig
    on_event : callable, optional
        ``on_event(dict)`` receives each ``risk_limit`` event (fields
        ``type``, ``scope`` = "portfolio", ``limit``, ``threshold``,
        ``value``, ``action``, ``timestamp``; ``symbol`` and ``strategy`` for
        a rejected entry).
    halt_runner, resume_runner : callable, optional
        ``halt_runner(runner, reason)`` / ``resume_runner(runner)``: how to
        halt or resume one runner (default `SymbolRunner.halt` /
        `SymbolRunner.resume` at once; an engine queues them as commands to
        the runner's worker).
    max_events : int
        Events kept in `events` (`event_count` counts them all).
    curve_limit : int or None
        Points kept in `curve` (None: all; 0, the default: no curve — a
        backtest builds its curves from the runners afterwards).

    Attributes
    ----------
    events : list of dict
        The first `max_events` ``risk_limit`` events.
    blocked : dict
        Limit name -> reason, while it blocks new entries.
    halted : bool
        True after a breach with ``on_breach="halt"``, until `resume`.
    peak : float
        Running peak of portfolio equity since the start or the last `resume`.
    last_equity, last_cash : float
        Portfolio equity and cash at the last `after_bar` (quote currency).
    curve : deque of tuple
        ``(timestamp, equity, cash, realised, unrealised)`` per bar time (ms
        UTC; quote currency), the newest `curve_limit`: the mark after the
        last runner's bar at that time.
    """

    def __init__(self, runners: Sequence[SymbolRunner], config: PortfolioConfig | None = None, *,
                 on_event: Callable[[dict], Any] | None = None,
                 halt_runner: Callable[[SymbolRunner, str], Any] | None = None,
                 resume_runner: Callable[[SymbolRunner], Any] | None = None,
                 pause_runner: Callable[[SymbolRunner], Any] | None = None,
                 max_events: int = 1000, curve_limit: int | None = 0) -> None:
        self.config = config or PortfolioConfig()
        self.curve_limit = curve_limit
        self.curve: deque[tuple[int, float, float, float, float]] = deque(maxlen=curve_limit)
        self.runners: list[SymbolRunner] = []
        self.starting_cash = 0.0   # the sum of the runners' starting cash (see `add`)
        self.on_event = on_event
        self.halt_runner = halt_runner or (lambda runner, reason: runner.halt(reason))
        self.resume_runner = resume_runner or (lambda runner: runner.resume())
        self.pause_runner = pause_runner or (lambda runner: runner.pause())
        # the runners this portfolio halted, with the status each had (resume restores only these)
        self._halted_runners: list[tuple[SymbolRunner, RunnerStatus]] = []
        self.max_events = max_events
        self.events: list[dict] = []
        self.event_count = 0
        self.blocked: dict[str, str] = {}
        self.halted = False
        self.account = None
        if self.config.cash == "shared":
            from tradesim.runner.runner_core import Account

            self.account = Account(0.0)
        self._lock = threading.RLock()
        self._reserved: set[int] = set()     # id(core) of runners whose entry passed the gate
        self._retired_cash = 0.0             # cash of runners removed (per-runner cash)
        self._day: int | None = None
        self.day_start_equity = 0.0   # equity at the previous UTC day's last close
        self.last_equity = 0.0
        self.last_cash = 0.0   # cash at the last `after_bar`
        self.peak = 0.0
        self._daily_hit = False
        self._drawdown_hit = False
        for runner in runners:
            self.add(runner)

    def add(self, runner: SymbolRunner) -> None:
        """Watch one more runner (an engine adds runners while it runs).

        Its ``execution.starting_cash`` joins the portfolio's starting cash
        (and the shared account's cash), its equity marks and its peak.
        """
        with self._lock:
            cash = float(runner.execution.starting_cash)
            self.runners.append(runner)
            self.starting_cash += cash
            self.day_start_equity += cash
            self.last_equity += cash
            self.peak += cash
            if self.account is not None:
                self.account.cash += cash
                self.account.equity = self.account.cash + self.position_value()
                runner.core.account = self.account
            if self.config.limited:
                runner.core.gate = self

    def remove(self, runner: SymbolRunner) -> None:
        """Stop watching `runner` (removed from an engine; close its position first).

        Its cash stays in the portfolio's, so the portfolio's equity does not
        jump; it no longer takes a `max_open_positions` slot.
        """
        with self._lock:
            if runner not in self.runners:
                return
            self.runners.remove(runner)
            if self.account is None:
                self._retired_cash += float(runner.core.cash)
            runner.core.gate = None
            self._reserved.discard(id(runner.core))
            self._halted_runners = [(r, s) for r, s in self._halted_runners if r is not runner]

    # -- the entry gate (called by RunnerCore before each entry or scale-in fill) ---------

    def allow_entry(self, core: Any, ts: int, side: int, quantity: float, price: float) -> str | None:
        """None to allow an entry fill of `quantity` base units at `price` (quote currency) on
        bar `ts` (ms UTC); else the reason it is rejected (the runner records the rejection)."""
        with self._lock:
            self._roll_day(ts)   # the first bar of a new day lifts yesterday's daily-loss block
            if self.blocked:
                return next(iter(self.blocked.values()))
            limit = self.config.max_open_positions
            if not limit or core.quantity != 0 or id(core) in self._reserved:
                return None   # a scale-in adds to a position already counted
            open_now = self.open_positions()
            if open_now >= limit:
                runner = next((r for r in self.runners if r.core is core), None)
                self._emit("max_open_positions", limit, open_now, "rejected", ts, runner)
                return f"portfolio max_open_positions {limit} reached ({open_now} open)"
            self._reserved.add(id(core))
            return None

    def open_positions(self) -> int:
        """Runners holding a position, plus those whose entry passed the gate since their last bar."""
        return sum(1 for r in self.runners if r.core.quantity != 0 or id(r.core) in self._reserved)

    # -- marking and the limits checked at each close -------------------------------------

    def cash(self) -> float:
        """Portfolio cash, quote currency: the shared account's, or the sum of the runners'."""
        if self.account is not None:
            return float(self.account.cash)
        return float(sum(r.core.cash for r in self.runners)) + self._retired_cash

    def position_value(self) -> float:
        """Sum of the runners' positions marked at their newest close (signed, quote currency)."""
        return float(sum(r.core.equity - r.core.cash for r in self.runners))

    def equity(self) -> float:
        """Cash plus every position marked at its newest close (quote currency)."""
        return self._mark()[0]

    def _mark(self) -> tuple[float, float]:
        # (equity, cash) in one pass over the runners: called after every bar
        cash, value = self._retired_cash, 0.0
        for r in self.runners:
            core = r.core
            own = core.cash
            cash += own
            value += core.equity - own
        if self.account is not None:
            cash = self.account.cash
        return cash + value, cash

    def after_bar(self, ts: int, runner: SymbolRunner | None = None) -> float:
        """Mark the portfolio after bar `ts` (ms UTC) and apply the daily loss and drawdown limits.

        A backtest calls it once per timestamp, after every runner's bar at
        `ts`; an engine after each runner's bar (`runner`: that one). Returns
        the portfolio equity (quote currency).
        """
        with self._lock:
            if runner is None:
                self._reserved.clear()
            else:
                self._reserved.discard(id(runner.core))
            equity, self.last_cash = self._mark()
            if self.account is not None:
                self.account.equity = equity
            self._roll_day(ts)
            cfg = self.config
            if cfg.max_daily_loss_pct and not self._daily_hit and self.day_start_equity > 0:
                loss = (self.day_start_equity - equity) / self.day_start_equity * 100.0
                if loss > cfg.max_daily_loss_pct:
                    self._daily_hit = True
                    self._breach("max_daily_loss_pct", cfg.max_daily_loss_pct, loss, ts)
            if equity > self.peak:
                self.peak = equity
            if cfg.max_drawdown_pct and not self._drawdown_hit and self.peak > 0:
                drawdown = (self.peak - equity) / self.peak * 100.0
                if drawdown > cfg.max_drawdown_pct:
                    self._drawdown_hit = True
                    self._breach("max_drawdown_pct", cfg.max_drawdown_pct, drawdown, ts)
            if self.halted:   # the halt closed positions at this close (with slippage, fees)
                equity, self.last_cash = self._mark()
            self.last_equity = equity
            if self.curve_limit != 0:
                self._record(int(ts), equity)
            return equity

    def _record(self, ts: int, equity: float) -> None:
        # one point per bar time: a later runner's bar at the same time replaces it
        unrealised = self._unrealised()
        point = (ts, equity, self.last_cash, equity - self.starting_cash - unrealised, unrealised)
        curve = self.curve
        if curve and curve[-1][0] == ts:
            curve[-1] = point
        elif not curve or ts > curve[-1][0]:
            curve.append(point)

    def _unrealised(self) -> float:
        total = 0.0
        for r in self.runners:
            pos = r.machine.position
            q = r.core.quantity
            if pos is not None and q != 0:
                total += (r.core.equity - r.core.cash) - q * pos.entry_price
        return total

    def _roll_day(self, ts: int) -> None:
        # A new UTC day: the loss is measured from the previous day's last close.
        day = ts // DAY_MS
        if self._day is None:
            self._day = day
        elif day > self._day:
            self._day = day
            self.day_start_equity = self.last_equity
            self._daily_hit = False
            self.blocked.pop("max_daily_loss_pct", None)

    def _breach(self, limit: str, threshold: float, value: float, ts: int) -> None:
        action = self.config.on_breach
        self._emit(limit, threshold, value, action, ts)
        reason = f"portfolio {limit} {threshold:g} % breached ({value:.2f} %)"
        if action == "block":
            self.blocked[limit] = reason
            return
        self.halted = True
        for runner in self.runners:
            # a runner its own limit halted, or stopped, is not the portfolio's to resume
            if runner.status in (RunnerStatus.RUNNING, RunnerStatus.PAUSED):
                self._halted_runners.append((runner, runner.status))
                self.halt_runner(runner, reason)

    def resume(self) -> None:
        """Lift every block, resume the runners this portfolio halted and re-arm the drawdown limit.

        A runner halted by its own risk limit stays halted; one that was paused
        when the portfolio halted it is paused again.

        The drawdown is measured again from the equity now (the new peak);
        the daily loss limit re-arms at the next UTC day, as always.
        """
        with self._lock:
            self.blocked.clear()
            was_halted, self.halted = self.halted, False
            self._drawdown_hit = False
            self.peak = self.last_equity = self.equity()
            if was_halted:
                for runner, before in self._halted_runners:
                    self.resume_runner(runner)
                    if before == RunnerStatus.PAUSED:   # back as the user left it
                        self.pause_runner(runner)
            self._halted_runners = []

    def _emit(self, limit: str, threshold: float, value: float, action: str, ts: int,
              runner: SymbolRunner | None = None) -> None:
        event = {"type": "risk_limit", "scope": "portfolio", "limit": limit, "threshold": threshold,
                 "value": value, "action": action, "timestamp": int(ts)}
        if runner is not None:
            event.update(symbol=runner.symbol, strategy=runner.strategy.name)
        self.event_count += 1
        if len(self.events) < self.max_events:
            self.events.append(event)
        if self.on_event is not None:
            self.on_event(event)

    # -- introspection ----------------------------------------------------------------------

    def curve_columns(self, n: int | None = None) -> dict[str, list]:
        """The newest `n` points of `curve` (all when None) as columns: ``timestamp`` (ms UTC),
        ``equity``, ``cash``, ``realised``, ``unrealised`` (quote currency)."""
        with self._lock:
            points = list(self.curve)
        if n is not None:
            points = points[-n:] if n > 0 else []
        names = ("timestamp", "equity", "cash", "realised", "unrealised")
        return {name: [p[i] for p in points] for i, name in enumerate(names)}

    def state(self) -> dict[str, Any]:
        """Cash, equity, peak, realised / unrealised P&L, exposure per symbol and the limits' state.

        Money in quote currency. Unrealised P&L: each open position's
        signed quantity × (newest close − average entry price); realised:
        equity − starting cash − unrealised (closed trades net of fees, and
        the entry fees of open positions).
        """
        with self._lock:
            exposure: dict[str, float] = {}
            for r in self.runners:
                exposure[r.symbol] = exposure.get(r.symbol, 0.0) + (r.core.equity - r.core.cash)
            unrealised = self._unrealised()
            equity = self.equity()
            return {"cash": self.cash(), "equity": equity, "starting_cash": self.starting_cash,
                    "peak": self.peak, "day_start_equity": self.day_start_equity,
                    "realised_pnl": equity - self.starting_cash - unrealised,
                    "unrealised_pnl": unrealised, "exposure": exposure,
                    "open_positions": self.open_positions(), "blocked": dict(self.blocked),
                    "halted": self.halted, "risk_events": self.event_count,
                    "config": self.config.as_dict()}
