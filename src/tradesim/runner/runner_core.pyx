"""`RunnerCore`: the per-bar step every mode shares (backtest, simulated, live).

One closed bar: push it into the window -> update the indicator bank -> fill a
market order waiting for this bar's open -> work a limit/stop entry order
(expiry, fill inside the bar) -> update the state machine (marks, stop-loss /
take-profit exits, analysis timeout) -> position management at the close
(trailing stop, breakeven, time stop) -> risk limits at the close -> call the
strategy's dispatcher for the current state -> record equity. The rules are
written down in docs/orders.md.

Everything common happens here in C, and so does simulated execution: a
market order waiting for the next open is filled here (slippage, sizing,
commission), positions are opened and closed on the state machine, cash and
quantity kept, closed trades recorded as raw tuples and the strategy's
position mirrored into Lua (`LuaDirect`, no lupa call). The strategy's
decisions are carried out here too, every kind of them: `LuaDirect` reads a
valid one off the Lua stack, anything else is decoded by
`tradesim.strategy.decision` (which names what is wrong with an invalid one).
On a live feed the bars where the strategy trades are the slow ones: this
keeps them at ~3 µs with warm caches (6 µs when this was Python).

The Python `handler` (`tradesim.runner.SymbolRunner`) records rejected
actions and errors, builds `Trade` records from the raw tuples and emits
events (only while someone listens). A backtest calls `run` over arrays; a
live runner calls `process` per bar: the same `step` either way.
"""

from cpython.bytes cimport PyBytes_FromStringAndSize
from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.math cimport NAN, floor, isnan
from cpython.mem cimport PyMem_Free, PyMem_Realloc
from libc.string cimport memcpy, memmove

from tradesim._core.bank cimport IndicatorBank
from tradesim._core.market_data cimport MarketData
from tradesim._core.state_machine cimport (
    ActionType, Position, Side, State, StateMachine, BAR_ANALYSIS_TIMEOUT, BAR_STOP_LOSS,
    BAR_TAKE_PROFIT, ENTRY_LIMIT, ENTRY_MARKET, ENTRY_STOP, bar_entry)
from tradesim._core.state_machine import InvalidTransition
from tradesim._core.window cimport MarketDataWindow
from tradesim.strategy.decision cimport (
    AMOUNT_ATR_PERIOD, AMOUNT_BREAKEVEN_AFTER, AMOUNT_EQUITY_FRACTION, AMOUNT_EXPIRY_BARS,
    AMOUNT_EXPIRY_MS, AMOUNT_FRACTION, AMOUNT_LIMIT_PRICE, AMOUNT_NOTIONAL, AMOUNT_PRICE,
    AMOUNT_QUANTITY, AMOUNT_RISK_FRACTION, AMOUNT_STOP_LOSS, AMOUNT_STOP_PRICE, AMOUNT_TAKE_PROFIT,
    AMOUNT_TIME_STOP_BARS, AMOUNT_TRAILING_ATR, AMOUNT_TRAILING_PERCENT, AMOUNT_TRAILING_STOP,
    N_AMOUNTS, Decoded, SyncCode, decode_result)
from tradesim.strategy.lua_direct cimport LuaDirect

from tradesim.strategy.decision import AMOUNT_NAMES as _AMOUNT_NAMES
from tradesim.strategy.errors import StrategyError

# Result of `step`.
cdef enum:
    STEP_OK = 0
    STEP_STOPPED = 1


# Pending market order kinds.
cdef enum:
    ORDER_NONE = 0
    ORDER_ENTER = 1
    ORDER_EXIT = 2

# Trailing stop kinds.
cdef enum:
    TRAIL_NONE = 0
    TRAIL_DISTANCE = 1
    TRAIL_PERCENT = 2
    TRAIL_ATR = 3

# Why entries are blocked.
cdef enum:
    BLOCK_NONE = 0
    BLOCK_DAY = 1          # a daily loss: lifted at the next UTC day
    BLOCK_HELD = 2         # a drawdown or the owner: lifted by an explicit resume / unblock

cdef enum:
    DAY_MS = 86400000
    DEFAULT_ATR_PERIOD = 14

cdef long long NO_EXPIRY = 0x7FFFFFFFFFFFFFFF

# Interned reasons.
cdef str REASON_TRAILING = "trailing_stop"
cdef str REASON_BREAKEVEN = "breakeven_stop"
cdef str REASON_TIME_STOP = "time_stop"
cdef str REASON_STOP_LOSS = "stop_loss"


cdef inline void _put(tuple args, Py_ssize_t i, object item):
    # PyTuple_SET_ITEM steals a reference; Cython owns `item`, so add one.
    Py_INCREF(item)
    PyTuple_SET_ITEM(args, i, item)


# One lot of the open position (an entry or a scale-in fill); trades are booked per lot.
ctypedef struct Lot:
    double quantity         # base units still open
    double price            # entry fill price, quote currency
    double fee              # entry fee not yet booked, quote currency
    long long time          # entry bar open time, ms since epoch UTC
    long long bar           # entry bar index (0-based)


cdef inline void _no_amounts(double* amounts) noexcept nogil:
    cdef int i
    for i in range(N_AMOUNTS):
        amounts[i] = NAN


cdef inline str _side_name(int side):
    return "long" if side == Side.LONG else "short"


class RunnerStopped(Exception):
    """Raised by a handler to stop the runner (e.g. too many consecutive errors)."""


cdef class Account:
    """Cash shared by several runners (a portfolio with shared cash).

    Parameters
    ----------
    cash : float
        Starting cash, quote currency.

    Attributes
    ----------
    cash : float
        Every fill of every runner using this account moves it.
    equity : float
        Cash plus all positions marked at their newest closes, quote currency;
        the owner (the portfolio) refreshes it after each bar. Runners size
        ``equity_fraction`` / ``risk_fraction`` orders from it.
    """

    cdef public double cash
    cdef public double equity

    def __init__(self, double cash=0.0):
        self.cash = cash
        self.equity = cash

    def __repr__(self):
        return f"<Account cash={self.cash!r} equity={self.equity!r}>"


cdef class RunnerCore:
    """Per-bar driver of one (symbol, strategy) pair.

    Parameters
    ----------
    window : MarketDataWindow
    bank : IndicatorBank
    machine : StateMachine
    dispatch : callable
        The strategy's raw dispatcher ``f(state, ts, o, h, l, c, v, bid, ask, *values)``.
        A `LuaDirect` is called from C, without building an argument tuple.
    handler : object
        Records and reports what C cannot: has ``on_opportunity(ts, reason)``,
        ``on_error(exc, ts)`` (a failed call, or a `StrategyError` for an
        invalid decision), ``on_timeout(ts)``, ``reject(ts, action, reason)``,
        ``listening()``, ``on_opened(ts, side, quantity, price, fee, reason)``,
        ``on_closed(ts, n)``, ``on_reduced(ts, quantity, price, n)`` (a partial exit; n: the trades
        booked, one per lot or part of a lot),
        ``on_position_updated(ts, field, price)``, ``on_order(ts, what, side,
        kind, price, reason)`` (``what`` "placed" or "cancelled"; the last four
        only for a listener), ``on_risk_limit(ts, limit, threshold, value,
        action)`` (always), ``indicator_slot(kind, period)`` (the bank slot of
        an indicator the runner needs, e.g. ATR for a trailing stop),
        ``on_decision(ts, state, started, start_reason, action, quantity,
        stop_loss, take_profit, price, reason, extra)`` (only while
        `recording`; `state` a `State` value, `action` an `ActionType` value or
        -1, `extra` a dict of the other fields given or None) and
        ``sync_lua(code, entry_time, quantity, entry_price, stop_loss, take_profit)``
        (used when `sync` is None).
    cash : float
        Starting cash, quote currency.
    slippage_bps, commission_bps, fixed_fee, size_fraction : float
        Execution costs and sizing (see `tradesim.runner.execution.ExecutionConfig`).
    fill_close, allow_short : bool
        Market orders fill at the signal bar's close (else the next open);
        enter_short is accepted.
    sync : LuaDirect, optional
        The strategy's position/context sync function, called from C.
    script : str
        The strategy's file name, named by the errors of invalid decisions.
    lot_size, min_notional : float
        Quantities are rounded down to a multiple of `lot_size` (base units;
        0: none); orders below `min_notional` (quote currency; 0: none) are
        rejected.
    max_position_notional : float
        Reject an entry or scale-in that would make the position worth more
        than this at the fill price (quote currency; 0: no limit).
    max_daily_loss_pct, max_drawdown_pct : float
        Risk limits checked at each close (percent; 0: none): equity below the
        previous UTC day's last close, or below its running peak, by more than this.
    halt_on_breach : bool
        On a breach close the position at that close and stop deciding
        (halted); else block new entries.

    Attributes
    ----------
    cash : float
        Cash in quote currency (kept by the fills).
    quantity : float
        Signed position in base units (> 0 long, < 0 short).
    pending : bool
        A market order waits for the next bar's open (read-only).
    working : bool
        A limit or stop entry order works (read-only; see `working_order`).
    closed : list of tuple
        Closed trades booked since the handler last took them (it empties the
        list), oldest first, one per lot (or part of a lot) closed:
        ``(side, quantity, entry_time, entry_price, exit_time, exit_price,
        pnl, fees, exit_reason, ambiguous, entry_bar, exit_bar)``, side
        ``"long"``/``"short"``, prices and money in quote currency, times in
        ms since epoch UTC, bars 0-based.
    deciding : bool
        Call the strategy (False while paused or halted: indicators stay warm).
    errors_in_row : int
        Consecutive failed strategy calls (reset by a successful call).
    recording : bool
        Report every valid decision to ``handler.on_decision`` before it is
        carried out (a recorded session); off by default.
    record_buffer : list or None
        While `recording`: append each decision to this list instead of
        calling the handler (a recorded backtest, which writes a chunk's
        outcomes as one event): ``(0, ts, state, started, start_reason,
        action, quantity, stop_loss, take_profit, price, reason, extra,
        indicators)``, `indicators` the bank's values (float64, native byte
        order) as bytes. None (the default): call ``handler.on_decision``.
    bars : int
        Bars processed.
    entries_blocked : str or None
        Why new entries are rejected (the owner's `block_entries`, else a risk
        limit), or None (read-only).
    halted : bool
        A risk limit halted the runner (cleared by `resume_trading`).
    account : Account or None
        Cash shared with other runners: every fill moves it too, and sizing
        uses its cash and equity.
    gate : object or None
        ``gate.allow_entry(core, ts, side, quantity, price)`` is asked before
        every entry or scale-in fill, after all the runner's own checks; a str
        it returns rejects the fill (with that reason), anything else allows it.
    """

    cdef public MarketDataWindow window
    cdef public IndicatorBank bank
    cdef public StateMachine machine
    cdef object _dispatch
    cdef LuaDirect _direct          # _dispatch when it is a LuaDirect, else None
    cdef LuaDirect _locked          # the LuaDirect whose lock `run` holds, else None
    cdef public object handler
    cdef public double cash
    cdef public double quantity
    cdef readonly bint pending
    cdef readonly list closed
    # execution (ExecutionConfig)
    cdef double _slip, _commission, _fixed_fee, _size_fraction, _lot_size, _min_notional
    cdef public bint fill_close     # market orders fill at the signal bar's close
    cdef public bint allow_short
    cdef LuaDirect _sync            # position/context sync, or None: handler.sync_lua
    # the pending market order (fills at the next open)
    cdef int _order
    cdef int _order_side
    cdef double _order_amounts[N_AMOUNTS]
    cdef str _order_reason
    # the working limit / stop entry order
    cdef readonly bint working
    cdef int _wo_side, _wo_kind
    cdef double _wo_level
    cdef double _wo_amounts[N_AMOUNTS]
    cdef str _wo_reason
    cdef long long _wo_placed, _wo_expires, _wo_bars_left
    # the open position: its lots ([quantity, price, time, entry fee, bar], oldest
    # first) and its management (trailing stop, breakeven, time stop)
    cdef Lot* _lots                 # oldest first; C memory, no Python object per fill
    cdef Py_ssize_t _n_lots, _lots_capacity
    cdef bint _managed
    cdef int _trail_kind, _trail_slot
    cdef double _trail_value, _breakeven
    cdef bint _breakeven_done
    cdef long long _time_stop
    # risk
    cdef double _max_notional, _max_daily_loss, _max_drawdown
    cdef public bint halt_on_breach
    cdef bint _risk_on, _daily_hit, _drawdown_hit
    cdef double _peak, _day_start, _last_equity
    cdef long long _day
    cdef str _risk_block            # a risk limit's block (or a halt), else None
    cdef str _owner_block           # the owner's block (block_entries), else None
    cdef int _block_kind
    cdef readonly bint halted
    cdef public Account account
    cdef public object gate
    cdef public bint deciding
    cdef public long long errors_in_row
    cdef public long long bars
    cdef public long long decisions
    cdef public bint recording      # report every decision to handler.on_decision (a session log)
    cdef public list record_buffer  # ... or append it here, as a tuple (a recorded backtest)
    cdef public str script          # named by invalid-decision errors
    cdef Decoded _decided           # this bar's decision (reused)

    def __init__(self, MarketDataWindow window not None, IndicatorBank bank not None,
                 StateMachine machine not None, dispatch, handler, double cash=0.0, *,
                 double slippage_bps=0.0, double commission_bps=0.0, double fixed_fee=0.0,
                 double size_fraction=1.0, bint fill_close=False, bint allow_short=True,
                 LuaDirect sync=None, str script="", double lot_size=0.0,
                 double min_notional=0.0, double max_position_notional=0.0,
                 double max_daily_loss_pct=0.0, double max_drawdown_pct=0.0,
                 bint halt_on_breach=False):
        self._slip = slippage_bps * 1e-4
        self._commission = commission_bps * 1e-4
        self._fixed_fee = fixed_fee
        self._size_fraction = size_fraction
        self._lot_size = lot_size
        self._min_notional = min_notional
        self.fill_close = fill_close
        self.allow_short = allow_short
        self._sync = sync
        self._order = ORDER_NONE
        self.working = False
        self._n_lots = 0
        self._managed = False
        self.closed = []
        self.window = window
        self.bank = bank
        self.machine = machine
        self.dispatch = dispatch
        self.handler = handler
        self.cash = cash
        self.quantity = 0.0
        self.pending = False
        self.deciding = True
        self.errors_in_row = 0
        self.bars = 0
        self.decisions = 0
        self.recording = False
        self.record_buffer = None
        self.script = script
        self._decided = Decoded()
        self._max_notional = max_position_notional
        self._max_daily_loss = max_daily_loss_pct * 1e-2
        self._max_drawdown = max_drawdown_pct * 1e-2
        self.halt_on_breach = halt_on_breach
        self._risk_on = max_daily_loss_pct > 0 or max_drawdown_pct > 0
        self._peak = self._day_start = self._last_equity = cash
        self._day = -1
        self._risk_block = self._owner_block = None
        self._block_kind = BLOCK_NONE
        self.halted = False
        self.account = None
        self.gate = None

    @property
    def dispatch(self):
        """The strategy's raw dispatcher (assignable, e.g. after a reload)."""
        return self._dispatch

    @dispatch.setter
    def dispatch(self, dispatch):
        self._dispatch = dispatch
        self._direct = dispatch if isinstance(dispatch, LuaDirect) else None

    @property
    def sync(self):
        """The strategy's position/context sync function (`LuaDirect`), or None (assignable)."""
        return self._sync

    @sync.setter
    def sync(self, LuaDirect sync):
        self._sync = sync

    cdef tuple _args(self, long long ts, double o, double h, double l, double c,
                     double v, double bid, double ask):
        # The dispatcher's arguments built directly: numbers only, no dicts.
        cdef int n = self.bank.n_values, i
        cdef tuple args = PyTuple_New(9 + n)
        _put(args, 0, self.machine.state_c)
        _put(args, 1, ts)
        _put(args, 2, o)
        _put(args, 3, h)
        _put(args, 4, l)
        _put(args, 5, c)
        _put(args, 6, v)
        _put(args, 7, bid)
        _put(args, 8, ask)
        for i in range(n):
            _put(args, 9 + i, self.bank.values[i])
        return args

    cdef int step(self, long long ts, double o, double h, double l, double c,
                  double v, double bid, double ask) except -1:
        cdef int code
        cdef long long errors
        cdef Decoded decided = self._decided
        self.window.push_fast(ts, o, h, l, c, v, bid, ask)
        self.bank.push_bar(o, h, l, c, v)
        self.bars += 1
        try:
            if self.pending:
                self._fill_pending(ts, o)
            if self.working:
                self._work_order(ts, o, h, l)
            code = self.machine.update_fast(ts, o, h, l, c)
            if code == BAR_STOP_LOSS or code == BAR_TAKE_PROFIT:
                self._book_level_exit(code, ts)
            elif code == BAR_ANALYSIS_TIMEOUT:
                if self.working:
                    self._drop_order(ts, "analysis_timeout")
                self.handler.on_timeout(ts)
            if self._managed and self.machine.position is not None:
                self._manage(ts, c)
            if self._risk_on:
                self._check_risk(ts, c)
            if self.deciding:
                decided.ready = False
                try:
                    if self._direct is not None:
                        result = self._direct.call_bar(self.machine.state_c, ts, o, h, l, c, v,
                                                       bid, ask, self.bank.values, self.bank.n_values,
                                                       self._direct is self._locked, decided)
                    else:
                        result = self._dispatch(*self._args(ts, o, h, l, c, v, bid, ask))
                except Exception as exc:
                    self.handler.on_error(exc, ts)
                else:
                    # The call counts as successful only if its result was valid too: an
                    # invalid action is recorded by the handler as an error, and must
                    # extend the streak rather than restart it at 1.
                    errors = self.errors_in_row
                    if result is not None:      # what LuaDirect did not read in C
                        self.decisions += 1
                        try:
                            decode_result(result, decided, self.script)
                        except StrategyError as exc:
                            self.handler.on_error(exc, ts)
                    elif decided.ready:
                        self.decisions += 1
                    if decided.ready:
                        if self.recording:
                            self._record(decided, ts)
                        self._carry_out(decided, ts, c)
                    if self.errors_in_row == errors:
                        self.errors_in_row = 0
            if self.pending and self.fill_close:    # a time stop's exit, at this close
                self._fill_pending(ts, c)
        except RunnerStopped:
            return STEP_STOPPED
        return STEP_OK

    # -- decisions ---------------------------------------------------------------

    cdef int _record(self, Decoded d, long long ts) except -1:
        # The decision as the strategy returned it, before it is carried out (or rejected).
        cdef int i
        extra = None
        for i in range(AMOUNT_PRICE + 1, N_AMOUNTS):
            if not isnan(d.amounts[i]):
                if extra is None:
                    extra = {}
                extra[_AMOUNT_NAMES[i]] = d.amounts[i]
        if self.record_buffer is not None:   # no handler call, no dict: a tuple and the values' bytes
            self.record_buffer.append((
                0, ts, self.machine.state_c, d.started, d.start_reason, d.action,
                d.amounts[AMOUNT_QUANTITY], d.amounts[AMOUNT_STOP_LOSS], d.amounts[AMOUNT_TAKE_PROFIT],
                d.amounts[AMOUNT_PRICE], d.reason, extra,
                PyBytes_FromStringAndSize(<char*>self.bank.values, self.bank.n_values * sizeof(double))))
            return 0
        self.handler.on_decision(ts, self.machine.state_c, d.started, d.start_reason, d.action,
                                 d.amounts[AMOUNT_QUANTITY], d.amounts[AMOUNT_STOP_LOSS],
                                 d.amounts[AMOUNT_TAKE_PROFIT], d.amounts[AMOUNT_PRICE], d.reason,
                                 extra)
        return 0

    cdef int _carry_out(self, Decoded d, long long ts, double close) except -1:
        # A valid decision: an analysis started, an action (d.action >= 0), or both.
        if d.started and self.machine.state_c == State.IDLE:
            self.machine.start_analyzing(ts, d.start_reason)
            if self.handler.listening():
                self.handler.on_opportunity(ts, d.start_reason)
        if d.action >= 0:
            self._act(d.action, &d.amounts[0], d.reason, ts, close)
        return 0

    cdef int _act(self, int action, const double* amounts, str reason, long long ts,
                  double close) except -1:
        # The action a strategy asked for on the bar closing at `close` (docs/orders.md);
        # anything that cannot be carried out is rejected through the handler.
        cdef int state = self.machine.state_c
        cdef int side, kind
        cdef Position pos = self.machine.position
        if self.pending and self._order == ORDER_EXIT:
            # A time stop queued an exit for the next open on this bar: the strategy still
            # ran, but the exit stands (an exit of its own is the same exit).
            if action != ActionType.EXIT:
                self.handler.reject(ts, action, "an exit is queued for the next open "
                                    f"({self._order_reason})")
            return 0
        if action == ActionType.EXIT:
            if state != State.IN_POSITION:
                self.handler.reject(ts, action, f"cannot exit in state {self.machine.state.name}")
                return 0
            reason = reason or "signal"
            if self.fill_close:
                self._exit_part(close, ts, reason, amounts[AMOUNT_QUANTITY], amounts[AMOUNT_FRACTION])
            else:
                self._queue(ORDER_EXIT, 0, amounts, reason)
            return 0
        if action == ActionType.ENTER_LONG or action == ActionType.ENTER_SHORT:
            side = Side.LONG if action == ActionType.ENTER_LONG else Side.SHORT
            kind = (ENTRY_LIMIT if not isnan(amounts[AMOUNT_LIMIT_PRICE]) else
                    ENTRY_STOP if not isnan(amounts[AMOUNT_STOP_PRICE]) else ENTRY_MARKET)
            if side == Side.SHORT and not self.allow_short:
                self.handler.reject(ts, action, "short selling is disabled (allow_short=False)")
                return 0
            if pos is not None:
                if pos.side_c != side:
                    self.handler.reject(ts, action, f"cannot {_action_name(action)} in state "
                                        f"IN_POSITION ({_side_name(pos.side_c)}): exit first")
                    return 0
                if kind != ENTRY_MARKET:
                    self.handler.reject(ts, action, "limit and stop orders are placed while flat; "
                                        "scale in with a market order")
                    return 0
            if self.entries_blocked is not None:
                self.handler.reject(ts, action, f"entries blocked: {self.entries_blocked}")
                return 0
            if kind != ENTRY_MARKET:
                return self._place(side, kind, amounts, reason or "", ts)
            if self.fill_close:
                # the working order is replaced only by a fill (a rejected one leaves it)
                if self._open(side, close, amounts, reason or "", ts, ENTRY_MARKET) and self.working:
                    self._drop_order(ts, "replaced")
            else:
                if self.working:
                    self._drop_order(ts, "replaced")
                self._queue(ORDER_ENTER, side, amounts, reason)
            return 0
        try:
            if action == ActionType.CANCEL_ORDER:
                self.machine.cancel_order()
                self._drop_order(ts, reason or "cancelled")
            elif action == ActionType.CANCEL_ANALYSIS:
                self.machine.cancel_analysis(ts, reason)
                if self.working:
                    self._drop_order(ts, "analysis_cancelled")
                self._sync_lua(SyncCode.SYNC_CLEAR_CONTEXT, 0, 0.0, 0.0, NAN, NAN)
            elif action == ActionType.UPDATE_STOP_LOSS or action == ActionType.UPDATE_TAKE_PROFIT:
                if action == ActionType.UPDATE_STOP_LOSS:
                    self.machine.update_stop_loss(amounts[AMOUNT_PRICE])
                    self.machine.position.stop_reason = REASON_STOP_LOSS
                else:
                    self.machine.update_take_profit(amounts[AMOUNT_PRICE])
                self._sync_position()
                if self.handler.listening():
                    self.handler.on_position_updated(
                        ts, "stop_loss" if action == ActionType.UPDATE_STOP_LOSS else "take_profit",
                        amounts[AMOUNT_PRICE])
            else:
                raise ValueError(f"action = {action}: not an action a strategy can ask for")
        except (InvalidTransition, ValueError) as exc:
            self.handler.reject(ts, action, str(exc))
        return 0

    # -- orders ------------------------------------------------------------------

    cdef int _queue(self, int order, int side, const double* amounts, str reason) except -1:
        # A market order for the next bar's open.
        self._order, self._order_side, self._order_reason = order, side, reason or ""
        memcpy(self._order_amounts, amounts, N_AMOUNTS * sizeof(double))
        self.pending = True
        return 0

    cdef int _place(self, int side, int kind, const double* amounts, str reason,
                    long long ts) except -1:
        # A limit or stop entry order starts working (or replaces the working one).
        cdef int action = ActionType.ENTER_LONG if side == Side.LONG else ActionType.ENTER_SHORT
        cdef double level = amounts[AMOUNT_LIMIT_PRICE] if kind == ENTRY_LIMIT else amounts[AMOUNT_STOP_PRICE]
        cdef double sl = amounts[AMOUNT_STOP_LOSS], tp = amounts[AMOUNT_TAKE_PROFIT]
        name = "limit_price" if kind == ENTRY_LIMIT else "stop_price"
        # Levels must make sense against the order's own price (again at the fill).
        if (side == Side.LONG and not sl < level) or (side == Side.SHORT and not sl > level):
            if not isnan(sl):
                self.handler.reject(ts, action, f"stop_loss = {sl!r}: must be "
                                    f"{'below' if side == Side.LONG else 'above'} the {name} ({level!r})")
                return 0
        if (side == Side.LONG and not tp > level) or (side == Side.SHORT and not tp < level):
            if not isnan(tp):
                self.handler.reject(ts, action, f"take_profit = {tp!r}: must be "
                                    f"{'above' if side == Side.LONG else 'below'} the {name} ({level!r})")
                return 0
        if self.working:
            self._drop_order(ts, "replaced")
        if self.pending and self._order == ORDER_ENTER:
            self.cancel_pending()
        self.machine.place_order(ts, reason)
        self.working = True
        self._wo_side, self._wo_kind, self._wo_level, self._wo_reason = side, kind, level, reason
        memcpy(self._wo_amounts, amounts, N_AMOUNTS * sizeof(double))
        self._wo_placed = ts
        self._wo_expires = (ts + <long long>amounts[AMOUNT_EXPIRY_MS]
                            if not isnan(amounts[AMOUNT_EXPIRY_MS]) else NO_EXPIRY)
        self._wo_bars_left = (<long long>amounts[AMOUNT_EXPIRY_BARS]
                              if not isnan(amounts[AMOUNT_EXPIRY_BARS]) else -1)
        self._sync_order()
        if self.handler.listening():
            self.handler.on_order(ts, "placed", _side_name(side), _kind_name(kind), level, reason)
        return 1

    cdef int _drop_order(self, long long ts, str why) except -1:
        # The working order is gone unfilled (cancelled, replaced, expired ...).
        self.working = False
        if self.machine.order_working:
            self.machine.cancel_order()
        self._sync_order()
        if self.handler.listening():
            self.handler.on_order(ts, "cancelled", _side_name(self._wo_side),
                                  _kind_name(self._wo_kind), self._wo_level, why)
        return 0

    cdef int _work_order(self, long long ts, double o, double h, double l) except -1:
        # This bar against the working order: expiry by time, then the fill rule, then
        # expiry by bars at this bar's close (docs/orders.md).
        cdef double fill
        if ts > self._wo_expires:
            return self._drop_order(ts, "expired")
        if bar_entry(self._wo_side, self._wo_kind, self._wo_level, o, h, l, &fill):
            self.working = False
            self._sync_order()
            if not self._open(self._wo_side, fill, self._wo_amounts, self._wo_reason, ts,
                              self._wo_kind):
                if self.machine.order_working:
                    self.machine.cancel_order()
                if self.handler.listening():
                    self.handler.on_order(ts, "cancelled", _side_name(self._wo_side),
                                          _kind_name(self._wo_kind), self._wo_level, "rejected")
            return 0
        if self._wo_bars_left > 0:
            self._wo_bars_left -= 1
            if self._wo_bars_left == 0:
                return self._drop_order(ts, "expired")
        return 0

    def working_order(self):
        """The working limit/stop entry order as a dict, or None.

        Keys: side, type (``"limit"``/``"stop"``), price (quote currency),
        placed_time and expires_time (ms since epoch UTC; None: no time
        expiry), bars_left (None: no bar expiry), reason, and the entry's other
        fields given (docs/orders.md) by name.
        """
        cdef int i
        if not self.working:
            return None
        d = {"side": _side_name(self._wo_side), "type": _kind_name(self._wo_kind),
             "price": self._wo_level, "placed_time": self._wo_placed,
             "expires_time": None if self._wo_expires == NO_EXPIRY else self._wo_expires,
             "bars_left": None if self._wo_bars_left < 0 else self._wo_bars_left,
             "reason": self._wo_reason}
        for i in range(N_AMOUNTS):
            if not isnan(self._wo_amounts[i]) and _AMOUNT_NAMES[i] not in ("limit_price", "stop_price"):
                d[_AMOUNT_NAMES[i]] = self._wo_amounts[i]
        return d

    def cancel_pending(self):
        """Drop a queued market order."""
        self._order = ORDER_NONE
        self._order_reason = None
        self.pending = False

    cdef int _fill_pending(self, long long ts, double open_price) except -1:
        cdef int order = self._order
        self._order = ORDER_NONE
        self.pending = False
        if order == ORDER_ENTER:
            self._open(self._order_side, open_price, self._order_amounts, self._order_reason, ts,
                       ENTRY_MARKET)
        elif order == ORDER_EXIT and self.machine.position is not None:
            self._exit_part(open_price, ts, self._order_reason, self._order_amounts[AMOUNT_QUANTITY],
                            self._order_amounts[AMOUNT_FRACTION])
        self._order_reason = None
        return 0

    # -- simulated execution ---------------------------------------------------------

    cdef inline double _slipped(self, double price, bint buying):
        return price * (1.0 + self._slip) if buying else price * (1.0 - self._slip)

    cdef inline double _fee(self, double price, double quantity):
        return abs(price * quantity) * self._commission + self._fixed_fee

    cdef inline int _move_cash(self, double amount) except -1:
        self.cash += amount
        if self.account is not None:
            self.account.cash += amount
        return 0

    cdef double _size(self, int side, double price, const double* amounts, int action,
                      long long ts) except? -2:
        # The order's quantity at this fill price (docs/orders.md, "Sizing"), rounded
        # to the lot size; 0 when rejected (the handler was told why).
        cdef double q = amounts[AMOUNT_QUANTITY], equity, cash, dist, budget, raw
        cdef double sl = amounts[AMOUNT_STOP_LOSS]
        cash = self.account.cash if self.account is not None else self.cash
        if isnan(q):
            if not isnan(amounts[AMOUNT_NOTIONAL]):
                q = amounts[AMOUNT_NOTIONAL] / price
            elif not isnan(amounts[AMOUNT_EQUITY_FRACTION]) or not isnan(amounts[AMOUNT_RISK_FRACTION]):
                equity = (self.account.equity if self.account is not None
                          else self.cash + self.quantity * price)
                if not isnan(amounts[AMOUNT_EQUITY_FRACTION]):
                    q = amounts[AMOUNT_EQUITY_FRACTION] * equity / price
                else:
                    dist = price - sl if side == Side.LONG else sl - price
                    if not dist > 0:
                        self.handler.reject(ts, action, f"risk_fraction: stop_loss = {sl!r} must be "
                                            f"{'below' if side == Side.LONG else 'above'} the fill "
                                            f"price ({price!r})")
                        return 0.0
                    q = amounts[AMOUNT_RISK_FRACTION] * equity / dist
            else:
                # A short's cash holds its sale proceeds and backs the short: what is free
                # is what a long of the same size would have left (cash - 2 x notional).
                if self.account is None and self.quantity < 0:
                    cash = self.cash + 2.0 * self.quantity * price
                budget = max(cash, 0.0) * self._size_fraction - self._fixed_fee
                q = 0.0 if budget <= 0 or price <= 0 else budget / (price * (1.0 + self._commission))
        if q <= 0:
            self.handler.reject(ts, action, f"no quantity: cash {cash:.2f} too small to size an order")
            return 0.0
        if self._lot_size > 0:
            raw = q
            q = floor(q / self._lot_size + 1e-9) * self._lot_size
            if q <= 0:
                self.handler.reject(ts, action, f"quantity {_plain(raw)} rounds to 0 at lot_size "
                                    f"{_plain(self._lot_size)}")
                return 0.0
        if self._min_notional > 0 and q * price < self._min_notional:
            self.handler.reject(ts, action, f"notional {_plain(q * price)} < min_notional "
                                f"{_plain(self._min_notional)} (quantity {_plain(q)} at {_plain(price)})")
            return 0.0
        return q

    cdef int _open(self, int side, double base_price, const double* amounts, str reason,
                   long long ts, int kind) except -1:
        # An entry or scale-in fill at `base_price` (slipped unless a limit fill);
        # returns 1, or 0 when rejected (the handler was told why, and nothing changed).
        cdef bint buying = side == Side.LONG
        cdef int action = ActionType.ENTER_LONG if buying else ActionType.ENTER_SHORT
        cdef double price = base_price if kind == ENTRY_LIMIT else self._slipped(base_price, buying)
        cdef double quantity, fee, total, sl = amounts[AMOUNT_STOP_LOSS], tp = amounts[AMOUNT_TAKE_PROFIT]
        cdef Position pos = self.machine.position
        cdef int slot = -1
        if pos is not None and pos.side_c != side:
            self.handler.reject(ts, action, f"cannot {_action_name(action)} in state "
                                f"IN_POSITION ({_side_name(pos.side_c)}): exit first")
            return 0
        if self.entries_blocked is not None:
            self.handler.reject(ts, action, f"entries blocked: {self.entries_blocked}")
            return 0
        # Every check before anything changes: the levels against this fill, the size,
        # the risk limits, the indicator a trailing stop needs, then the owner's gate.
        problem = _level_problem(side, price, sl, tp)
        if problem is not None:
            self.handler.reject(ts, action, problem)
            return 0
        quantity = self._size(side, price, amounts, action, ts)
        if quantity <= 0:
            return 0
        if self._max_notional > 0:
            total = (quantity + (pos.quantity if pos is not None else 0.0)) * price
            if total > self._max_notional:
                self.handler.on_risk_limit(ts, "max_position_notional", self._max_notional, total,
                                           "rejected")
                self.handler.reject(ts, action, f"max_position_notional: {total:.2f} > "
                                    f"{self._max_notional:.2f}")
                return 0
        if not isnan(amounts[AMOUNT_TRAILING_ATR]):
            try:
                slot = self.handler.indicator_slot("atr", <int>amounts[AMOUNT_ATR_PERIOD]
                                                   if not isnan(amounts[AMOUNT_ATR_PERIOD])
                                                   else DEFAULT_ATR_PERIOD)
            except ValueError as exc:
                self.handler.reject(ts, action, f"trailing_atr: {exc}")
                return 0
        if self.gate is not None:
            why = self.gate.allow_entry(self, ts, side, quantity, price)
            if isinstance(why, str):
                self.handler.reject(ts, action, why)
                return 0
        if pos is None:
            pos = self.machine._enter(action, quantity, price, ts, sl, tp, reason)
            pos.entry_kind = kind
            pos.fresh = kind != ENTRY_MARKET
            self._n_lots = 0
            self._managed = False
            self._trail_kind = TRAIL_NONE
            self._breakeven = NAN
            self._time_stop = 0
        else:
            # A scale-in: its levels, when given, replace the position's.
            if not isnan(sl):
                pos.stop_loss = sl
                pos.stop_reason = REASON_STOP_LOSS
            if not isnan(tp):
                pos.take_profit = tp
            self.machine._add(quantity, price)
        fee = self._fee(price, quantity)
        self._move_cash(-(quantity * price) - fee if buying else quantity * price - fee)
        self.quantity = pos.quantity if buying else -pos.quantity
        self._add_lot(quantity, price, fee, ts, self.bars - 1)
        self._set_management(amounts, slot)
        self._sync_position()
        if self.handler.listening():
            self.handler.on_opened(ts, side, quantity, price, fee, reason)
        return 1

    cdef int _set_management(self, const double* amounts, int atr_slot) except -1:
        # Trailing stop, breakeven and time stop from an entry's fields (a scale-in
        # changes only those it gives); `atr_slot` is the bank slot of trailing_atr's ATR.
        if not isnan(amounts[AMOUNT_TRAILING_STOP]):
            self._trail_kind, self._trail_value = TRAIL_DISTANCE, amounts[AMOUNT_TRAILING_STOP]
        elif not isnan(amounts[AMOUNT_TRAILING_PERCENT]):
            self._trail_kind, self._trail_value = TRAIL_PERCENT, amounts[AMOUNT_TRAILING_PERCENT] * 1e-2
        elif not isnan(amounts[AMOUNT_TRAILING_ATR]):
            self._trail_kind, self._trail_value = TRAIL_ATR, amounts[AMOUNT_TRAILING_ATR]
            self._trail_slot = atr_slot
        if not isnan(amounts[AMOUNT_BREAKEVEN_AFTER]):
            self._breakeven, self._breakeven_done = amounts[AMOUNT_BREAKEVEN_AFTER], False
        if not isnan(amounts[AMOUNT_TIME_STOP_BARS]):
            self._time_stop = <long long>amounts[AMOUNT_TIME_STOP_BARS]
        self._managed = (self._trail_kind != TRAIL_NONE or not isnan(self._breakeven)
                         or self._time_stop > 0)
        return 0

    cdef int _manage(self, long long ts, double close) except -1:
        # Position management at this bar's close; a moved stop applies from the next bar.
        cdef Position pos = self.machine.position
        cdef bint long_ = pos.side_c == Side.LONG
        cdef double stop = pos.stop_loss, distance = NAN, candidate
        cdef double no_amounts[N_AMOUNTS]
        cdef str why = None
        if self._trail_kind == TRAIL_DISTANCE:
            distance = self._trail_value
        elif self._trail_kind == TRAIL_PERCENT:
            distance = close * self._trail_value
        elif self._trail_kind == TRAIL_ATR:
            distance = self.bank.values[self._trail_slot] * self._trail_value   # NaN while warming
        if distance > 0 and (distance < close or not long_):
            candidate = close - distance if long_ else close + distance
            if isnan(stop) or (candidate > stop if long_ else candidate < stop):
                stop, why = candidate, REASON_TRAILING
        if not self._breakeven_done and not isnan(self._breakeven):
            if (close - pos.entry_price if long_ else pos.entry_price - close) >= self._breakeven:
                self._breakeven_done = True
                candidate = pos.entry_price
                if isnan(stop) or (candidate > stop if long_ else candidate < stop):
                    stop, why = candidate, REASON_BREAKEVEN
        if why is not None:
            pos.stop_loss = stop
            pos.stop_reason = why
            self._sync_position()
            if self.handler.listening():
                self.handler.on_position_updated(ts, "stop_loss", stop)
        if 0 < self._time_stop <= pos.bars_held and not self.pending:
            # queued even with fill="close": `step` fills it at this close after the
            # strategy has been called (it still manages this bar)
            _no_amounts(no_amounts)
            self._queue(ORDER_EXIT, 0, no_amounts, REASON_TIME_STOP)
        return 0

    cdef int _exit_part(self, double base_price, long long ts, str reason, double quantity,
                        double fraction) except -1:
        # A market exit of `quantity` (or `fraction`) of the position, all of it when both
        # are NaN; lots are closed oldest first.
        cdef Position pos = self.machine.position
        cdef double total = pos.quantity, q, price
        price = self._slipped(base_price, pos.side_c == Side.SHORT)
        cdef double asked
        q = total if isnan(quantity) and isnan(fraction) else (
            quantity if not isnan(quantity) else fraction * total)
        if q < total * (1.0 - 1e-12):
            asked = q
            if self._lot_size > 0:
                q = floor(q / self._lot_size + 1e-9) * self._lot_size
            if q <= 0:
                self.handler.reject(ts, ActionType.EXIT, f"exit quantity {_plain(asked)} rounds to 0 "
                                    f"at lot_size {_plain(self._lot_size)}")
                return 0
            # A part below min_notional is no order an exchange takes; a remainder below it could
            # never be sold on its own (freqtrade refuses such a partial exit too).
            if self._min_notional > 0 and q < total * (1.0 - 1e-12):
                if q * price < self._min_notional:
                    self.handler.reject(ts, ActionType.EXIT, f"exit notional {_plain(q * price)} < min_notional "
                                        f"{_plain(self._min_notional)} (quantity {_plain(q)} at {_plain(price)})")
                    return 0
                if (total - q) * price < self._min_notional:
                    self.handler.reject(ts, ActionType.EXIT, f"the exit would leave {_plain(total - q)} "
                                        f"(notional {_plain((total - q) * price)}) < min_notional "
                                        f"{_plain(self._min_notional)}: exit all of it, or less")
                    return 0
        if q >= total * (1.0 - 1e-12):
            self.machine.exit(price, ts, reason)
            return self._book_exit(price, ts, reason, self.machine.last_closed.ambiguous)
        return self._book_part(q, price, ts, reason)

    cpdef int exit_market(self, double base_price, long long ts, str reason) except -1:
        """Close the open position at `base_price` moved by slippage (a market exit).

        Raises
        ------
        InvalidTransition
            No position is open.
        """
        if self.machine.position is None:
            raise InvalidTransition(f"cannot exit in state {self.machine.state.name}",
                                    self.machine.state, ActionType.EXIT)
        return self._exit_part(base_price, ts, reason, NAN, NAN)

    cdef int _book_level_exit(self, int code, long long ts) except -1:
        # The state machine closed the position at a stop-loss or take-profit level.
        cdef Position pos = self.machine.last_closed
        cdef double price = pos.exit_price
        if code == BAR_STOP_LOSS and self._slip != 0.0:   # a stop is a market order once triggered
            price = self._slipped(price, pos.side_c == Side.SHORT)
            self.machine.refill_last_exit(price)
        return self._book_exit(price, ts, pos.exit_reason, pos.ambiguous)

    cdef int _add_lot(self, double quantity, double price, double fee, long long ts,
                      long long bar) except -1:
        cdef Lot* grown
        cdef Lot* lot
        if self._n_lots == self._lots_capacity:
            grown = <Lot*>PyMem_Realloc(self._lots, (2 * self._lots_capacity + 4) * sizeof(Lot))
            if grown is NULL:
                raise MemoryError("no memory for another lot")
            self._lots, self._lots_capacity = grown, 2 * self._lots_capacity + 4
        lot = &self._lots[self._n_lots]
        lot.quantity, lot.price, lot.fee, lot.time, lot.bar = quantity, price, fee, ts, bar
        self._n_lots += 1
        return 0

    def __dealloc__(self):
        PyMem_Free(self._lots)

    cdef int _book_lots(self, double q, double price, long long ts, str reason, bint ambiguous,
                        int side, bint every_lot) except -1:
        # Close `q` base units at `price` (every lot when `every_lot`, else oldest
        # first): one trade per lot or part of a lot, each with its share of the lot's
        # entry fee and of this order's fee; then move the cash. Returns the trades booked.
        cdef double left = q, part, entry_fee, exit_fee
        cdef double fee = self._fee(price, q)
        cdef double sign = 1.0 if side == Side.LONG else -1.0
        cdef Py_ssize_t done = 0
        cdef int booked = 0
        cdef Lot* lot
        name = _side_name(side)
        while done < self._n_lots and (every_lot or left > 0):
            lot = &self._lots[done]
            part = lot.quantity if every_lot or lot.quantity <= left * (1.0 + 1e-12) else left
            entry_fee = lot.fee if part == lot.quantity else lot.fee * (part / lot.quantity)
            exit_fee = fee if part == q else fee * (part / q)
            self.closed.append((name, part, lot.time, lot.price, ts, price,
                                (price - lot.price) * part * sign - (entry_fee + exit_fee),
                                entry_fee + exit_fee, reason, ambiguous, lot.bar, self.bars - 1))
            booked += 1
            if part == lot.quantity:
                done += 1
            else:
                lot.quantity -= part
                lot.fee -= entry_fee
            left -= part
            if left <= q * 1e-12:     # what rounding leaves is no further trade
                left = 0.0
        if done:
            self._n_lots -= done
            memmove(self._lots, self._lots + done, self._n_lots * sizeof(Lot))
        self._move_cash(q * price - fee if side == Side.LONG else -(q * price) - fee)
        return booked

    cdef int _book_exit(self, double price, long long ts, str reason, bint ambiguous) except -1:
        # The whole position closed (the machine is flat now).
        cdef Position pos = self.machine.last_closed
        cdef int booked = self._book_lots(pos.quantity, price, ts, reason, ambiguous, pos.side_c, True)
        self._n_lots = 0
        self.quantity = 0.0
        self._managed = False
        self._sync_lua(SyncCode.SYNC_FLAT, 0, 0.0, 0.0, NAN, NAN)
        if not self.machine.keep_context:
            self._sync_lua(SyncCode.SYNC_CLEAR_CONTEXT, 0, 0.0, 0.0, NAN, NAN)
        if self.handler.listening():
            self.handler.on_closed(ts, booked)
        return 0

    cdef int _book_part(self, double q, double price, long long ts, str reason) except -1:
        # A partial exit: the lots' cost basis of what is closed goes to the machine.
        cdef Position pos = self.machine.position
        cdef double cost = 0.0, left = q, part
        cdef Py_ssize_t i
        for i in range(self._n_lots):
            part = min(self._lots[i].quantity, left)
            cost += part * self._lots[i].price
            left -= part
            if left <= 0:
                break
        self.machine._reduce(q, cost, price)
        cdef int booked = self._book_lots(q, price, ts, reason, pos.fill_bar_touched, pos.side_c, False)
        self.quantity = pos.quantity if pos.side_c == Side.LONG else -pos.quantity
        self._sync_position()
        if self.handler.listening():
            self.handler.on_reduced(ts, q, price, booked)
        return 0

    # -- risk ----------------------------------------------------------------------

    cdef int _check_risk(self, long long ts, double close) except -1:
        # The runner's daily-loss and drawdown limits at this close (docs/orders.md).
        cdef double equity = self.cash + self.quantity * close, loss
        cdef long long day = ts // DAY_MS
        if day != self._day:
            self._day_start = self._last_equity    # the previous close (the cash before the first bar)
            self._day = day
            self._daily_hit = False
            if self._block_kind == BLOCK_DAY:
                self._block_kind = BLOCK_NONE
                self._risk_block = None
        if equity > self._peak:
            self._peak = equity
        self._last_equity = equity
        if self._max_daily_loss > 0 and not self._daily_hit and self._day_start > 0:
            loss = 1.0 - equity / self._day_start
            if loss > self._max_daily_loss:
                self._daily_hit = True
                self._breach(ts, close, "max_daily_loss_pct", self._max_daily_loss * 100, loss * 100,
                             BLOCK_DAY)
        if self._max_drawdown > 0 and not self._drawdown_hit and self._peak > 0:
            loss = 1.0 - equity / self._peak
            if loss > self._max_drawdown:
                self._drawdown_hit = True
                self._breach(ts, close, "max_drawdown_pct", self._max_drawdown * 100, loss * 100,
                             BLOCK_HELD)
        return 0

    cdef int _breach(self, long long ts, double close, str limit, double threshold, double value,
                     int block) except -1:
        if self.halt_on_breach:
            self.halt(ts, close, f"{limit}: {value:.2f} > {threshold:.2f}")
            self.handler.on_risk_limit(ts, limit, threshold, value, "halt")
        else:
            if self._block_kind != BLOCK_HELD:      # a held block keeps its own reason
                self._block_kind = block
                self._risk_block = f"{limit}: {value:.2f} > {threshold:.2f}"
            if self.working:
                self._drop_order(ts, "risk_limit")
            if self.pending and self._order == ORDER_ENTER:
                self.cancel_pending()
            self.handler.on_risk_limit(ts, limit, threshold, value, "block")
        return 0

    def halt(self, long long ts, double close, str reason):
        """Close the position at `close` (a market exit), drop orders and stop deciding.

        Sets `halted` and blocks entries; `resume_trading` undoes it.
        """
        if self.working:
            self._drop_order(ts, "halted")
        self.cancel_pending()
        if self.machine.position is not None:
            self._exit_part(close, ts, "risk_halt", NAN, NAN)
        self.halted = True
        self.deciding = False
        self._risk_block = reason
        self._block_kind = BLOCK_HELD

    @property
    def entries_blocked(self):
        """Why new entries are rejected, or None: the owner's block first, else a risk limit's."""
        return self._owner_block if self._owner_block is not None else self._risk_block

    def block_entries(self, str reason):
        """The owner rejects new entries (exits and stops still work) until `unblock_entries`.

        Independent of the runner's own risk blocks: unblocking lifts only this one.
        """
        self._owner_block = reason
        if self.working:
            self._drop_order(self._wo_placed, "entries_blocked")

    def unblock_entries(self):
        """Lift the owner's block (`block_entries`); a risk limit's block stays."""
        self._owner_block = None

    def resume_trading(self):
        """After a halt or a risk limit's block: decide and enter again, the risk baseline reset.

        The running peak and the day's start become the current equity; the
        owner's block (`block_entries`) is not touched.
        """
        cdef double equity = self.equity
        self.halted = False
        self.deciding = True
        self._risk_block = None
        self._block_kind = BLOCK_NONE
        self._peak = self._day_start = self._last_equity = equity
        self._daily_hit = self._drawdown_hit = False

    # -- Lua mirror --------------------------------------------------------------------

    cdef int _sync_lua(self, int code, long long entry_time, double quantity, double entry_price,
                       double stop_loss, double take_profit) except -1:
        if self._sync is not None:
            # `run` may hold the runtime's lock, which the sync function shares (reentrant)
            self._sync.call_bar(code, entry_time, quantity, entry_price, stop_loss, take_profit,
                                0.0, NAN, NAN, NULL, 0, self._locked is not None)
        else:
            self.handler.sync_lua(code, entry_time, quantity, entry_price, stop_loss, take_profit)
        return 0

    cdef int _sync_position(self) except -1:
        # The open position (its levels or size changed) mirrored into Lua.
        cdef Position pos = self.machine.position
        return self._sync_lua(pos.side_c, pos.entry_time, pos.quantity, pos.entry_price,
                              pos.stop_loss, pos.take_profit)

    cdef int _sync_order(self) except -1:
        # The working order (or none) mirrored into Lua as `indicators.order`.
        if not self.working:
            return self._sync_lua(SyncCode.SYNC_NO_ORDER, 0, NAN, NAN, NAN, NAN)
        return self._sync_lua(
            SyncCode.SYNC_ORDER_LONG if self._wo_side == Side.LONG else SyncCode.SYNC_ORDER_SHORT,
            self._wo_placed, self._wo_amounts[AMOUNT_QUANTITY],
            self._wo_level if self._wo_kind == ENTRY_LIMIT else NAN,
            self._wo_level if self._wo_kind == ENTRY_STOP else NAN,
            <double>self._wo_expires if self._wo_expires != NO_EXPIRY else NAN)

    def resync(self):
        """Mirror the position and the working order into Lua again (after a reload)."""
        if self.machine.position is not None:
            self._sync_position()
        else:
            self._sync_lua(SyncCode.SYNC_FLAT, 0, 0.0, 0.0, NAN, NAN)
        self._sync_order()

    # -- introspection and driving -------------------------------------------------------

    def lots(self):
        """The open position's lots, oldest first: dicts of quantity, entry_price, entry_time, entry_fee, entry_bar."""
        cdef Py_ssize_t i
        return [{"quantity": self._lots[i].quantity, "entry_price": self._lots[i].price,
                 "entry_time": self._lots[i].time, "entry_fee": self._lots[i].fee,
                 "entry_bar": self._lots[i].bar} for i in range(self._n_lots)]

    @property
    def equity(self):
        """Cash plus the position marked at the newest close (quote currency)."""
        if not len(self.window):
            return self.cash
        return self.cash + self.quantity * self.window.col[3][self.window.head]

    def process(self, MarketData bar not None):
        """Run one closed bar through the step; returns False once the runner stopped itself."""
        return self.step(bar.timestamp, bar.open, bar.high, bar.low, bar.close, bar.volume,
                         bar.bid, bar.ask) == STEP_OK

    def process_values(self, long long ts, double o, double h, double l, double c, double v,
                       double bid=NAN, double ask=NAN):
        """`process` for a bar given as numbers (trusted: validate before)."""
        return self.step(ts, o, h, l, c, v, bid, ask) == STEP_OK

    def run(self, const long long[::1] ts, const double[::1] o, const double[::1] h,
            const double[::1] l, const double[::1] c, const double[::1] v,
            const double[::1] bid, const double[::1] ask,
            double[::1] equity_out, unsigned char[::1] in_position_out,
            Py_ssize_t start=0, Py_ssize_t stop=-1):
        """Process bars ``start .. stop-1`` of validated columns (a backtest).

        Writes equity (quote currency, marked at each close) and whether a
        position was held at the close into the output arrays at the same
        indices. Returns the index after the last bar processed (less than
        `stop` if the runner stopped itself).
        """
        cdef Py_ssize_t i
        cdef LuaDirect held = self._direct
        if stop < 0:
            stop = ts.shape[0]
        # Lua's lock once for the batch, not per bar (reentrant: the handler's own Lua
        # calls still work; a dispatcher swapped mid-batch locks per call).
        if held is not None:
            held.lock()
            self._locked = held
        try:
            for i in range(start, stop):
                if self.step(ts[i], o[i], h[i], l[i], c[i], v[i], bid[i], ask[i]) != STEP_OK:
                    equity_out[i] = self.cash + self.quantity * c[i]
                    in_position_out[i] = self.quantity != 0.0
                    return i + 1
                equity_out[i] = self.cash + self.quantity * c[i]
                in_position_out[i] = self.quantity != 0.0
            return stop
        finally:
            if held is not None:
                self._locked = None
                held.unlock()


cdef inline str _action_name(int action):
    return "enter_long" if action == ActionType.ENTER_LONG else "enter_short"


cdef str _level_problem(int side, double price, double sl, double tp):
    # Why these levels cannot go with an entry filled at `price` (None: they can);
    # the state machine's rule, checked before anything is booked.
    cdef bint long_ = side == Side.LONG
    if not isnan(sl) and not (sl < price if long_ else sl > price):
        return (f"stop_loss = {sl!r}: must be {'below' if long_ else 'above'} the entry price "
                f"({price!r}) for a {_side_name(side)} position")
    if not isnan(tp) and not (tp > price if long_ else tp < price):
        return (f"take_profit = {tp!r}: must be {'above' if long_ else 'below'} the entry price "
                f"({price!r}) for a {_side_name(side)} position")
    return None


cdef str _plain(double x):
    # A number for messages: 10 significant digits, in plain decimals (0.0000042, not 4.2e-06).
    text = f"{x:.10g}"
    return f"{x:.15f}".rstrip("0").rstrip(".") if "e" in text else text


cdef inline str _kind_name(int kind):
    return "limit" if kind == ENTRY_LIMIT else "stop" if kind == ENTRY_STOP else "market"
