# The per-bar decision protocol between api.lua's `on_bar` and the runner,
# defined once (see decision.pyx): the result codes, the layout of an action,
# the rules an action must pass, and `Decoded`, the decision both readers fill
# (`LuaDirect` off the Lua stack, `decode_result` from a Python tuple).

from libc.math cimport floor, isfinite

from tradesim._core.state_machine cimport ActionType


cpdef enum ResultCode:
    """First value of what api.lua's ``on_bar`` returns (it returns nothing for no decision)."""
    STARTED = 1          # 1, reason: an analysis started, no action
    ACTION = 2           # 2, function, action, <N_AMOUNTS numbers or nils>, reason
    INVALID_TABLE = 3    # 3, function, field, description: a malformed action table
    STARTED_ACTION = 4   # 4, reason, then an ACTION or INVALID_TABLE result: both on one bar


cpdef enum SyncCode:
    """api.lua's ``sync(code, ...)``: `Side.LONG` / `Side.SHORT` set that position, or these."""
    SYNC_FLAT = 0
    SYNC_CLEAR_CONTEXT = 2
    SYNC_ORDER_LONG = 3      # a buy entry order works: placed_time, quantity, limit, stop, expires_time
    SYNC_ORDER_SHORT = 4     # a sell entry order works (same arguments)
    SYNC_NO_ORDER = 5        # no order works


# Offsets in an ACTION result (from its code) and its length.
cdef enum:
    AT_FUNCTION = 1
    AT_ACTION = 2
    AT_AMOUNTS = 3       # the N_AMOUNTS numeric fields, AMOUNT_* order
    AT_REASON = 21       # AT_AMOUNTS + N_AMOUNTS
    ACTION_LENGTH = 22

# An action's numeric fields, in result order (api.lua's AMOUNT_FIELDS lists the
# same names in the same order; `amount_names` gives them to it).
cdef enum:
    AMOUNT_QUANTITY = 0
    AMOUNT_STOP_LOSS = 1
    AMOUNT_TAKE_PROFIT = 2
    AMOUNT_PRICE = 3
    AMOUNT_NOTIONAL = 4
    AMOUNT_EQUITY_FRACTION = 5
    AMOUNT_RISK_FRACTION = 6
    AMOUNT_FRACTION = 7
    AMOUNT_LIMIT_PRICE = 8
    AMOUNT_STOP_PRICE = 9
    AMOUNT_EXPIRY_BARS = 10
    AMOUNT_EXPIRY_MS = 11
    AMOUNT_TRAILING_STOP = 12
    AMOUNT_TRAILING_PERCENT = 13
    AMOUNT_TRAILING_ATR = 14
    AMOUNT_ATR_PERIOD = 15
    AMOUNT_BREAKEVEN_AFTER = 16
    AMOUNT_TIME_STOP_BARS = 17
    N_AMOUNTS = 18

# Which fields each kind of action may give (bit masks over AMOUNT_*).
cdef enum:
    ENTRY_FIELDS = ((1 << AMOUNT_QUANTITY) | (1 << AMOUNT_STOP_LOSS) | (1 << AMOUNT_TAKE_PROFIT)
                    | (1 << AMOUNT_NOTIONAL) | (1 << AMOUNT_EQUITY_FRACTION)
                    | (1 << AMOUNT_RISK_FRACTION) | (1 << AMOUNT_LIMIT_PRICE)
                    | (1 << AMOUNT_STOP_PRICE) | (1 << AMOUNT_EXPIRY_BARS) | (1 << AMOUNT_EXPIRY_MS)
                    | (1 << AMOUNT_TRAILING_STOP) | (1 << AMOUNT_TRAILING_PERCENT)
                    | (1 << AMOUNT_TRAILING_ATR) | (1 << AMOUNT_ATR_PERIOD)
                    | (1 << AMOUNT_BREAKEVEN_AFTER) | (1 << AMOUNT_TIME_STOP_BARS))
    EXIT_FIELDS = (1 << AMOUNT_QUANTITY) | (1 << AMOUNT_FRACTION)
    LEVEL_FIELDS = 1 << AMOUNT_PRICE
    SIZING_FIELDS = ((1 << AMOUNT_QUANTITY) | (1 << AMOUNT_NOTIONAL) | (1 << AMOUNT_EQUITY_FRACTION)
                     | (1 << AMOUNT_RISK_FRACTION))
    TRAILING_FIELDS = ((1 << AMOUNT_TRAILING_STOP) | (1 << AMOUNT_TRAILING_PERCENT)
                       | (1 << AMOUNT_TRAILING_ATR))
    # fields that count bars or periods: whole numbers
    INTEGER_FIELDS = (1 << AMOUNT_EXPIRY_BARS) | (1 << AMOUNT_ATR_PERIOD) | (1 << AMOUNT_TIME_STOP_BARS)
    # fractions of a whole: at most 1
    FRACTION_FIELDS = (1 << AMOUNT_EQUITY_FRACTION) | (1 << AMOUNT_FRACTION)

# Upper bound of the counting fields (C casts must not wrap; expiry_ms: <= 1e13).
cdef enum:
    MAX_COUNT = 1000000000              # expiry_bars, atr_period, time_stop_bars

# What `check_amounts` found.
cdef enum:
    CHECK_OK = 0
    CHECK_MISSING = 1       # a field the action needs is not given
    CHECK_INVALID = 2       # a given field is not a finite number > 0 (or not whole, or > 1)
    CHECK_NOT_FOR = 3       # a given field does not apply to this action
    CHECK_CONFLICT = 4      # two fields that exclude each other (field, other)
    CHECK_NEEDS = 5         # a field needs another one (field needs other)


cdef class Decoded:
    # One bar's decision, reused bar after bar by its owner (`RunnerCore`).
    cdef bint ready                 # the fields hold this bar's decision
    cdef bint started               # an analysis started ...
    cdef str start_reason           # ... for this reason ("" for none)
    cdef int action                 # an ActionType value; -1: no action
    cdef double amounts[N_AMOUNTS]  # AMOUNT_* order; NaN when not given
    cdef str reason                 # the action's reason ("" for none)
    cdef str function               # the entry point that returned the action (set by decode_result)


# The ActionType a strategy names with these UTF-8 bytes (lower-case member
# name, START_ANALYZING excluded: an analysis starts by a setup), or -1.
cdef int action_named(const char* name, size_t length) noexcept nogil


cdef inline int _lowest(int mask) noexcept nogil:
    cdef int i = 0
    while not (mask >> i) & 1:
        i += 1
    return i


cdef inline int _allowed(int action) noexcept nogil:
    if action == ActionType.ENTER_LONG or action == ActionType.ENTER_SHORT:
        return ENTRY_FIELDS
    if action == ActionType.EXIT:
        return EXIT_FIELDS
    if action == ActionType.UPDATE_STOP_LOSS or action == ActionType.UPDATE_TAKE_PROFIT:
        return LEVEL_FIELDS
    return 0


# The rules of an action's numbers (docs/orders.md): `given[i]` says whether
# field i was given (a value that is not a number counts as given, with
# `amounts[i]` NaN). Returns CHECK_OK, or a CHECK_* code with `field[0]` the
# field at fault and `other[0]` the second field of a conflict or a need.
# Order of the checks: missing, not for this action, invalid, conflicts, needs.
cdef inline int check_amounts(int action, const double* amounts, const bint* given,
                              int* field, int* other) noexcept nogil:
    cdef int i, mask = 0, allowed = _allowed(action), both
    cdef int groups[5]
    cdef double x
    for i in range(N_AMOUNTS):
        if given[i]:
            mask |= 1 << i
    if (action == ActionType.UPDATE_STOP_LOSS or action == ActionType.UPDATE_TAKE_PROFIT) \
            and not given[AMOUNT_PRICE]:
        field[0] = AMOUNT_PRICE
        return CHECK_MISSING
    if mask & ~allowed:
        field[0] = _lowest(mask & ~allowed)
        return CHECK_NOT_FOR
    for i in range(N_AMOUNTS):
        if not given[i]:
            continue
        x = amounts[i]
        if not (isfinite(x) and x > 0):
            field[0] = i
            return CHECK_INVALID
        if (INTEGER_FIELDS >> i) & 1 and (x != floor(x) or x > MAX_COUNT):
            field[0] = i
            return CHECK_INVALID
        if i == AMOUNT_EXPIRY_MS and (x != floor(x) or x > 1e13):     # 1e13 ms: ~317 years
            field[0] = i
            return CHECK_INVALID
        if ((FRACTION_FIELDS >> i) & 1 and x > 1.0) or (i == AMOUNT_RISK_FRACTION and x >= 1.0):
            field[0] = i
            return CHECK_INVALID
    # fields of which at most one may be given
    groups[0], groups[1] = SIZING_FIELDS, TRAILING_FIELDS
    groups[2] = (1 << AMOUNT_LIMIT_PRICE) | (1 << AMOUNT_STOP_PRICE)
    groups[3] = (1 << AMOUNT_EXPIRY_BARS) | (1 << AMOUNT_EXPIRY_MS)
    groups[4] = EXIT_FIELDS
    for i in range(5):
        both = groups[i]
        if (mask & both) and (mask & both) & ((mask & both) - 1):
            field[0] = _lowest(mask & both)
            other[0] = _lowest((mask & both) & ~(1 << field[0]))
            return CHECK_CONFLICT
    if given[AMOUNT_RISK_FRACTION] and not given[AMOUNT_STOP_LOSS]:
        field[0], other[0] = AMOUNT_RISK_FRACTION, AMOUNT_STOP_LOSS
        return CHECK_NEEDS
    if (given[AMOUNT_EXPIRY_BARS] or given[AMOUNT_EXPIRY_MS]) and not (
            given[AMOUNT_LIMIT_PRICE] or given[AMOUNT_STOP_PRICE]):
        field[0] = AMOUNT_EXPIRY_BARS if given[AMOUNT_EXPIRY_BARS] else AMOUNT_EXPIRY_MS
        other[0] = AMOUNT_LIMIT_PRICE
        return CHECK_NEEDS
    if given[AMOUNT_ATR_PERIOD] and not given[AMOUNT_TRAILING_ATR]:
        field[0], other[0] = AMOUNT_ATR_PERIOD, AMOUNT_TRAILING_ATR
        return CHECK_NEEDS
    return CHECK_OK


# `result` (what a lupa call of `on_bar` returned, not None) into `out` with the
# rules above; raises `StrategyError` (naming `script`, the function, field and
# value) for an invalid action.
cdef int decode_result(object result, Decoded out, str script) except -1
