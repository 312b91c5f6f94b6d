"""The per-bar decision protocol: what a strategy's dispatcher returns, and its one decoder.

api.lua's ``on_bar`` answers each bar with nothing (no decision) or with
scalars headed by a `ResultCode`:

- ``STARTED, reason``: ``detect_opportunity`` found a setup (an analysis starts);
- ``ACTION, function, action, <the N_AMOUNTS numeric fields>, reason``:
  ``filter_commitment`` / ``manage_position`` asked for an action (the fields in
  `AMOUNT_NAMES` order, nil when not given);
- ``INVALID_TABLE, function, field, description``: it returned a malformed table;
- ``STARTED_ACTION, reason`` followed by an ACTION or INVALID_TABLE result: both on one bar.

The numbers are defined here only: api.lua receives them from `lua_codes`
when it is loaded, and the C code cimports them (decision.pxd). The rules an
action must pass (`action_named`, `check_amounts`) are written once too, and
both readers apply them: `LuaDirect` reads valid decisions off the Lua stack
(the fast path), `decode_result` reads what comes through lupa and names what
is wrong with an invalid one. `RunnerCore` carries out the result.
"""

from typing import NamedTuple

from libc.math cimport NAN, isnan
from libc.string cimport memcmp


import tradesim._core.state_machine as _machine
from tradesim.strategy.errors import StrategyError

__all__ = ["AMOUNT_NAMES", "ActionRequest", "Decision", "ResultCode", "SyncCode", "STRATEGY_ACTIONS",
           "decode", "lua_codes"]


class ActionRequest(NamedTuple):
    """A validated action from a strategy (prices in quote currency, quantity in base units).

    `quantity` is None when the strategy leaves sizing to the execution model;
    `stop_loss`, `take_profit` and `price` are None when not given; `extra`
    holds the other fields given (order prices, expiry, sizing, trailing ...:
    docs/orders.md), by name.
    """

    action: _machine.ActionType
    quantity: float | None
    stop_loss: float | None
    take_profit: float | None
    price: float | None
    reason: str
    function: str
    extra: dict = {}


class Decision(NamedTuple):
    """What one bar's strategy call asked for.

    `started` is True when `detect_opportunity` found a setup on this bar
    (start_analyzing, with `start_reason` from its table); `action` is the
    action returned by `filter_commitment` / `manage_position`, if any.
    """

    started: bool
    start_reason: str
    action: ActionRequest | None


#: The actions a strategy may name, in the order error messages list them;
#: a strategy writes the member's lower-case name (``"enter_long"``).
STRATEGY_ACTIONS = (_machine.ActionType.ENTER_LONG, _machine.ActionType.ENTER_SHORT,
                    _machine.ActionType.EXIT, _machine.ActionType.CANCEL_ANALYSIS,
                    _machine.ActionType.UPDATE_STOP_LOSS, _machine.ActionType.UPDATE_TAKE_PROFIT,
                    _machine.ActionType.CANCEL_ORDER)

cdef tuple _NAMES = tuple(a.name.lower() for a in STRATEGY_ACTIONS)

#: An action's numeric fields, in the order of the protocol (decision.pxd's AMOUNT_*).
AMOUNT_NAMES = ("quantity", "stop_loss", "take_profit", "price", "notional", "equity_fraction",
                "risk_fraction", "fraction", "limit_price", "stop_price", "expiry_bars", "expiry_ms",
                "trailing_stop", "trailing_percent", "trailing_atr", "atr_period", "breakeven_after",
                "time_stop_bars")
cdef tuple _AMOUNT_NAMES = AMOUNT_NAMES
assert len(AMOUNT_NAMES) == N_AMOUNTS and AT_REASON == AT_AMOUNTS + N_AMOUNTS

# The names as C strings for `action_named` (the bytes objects keep them alive).
cdef enum:
    _N_ACTIONS = 7
cdef tuple _NAME_BYTES = tuple(name.encode() for name in _NAMES)
cdef const char* _NAME_PTR[_N_ACTIONS]
cdef size_t _NAME_LEN[_N_ACTIONS]
cdef int _NAME_ACTION[_N_ACTIONS]
assert len(_NAMES) == _N_ACTIONS


cdef int _fill_names() except -1:
    cdef int i
    cdef bytes name
    for i in range(_N_ACTIONS):
        name = _NAME_BYTES[i]
        _NAME_PTR[i] = name
        _NAME_LEN[i] = len(name)
        _NAME_ACTION[i] = STRATEGY_ACTIONS[i]
    return 0


_fill_names()


cdef int action_named(const char* name, size_t length) noexcept nogil:
    cdef int i
    for i in range(_N_ACTIONS):
        if _NAME_LEN[i] == length and memcmp(_NAME_PTR[i], name, length) == 0:
            return _NAME_ACTION[i]
    return -1


cdef class Decoded:
    """One bar's decision as C fields (see decision.pxd); `RunnerCore` keeps one and reuses it."""

    def __cinit__(self):
        self.ready = False
        self.start_reason = ""
        self.action = -1
        self.reason = ""


cdef inline str _text(object x):
    return x if type(x) is str else ""


cdef inline long long _code(object x):
    # A result code as a C number (-1 for anything but an int): no enum objects per call.
    return x if type(x) is int else -1


cdef int decode_result(object result, Decoded out, str script) except -1:
    cdef tuple r = result if type(result) is tuple else (result,)
    cdef Py_ssize_t n = len(r)
    cdef long long code = _code(r[0])
    if code == ResultCode.STARTED:
        out.started, out.start_reason, out.action = True, _text(r[1] if n > 1 else None), -1
        out.ready = True
        return 0
    if code == ResultCode.STARTED_ACTION:
        if n < 3:   # api.lua never sends this; a malformed result is the strategy's error, not ours
            raise StrategyError(f"malformed decision {r!r}", script=script)
        _decode_action(r[2:], out, script)
        out.started, out.start_reason = True, _text(r[1])
    else:
        _decode_action(r, out, script)
        out.started, out.start_reason = False, ""
    out.ready = True
    return 0


cdef int _decode_action(tuple r, Decoded out, str script) except -1:
    cdef int action, field = 0, other = 0, i
    cdef double amounts[N_AMOUNTS]
    cdef bint given[N_AMOUNTS]
    cdef const char* utf8
    cdef Py_ssize_t length
    if _code(r[0]) == ResultCode.INVALID_TABLE:
        if len(r) < 4:
            raise StrategyError(f"malformed decision {r!r}", script=script)
        fname, name, what = r[1], r[2], r[3]
        raise StrategyError(f"invalid action table: field {name!r}: {what}", script=script,
                            function=fname, field=str(name), value=what)
    if len(r) < ACTION_LENGTH:
        r = r + (None,) * (ACTION_LENGTH - len(r))
    fname, name = r[AT_FUNCTION], r[AT_ACTION]
    action = -1
    if type(name) is str:
        utf8 = _utf8(name, &length)
        if utf8 is not NULL:
            action = action_named(utf8, length)
    if action < 0:
        raise StrategyError(f"unknown action {name!r}; expected one of {', '.join(_NAMES)}",
                            script=script, function=fname, field="action", value=name)
    for i in range(N_AMOUNTS):
        value = r[AT_AMOUNTS + i]
        given[i] = value is not None
        amounts[i] = value if type(value) is float or type(value) is int else NAN
    problem = check_amounts(action, amounts, given, &field, &other)
    if problem != CHECK_OK:
        _invalid(problem, name, field, other, r, script, fname)
    out.action = action
    for i in range(N_AMOUNTS):
        out.amounts[i] = amounts[i]
    out.reason = _text(r[AT_REASON])
    out.function = fname
    return 0


cdef int _invalid(int problem, str name, int field, int other, tuple r, str script,
                  object fname) except -1:
    # The StrategyError for what check_amounts found, naming the field and value.
    key = _AMOUNT_NAMES[field]
    value = r[AT_AMOUNTS + field]
    if problem == CHECK_MISSING:
        message, value = f"action {name!r} needs field {key!r}", None
    elif problem == CHECK_NOT_FOR:
        message = f"field {key!r} does not apply to action {name!r} (docs/orders.md)"
    elif problem == CHECK_INVALID:
        if key in ("expiry_bars", "atr_period", "time_stop_bars"):
            rule = "a whole number in [1, 1000000000]"
        elif key == "expiry_ms":
            rule = "a whole number of ms in [1, 1e13]"
        elif key in ("equity_fraction", "fraction"):
            rule = "a number in (0, 1]"
        elif key == "risk_fraction":
            rule = "a number in (0, 1)"
        else:
            rule = "a finite number > 0"
        message = f"{key} = {value!r}: must be {rule}"
    elif problem == CHECK_CONFLICT:
        message = f"fields {key!r} and {_AMOUNT_NAMES[other]!r} exclude each other; give one"
    else:
        message = f"field {key!r} needs field {_AMOUNT_NAMES[other]!r}"
    raise StrategyError(message, script=script, function=fname, field=key, value=value)


cdef extern from "Python.h":
    const char* PyUnicode_AsUTF8AndSize(object text, Py_ssize_t* size)
    void _clear_error "PyErr_Clear"()


cdef const char* _utf8(str text, Py_ssize_t* length):
    # NULL (the error cleared) for a str UTF-8 cannot encode (lone surrogates): no action's name.
    cdef const char* p = PyUnicode_AsUTF8AndSize(text, length)
    if p is NULL:
        _clear_error()
    return p


cdef inline object _amount(double x):
    return None if x != x else x


def decode(result, str script=""):
    """Decode what a lupa call of api.lua's ``on_bar`` returned (not None) into a `Decision`.

    Parameters
    ----------
    result : tuple or scalar
        The dispatcher's results (see the module docstring).
    script : str
        The script's file name, for error messages.

    Raises
    ------
    StrategyError
        An invalid action, naming the script, function, field and value.
    """
    cdef Decoded d = Decoded()
    decode_result(result, d, script)
    cdef int i
    action = None
    if d.action >= 0:
        extra = {_AMOUNT_NAMES[i]: d.amounts[i] for i in range(AMOUNT_NOTIONAL, N_AMOUNTS)
                 if not isnan(d.amounts[i])}
        action = ActionRequest(_machine.ActionType(d.action), _amount(d.amounts[AMOUNT_QUANTITY]),
                               _amount(d.amounts[AMOUNT_STOP_LOSS]),
                               _amount(d.amounts[AMOUNT_TAKE_PROFIT]),
                               _amount(d.amounts[AMOUNT_PRICE]), d.reason, d.function, extra)
    return Decision(d.started, d.start_reason, action)


def lua_codes():
    """The numbers api.lua uses, by name, for its loader to pass it.

    ``RESULT_<ResultCode>``, ``STATE_<State>``, ``SIDE_<Side>``, the
    `SyncCode` names, each mapped to its int value, and ``AMOUNT_<FIELD>``:
    each numeric action field's 0-based position in an ACTION result.
    """
    codes = {f"RESULT_{m.name}": int(m) for m in ResultCode}
    codes.update({f"STATE_{m.name}": int(m) for m in _machine.State})
    codes.update({f"SIDE_{m.name}": int(m) for m in _machine.Side})
    codes.update({m.name: int(m) for m in SyncCode})
    codes.update({f"AMOUNT_{name.upper()}": i for i, name in enumerate(AMOUNT_NAMES)})
    return codes
