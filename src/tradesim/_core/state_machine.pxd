from tradesim._core.context cimport Context

# The per-symbol trading state machine: IDLE -> ANALYZING -> IN_POSITION -> IDLE.
# The runner drives it once per bar through `update_fast` (C call, no Python
# objects touched unless a position closes or an analysis times out); the
# strategy layer drives transitions through the Python methods.

# The cycle's enums, defined once: Cython turns each `cpdef enum` into C
# constants (``State.IDLE`` in Cython is a C int) and into the Python
# IntEnum of the same name, exported by state_machine.pyx.
cpdef enum State:
    """Where the machine is in the trading cycle."""
    IDLE = 0            # flat, scanning for a setup
    ANALYZING = 1       # flat, evaluating a setup
    IN_POSITION = 2     # holding a position

cpdef enum Side:
    """Direction of a position; the value is the sign of its P&L per unit price rise."""
    LONG = 1
    SHORT = -1

cpdef enum ActionType:
    """What a strategy can ask of the machine (the lower-case name is the method name)."""
    START_ANALYZING = 0
    CANCEL_ANALYSIS = 1
    ENTER_LONG = 2
    ENTER_SHORT = 3
    EXIT = 4
    UPDATE_STOP_LOSS = 5
    UPDATE_TAKE_PROFIT = 6
    PLACE_ORDER = 7         # a limit or stop entry order starts working (flat)
    CANCEL_ORDER = 8        # the working entry order is cancelled (filled orders enter)

# Which level fills first when one bar touches both stop-loss and take-profit.
cdef enum:
    POLICY_STOP_LOSS_FIRST = 0
    POLICY_TAKE_PROFIT_FIRST = 1
    POLICY_OPEN_DISTANCE = 2

# Result codes of `update_fast` (and of `bar_exit`, which uses the first three).
cdef enum:
    BAR_NONE = 0
    BAR_STOP_LOSS = 1
    BAR_TAKE_PROFIT = 2
    BAR_ANALYSIS_TIMEOUT = 3

cdef enum:
    HISTORY_CAPACITY = 100

# How a position was entered (its first lot): a market order, or a limit or
# stop order filled inside a bar (whose levels start on the next bar).
cdef enum:
    ENTRY_MARKET = 0
    ENTRY_LIMIT = 1
    ENTRY_STOP = 2


cdef class Position:
    cdef int side_c                   # Side.LONG or Side.SHORT (as a C int)
    cdef readonly double quantity     # base units, > 0
    cdef readonly double entry_price  # quote currency
    cdef readonly long long entry_time
    cdef readonly double stop_loss    # NaN when unset
    cdef readonly double take_profit  # NaN when unset
    cdef readonly double mark_price   # last close seen (entry price before the first bar)
    cdef readonly double unrealized_pnl
    cdef readonly double realized_pnl
    cdef readonly double exit_price   # NaN while open
    cdef long long exit_time_c
    cdef readonly str exit_reason     # None while open
    cdef readonly str entry_reason
    cdef readonly bint ambiguous
    cdef readonly bint is_open
    cdef readonly long long bars_held
    cdef readonly int entry_kind      # ENTRY_* of the first lot
    cdef bint fresh                   # filled inside the current bar: levels from the next bar
    cdef bint fill_bar_touched        # its fill bar touched a level it did not take
    cdef public str stop_reason       # exit reason when the stop-loss fills ("stop_loss" ...)


cdef class StateMachine:
    cdef int state_c
    cdef int policy_c
    cdef readonly int analysis_timeout_bars
    cdef readonly bint keep_context
    cdef readonly long long bars_processed
    cdef readonly long long bars_in_state
    cdef readonly long long n_trades
    cdef readonly long long transition_count
    cdef readonly double realized_pnl
    cdef readonly Position position      # None when flat
    cdef readonly Position last_closed   # None before the first exit
    cdef readonly list closed_positions
    cdef readonly Context context
    cdef readonly bint order_working     # a limit/stop entry order works (flat, ANALYZING)
    # Transition ring: parallel C arrays plus one preallocated list of reason
    # references; `hist_head` is the next slot to write.
    cdef int hist_from[HISTORY_CAPACITY]
    cdef int hist_to[HISTORY_CAPACITY]
    cdef int hist_action[HISTORY_CAPACITY]
    cdef long long hist_ts[HISTORY_CAPACITY]
    cdef list hist_reason
    cdef int hist_head
    cdef int hist_size

    # One bar (timestamp in ms since epoch UTC, prices in quote currency,
    # trusted: the caller validated it). Returns an UPDATE_* code.
    cdef int update_fast(self, long long ts, double open, double high, double low,
                         double close) except -1
    cdef int _reset(self) except -1
    cdef int _fill_bar(self, Position p, long long ts, double high, double low,
                       double close) except -1
    cdef int _check(self, int action) except -1
    cdef int _transition(self, int to, int action, str reason, long long ts) except -1
    cdef Position _close(self, double price, long long ts, str reason, bint ambiguous)
    cdef int refill_last_exit(self, double price) except -1
    cdef Position _enter(self, int action, double quantity, double price, long long ts,
                         double stop_loss, double take_profit, str reason)
    cdef int _add(self, double quantity, double price) except -1
    cdef double _reduce(self, double quantity, double cost, double price) except? -1


# Did this bar (open/high/low in quote currency) fill a working entry order of
# `kind` (ENTRY_LIMIT or ENTRY_STOP) on `side` at `level`? Writes the fill price
# (docs/orders.md): a buy limit fills at min(open, level) once low <= level, a
# buy stop at max(open, level) once high >= level; mirrored for a sell.
cdef inline bint bar_entry(int side, int kind, double level, double open, double high,
                           double low, double* fill) noexcept nogil:
    if (kind == ENTRY_LIMIT) == (side == Side.LONG):
        # a buy limit or a sell stop: triggered by a low at or below the level
        if low <= level:
            fill[0] = open if open <= level else level
            return True
    elif high >= level:
        fill[0] = open if open >= level else level
        return True
    return False


# Did this bar (open/high/low in quote currency) close a position on side
# `side` with stop-loss `sl` and take-profit `tp` (NaN = unset)? Returns
# BAR_NONE, BAR_STOP_LOSS or BAR_TAKE_PROFIT and writes the fill price
# and whether the bar touched both levels without a deciding gap.
#
# A gap open at or beyond a level fills at the open and decides alone (a
# long's open <= sl is a stop at the open, open >= tp a take-profit at the
# open; mirrored for a short). Otherwise a touched level (long: low <= sl,
# high >= tp; short: high >= sl, low <= tp) fills at the level itself; when
# both are touched the intrabar order is unknown and `policy` decides.
# NaN levels compare false, so an unset level is never hit.
cdef inline int bar_exit(int side, double sl, double tp, double open, double high,
                         double low, int policy, double* fill,
                         bint* ambiguous) noexcept nogil:
    cdef bint sl_hit, tp_hit, sl_first
    ambiguous[0] = False
    if side == Side.LONG:
        if open <= sl:
            fill[0] = open
            return BAR_STOP_LOSS
        if open >= tp:
            fill[0] = open
            return BAR_TAKE_PROFIT
        sl_hit = low <= sl
        tp_hit = high >= tp
    else:
        if open >= sl:
            fill[0] = open
            return BAR_STOP_LOSS
        if open <= tp:
            fill[0] = open
            return BAR_TAKE_PROFIT
        sl_hit = high >= sl
        tp_hit = low <= tp
    if sl_hit and tp_hit:
        ambiguous[0] = True
        if policy == POLICY_STOP_LOSS_FIRST:
            sl_first = True
        elif policy == POLICY_TAKE_PROFIT_FIRST:
            sl_first = False
        else:
            # The nearer level is assumed reached first; a tie goes to the
            # stop (the pessimistic reading).
            if side == Side.LONG:
                sl_first = open - sl <= tp - open
            else:
                sl_first = sl - open <= open - tp
        sl_hit = sl_first
        tp_hit = not sl_first
    if sl_hit:
        fill[0] = sl
        return BAR_STOP_LOSS
    if tp_hit:
        fill[0] = tp
        return BAR_TAKE_PROFIT
    return BAR_NONE
