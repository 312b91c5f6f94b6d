# The per-bar decision protocol between api.lua's `on_bar` and the runner,
# defined once (see decision.pyx): the result codes, the layout of an action,
# the rules an action must pass, and `Decoded`, the decision both readers fill
# (`LuaDirect` off the Lua stack, `decode_result` from a Python tuple).

from libc.math cimport isfinite

from tradesim._core.state_machine cimport ActionType


cpdef enum ResultCode:
    """First value of what api.lua's ``on_bar`` returns (it returns nothing for no decision)."""
    STARTED = 1          # 1, reason: an analysis started, no action
    ACTION = 2           # 2, function, action, quantity, stop_loss, take_profit, price, reason
    INVALID_TABLE = 3    # 3, function, field, description: a malformed action table
    STARTED_ACTION = 4   # 4, reason, then an ACTION or INVALID_TABLE result: both on one bar


cpdef enum SyncCode:
    """api.lua's ``sync(code, ...)``: `Side.LONG` / `Side.SHORT` set that position, or these."""
    SYNC_FLAT = 0
    SYNC_CLEAR_CONTEXT = 2


# Offsets in an ACTION result (from its code) and its length.
cdef enum:
    AT_FUNCTION = 1
    AT_ACTION = 2
    AT_AMOUNTS = 3       # quantity, stop_loss, take_profit, price: AMOUNT_* order
    AT_REASON = 7
    ACTION_LENGTH = 8

# An action's numeric fields, in result order.
cdef enum:
    AMOUNT_QUANTITY = 0
    AMOUNT_STOP_LOSS = 1
    AMOUNT_TAKE_PROFIT = 2
    AMOUNT_PRICE = 3
    N_AMOUNTS = 4

# What `check_amounts` found.
cdef enum:
    CHECK_OK = 0
    CHECK_MISSING = 1    # a field the action needs is not given
    CHECK_INVALID = 2    # a given field is not a finite number > 0


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


# The rules of an action's numbers: `given[i]` says whether field i was given
# (a value that is not a number counts as given, with `amounts[i]` NaN).
# Returns CHECK_OK, or CHECK_MISSING / CHECK_INVALID with `field[0]` the first
# field at fault (missing fields are reported before invalid ones).
cdef inline int check_amounts(int action, const double* amounts, const bint* given,
                              int* field) noexcept nogil:
    cdef int i
    if action == ActionType.UPDATE_STOP_LOSS or action == ActionType.UPDATE_TAKE_PROFIT:
        if not given[AMOUNT_PRICE]:
            field[0] = AMOUNT_PRICE
            return CHECK_MISSING
    for i in range(N_AMOUNTS):
        if given[i] and not (isfinite(amounts[i]) and amounts[i] > 0):
            field[0] = i
            return CHECK_INVALID
    return CHECK_OK


# `result` (what a lupa call of `on_bar` returned, not None) into `out` with the
# rules above; raises `StrategyError` (naming `script`, the function, field and
# value) for an invalid action.
cdef int decode_result(object result, Decoded out, str script) except -1
