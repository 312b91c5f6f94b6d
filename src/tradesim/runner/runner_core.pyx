"""`RunnerCore`: the per-bar step every mode shares (backtest, simulated, live).

One closed bar: push it into the window -> update the indicator bank -> fill a
market order waiting for this bar's open -> update the state machine (marks,
stop-loss / take-profit exits, analysis timeout) -> call the strategy's
dispatcher for the current state -> record equity.

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

from cpython.ref cimport Py_INCREF
from cpython.tuple cimport PyTuple_New, PyTuple_SET_ITEM
from libc.math cimport NAN

from tradesim._core.bank cimport IndicatorBank
from tradesim._core.market_data cimport MarketData
from tradesim._core.state_machine cimport (
    ActionType, Position, Side, State, StateMachine, BAR_ANALYSIS_TIMEOUT, BAR_STOP_LOSS,
    BAR_TAKE_PROFIT)
from tradesim._core.state_machine import InvalidTransition
from tradesim._core.window cimport MarketDataWindow
from tradesim.strategy.decision cimport (
    AMOUNT_PRICE, AMOUNT_QUANTITY, AMOUNT_STOP_LOSS, AMOUNT_TAKE_PROFIT, Decoded, SyncCode,
    decode_result)
from tradesim.strategy.lua_direct cimport LuaDirect

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

cdef inline void _put(tuple args, Py_ssize_t i, object item):
    # PyTuple_SET_ITEM steals a reference; Cython owns `item`, so add one.
    Py_INCREF(item)
    PyTuple_SET_ITEM(args, i, item)


class RunnerStopped(Exception):
    """Raised by a handler to stop the runner (e.g. too many consecutive errors)."""


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
        ``on_closed(ts)``, ``on_position_updated(ts, field, price)``,
        ``on_decision(ts, state, started, start_reason, action, quantity,
        stop_loss, take_profit, price, reason)`` (only while `recording`; `state`
        a `State` value, `action` an `ActionType` value or -1) and
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

    Attributes
    ----------
    cash : float
        Cash in quote currency (kept by the fills).
    quantity : float
        Signed position in base units (> 0 long, < 0 short).
    pending : bool
        A market order waits for the next bar's open (read-only; see `submit_enter`).
    closed : list of tuple
        Closed trades booked since the handler last took them (it empties the
        list), oldest first: ``(side, quantity, entry_time, entry_price,
        exit_time, exit_price, pnl, fees, exit_reason, ambiguous, entry_bar,
        exit_bar)``, side ``"long"``/``"short"``, prices and money in quote
        currency, times in ms since epoch UTC, bars 0-based.
    deciding : bool
        Call the strategy (False while paused: indicators stay warm).
    errors_in_row : int
        Consecutive failed strategy calls (reset by a successful call).
    recording : bool
        Report every valid decision to ``handler.on_decision`` before it is
        carried out (a recorded session); off by default.
    bars : int
        Bars processed.
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
    cdef double _slip, _commission, _fixed_fee, _size_fraction
    cdef public bint fill_close     # market orders fill at the signal bar's close
    cdef public bint allow_short
    cdef LuaDirect _sync            # position/context sync, or None: handler.sync_lua
    # the pending market order
    cdef int _order
    cdef int _order_side
    cdef double _order_qty          # NaN: size from cash
    cdef double _order_sl, _order_tp
    cdef str _order_reason
    # the open trade (entry fill)
    cdef double _entry_fee
    cdef long long _entry_bar
    cdef public bint deciding
    cdef public long long errors_in_row
    cdef public long long bars
    cdef public long long decisions
    cdef public bint recording      # report every decision to handler.on_decision (a session log)
    cdef public str script          # named by invalid-decision errors
    cdef Decoded _decided           # this bar's decision (reused)

    def __init__(self, MarketDataWindow window not None, IndicatorBank bank not None,
                 StateMachine machine not None, dispatch, handler, double cash=0.0, *,
                 double slippage_bps=0.0, double commission_bps=0.0, double fixed_fee=0.0,
                 double size_fraction=1.0, bint fill_close=False, bint allow_short=True,
                 LuaDirect sync=None, str script=""):
        self._slip = slippage_bps * 1e-4
        self._commission = commission_bps * 1e-4
        self._fixed_fee = fixed_fee
        self._size_fraction = size_fraction
        self.fill_close = fill_close
        self.allow_short = allow_short
        self._sync = sync
        self._order = ORDER_NONE
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
        self.script = script
        self._decided = Decoded()

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
            code = self.machine.update_fast(ts, o, h, l, c)
            if code == BAR_STOP_LOSS or code == BAR_TAKE_PROFIT:
                self._book_level_exit(code, ts)
            elif code == BAR_ANALYSIS_TIMEOUT:
                self.handler.on_timeout(ts)
            if self.deciding and not self.pending:
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
        except RunnerStopped:
            return STEP_STOPPED
        return STEP_OK

    # -- decisions ---------------------------------------------------------------

    cdef int _record(self, Decoded d, long long ts) except -1:
        # The decision as the strategy returned it, before it is carried out (or rejected).
        self.handler.on_decision(ts, self.machine.state_c, d.started, d.start_reason, d.action,
                                 d.amounts[AMOUNT_QUANTITY], d.amounts[AMOUNT_STOP_LOSS],
                                 d.amounts[AMOUNT_TAKE_PROFIT], d.amounts[AMOUNT_PRICE], d.reason)
        return 0

    cdef int _carry_out(self, Decoded d, long long ts, double close) except -1:
        # A valid decision: an analysis started, an action (d.action >= 0), or both.
        if d.started and self.machine.state_c == State.IDLE:
            self.machine.start_analyzing(ts, d.start_reason)
            if self.handler.listening():
                self.handler.on_opportunity(ts, d.start_reason)
        if d.action >= 0:
            self.act(d.action, d.amounts[AMOUNT_QUANTITY], d.amounts[AMOUNT_STOP_LOSS],
                     d.amounts[AMOUNT_TAKE_PROFIT], d.amounts[AMOUNT_PRICE], d.reason, ts, close)
        return 0

    cpdef int act(self, int action, double quantity, double stop_loss, double take_profit,
                  double price, str reason, long long ts, double close) except -1:
        """Carry out an action the strategy asked for on the bar closing at `close`.

        `action` is an `ActionType` value a strategy may name (not
        START_ANALYZING); `quantity` NaN sizes an entry from cash;
        `stop_loss` / `take_profit` NaN for none; `price` is the new level of
        UPDATE_STOP_LOSS / UPDATE_TAKE_PROFIT. An entry or exit fills at once
        (``fill_close``) or at the next bar's open. An action the state does
        not allow, a short with ``allow_short`` off or an invalid level is
        rejected through the handler and changes nothing.
        """
        cdef int state = self.machine.state_c
        cdef int side
        if action == ActionType.EXIT:
            if state != State.IN_POSITION:
                self.handler.reject(ts, action, f"cannot exit in state {self.machine.state.name}")
                return 0
            reason = reason or "signal"
            if self.fill_close:
                self.exit_market(close, ts, reason)
            else:
                self.submit_exit(reason)
            return 0
        if action == ActionType.ENTER_LONG or action == ActionType.ENTER_SHORT:
            if state == State.IN_POSITION:
                name = "enter_long" if action == ActionType.ENTER_LONG else "enter_short"
                self.handler.reject(ts, action, f"cannot {name} in state IN_POSITION")
                return 0
            side = Side.LONG if action == ActionType.ENTER_LONG else Side.SHORT
            if side == Side.SHORT and not self.allow_short:
                self.handler.reject(ts, action, "short selling is disabled (allow_short=False)")
                return 0
            if self.fill_close:
                self.enter(side, quantity, stop_loss, take_profit, reason, close, ts)
            else:
                self.submit_enter(side, quantity, stop_loss, take_profit, reason)
            return 0
        try:
            if action == ActionType.CANCEL_ANALYSIS:
                self.machine.cancel_analysis(ts, reason)
                self._sync_lua(SyncCode.SYNC_CLEAR_CONTEXT, 0, 0.0, 0.0, NAN, NAN)
            elif action == ActionType.UPDATE_STOP_LOSS or action == ActionType.UPDATE_TAKE_PROFIT:
                if action == ActionType.UPDATE_STOP_LOSS:
                    self.machine.update_stop_loss(price)
                else:
                    self.machine.update_take_profit(price)
                self._sync_position()
                if self.handler.listening():
                    self.handler.on_position_updated(
                        ts, "stop_loss" if action == ActionType.UPDATE_STOP_LOSS else "take_profit",
                        price)
            else:
                raise ValueError(f"action = {action}: not an action a strategy can ask for")
        except (InvalidTransition, ValueError) as exc:
            self.handler.reject(ts, action, str(exc))
        return 0

    # -- simulated execution ---------------------------------------------------------

    cdef inline double _slipped(self, double price, bint buying):
        return price * (1.0 + self._slip) if buying else price * (1.0 - self._slip)

    cdef inline double _fee(self, double price, double quantity):
        return abs(price * quantity) * self._commission + self._fixed_fee

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
        # The open position (its levels changed) mirrored into Lua.
        cdef Position pos = self.machine.position
        return self._sync_lua(pos.side_c, pos.entry_time, pos.quantity, pos.entry_price,
                              pos.stop_loss, pos.take_profit)

    def submit_enter(self, int side, double quantity, double stop_loss, double take_profit,
                     str reason):
        """Queue a market entry for the next bar's open.

        `side` is 1 (long) or -1 (short); `quantity` in base units, NaN to size
        it from cash at the fill; stop-loss / take-profit in quote currency, NaN
        for none.
        """
        self._order, self._order_side, self._order_qty = ORDER_ENTER, side, quantity
        self._order_sl, self._order_tp, self._order_reason = stop_loss, take_profit, reason or ""
        self.pending = True

    def submit_exit(self, str reason):
        """Queue a market exit of the open position for the next bar's open."""
        self._order, self._order_reason = ORDER_EXIT, reason or ""
        self.pending = True

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
            self.enter(self._order_side, self._order_qty, self._order_sl, self._order_tp,
                       self._order_reason, open_price, ts)
        elif order == ORDER_EXIT and self.machine.position is not None:
            self.exit_market(open_price, ts, self._order_reason)
        self._order_reason = None
        return 0

    cpdef int enter(self, int side, double quantity, double stop_loss, double take_profit,
                    str reason, double base_price, long long ts) except -1:
        """Open a position at `base_price` moved by slippage (a market entry).

        `side` 1 long, -1 short; `quantity` in base units, NaN for
        ``size_fraction`` of cash at the fill price, net of the commission. Returns 1, or 0 if the entry was rejected
        (no quantity, or the state machine refused it), which the handler's
        ``reject`` is told.
        """
        cdef bint buying = side == Side.LONG
        cdef int action = ActionType.ENTER_LONG if buying else ActionType.ENTER_SHORT
        cdef double price = self._slipped(base_price, buying)
        cdef double budget, fee
        cdef Position pos
        if quantity != quantity:
            budget = max(self.cash, 0.0) * self._size_fraction - self._fixed_fee
            quantity = 0.0 if budget <= 0 or price <= 0 else budget / (price * (1.0 + self._commission))
        if quantity <= 0:
            self.handler.reject(ts, action, f"no quantity: equity {self.cash:.2f} too small to size an order")
            return 0
        try:
            pos = self.machine._enter(action, quantity, price, ts, stop_loss, take_profit, reason)
        except (InvalidTransition, ValueError) as exc:
            self.handler.reject(ts, action, str(exc))
            return 0
        fee = self._fee(price, quantity)
        self.cash += -(quantity * price) - fee if buying else quantity * price - fee
        self.quantity = quantity if buying else -quantity
        self._entry_fee = fee
        self._entry_bar = self.bars - 1
        self._sync_lua(side, pos.entry_time, pos.quantity, pos.entry_price, pos.stop_loss,
                       pos.take_profit)
        if self.handler.listening():
            self.handler.on_opened(ts, side, quantity, price, fee, reason)
        return 1

    cpdef int exit_market(self, double base_price, long long ts, str reason) except -1:
        """Close the open position at `base_price` moved by slippage (a market exit).

        Raises
        ------
        InvalidTransition
            No position is open.
        """
        cdef Position pos = self.machine.position
        cdef double price
        if pos is None:
            raise InvalidTransition(f"cannot exit in state {self.machine.state.name}",
                                    self.machine.state, ActionType.EXIT)
        price = self._slipped(base_price, pos.side_c == Side.SHORT)
        self.machine.exit(price, ts, reason)
        return self._book_exit(price, ts, reason, False)

    cdef int _book_level_exit(self, int code, long long ts) except -1:
        # The state machine closed the position at a stop-loss or take-profit level.
        cdef Position pos = self.machine.last_closed
        cdef double price = pos.exit_price
        if code == BAR_STOP_LOSS:   # a stop is a market order once triggered
            price = self._slipped(price, pos.side_c == Side.SHORT)
        return self._book_exit(price, ts, pos.exit_reason, pos.ambiguous)

    cdef int _book_exit(self, double price, long long ts, str reason, bint ambiguous) except -1:
        cdef Position pos = self.machine.last_closed
        cdef double q = pos.quantity
        cdef double fee = self._fee(price, q)
        cdef bint long_ = pos.side_c == Side.LONG
        cdef double sign = 1.0 if long_ else -1.0
        cdef double fees = self._entry_fee + fee
        self.cash += q * price - fee if long_ else -(q * price) - fee
        self.quantity = 0.0
        self.closed.append(("long" if long_ else "short", q, pos.entry_time, pos.entry_price, ts,
                            price, (price - pos.entry_price) * q * sign - fees, fees, reason,
                            ambiguous, self._entry_bar, self.bars - 1))
        self._sync_lua(SyncCode.SYNC_FLAT, 0, 0.0, 0.0, NAN, NAN)
        if not self.machine.keep_context:
            self._sync_lua(SyncCode.SYNC_CLEAR_CONTEXT, 0, 0.0, 0.0, NAN, NAN)
        if self.handler.listening():
            self.handler.on_closed(ts)
        return 0

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
