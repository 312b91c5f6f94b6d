"""The per-symbol trading state machine and its positions (the context store is `Context`).

IDLE --start_analyzing--> ANALYZING --enter_long/enter_short--> IN_POSITION --exit--> IDLE,
with cancel_analysis (or the optional analysis timeout) taking ANALYZING back to
IDLE and stop-loss / take-profit exits detected bar by bar in `update`.
"""

from collections import namedtuple

from libc.math cimport NAN, isfinite, isnan

from tradesim._core.market_data cimport MarketData, bar_ok, raise_if_invalid


# State, Side and ActionType are the cpdef enums of state_machine.pxd. Cython
# makes an unknown value a nameless pseudo-member (C may hold any int); these
# enums name every valid value, so an unknown one is a ValueError, as for any IntEnum.
def _no_member(cls, value):
    return None


for _enum in (State, Side, ActionType):
    _enum._missing_ = classmethod(_no_member)
del _enum


Transition = namedtuple("Transition", ["from_state", "to_state", "reason", "timestamp", "action"])
Transition.__doc__ = """One recorded state change.

Attributes
----------
from_state, to_state : State
reason : str
    ``"stop_loss"``, ``"take_profit"``, ``"analysis_timeout"``, or the reason
    given to the action (``"exit"`` by default for exits, may be empty otherwise).
timestamp : int
    Milliseconds since the Unix epoch (UTC): the action's timestamp, or the
    open time of the bar that triggered an automatic exit or timeout.
action : ActionType
    The action that caused it (automatic exits record EXIT, timeouts CANCEL_ANALYSIS).
"""


class InvalidTransition(RuntimeError):
    """An action is not allowed in the machine's current state; nothing was changed.

    Attributes
    ----------
    state : State
        The state the machine was (and still is) in.
    action : ActionType
        The rejected action.
    """

    def __init__(self, message, state=None, action=None):
        super().__init__(message)
        self.state = state
        self.action = action


cdef tuple STATES = (State.IDLE, State.ANALYZING, State.IN_POSITION)
cdef tuple ACTIONS = tuple(ActionType)
cdef tuple POLICIES = ("stop_loss_first", "take_profit_first", "open_distance")

# Allowed actions per state as bit masks over the ACTION_* values.
cdef int ALLOWED[3]
ALLOWED[<int>State.IDLE] = (
    (1 << ActionType.START_ANALYZING) | (1 << ActionType.ENTER_LONG) | (1 << ActionType.ENTER_SHORT)
    | (1 << ActionType.PLACE_ORDER))
ALLOWED[<int>State.ANALYZING] = (
    (1 << ActionType.CANCEL_ANALYSIS) | (1 << ActionType.ENTER_LONG) | (1 << ActionType.ENTER_SHORT)
    | (1 << ActionType.PLACE_ORDER) | (1 << ActionType.CANCEL_ORDER))
ALLOWED[<int>State.IN_POSITION] = (
    (1 << ActionType.EXIT) | (1 << ActionType.UPDATE_STOP_LOSS) | (1 << ActionType.UPDATE_TAKE_PROFIT))

# Interned once so automatic exits and timeouts allocate no strings.
cdef str REASON_STOP_LOSS = "stop_loss"
cdef str REASON_TAKE_PROFIT = "take_profit"
cdef str REASON_TIMEOUT = "analysis_timeout"
cdef str REASON_EXIT = "exit"


cdef inline str action_name(int action):
    return ACTIONS[action].name.lower()


cdef inline str side_name(int side):
    return "long" if side == Side.LONG else "short"


cdef inline object none_if_nan(double x):
    # JSON has no NaN: unset levels and not-yet-known prices become null.
    return None if isnan(x) else x


cdef int check_price(str name, double value) except -1:
    if not isfinite(value) or value <= 0.0:
        raise ValueError(f"{name} = {value!r}: must be a finite price > 0 (quote currency)")
    return 0


cdef int check_level(str name, double level, int side, double ref, str ref_name) except -1:
    """A stop-loss must lie on the losing side of `ref`, a take-profit on the winning side."""
    cdef bint is_stop = name == "stop_loss"
    cdef bint below
    if isnan(level):
        return 0
    if not isfinite(level) or level <= 0.0:
        raise ValueError(f"{name} = {level!r}: must be a finite price > 0, or NaN for none")
    below = (side == Side.LONG) == is_stop
    if below and not level < ref:
        raise ValueError(f"{name} = {level!r}: must be below the {ref_name} ({ref!r}) "
                         f"for a {side_name(side)} position")
    if not below and not level > ref:
        raise ValueError(f"{name} = {level!r}: must be above the {ref_name} ({ref!r}) "
                         f"for a {side_name(side)} position")
    return 0


cdef int check_entry(int side, double quantity, double price, double stop_loss,
                     double take_profit) except -1:
    if not isfinite(quantity) or quantity <= 0.0:
        raise ValueError(f"quantity = {quantity!r}: must be finite and > 0 (base units)")
    check_price("price", price)
    check_level("stop_loss", stop_loss, side, price, "entry price")
    check_level("take_profit", take_profit, side, price, "entry price")
    return 0


cdef int parse_side(object side) except 0:
    if isinstance(side, str):
        s = side.lower()
        if s == "long":
            return Side.LONG
        if s == "short":
            return Side.SHORT
    elif not isinstance(side, bool) and isinstance(side, int):
        if side == Side.LONG or side == Side.SHORT:
            return side
    raise ValueError(f"side = {side!r}: must be Side.LONG (1, 'long') or Side.SHORT (-1, 'short')")


cdef inline double pnl(int side, double quantity, double entry, double price) noexcept nogil:
    # quantity * (price - entry) for a long, quantity * (entry - price) for a
    # short: negating (price - entry) is exact, so both forms agree bit for bit.
    return quantity * (side * (price - entry))


cdef class Position:
    """One position: opened by an entry, marked at each bar's close, closed by an exit.

    Owned and updated by a `StateMachine`: while open the object is live (its
    mark, unrealized P&L, levels and `bars_held` change as bars arrive); once
    closed it no longer changes. All P&L is gross (fees and slippage are the
    execution layer's business).

    Parameters
    ----------
    side : Side, int or str
        ``Side.LONG`` (1, ``"long"``) or ``Side.SHORT`` (-1, ``"short"``).
    quantity : float
        Size in base units (finite, > 0).
    entry_price : float
        Fill price in quote currency (finite, > 0).
    entry_time : int
        Milliseconds since the Unix epoch (UTC).
    stop_loss, take_profit : float, optional
        Exit levels in quote currency; NaN (default) means none. For a long
        stop_loss < entry_price < take_profit; for a short the reverse.
    reason : str, optional
        Why the position was entered (free text from the strategy).

    Attributes
    ----------
    side : Side
    quantity, entry_price, entry_time, stop_loss, take_profit
        As above (levels change when the machine updates them).
    mark_price : float
        Last close seen while open (the entry price before the first bar);
        the exit price once closed.
    unrealized_pnl : float
        quantity * (mark - entry) for a long, quantity * (entry - mark) for a
        short (quote currency); 0.0 once closed.
    realized_pnl : float
        Gross P&L realised so far: by partial exits while open, in total once closed.
    exit_price : float
        NaN while open.
    exit_time : int or None
        None while open; for automatic exits the triggering bar's open time.
    exit_reason : str or None
        ``"stop_loss"``, ``"take_profit"``, the strategy's reason (``"exit"``
        by default); None while open.
    ambiguous : bool
        The exit bar touched both levels without a deciding gap, so the
        machine's ambiguity policy chose the level; or the bar a limit/stop
        order filled inside touched a level, which was then checked from the
        next bar (docs/orders.md).
    is_open : bool
    bars_held : int
        Bars processed while open, including the exit bar.

    Raises
    ------
    ValueError
        Naming the field and value: quantity or entry price not finite > 0,
        a level not finite > 0, or a level on the wrong side of the entry.
    """

    def __init__(self, side, double quantity, double entry_price, long long entry_time,
                 double stop_loss=NAN, double take_profit=NAN, str reason=""):
        cdef int s = parse_side(side)
        check_entry(s, quantity, entry_price, stop_loss, take_profit)
        init_position(self, s, quantity, entry_price, entry_time, stop_loss, take_profit,
                      reason)

    @property
    def side(self):
        """`Side.LONG` or `Side.SHORT`."""
        return Side.LONG if self.side_c == Side.LONG else Side.SHORT

    @property
    def exit_time(self):
        """Exit time in ms since the Unix epoch (UTC), or None while open."""
        return None if self.is_open else self.exit_time_c

    @property
    def pnl(self):
        """Realized P&L once closed, unrealized while open (quote currency, gross)."""
        return self.unrealized_pnl if self.is_open else self.realized_pnl

    def to_dict(self):
        """The position as a JSON-serializable dict (NaN and unknown values become None)."""
        return {
            "side": side_name(self.side_c),
            "quantity": self.quantity,
            "entry_price": self.entry_price,
            "entry_time": self.entry_time,
            "stop_loss": none_if_nan(self.stop_loss),
            "take_profit": none_if_nan(self.take_profit),
            "mark_price": self.mark_price,
            "unrealized_pnl": self.unrealized_pnl,
            "realized_pnl": self.realized_pnl,
            "exit_price": none_if_nan(self.exit_price),
            "exit_time": self.exit_time,
            "exit_reason": self.exit_reason,
            "entry_reason": self.entry_reason,
            "ambiguous": self.ambiguous,
            "is_open": self.is_open,
            "bars_held": self.bars_held,
        }

    def __repr__(self):
        levels = f"sl={self.stop_loss!r} tp={self.take_profit!r}"
        if self.is_open:
            return (f"<Position {side_name(self.side_c)} {self.quantity!r} @ {self.entry_price!r} "
                    f"{levels} open, mark {self.mark_price!r}, upnl {self.unrealized_pnl!r}>")
        flag = " ambiguous" if self.ambiguous else ""
        return (f"<Position {side_name(self.side_c)} {self.quantity!r} @ {self.entry_price!r} "
                f"{levels} closed @ {self.exit_price!r} ({self.exit_reason}{flag}), "
                f"pnl {self.realized_pnl!r}>")


cdef void init_position(Position p, int side, double quantity, double price, long long ts,
                        double stop_loss, double take_profit, str reason):
    p.side_c = side
    p.quantity = quantity
    p.entry_price = price
    p.entry_time = ts
    p.stop_loss = stop_loss
    p.take_profit = take_profit
    p.mark_price = price
    p.unrealized_pnl = 0.0
    p.realized_pnl = 0.0
    p.exit_price = NAN
    p.exit_time_c = 0
    p.exit_reason = None
    p.entry_reason = reason if reason is not None else ""
    p.ambiguous = False
    p.is_open = True
    p.bars_held = 0
    p.entry_kind = ENTRY_MARKET
    p.fresh = False
    p.fill_bar_touched = False
    p.stop_reason = REASON_STOP_LOSS


cdef class StateMachine:
    """The trading cycle of one symbol: IDLE -> ANALYZING -> IN_POSITION -> IDLE.

    Strategies move it with the action methods (or `apply`); the runner feeds
    it every bar with `update` (or the C-level `update_fast`), which marks the
    open position at the bar's close and closes it when the bar reaches its
    stop-loss or take-profit. Prices are in quote currency, quantities in base
    units, timestamps in ms since the Unix epoch (UTC); P&L is gross.

    Allowed actions (anything else raises `InvalidTransition` and changes nothing):

    ===========  ==========================================================
    IDLE         start_analyzing -> ANALYZING; enter_long / enter_short -> IN_POSITION;
                 place_order -> ANALYZING with an order working
    ANALYZING    cancel_analysis -> IDLE (drops a working order); enter_long /
                 enter_short (a market fill, or the working order's) -> IN_POSITION;
                 place_order (new or replacing) and cancel_order (or its expiry)
                 stay ANALYZING; the analysis timeout -> IDLE (drops the order)
    IN_POSITION  exit -> IDLE; add_to_position (scaling in), reduce_position
                 (partial exit), update_stop_loss, update_take_profit (no state change)
    ===========  ==========================================================

    `order_working` is the one sub-state: a limit or stop entry order waits
    for its fill while flat (docs/orders.md); only ANALYZING has one.

    Entering straight from IDLE is allowed: a strategy that needs no separate
    analysis phase does not have to pass through ANALYZING.

    Parameters
    ----------
    ambiguity_policy : {"stop_loss_first", "take_profit_first", "open_distance"}
        Which level fills when one bar touches both the stop-loss and the
        take-profit (the intrabar order is unknown): the stop (default,
        pessimistic), the take-profit, or whichever is nearer the bar's open
        (a tie goes to the stop). Such exits have ``ambiguous=True``.
    analysis_timeout_bars : int
        0 (default) for none; otherwise the strategy gets this many bars in
        ANALYZING, and the next bar's `update` returns the machine to IDLE
        with reason ``"analysis_timeout"``.
    keep_context : bool
        False (default): `context` is cleared on every return to IDLE (exit,
        stop-loss, take-profit, cancel, timeout). True: it is never cleared
        automatically. Values set in IDLE or ANALYZING stay visible in
        IN_POSITION either way.

    Raises
    ------
    ValueError
        Unknown `ambiguity_policy`, or `analysis_timeout_bars` < 0.

    Notes
    -----
    Exit rules per bar (see `update`): an open at or beyond a level fills at
    the open (gap); otherwise a level the bar's low/high touches fills at the
    level itself. Levels are checked before the mark, so a position is never
    marked at a close beyond its stop. Call `update` before asking the
    strategy about the same bar, and only with bars after the entry.

    Validation: quantity finite > 0; prices finite > 0; a stop-loss below and
    a take-profit above the reference price for a long (the reverse for a
    short), where the reference is the entry price on entry and the current
    mark (last close) on `update_stop_loss`/`update_take_profit`, so trailing
    a stop past the entry is allowed. Bad values raise ValueError naming the
    field and value, and nothing changes.
    """

    def __cinit__(self, str ambiguity_policy="stop_loss_first", int analysis_timeout_bars=0,
                  bint keep_context=False):
        if ambiguity_policy not in POLICIES:
            raise ValueError(f"ambiguity_policy = {ambiguity_policy!r}: must be one of "
                             f"{', '.join(POLICIES)}")
        if analysis_timeout_bars < 0:
            raise ValueError(f"analysis_timeout_bars = {analysis_timeout_bars}: must be >= 0 "
                             "(0 = no timeout)")
        self.policy_c = POLICIES.index(ambiguity_policy)
        self.analysis_timeout_bars = analysis_timeout_bars
        self.keep_context = keep_context
        self.context = Context()
        self.closed_positions = []
        self.hist_reason = [None] * HISTORY_CAPACITY
        self._reset()

    cdef int _reset(self) except -1:
        cdef int i
        self.state_c = State.IDLE
        self.bars_processed = 0
        self.bars_in_state = 0
        self.n_trades = 0
        self.transition_count = 0
        self.realized_pnl = 0.0
        self.position = None
        self.last_closed = None
        del self.closed_positions[:]
        self.context._data.clear()
        self.hist_head = 0
        self.hist_size = 0
        self.order_working = False
        for i in range(HISTORY_CAPACITY):
            self.hist_reason[i] = None
        return 0

    def reset(self):
        """Back to a fresh IDLE machine: no position, counters, history, trades or context."""
        self._reset()

    # -- properties ------------------------------------------------------------

    @property
    def state(self):
        """The current `State`."""
        return STATES[self.state_c]

    @property
    def ambiguity_policy(self):
        """``"stop_loss_first"``, ``"take_profit_first"`` or ``"open_distance"``."""
        return POLICIES[self.policy_c]

    def allowed_actions(self):
        """The `ActionType`s valid in the current state."""
        return tuple(a for a in ACTIONS if ALLOWED[self.state_c] & (1 << <int>a))

    # -- transitions -------------------------------------------------------------

    cdef int _check(self, int action) except -1:
        cdef int a
        if ALLOWED[self.state_c] & (1 << action):
            return 0
        names = []
        for a in range(len(ACTIONS)):
            if ALLOWED[self.state_c] & (1 << a):
                names.append(action_name(a))
        raise InvalidTransition(
            f"cannot {action_name(action)} in state {STATES[self.state_c].name}; "
            f"allowed there: {', '.join(names)}; nothing was changed",
            STATES[self.state_c], ACTIONS[action])

    cdef int _transition(self, int to, int action, str reason, long long ts) except -1:
        cdef int i = self.hist_head
        # The only fallible step goes first, so a failure changes nothing.
        self.hist_reason[i] = reason
        self.hist_from[i] = self.state_c
        self.hist_to[i] = to
        self.hist_action[i] = action
        self.hist_ts[i] = ts
        self.hist_head = i + 1 if i + 1 < HISTORY_CAPACITY else 0
        if self.hist_size < HISTORY_CAPACITY:
            self.hist_size += 1
        self.transition_count += 1
        self.state_c = to
        self.bars_in_state = 0
        self.order_working = False      # only ANALYZING keeps one, and it never transitions to itself
        if to == State.IDLE and not self.keep_context:
            self.context._data.clear()
        return 0

    def start_analyzing(self, long long timestamp, str reason=""):
        """IDLE -> ANALYZING: the strategy found a setup worth evaluating.

        Parameters
        ----------
        timestamp : int
            Milliseconds since the Unix epoch (UTC).
        reason : str, optional
            Recorded in the history.

        Raises
        ------
        InvalidTransition
            Unless IDLE.
        """
        self._check(ActionType.START_ANALYZING)
        self._transition(State.ANALYZING, ActionType.START_ANALYZING, reason or "", timestamp)

    def cancel_analysis(self, long long timestamp, str reason=""):
        """ANALYZING -> IDLE: the setup was rejected (clears `context` unless `keep_context`).

        Raises
        ------
        InvalidTransition
            Unless ANALYZING.
        """
        self._check(ActionType.CANCEL_ANALYSIS)
        self._transition(State.IDLE, ActionType.CANCEL_ANALYSIS, reason or "", timestamp)

    def place_order(self, long long timestamp, str reason=""):
        """A limit or stop entry order starts working: IDLE -> ANALYZING, or stays ANALYZING.

        The order itself (its side, prices and expiry) is the runner's; the
        machine records that one works (`order_working`). From IDLE this is a
        transition (recorded, with `reason`); in ANALYZING a new order
        replaces the working one and the state does not change (the analysis
        timeout keeps counting from when the analysis started).

        Raises
        ------
        InvalidTransition
            When IN_POSITION.
        """
        self._check(ActionType.PLACE_ORDER)
        if self.state_c == State.IDLE:
            self._transition(State.ANALYZING, ActionType.PLACE_ORDER, reason or "", timestamp)
        self.order_working = True

    def cancel_order(self):
        """The working entry order is cancelled (or expired): stays ANALYZING, without an order.

        Raises
        ------
        InvalidTransition
            No order works.
        """
        self._check(ActionType.CANCEL_ORDER)
        if not self.order_working:
            raise InvalidTransition(f"cannot cancel_order in state {STATES[self.state_c].name}: "
                                    "no order is working; nothing was changed",
                                    STATES[self.state_c], ActionType.CANCEL_ORDER)
        self.order_working = False

    cdef Position _enter(self, int action, double quantity, double price, long long ts,
                         double stop_loss, double take_profit, str reason):
        cdef int side = Side.LONG if action == ActionType.ENTER_LONG else Side.SHORT
        cdef Position p
        self._check(action)
        check_entry(side, quantity, price, stop_loss, take_profit)
        p = Position.__new__(Position)
        init_position(p, side, quantity, price, ts, stop_loss, take_profit, reason)
        self._transition(State.IN_POSITION, action, reason or "", ts)
        self.position = p
        return p

    def enter_long(self, double quantity, double price, long long timestamp,
                   double stop_loss=NAN, double take_profit=NAN, str reason=""):
        """Open a long position (IDLE or ANALYZING -> IN_POSITION) and return it.

        Parameters
        ----------
        quantity : float
            Base units (finite, > 0).
        price : float
            Fill price, quote currency (finite, > 0).
        timestamp : int
            Milliseconds since the Unix epoch (UTC).
        stop_loss, take_profit : float, optional
            NaN (default) for none; otherwise stop_loss < price < take_profit.
        reason : str, optional
            Recorded in the history and as the position's `entry_reason`.

        Raises
        ------
        InvalidTransition
            When IN_POSITION.
        ValueError
            Naming the bad field and value; nothing changes.
        """
        return self._enter(ActionType.ENTER_LONG, quantity, price, timestamp, stop_loss,
                           take_profit, reason)

    def enter_short(self, double quantity, double price, long long timestamp,
                    double stop_loss=NAN, double take_profit=NAN, str reason=""):
        """Open a short position (IDLE or ANALYZING -> IN_POSITION) and return it.

        As `enter_long`, with take_profit < price < stop_loss.
        """
        return self._enter(ActionType.ENTER_SHORT, quantity, price, timestamp, stop_loss,
                           take_profit, reason)

    cdef int _add(self, double quantity, double price) except -1:
        # A lot added to the open position (scaling in): the entry price becomes
        # the quantity-weighted average. The caller validated both numbers.
        cdef Position p = self.position
        cdef double total = p.quantity + quantity
        p.entry_price = (p.quantity * p.entry_price + quantity * price) / total
        p.quantity = total
        p.unrealized_pnl = pnl(p.side_c, p.quantity, p.entry_price, p.mark_price)
        return 0

    cdef double _reduce(self, double quantity, double cost, double price) except? -1:
        # Part of the open position closed at `price` (a partial exit): `quantity`
        # base units whose entry cost (sum of quantity x entry price of the lots
        # closed) is `cost`, so the average entry of what stays is that of the
        # lots left. Returns the gross P&L realised.
        cdef Position p = self.position
        cdef double left = p.quantity - quantity
        cdef double realized = p.side_c * (quantity * price - cost)
        p.entry_price = (p.quantity * p.entry_price - cost) / left
        p.quantity = left
        p.realized_pnl += realized
        p.unrealized_pnl = pnl(p.side_c, p.quantity, p.entry_price, p.mark_price)
        self.realized_pnl += realized
        return realized

    def add_to_position(self, double quantity, double price):
        """Scale in: add `quantity` at `price` to the open position (stays IN_POSITION).

        The position's `entry_price` becomes the quantity-weighted average.

        Raises
        ------
        InvalidTransition
            Unless IN_POSITION.
        ValueError
            Quantity or price not finite > 0; nothing changes.
        """
        if self.state_c != State.IN_POSITION:
            raise InvalidTransition(f"cannot add to a position in state {STATES[self.state_c].name}",
                                    STATES[self.state_c], ActionType.ENTER_LONG)
        if not isfinite(quantity) or quantity <= 0.0:
            raise ValueError(f"quantity = {quantity!r}: must be finite and > 0 (base units)")
        check_price("price", price)
        self._add(quantity, price)

    def reduce_position(self, double quantity, double price, cost=None):
        """Partial exit: close `quantity` of the open position at `price` (stays IN_POSITION).

        Parameters
        ----------
        quantity : float
            Base units, 0 < quantity < the position's quantity (all of it: `exit`).
        price : float
            Fill price, quote currency.
        cost : float, optional
            Entry cost of the part closed (quote currency; the runner passes
            its lots' cost, oldest first); default quantity x average entry.

        Returns
        -------
        float
            Gross P&L realised by this part.

        Raises
        ------
        InvalidTransition
            Unless IN_POSITION.
        ValueError
            Bad quantity or price; nothing changes.
        """
        if self.state_c != State.IN_POSITION:
            raise InvalidTransition(f"cannot reduce a position in state {STATES[self.state_c].name}",
                                    STATES[self.state_c], ActionType.EXIT)
        if not (isfinite(quantity) and 0.0 < quantity < self.position.quantity):
            raise ValueError(f"quantity = {quantity!r}: must be > 0 and below the position's "
                             f"{self.position.quantity!r} (base units)")
        check_price("price", price)
        return self._reduce(quantity, quantity * self.position.entry_price if cost is None else cost,
                            price)

    cdef Position _close(self, double price, long long ts, str reason, bint ambiguous):
        cdef Position p = self.position
        cdef double realized = pnl(p.side_c, p.quantity, p.entry_price, price)
        self.closed_positions.append(p)
        self._transition(State.IDLE, ActionType.EXIT, reason, ts)
        p.exit_price = price
        p.exit_time_c = ts
        p.exit_reason = reason
        p.ambiguous = ambiguous or p.fill_bar_touched
        p.mark_price = price
        p.realized_pnl += realized
        p.unrealized_pnl = 0.0
        p.is_open = False
        self.position = None
        self.last_closed = p
        self.n_trades += 1
        self.realized_pnl += realized
        return p

    cdef int refill_last_exit(self, double price) except -1:
        # The runner filled the level exit just taken at `price` (a triggered stop is a market
        # order: slippage moves it): the closed position and the realised P&L follow the fill.
        cdef Position p = self.last_closed
        cdef double delta = (pnl(p.side_c, p.quantity, p.entry_price, price)
                             - pnl(p.side_c, p.quantity, p.entry_price, p.exit_price))
        p.exit_price = price
        p.mark_price = price
        p.realized_pnl += delta
        self.realized_pnl += delta
        return 0

    def exit(self, double price, long long timestamp, str reason="exit"):
        """Close the position at `price` (IN_POSITION -> IDLE) and return it.

        Parameters
        ----------
        price : float
            Fill price, quote currency (finite, > 0).
        timestamp : int
            Milliseconds since the Unix epoch (UTC); not before the entry time.
        reason : str, optional
            The position's `exit_reason` (``"exit"`` when empty).

        Raises
        ------
        InvalidTransition
            Unless IN_POSITION.
        ValueError
            Bad price or timestamp; nothing changes.
        """
        self._check(ActionType.EXIT)
        check_price("price", price)
        if timestamp < self.position.entry_time:
            raise ValueError(f"timestamp = {timestamp}: exit must not be before the entry "
                             f"time ({self.position.entry_time})")
        return self._close(price, timestamp, reason or REASON_EXIT, False)

    def update_stop_loss(self, double price):
        """Move the open position's stop-loss to `price` (NaN removes it).

        Must lie below the current mark for a long, above it for a short.

        Raises
        ------
        InvalidTransition
            Unless IN_POSITION.
        ValueError
            Bad level; nothing changes.
        """
        self._check(ActionType.UPDATE_STOP_LOSS)
        check_level("stop_loss", price, self.position.side_c, self.position.mark_price,
                    "current mark price")
        self.position.stop_loss = price

    def update_take_profit(self, double price):
        """Move the open position's take-profit to `price` (NaN removes it).

        Must lie above the current mark for a long, below it for a short.

        Raises
        ------
        InvalidTransition
            Unless IN_POSITION.
        ValueError
            Bad level; nothing changes.
        """
        self._check(ActionType.UPDATE_TAKE_PROFIT)
        check_level("take_profit", price, self.position.side_c, self.position.mark_price,
                    "current mark price")
        self.position.take_profit = price

    def apply(self, action, timestamp=None, *, quantity=None, price=None,
              stop_loss=NAN, take_profit=NAN, reason=None):
        """Perform `action` (an `ActionType`, its int value or its lower-case name).

        Arguments each action needs: start_analyzing, cancel_analysis:
        timestamp; enter_long, enter_short: quantity, price, timestamp
        (stop_loss, take_profit optional); exit: price, timestamp;
        update_stop_loss, update_take_profit: price; place_order: timestamp;
        cancel_order: nothing. `reason` is optional.

        Returns
        -------
        Position or None
            The new position for entries, the closed one for exits, else None.

        Raises
        ------
        ValueError
            Unknown action, or bad values.
        InvalidTransition
            The action is not allowed in the current state (checked first).
        TypeError
            A needed argument is missing.
        """
        cdef int a = parse_action(action)
        self._check(a)
        if a == ActionType.UPDATE_STOP_LOSS:
            return self.update_stop_loss(need(price, "price", a))
        if a == ActionType.UPDATE_TAKE_PROFIT:
            return self.update_take_profit(need(price, "price", a))
        if a == ActionType.CANCEL_ORDER:
            return self.cancel_order()
        ts = need(timestamp, "timestamp", a)
        if a == ActionType.PLACE_ORDER:
            return self.place_order(ts, reason or "")
        if a == ActionType.START_ANALYZING:
            return self.start_analyzing(ts, reason or "")
        if a == ActionType.CANCEL_ANALYSIS:
            return self.cancel_analysis(ts, reason or "")
        if a == ActionType.EXIT:
            return self.exit(need(price, "price", a), ts, reason or REASON_EXIT)
        return self._enter(a, need(quantity, "quantity", a), need(price, "price", a), ts,
                           stop_loss, take_profit, reason or "")

    # -- bars --------------------------------------------------------------------

    cdef int update_fast(self, long long ts, double open, double high, double low,
                         double close) except -1:
        cdef Position p
        cdef double fill
        cdef bint ambiguous
        cdef int hit
        self.bars_processed += 1
        self.bars_in_state += 1
        if self.state_c == State.IDLE:
            return BAR_NONE
        if self.state_c == State.IN_POSITION:
            p = self.position
            p.bars_held += 1
            if p.fresh:
                return self._fill_bar(p, ts, high, low, close)
            hit = bar_exit(p.side_c, p.stop_loss, p.take_profit, open, high, low,
                           self.policy_c, &fill, &ambiguous)
            if hit == BAR_NONE:
                p.mark_price = close
                p.unrealized_pnl = pnl(p.side_c, p.quantity, p.entry_price, close)
                return BAR_NONE
            self._close(fill, ts, p.stop_reason if hit == BAR_STOP_LOSS
                        else REASON_TAKE_PROFIT, ambiguous)
            return hit
        if 0 < self.analysis_timeout_bars < self.bars_in_state:
            self._transition(State.IDLE, ActionType.CANCEL_ANALYSIS, REASON_TIMEOUT, ts)
            return BAR_ANALYSIS_TIMEOUT
        return BAR_NONE

    cdef int _fill_bar(self, Position p, long long ts, double high, double low,
                       double close) except -1:
        # The bar a limit or stop order filled inside (docs/orders.md, "Levels on
        # the fill bar"): where in the bar the fill happened is unknown, so the
        # levels start on the next bar, but for the one certain case: a stop entry
        # whose bar went on to its take-profit without touching its stop-loss.
        cdef bint long_ = p.side_c == Side.LONG
        cdef bint sl_touch = (low <= p.stop_loss) if long_ else (high >= p.stop_loss)
        cdef bint tp_touch = (high >= p.take_profit) if long_ else (low <= p.take_profit)
        p.fresh = False
        if p.entry_kind == ENTRY_STOP and tp_touch and not sl_touch:
            self._close(p.take_profit, ts, REASON_TAKE_PROFIT, False)
            return BAR_TAKE_PROFIT
        if sl_touch or tp_touch:
            p.fill_bar_touched = True
        p.mark_price = close
        p.unrealized_pnl = pnl(p.side_c, p.quantity, p.entry_price, close)
        return BAR_NONE

    def update(self, MarketData bar not None):
        """Process one bar: take a stop-loss/take-profit exit or mark at the close; time out analysis.

        Counts the bar (`bars_processed`, `bars_in_state`); in IN_POSITION
        closes the position when the bar reaches a level, else marks it at
        the close; in ANALYZING applies `analysis_timeout_bars`.

        Parameters
        ----------
        bar : MarketData
            The next bar (trusted: `MarketData` validates itself). Its
            timestamp (open time) is recorded for any exit or timeout.

        Returns
        -------
        Position or None
            The position this bar closed, else None.

        Notes
        -----
        Fill prices: a long's stop fills at min(open, stop_loss) and its
        take-profit at max(open, take_profit) (an open beyond the level is a
        gap: the open decides, and the exit is not ambiguous); mirrored for a
        short. A bar touching both levels is resolved by `ambiguity_policy`.
        """
        if self.update_fast(bar.timestamp, bar.open, bar.high, bar.low, bar.close) in (
                BAR_STOP_LOSS, BAR_TAKE_PROFIT):
            return self.last_closed
        return None

    def update_values(self, long long timestamp, double open, double high, double low,
                      double close):
        """`update` for a bar given as numbers, validated like `MarketData` first.

        Raises
        ------
        InvalidMarketData
            Naming the bad field and value; nothing changes.
        """
        if not bar_ok(open, high, low, close, 0.0, NAN, NAN):
            raise_if_invalid(None, timestamp, open, high, low, close, 0.0, NAN, NAN)
        if self.update_fast(timestamp, open, high, low, close) in (
                BAR_STOP_LOSS, BAR_TAKE_PROFIT):
            return self.last_closed
        return None

    # -- introspection -----------------------------------------------------------

    def history(self):
        """The last (up to 100) transitions, oldest first, as `Transition` tuples."""
        cdef int k, i
        cdef int start = self.hist_head - self.hist_size
        out = []
        if start < 0:
            start += HISTORY_CAPACITY
        for k in range(self.hist_size):
            i = start + k
            if i >= HISTORY_CAPACITY:
                i -= HISTORY_CAPACITY
            out.append(Transition(STATES[self.hist_from[i]], STATES[self.hist_to[i]],
                                  self.hist_reason[i], self.hist_ts[i],
                                  ACTIONS[self.hist_action[i]]))
        return out

    def to_dict(self, bint history=False):
        """A JSON-serializable snapshot (NaN becomes None).

        Keys: state, bars_processed, bars_in_state, n_trades, transition_count,
        realized_pnl, position and last_closed (`Position.to_dict()` or None),
        context, ambiguity_policy, analysis_timeout_bars, keep_context, and with
        ``history=True`` the transitions as dicts (oldest first).
        """
        d = {
            "state": STATES[self.state_c].name,
            "bars_processed": self.bars_processed,
            "bars_in_state": self.bars_in_state,
            "n_trades": self.n_trades,
            "transition_count": self.transition_count,
            "realized_pnl": self.realized_pnl,
            "position": None if self.position is None else self.position.to_dict(),
            "last_closed": None if self.last_closed is None else self.last_closed.to_dict(),
            "context": {k: (None if isinstance(v, float) and v != v else v)
                        for k, v in self.context._data.items()},
            "ambiguity_policy": POLICIES[self.policy_c],
            "analysis_timeout_bars": self.analysis_timeout_bars,
            "keep_context": self.keep_context,
            "order_working": self.order_working,
        }
        if history:
            d["history"] = [{"from": t.from_state.name, "to": t.to_state.name,
                             "reason": t.reason, "timestamp": t.timestamp,
                             "action": t.action.name.lower()} for t in self.history()]
        return d

    def __repr__(self):
        pos = "" if self.position is None else f" {self.position!r}"
        return (f"<StateMachine {STATES[self.state_c].name} for {self.bars_in_state} bars, "
                f"{self.n_trades} trades, realized {self.realized_pnl!r}{pos}>")


cdef int parse_action(object action) except -1:
    if isinstance(action, str):
        try:
            return ActionType[action.upper()]
        except KeyError:
            pass
    elif not isinstance(action, bool) and isinstance(action, int):
        if 0 <= action < len(ACTIONS):
            return action
    raise ValueError(f"action = {action!r}: must be one of "
                     f"{', '.join(a.name.lower() for a in ACTIONS)}")


cdef object need(object value, str name, int action):
    if value is None:
        raise TypeError(f"apply({action_name(action)!r}) needs `{name}`")
    return value
