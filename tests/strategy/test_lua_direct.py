"""LuaDirect (the C-API call of the per-bar dispatcher) against lupa's own call of the same function.

Each case runs the same script in two identical sandboxes, one called through lupa and one
through `LuaDirect.call`, and requires the same outcome: the same results, or the same raw
exception (type and arguments) and the same translated `StrategyError` (class, message and
fields). A runner-level test does the same for whole runs with errors, timeouts and bad actions.
"""

from __future__ import annotations

import gc
import math

import lupa.lua54 as lua54
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradesim.runner import SymbolRunner
from tradesim.strategy import LuaStrategy, StrategyTimeout
from tradesim.strategy.lua_direct import DirectCallUnavailable, LuaDirect
from tradesim.strategy.sandbox import LuaSandbox

MiB = 1 << 20

# A host dispatcher shaped like api.lua's on_bar: numbers in, whatever the script returns out.
FORWARD = """local H, callback = ...
local env = H.env
return function(state, ts, o, h, l, c, v, bid, ask, ...)
  if state == 99 then return callback(ts) end
  return rawget(env, "f")(state, ts, o, h, l, c, v, bid, ask, ...)
end"""

ARGS = (0, 1_700_000_000_000, 100.0, 101.0, 99.0, 100.5, 12.0, math.nan, math.nan)
VALUES = np.array([1.5, math.nan, 3.0])


def _boom(ts):
    raise ValueError(f"callback failed at {ts}")


def _pair(body: str, **limits):
    """Two sandboxes with ``function f(...) <body> end``: (sandbox, lupa call, direct call) each."""
    out = []
    for _ in range(2):
        sb = LuaSandbox("direct", **limits)
        sb.load(f"function ok() return 1 end\nfunction f(state, ts, o, h, l, c, v, bid, ask, ...)\n{body}\nend\n",
                "direct.lua")
        raw = sb.host_function(FORWARD, _boom).lua
        direct = sb.direct(raw)
        assert isinstance(direct, LuaDirect)
        out.append((sb, direct))
    (sb1, d1), (sb2, d2) = out
    return (sb1, lambda *a: d1.lua(*a[:9], *a[9])), (sb2, lambda *a: d2.call(*a[:9], *a[9]))


def _outcome(sb, call, args):
    try:
        result = call(*args)
    except Exception as exc:  # noqa: BLE001 - compared field by field
        err = sb.translate_error(exc)
        return ("raised", type(exc), exc.args, type(err), str(err), err.script, err.line,
                err.function, err.field, err.value)
    if lua54.lua_type(result) == "table":
        return ("table", dict(result.items()))
    return ("returned", result)


def _same(body: str, args=ARGS + (VALUES,), calls: int = 2, **limits):
    (sb1, lupa_call), (sb2, direct_call) = _pair(body, **limits)
    outcomes = []
    for _ in range(calls):  # a second call shows the runtime recovered the same way
        a, b = _outcome(sb1, lupa_call, args), _outcome(sb2, direct_call, args)
        assert a == b
        outcomes.append(a)
        assert sb1.call("ok") == sb2.call("ok") == 1
    return outcomes[0]


@pytest.mark.parametrize("body, expected", [
    ("return", None),
    ("return nil", None),
    ("return nil, nil", (None, None)),
    ("return 1", 1),
    ("return 2.5", 2.5),
    ("return 1, 'why', 2.0, true, false, nil, 'x'", (1, "why", 2.0, True, False, None, "x")),
    ("return state, ts, o, h, l, c, v, bid ~= bid, ask ~= ask, select('#', ...), (...), "
     "(select(2, ...)) ~= (select(2, ...)), (select(3, ...))",
     (0, 1_700_000_000_000, 100.0, 101.0, 99.0, 100.5, 12.0, True, True, 3, 1.5, True, 3.0)),
    ("return math.type(state), math.type(ts), math.type(o), math.type((...))",
     ("integer", "integer", "float", "float")),
])
def test_results_are_those_of_a_lupa_call(body, expected):
    assert _same(body) == ("returned", expected)


def test_many_results_up_to_the_stash_size():
    got = _same("local t = {} for i = 1, 64 do t[i] = i end return table.unpack(t)")
    assert got == ("returned", tuple(range(1, 65)))


def test_more_results_than_the_stash_raise_a_lua_error():
    sb = LuaSandbox("direct")
    sb.load("function f() local t = {} for i = 1, 65 do t[i] = i end return table.unpack(t) end")
    direct = sb.direct(sb.host_function(FORWARD, _boom).lua)
    with pytest.raises(lua54.LuaError, match="more than 64 values"):
        direct.call(*ARGS)
    assert sb.eval_host("return 1 + 1") == 2  # the runtime is fine


def test_a_table_result_is_handed_over_like_lupa_does():
    assert _same("return {a = 1}") == ("table", {"a": 1})


@pytest.mark.parametrize("body", [
    "error('boom')",
    "error('boom', 2)",
    "error('no position', 0)",
    "error({})",
    "error(nil)",
    "error(setmetatable({}, {__tostring = function() return 'x' end}))",
    "local x = nil; return x.field",
    "return 1 + {}",
    "error('caf\\xc3\\xa9 ok')",
    "error('bad \\xff utf8', 0)",
    "return 'bad \\xff utf8'",
    "return 1, 'bad \\xff utf8'",
    "local function r() return r() + 1 end return r()",
])
def test_errors_translate_exactly_as_through_lupa(body):
    got = _same(body)
    assert got[0] == "raised"


def test_timeout_by_instruction_budget():
    got = _same("while true do end", instruction_budget=50_000)
    assert got[3] is StrategyTimeout and "instruction budget" in got[4]


def test_timeout_by_cpu_time():
    got = _same("while true do end", instruction_budget=10**12, cpu_seconds=0.01)
    assert got[3] is StrategyTimeout and "CPU time" in got[4]


def test_timeout_caught_by_pcall_is_still_a_timeout():
    got = _same("pcall(function() while true do end end) return 1", instruction_budget=50_000)
    assert got[3] is StrategyTimeout


def test_memory_error():
    got = _same("local t = {} for i = 1, 1e8 do t[i] = i end", max_memory=2 * MiB,
                instruction_budget=10**9, cpu_seconds=5.0)
    assert got[1] is lua54.LuaMemoryError and got[2] == ()
    assert got[3].__name__ == "StrategyMemoryError"


def test_python_exception_from_a_callback_is_reraised_as_by_lupa():
    got = _same("return", args=(99,) + ARGS[1:] + (VALUES,))
    assert got[1] is ValueError and got[2] == ("callback failed at 1700000000000",)


def test_unacknowledged_timeout_fails_the_next_direct_call_too():
    sb = LuaSandbox("direct", instruction_budget=50_000)
    sb.load("function f(s) if s == 1 then while true do end end return 7 end")
    direct = sb.direct(sb.host_function(FORWARD, _boom).lua)
    with pytest.raises(lua54.LuaError, match="sandbox timeout"):
        direct.call(1, *ARGS[1:])
    with pytest.raises(lua54.LuaError, match="sandbox timeout"):  # no translate_error yet
        direct.call(0, *ARGS[1:])
    assert isinstance(sb.translate_error(lua54.LuaError("x")), StrategyTimeout)
    assert direct.call(0, *ARGS[1:]) == 7


def test_calling_from_python_uses_lupa_with_python_types():
    sb = LuaSandbox("direct")
    sb.load("function f(state, ts, o) return math.type(o) end")
    direct = sb.direct(sb.host_function(FORWARD, _boom).lua)
    assert direct(0, 1, 100) == "integer"         # lupa converts the Python int as it is
    assert direct.call(0, 1, 100, 0, 0, 0, 0, 0, 0) == "float"


def test_stack_and_registry_stay_balanced_over_many_calls_and_handles():
    sb = LuaSandbox("direct")
    sb.load("function f(state) if state == 1 then error('x') end if state == 2 then return 1, 2 end end")
    raw = sb.host_function(FORWARD, _boom).lua
    direct = sb.direct(raw)
    for i in range(3000):
        try:
            direct.call(i % 3, *ARGS[1:], *VALUES)
        except lua54.LuaError:
            pass
    for _ in range(300):  # each handle takes two registry references and gives them back
        sb.direct(raw)
    # Full collections on both sides: what is left is held, not garbage waiting for Lua's GC
    # (how much garbage is pending depends on the collector's pacing).
    gc.collect()
    sb.collect_garbage()
    before = sb.memory_used()
    for _ in range(300):
        sb.direct(raw)
    gc.collect()
    sb.collect_garbage()
    assert sb.memory_used() <= before + 16 * 1024
    # lupa counts results from the bottom of the stack: leftovers would show up here.
    assert sb.eval_host("return 5") == 5
    assert sb.eval_host("return rawget(_G, '__tradesim_lua_direct')") is None


def test_unavailable_direct_calls_fall_back_to_lupa(monkeypatch):
    import tradesim.strategy.lua_direct as mod

    def refuse(*args, **kwargs):
        raise DirectCallUnavailable("test")

    monkeypatch.setattr(mod, "LuaDirect", refuse)
    sb = LuaSandbox("direct")
    raw = sb.host_function(FORWARD, _boom).lua
    assert sb.direct(raw) is None


# --------------------------------------------------------------------------- whole runs

HOSTILE = """
name = "hostile"
local n = 0
function detect_opportunity(md, ctx, ind)
  n = n + 1
  local e = ind.ema(5)
  if n % 7 == 0 then error("boom " .. n) end
  if n % 11 == 0 then while true do end end
  if n % 13 == 0 then return {reason = "bad \\xff"} end
  if n % 17 == 0 then return 42 end
  if n % 3 == 0 then return {reason = "go", e = e} end
end
function filter_commitment(md, ctx, ind)
  n = n + 1
  if n % 5 == 0 then return {action = "bogus"} end
  if n % 4 == 0 then return {action = "enter_long", quantity = -1} end
  return {action = "enter_long", quantity = 1, stop_loss = md.close * 0.99, reason = ctx.reason}
end
function manage_position(md, ctx, ind)
  n = n + 1
  if n % 19 == 0 then error({}) end
  if n % 6 == 0 then return {action = "exit", reason = "x"} end
  if n % 9 == 0 then return {action = "update_take_profit", price = md.close * 1.5} end
end
"""


def _run(path, direct: bool):
    strategy = LuaStrategy(path, instruction_budget=20_000)
    runner = SymbolRunner("BTCUSDT", strategy, max_consecutive_errors=1000)
    assert isinstance(strategy.dispatch, LuaDirect)
    if not direct:
        runner.core.dispatch = strategy.dispatch.lua
    rng = np.random.default_rng(3)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 600)))
    for i, c in enumerate(close):
        runner.core.process_values(60_000 * (i + 1), c, c * 1.01, c * 0.99, c, 1.0)
    return runner


def test_whole_runs_match_with_errors_timeouts_and_bad_actions(tmp_path):
    path = tmp_path / "hostile.lua"
    path.write_text(HOSTILE)
    a, b = _run(path, direct=False), _run(path, direct=True)
    assert a.errors == b.errors and len(a.errors) > 50
    assert {e.kind for e in a.errors} >= {"StrategyError", "StrategyTimeout"}
    assert a.trades == b.trades and len(a.trades) > 5
    assert a.rejections == b.rejections
    assert a.core.decisions == b.core.decisions
    assert a.strategy.context() == b.strategy.context()


def test_reload_installs_a_new_direct_dispatcher(tmp_path):
    path = tmp_path / "hostile.lua"
    path.write_text(HOSTILE)
    runner = _run(path, direct=True)
    old = runner.core.dispatch
    runner.reload()
    assert isinstance(runner.core.dispatch, LuaDirect) and runner.core.dispatch is not old
    runner.core.process_values(60_000 * 1000, 100.0, 101.0, 99.0, 100.0, 1.0)


def test_run_holds_the_lock_per_batch_and_survives_a_reload_mid_batch(tmp_path):
    from tradesim.strategy.lua_direct import _runtime_lock

    path = tmp_path / "hostile.lua"
    path.write_text(HOSTILE)
    strategy = LuaStrategy(path, instruction_budget=20_000)
    reloads = []

    def on_event(event):
        if event["type"] == "position_opened" and len(reloads) < 2:
            reloads.append(_runtime_lock(runner.strategy._sandbox._lua))
            runner.reload()  # swaps the dispatcher while `run` holds the old one's lock

    runner = SymbolRunner("BTCUSDT", strategy, max_consecutive_errors=1000, on_event=on_event)
    first = _runtime_lock(strategy._sandbox._lua)
    rng = np.random.default_rng(5)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.01, 400)))
    n = len(close)
    ts = (np.arange(n, dtype=np.int64) + 1) * 60_000
    nan = np.full(n, np.nan)
    equity, in_pos = np.empty(n), np.zeros(n, np.uint8)
    assert runner.core.run(ts, close, close * 1.01, close * 0.99, close, np.ones(n), nan, nan,
                           equity, in_pos) == n
    assert len(reloads) == 2 and runner.core.bars == n
    last = _runtime_lock(runner.strategy._sandbox._lua)
    assert not any(lock._is_owned() for lock in (first, last, *reloads))


# ------------------------------------------------------------- decisions read in C (Decision)

# Results of every shape the C reading of common decisions must take or hand on to lupa:
# numbers of every kind in every numeric field, reasons that are not strings or not UTF-8,
# unknown or miscased actions. Each bar the strategy answers with the next case.
DECISION_CASES = [
    '{reason = "dip"}', '{reason = 7}', '{reason = "caf\\195\\169"}', '{reason = "bad \\xff"}',
    '{reason = ("r"):rep(300)}', '{}', '{reason = {}}', '{reason = "n" .. md.timestamp}',
]
ACTION_CASES = [
    '{action = "enter_long", quantity = 1, reason = "a"}',
    '{action = "enter_long", quantity = 2, stop_loss = md.close * 0.9, take_profit = md.close * 1.2}',
    '{action = "enter_short", quantity = 0.5, reason = "s"}',
    '{action = "enter_long", quantity = 3 // 1}',            # a Lua integer
    '{action = "enter_long", quantity = 0}', '{action = "enter_long", quantity = -1}',
    '{action = "enter_long", quantity = 0/0}', '{action = "enter_long", quantity = 1/0}',
    '{action = "enter_long", quantity = "1"}', '{action = "enter_long", quantity = true}',
    '{action = "Enter_Long"}', '{action = "enter_longer"}', '{action = "exit", reason = "x"}',
    '{action = "exit", price = 5, reason = "p\\xff"}', '{action = "exit", reason = 12}',
    '{action = "cancel_analysis", reason = "c"}', '{action = "enter_long", stop_loss = -5}',
    '{action = "update_stop_loss", price = md.close * 0.5}', '{quantity = 1}', '7',
    '{action = "enter_long", quantity = 1, reason = "caf\\195\\169"}',
    '{action = "enter_short", quantity = 1, reason = "e" .. md.timestamp // 60000}',
]

DECIDING = """
name = "deciding"
local d, a = 0, 0
local D = {%s}
local A = {%s}
local function pick(list, i, md) return list[(i %% #list) + 1](md) end
function detect_opportunity(md, ctx, ind)
  d = d + 1
  if d %% 2 == 0 then return nil end
  return pick(D, d, md)
end
function filter_commitment(md, ctx, ind)
  a = a + 1
  if a %% 5 == 0 then return nil end
  return pick(A, a, md)
end
function manage_position(md, ctx, ind)
  a = a + 1
  if a %% 3 == 0 then return nil end
  if a %% 4 == 0 then return {action = "exit", reason = "m"} end
  return pick(A, a, md)
end
"""


def test_decisions_read_in_c_match_lupa_in_every_detail(tmp_path):
    def fns(cases):
        return ", ".join(f"function(md) return {c} end" for c in cases)

    path = tmp_path / "deciding.lua"
    path.write_text(DECIDING % (fns(DECISION_CASES), fns(ACTION_CASES)))
    a, b = _run(path, direct=False), _run(path, direct=True)
    assert len(a.trades) > 20 and len(a.rejections) > 20 and len(a.errors) > 20
    assert a.trades == b.trades
    assert a.rejections == b.rejections
    assert a.errors == b.errors
    assert a.core.decisions == b.core.decisions
    assert a.machine.history() == b.machine.history()
    assert [p.entry_reason for p in a.machine.closed_positions] == \
        [p.entry_reason for p in b.machine.closed_positions]
    reasons = {p.entry_reason for p in a.machine.closed_positions}
    assert reasons >= {"café", ""} and len({r for r in reasons if r.startswith("e")}) >= 3
    # more distinct reasons than LuaDirect keeps for reuse
    assert len({t.reason for t in a.machine.history() if t.reason.startswith("n")}) > 8
    assert a.strategy.context() == b.strategy.context()
    # the stack is balanced after all those calls (lupa counts results from its bottom)
    assert b.strategy._sandbox.eval_host("return 5") == 5


# -- the context snapshot read in C (`LuaDirect.call_pairs`) --------------------------------------

TABLE = object()   # stands for a Lua table value
_ctx_keys = st.text(max_size=6) | st.binary(min_size=1, max_size=4) | st.integers(-3, 3)
_ctx_values = (st.integers(-(2**63), 2**63 - 1) | st.floats(allow_nan=True, allow_infinity=True) | st.booleans()
               | st.text(max_size=8) | st.binary(max_size=4) | st.just(TABLE))


def _context_outcome(strategy, read):
    try:
        got = read()
    except Exception as exc:  # noqa: BLE001 - compared field by field
        return ("raised", type(exc), str(exc))
    # NaN-safe, type-exact: repr of each item, in order
    return ("returned", [(repr(k), type(v).__name__, repr(v)) for k, v in got.items()])


@settings(max_examples=150, deadline=None)
@given(st.lists(st.tuples(_ctx_keys, _ctx_values), max_size=8))
def test_the_context_read_in_c_is_the_lupa_read(tmp_path_factory, entries):
    # Whatever a strategy leaves in its context (scalars, tables, non-string keys, strings that
    # are not UTF-8, NaN, the integer bounds), `context()` through C equals the lupa path's.
    path = tmp_path_factory.mktemp("ctx") / "ctx.lua"
    path.write_text(STUBS_FOR_CONTEXT)
    strategy = LuaStrategy(path)
    assert isinstance(strategy._context_direct, LuaDirect)
    for key, value in entries:
        strategy._fns["set_context"](key, strategy._sandbox.table_from({"x": 1}) if value is TABLE else value)
    direct = _context_outcome(strategy, strategy.context)
    through_lupa = _context_outcome(strategy, lambda: strategy._pairs(strategy._fns["context_snapshot"]()))
    assert direct == through_lupa
    if direct[0] == "returned":   # and it is what was set, by the documented rule (api.lua, flat_scalars)
        def lua_str(x):   # a Python bytes is a Lua string: read back as str (UTF-8) or not at all
            return x.decode(errors="surrogateescape") if isinstance(x, bytes) else x
        kept = {}
        for key, value in entries:
            if not isinstance(key, (str, bytes)):
                continue   # an integer key is no context entry
            if value is TABLE:
                kept.pop(lua_str(key), None)
            else:
                kept[lua_str(key)] = lua_str(value)
        assert direct[1] == [(repr(k), type(v).__name__, repr(v)) for k, v in sorted(kept.items())]


STUBS_FOR_CONTEXT = """
function detect_opportunity(md, ctx, ind) return nil end
function filter_commitment(md, ctx, ind) return nil end
function manage_position(md, ctx, ind) return nil end
"""
