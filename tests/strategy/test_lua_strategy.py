"""LuaStrategy: loading, params, the indicators API, action validation, errors, reload."""

import math
from pathlib import Path

import numpy as np
import pytest

from tradesim._core import IndicatorBank, MarketDataWindow, ema, sma
from tradesim._core.state_machine import ActionType
from tradesim.strategy import LuaStrategy, StrategyError, StrategyLoadError, StrategyTimeout

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "lua-strategies" / "examples"
IDLE, ANALYZING, IN_POSITION = 0, 1, 2

SKELETON = """
function detect_opportunity(md, ctx, ind) {detect} end
function filter_commitment(md, ctx, ind) {filter} end
function manage_position(md, ctx, ind) {manage} end
"""


def script(tmp_path, detect="return nil", filter="return nil", manage="return nil", head="", name="s.lua"):
    p = tmp_path / name
    p.write_text(head + SKELETON.format(detect=detect, filter=filter, manage=manage))
    return p


def bound(strategy, n=0):
    w, b = MarketDataWindow(500), IndicatorBank()
    for i in range(n):
        c = 100.0 + i
        w.push_values(60_000 * (i + 1), c, c + 1, c - 1, c, 1.0)
        b.update(c, c + 1, c - 1, c, 1.0)
    strategy.bind(w, b)
    return w, b


def bar(strategy, state, i, close=100.0, bank=None):
    values = tuple(bank.values_view()) if bank is not None else ()
    return strategy.on_bar(state, 60_000 * i, close, close + 1, close - 1, close, 1.0,
                           math.nan, math.nan, values)


def test_missing_entry_point_is_named(tmp_path):
    p = tmp_path / "m.lua"
    p.write_text("function detect_opportunity() end\nfunction manage_position() end\n")
    with pytest.raises(StrategyLoadError, match="filter_commitment"):
        LuaStrategy(p)


def test_unreadable_and_syntax_errors(tmp_path):
    with pytest.raises(StrategyLoadError, match="cannot read"):
        LuaStrategy(tmp_path / "nope.lua")
    p = tmp_path / "syn.lua"
    p.write_text("function detect_opportunity(\n")
    with pytest.raises(StrategyLoadError) as err:
        LuaStrategy(p)
    assert err.value.script == "syn.lua"


def test_params_defaults_overrides_and_validation(tmp_path):
    p = script(tmp_path, head='params = {fast = 10, k = 2.5, name_tag = "x", short = false}\n')
    s = LuaStrategy(p, params={"fast": "5", "k": 3, "short": "true"})
    assert s.default_params == {"fast": 10, "k": 2.5, "name_tag": "x", "short": False}
    assert s.params == {"fast": 5, "k": 3.0, "name_tag": "x", "short": True}
    with pytest.raises(StrategyLoadError, match="unknown parameter 'slow'"):
        LuaStrategy(p, params={"slow": 3})
    with pytest.raises(StrategyLoadError, match=r"parameter 'fast' = 2.5: expected int"):
        LuaStrategy(p, params={"fast": 2.5})
    with pytest.raises(StrategyLoadError, match="expected bool"):
        LuaStrategy(p, params={"short": "maybe"})


def test_overridden_params_are_seen_by_the_script(tmp_path):
    p = script(tmp_path, head="params = {qty = 1}\n",
               detect="return {reason = 'go'}",
               filter="return {action = 'enter_long', quantity = params.qty}")
    s = LuaStrategy(p, params={"qty": 7})
    bound(s)
    d = bar(s, IDLE, 1)
    assert d.started and d.start_reason == "go"
    assert d.action.action == ActionType.ENTER_LONG and d.action.quantity == 7.0


def test_name_from_script_or_file(tmp_path):
    assert LuaStrategy(script(tmp_path, head='name = "alpha"\n')).name == "alpha"
    assert LuaStrategy(script(tmp_path, name="beta.lua")).name == "beta"


def test_indicators_match_batch_values_and_warm_from_window(tmp_path):
    # The script asks for SMA(5)/EMA(3) on bar 30 for the first time: they are
    # warmed from the window's 30 stored bars and must equal batch values.
    p = script(tmp_path, detect="local a, b = ind.sma(5), ind.ema(3); log(a); "
                                "return {reason = 'v', sma = a, ema = b}",
               filter="return nil")
    s = LuaStrategy(p)
    w, b = bound(s, n=30)
    closes = np.array([100.0 + i for i in range(30)])
    d = bar(s, IDLE, 31, bank=b)
    assert d.started
    ctx = s.context()
    assert ctx["sma"] == pytest.approx(sma(closes, 5)[-1], rel=1e-12)
    assert ctx["ema"] == pytest.approx(ema(closes, 3)[-1], rel=1e-12)
    assert set(b.keys()) == {"sma:5", "ema:3"}


def test_indicator_is_nil_while_warming(tmp_path):
    p = script(tmp_path, detect="if ind.sma(50) == nil then return {reason = 'nil'} end return nil")
    s = LuaStrategy(p)
    w, b = bound(s, n=10)
    assert bar(s, IDLE, 11, bank=b).start_reason == "nil"


def test_bad_indicator_argument_raises_at_script_line(tmp_path):
    p = script(tmp_path, detect="\nlocal x = ind.rsi(1)\nreturn nil")
    s = LuaStrategy(p)
    bound(s, n=5)
    with pytest.raises(StrategyError) as err:
        bar(s, IDLE, 6)
    assert "rsi" in str(err.value) and err.value.line is not None


def test_multi_output_indicators(tmp_path):
    p = script(tmp_path, detect="local m, s, h = ind.macd(3, 6, 2); local u, mid, l = ind.bollinger(5, 2); "
                                "local k, d = ind.stochastic(5, 3, 3); "
                                "return {m = m, s = s, h = h, u = u, mid = mid, l = l, k = k, d = d, "
                                "hi = ind.high(5), lo = ind.low(5), r = ind.range(5), av = ind.avg_volume(5)}")
    s = LuaStrategy(p)
    w, b = bound(s, n=40)
    bar(s, IDLE, 41, bank=b)
    ctx = s.context()
    assert ctx["h"] == pytest.approx(ctx["m"] - ctx["s"])
    assert ctx["u"] > ctx["mid"] > ctx["l"]
    assert ctx["hi"] == w.high(5) and ctx["lo"] == w.low(5) and ctx["r"] == w.range(5)
    assert ctx["av"] == pytest.approx(w.avg_volume(5))


@pytest.mark.parametrize("table, field, fragment", [
    ("{action = 'buy'}", "action", "unknown action 'buy'"),
    ("{quantity = 1}", "action", "missing"),
    ("{action = 'enter_long', quantity = 0/0}", "quantity", "must be a finite number > 0"),
    ("{action = 'enter_long', quantity = -1}", "quantity", "must be a finite number > 0"),
    ("{action = 'enter_long', quantity = math.huge}", "quantity", "must be a finite number > 0"),
    ("{action = 'enter_long', quantity = '1'}", "quantity", "expected a number"),
    ("{action = 'enter_long', stoploss = 5}", "stoploss", "unknown field"),
    ("{action = 'enter_long', stop_loss = -5}", "stop_loss", "must be a finite number > 0"),
    ("42", "result", "expected nil or an action table"),
    # order, sizing and management fields (docs/orders.md)
    ("{action = 'enter_long', fraction = 0.5}", "fraction", "does not apply to action 'enter_long'"),
    ("{action = 'exit', limit_price = 5}", "limit_price", "does not apply to action 'exit'"),
    ("{action = 'enter_long', price = 5}", "price", "does not apply"),
    ("{action = 'cancel_order', quantity = 1}", "quantity", "does not apply to action 'cancel_order'"),
    ("{action = 'enter_long', quantity = 1, notional = 100}", "quantity",
     "fields 'quantity' and 'notional' exclude each other"),
    ("{action = 'enter_long', limit_price = 9, stop_price = 11}", "limit_price", "exclude each other"),
    ("{action = 'enter_long', trailing_stop = 1, trailing_atr = 2}", "trailing_stop", "exclude each other"),
    ("{action = 'exit', quantity = 1, fraction = 0.5}", "quantity", "exclude each other"),
    ("{action = 'enter_long', risk_fraction = 0.01}", "risk_fraction", "needs field 'stop_loss'"),
    ("{action = 'enter_long', expiry_bars = 3}", "expiry_bars", "needs field 'limit_price'"),
    ("{action = 'enter_long', atr_period = 10}", "atr_period", "needs field 'trailing_atr'"),
    ("{action = 'enter_long', limit_price = 9, expiry_bars = 2.5}", "expiry_bars", "a whole number in [1,"),
    ("{action = 'enter_long', time_stop_bars = 0}", "time_stop_bars", "a whole number in [1,"),
    ("{action = 'enter_long', time_stop_bars = 2^31}", "time_stop_bars", "a whole number in [1,"),
    ("{action = 'enter_long', limit_price = 9, expiry_ms = 1e19}", "expiry_ms", "a whole number of ms"),
    ("{action = 'exit', fraction = 1.5}", "fraction", "a number in (0, 1]"),
    ("{action = 'enter_long', equity_fraction = 2}", "equity_fraction", "a number in (0, 1]"),
    ("{action = 'enter_long', stop_loss = 90, risk_fraction = 1}", "risk_fraction", "a number in (0, 1)"),
    ("{action = 'enter_long', trailing_percent = -1}", "trailing_percent", "a finite number > 0"),
])
def test_invalid_action_tables_name_script_function_field_and_value(tmp_path, table, field, fragment):
    p = script(tmp_path, filter=f"return {table}")
    s = LuaStrategy(p)
    bound(s)
    with pytest.raises(StrategyError) as err:
        bar(s, ANALYZING, 1)
    e = err.value
    assert e.script == "s.lua" and e.function == "filter_commitment" and e.field == field
    assert fragment in str(e)


@pytest.mark.parametrize("table, extra", [
    ("{action = 'enter_long', limit_price = 95, expiry_bars = 3, notional = 500}",
     {"limit_price": 95, "expiry_bars": 3, "notional": 500}),
    ("{action = 'enter_short', stop_price = 90, stop_loss = 99, risk_fraction = 0.01, "
     "trailing_atr = 2, atr_period = 10, time_stop_bars = 5}",
     {"stop_price": 90, "risk_fraction": 0.01, "trailing_atr": 2, "atr_period": 10, "time_stop_bars": 5}),
    ("{action = 'exit', fraction = 0.25}", {"fraction": 0.25}),
])
def test_order_fields_are_decoded_by_name(tmp_path, table, extra):
    p = script(tmp_path, filter=f"return {table}")
    s = LuaStrategy(p)
    bound(s)
    action = bar(s, ANALYZING, 1).action
    assert action.extra == extra


def test_update_stop_loss_needs_price(tmp_path):
    p = script(tmp_path, manage="return {action = 'update_stop_loss'}")
    s = LuaStrategy(p)
    bound(s)
    with pytest.raises(StrategyError, match="needs field 'price'"):
        bar(s, IN_POSITION, 1)


def test_lua_error_carries_script_function_and_line(tmp_path):
    p = script(tmp_path, manage="\n\nlocal x = nil\nreturn x.field")
    s = LuaStrategy(p)
    bound(s)
    with pytest.raises(StrategyError) as err:
        bar(s, IN_POSITION, 1)
    # line 1 is blank, 2-3 the other functions, 4 manage_position's header,
    # 5 blank, 6 `local x = nil`, 7 `return x.field`
    assert err.value.script == "s.lua" and err.value.line == 7
    assert "manage_position" in str(err.value)


def test_infinite_loop_times_out_and_strategy_stays_usable(tmp_path):
    p = script(tmp_path, detect="if md.close > 150 then while true do end end return nil")
    s = LuaStrategy(p, instruction_budget=200_000)
    bound(s)
    with pytest.raises(StrategyTimeout):
        bar(s, IDLE, 1, close=200.0)
    assert bar(s, IDLE, 2, close=100.0) is None


def test_context_visible_across_states_and_clearable(tmp_path):
    p = script(tmp_path, detect="return {reason = 'r', level = 42}",
               filter="return nil",
               manage="if ctx.level == 42 then return {action = 'exit', reason = 'saw_level'} end")
    s = LuaStrategy(p)
    bound(s)
    assert bar(s, IDLE, 1).started
    assert s.context() == {"reason": "r", "level": 42}
    assert bar(s, IN_POSITION, 2).action.reason == "saw_level"
    s.clear_context()
    assert s.context() == {} and bar(s, IN_POSITION, 3) is None


def test_position_visible_in_manage_position(tmp_path):
    p = script(tmp_path, manage="local p = ind.position; "
                                "return {action = 'update_stop_loss', price = p.entry_price - 1, "
                                "reason = p.side .. ':' .. p.unrealized_pnl}")
    s = LuaStrategy(p)
    bound(s)
    s.set_position("long", 2.0, 100.0, stop_loss=90.0)
    d = bar(s, IN_POSITION, 1, close=103.0)
    assert d.action.action == ActionType.UPDATE_STOP_LOSS and d.action.price == 99.0
    assert d.action.reason == "long:6.0"  # 2 * (103 - 100)


def test_reload_keeps_context_and_bad_reload_keeps_old_version(tmp_path):
    p = script(tmp_path, detect="return {reason = 'v1'}")
    s = LuaStrategy(p)
    bound(s)
    assert bar(s, IDLE, 1).start_reason == "v1"
    p.write_text(SKELETON.format(detect="return {reason = 'v2'}", filter="return nil", manage="return nil"))
    s.reload()
    assert s.context()["reason"] == "v1"  # kept across the reload
    assert bar(s, IDLE, 2).start_reason == "v2"
    p.write_text("function detect_opportunity( broken")
    with pytest.raises(StrategyLoadError):
        s.reload()
    assert bar(s, IDLE, 3).start_reason == "v2"


def test_sandbox_applies_to_strategies(tmp_path):
    p = script(tmp_path, detect="os.execute('touch " + str(tmp_path / "pwned") + "') return nil")
    s = LuaStrategy(p)
    bound(s)
    with pytest.raises(StrategyError, match="nil value"):
        bar(s, IDLE, 1)
    assert not (tmp_path / "pwned").exists()


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*.lua")) + [REPO / "lua-strategies" / "template.lua",
                                                                     REPO / "lua-strategies" / "test_strategy.lua"],
                         ids=lambda p: p.name)
def test_every_example_loads_and_declares_params(path):
    s = LuaStrategy(path)
    assert s.params and s.name


# ------------------------------------------------------------- the decision protocol's numbers

def test_api_lua_takes_its_codes_from_the_host_and_uses_no_literal_ones(tmp_path):
    import re
    from importlib import resources

    from tradesim.strategy.decision import ResultCode, SyncCode, lua_codes
    from tradesim.strategy.sandbox import LuaSandbox

    codes = lua_codes()
    assert {codes[f"RESULT_{c.name}"] for c in ResultCode} == {int(c) for c in ResultCode}
    assert codes["SYNC_FLAT"] == SyncCode.SYNC_FLAT and codes["STATE_IDLE"] == IDLE
    source = resources.files("tradesim.strategy").joinpath("api.lua").read_text()
    # no result, state or sync code written as a number where on_bar returns or compares one
    assert not re.search(r"\breturn\s+\d", source) and not re.search(r"(state|what) == \d", source)
    box = LuaSandbox("codes")
    box.load(b"function detect_opportunity() end\nfunction filter_commitment() end\n"
             b"function manage_position() end\n", "codes.lua")
    missing = {k: v for k, v in codes.items() if k != "RESULT_ACTION"}
    with pytest.raises(StrategyError, match="no code RESULT_ACTION"):
        box.eval_host(source, lambda *a: None, box.table_from(missing))
    box.close()


def test_decisions_come_back_with_the_protocols_codes(tmp_path):
    s = LuaStrategy(script(tmp_path, detect="return {reason = 'go'}",
                           filter="return {action = 'cancel_analysis', reason = 'meh'}"))
    bound(s)
    raw = s.dispatch(IDLE, 60_000, 1.0, 1.0, 1.0, 1.0, 1.0, math.nan, math.nan)
    from tradesim.strategy.decision import ResultCode
    assert raw[:2] == (ResultCode.STARTED_ACTION, "go") and raw[2] == ResultCode.ACTION
    d = s.decode(raw)
    assert d.started and d.action.action == ActionType.CANCEL_ANALYSIS and d.action.reason == "meh"
