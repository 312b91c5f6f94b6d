"""StateMachine: transition table, P&L, stop/take-profit fills, timeout, history ring, context,
validation, and a hypothesis RuleBasedStateMachine against a small pure-Python dict model."""

import json
import math
from collections import deque

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from tradesim._core.context import Context
from tradesim._core.market_data import InvalidMarketData, MarketData
from tradesim._core.state_machine import (
    ActionType,
    InvalidTransition,
    Position,
    Side,
    State,
    StateMachine,
    Transition,
)

NAN = float("nan")
POLICIES = ["stop_loss_first", "take_profit_first", "open_distance"]


def bar(ts, open, high, low, close):
    return MarketData("BTCUSDT", ts, open, high, low, close, 1.0)


def snapshot(sm):
    """Everything observable, for 'nothing changed' checks."""
    return json.dumps(sm.to_dict(history=True), sort_keys=True), sm.position, len(sm.closed_positions)


# ---------------------------------------------------------------------------
# Every (state, action) pair
# ---------------------------------------------------------------------------

# Written from the spec, not from the code.
VALID = {
    ("IDLE", "start_analyzing"): "ANALYZING",
    ("IDLE", "enter_long"): "IN_POSITION",
    ("IDLE", "enter_short"): "IN_POSITION",
    ("ANALYZING", "cancel_analysis"): "IDLE",
    ("ANALYZING", "enter_long"): "IN_POSITION",
    ("ANALYZING", "enter_short"): "IN_POSITION",
    ("IN_POSITION", "exit"): "IDLE",
    ("IN_POSITION", "update_stop_loss"): "IN_POSITION",
    ("IN_POSITION", "update_take_profit"): "IN_POSITION",
    ("IDLE", "place_order"): "ANALYZING",
    ("ANALYZING", "place_order"): "ANALYZING",
    ("ANALYZING", "cancel_order"): "ANALYZING",
}
STATE_NAMES = ["IDLE", "ANALYZING", "IN_POSITION"]
ACTION_NAMES = ["start_analyzing", "cancel_analysis", "enter_long", "enter_short", "exit",
                "update_stop_loss", "update_take_profit", "place_order", "cancel_order"]

# Valid arguments for each action (long position at 100 with SL 90 / TP 110 when in position).
CALLS = {
    "start_analyzing": lambda sm: sm.start_analyzing(2000, "r"),
    "cancel_analysis": lambda sm: sm.cancel_analysis(2000, "r"),
    "enter_long": lambda sm: sm.enter_long(1.0, 100.0, 2000, 90.0, 110.0, "r"),
    "enter_short": lambda sm: sm.enter_short(1.0, 100.0, 2000, 110.0, 90.0, "r"),
    "exit": lambda sm: sm.exit(105.0, 2000, "r"),
    "update_stop_loss": lambda sm: sm.update_stop_loss(95.0),
    "update_take_profit": lambda sm: sm.update_take_profit(120.0),
    "place_order": lambda sm: sm.place_order(2000, "r"),
    "cancel_order": lambda sm: sm.cancel_order(),
}
APPLY_KWARGS = {
    "start_analyzing": dict(timestamp=2000),
    "cancel_analysis": dict(timestamp=2000),
    "enter_long": dict(timestamp=2000, quantity=1.0, price=100.0),
    "enter_short": dict(timestamp=2000, quantity=1.0, price=100.0),
    "exit": dict(timestamp=2000, price=105.0),
    "update_stop_loss": dict(price=95.0),
    "update_take_profit": dict(price=120.0),
    "place_order": dict(timestamp=2000),
    "cancel_order": dict(),
}


def machine_in(state):
    """A machine in `state` with a non-empty history and context."""
    sm = StateMachine(keep_context=True)
    sm.start_analyzing(1000, "setup")
    sm.context["level"] = 99.5
    if state == "ANALYZING":
        sm.place_order(1000)    # an order works, so cancel_order is valid too
    if state == "IDLE":
        sm.cancel_analysis(1001, "no")
    elif state == "IN_POSITION":
        sm.enter_long(1.0, 100.0, 1001, stop_loss=90.0, take_profit=110.0)
    assert sm.state.name == state
    return sm


@pytest.mark.parametrize("state", STATE_NAMES)
@pytest.mark.parametrize("action", ACTION_NAMES)
def test_every_state_action_pair_transitions_or_raises_invalid_transition(state, action):
    sm = machine_in(state)
    before = snapshot(sm)
    n_hist = len(sm.history())
    if (state, action) in VALID:
        CALLS[action](sm)
        expected = VALID[(state, action)]
        assert sm.state.name == expected
        if expected != state:
            last = sm.history()[-1]
            assert len(sm.history()) == n_hist + 1
            assert (last.from_state.name, last.to_state.name, last.timestamp) == (state, expected, 2000)
            assert last.action == ActionType[action.upper()]
        else:
            assert len(sm.history()) == n_hist
    else:
        with pytest.raises(InvalidTransition) as info:
            CALLS[action](sm)
        assert state in str(info.value) and action in str(info.value)
        assert info.value.state == State[state] and info.value.action == ActionType[action.upper()]
        assert snapshot(sm) == before


@pytest.mark.parametrize("state", STATE_NAMES)
@pytest.mark.parametrize("action", ACTION_NAMES)
def test_apply_follows_the_same_transition_table(state, action):
    sm = machine_in(state)
    before = snapshot(sm)
    if (state, action) in VALID:
        sm.apply(action, **APPLY_KWARGS[action])
        assert sm.state.name == VALID[(state, action)]
    else:
        with pytest.raises(InvalidTransition, match=f"{action}.*{state}"):
            sm.apply(ActionType[action.upper()], **APPLY_KWARGS[action])
        assert snapshot(sm) == before


def test_allowed_actions_lists_the_valid_ones():
    for state in STATE_NAMES:
        expected = {a for (s, a) in VALID if s == state}
        assert {a.name.lower() for a in machine_in(state).allowed_actions()} == expected


def test_apply_accepts_int_and_name_and_rejects_unknown_actions():
    sm = StateMachine()
    sm.apply(0, timestamp=1)  # 0 = START_ANALYZING
    assert sm.state == State.ANALYZING
    pos = sm.apply("ENTER_SHORT", 2, quantity=2.0, price=50.0, stop_loss=55.0, reason="why")
    assert pos is sm.position and pos.side == Side.SHORT and pos.stop_loss == 55.0
    assert pos.entry_reason == "why"
    with pytest.raises(ValueError, match="fly"):
        sm.apply("fly")
    with pytest.raises(ValueError, match="9"):
        sm.apply(9)
    with pytest.raises(TypeError, match="price"):
        sm.apply("exit", 3)
    closed = sm.apply(ActionType.EXIT, 3, price=40.0)
    assert closed.realized_pnl == 20.0  # 2 * (50 - 40)
    assert sm.state == State.IDLE


def test_invalid_transition_before_bad_values():
    sm = machine_in("IN_POSITION")
    with pytest.raises(InvalidTransition):
        sm.enter_long(-1.0, NAN, 5)


# ---------------------------------------------------------------------------
# P&L, hand-computed
# ---------------------------------------------------------------------------

def test_long_pnl_marked_at_close_and_realized_on_exit():
    sm = StateMachine()
    pos = sm.enter_long(2.0, 100.0, 1000)
    assert pos.unrealized_pnl == 0.0 and pos.mark_price == 100.0
    sm.update(bar(2000, 100.0, 104.0, 99.0, 103.0))
    # 2 * (103 - 100) = 6
    assert pos.unrealized_pnl == 6.0 and pos.mark_price == 103.0 and pos.pnl == 6.0
    sm.update(bar(3000, 103.0, 103.5, 97.0, 98.5))
    # 2 * (98.5 - 100) = -3
    assert pos.unrealized_pnl == -3.0
    closed = sm.exit(104.5, 4000)
    # 2 * (104.5 - 100) = 9
    assert closed is pos and closed.realized_pnl == 9.0 and closed.unrealized_pnl == 0.0
    assert closed.exit_price == 104.5 and closed.exit_time == 4000 and closed.exit_reason == "exit"
    assert not closed.is_open and not closed.ambiguous and closed.bars_held == 2
    assert sm.realized_pnl == 9.0 and sm.n_trades == 1 and sm.position is None
    assert sm.closed_positions == [pos] and sm.last_closed is pos


def test_short_pnl_marked_at_close_and_realized_on_exit():
    sm = StateMachine()
    pos = sm.enter_short(0.5, 200.0, 1000)
    sm.update(bar(2000, 200.0, 201.0, 189.0, 190.0))
    # 0.5 * (200 - 190) = 5
    assert pos.unrealized_pnl == 5.0
    sm.update(bar(3000, 190.0, 215.0, 190.0, 212.0))
    # 0.5 * (200 - 212) = -6
    assert pos.unrealized_pnl == -6.0
    closed = sm.exit(210.0, 4000, reason="signal flipped")
    # 0.5 * (200 - 210) = -5
    assert closed.realized_pnl == -5.0 and closed.exit_reason == "signal flipped"
    assert sm.realized_pnl == -5.0


def test_realized_pnl_accumulates_over_trades():
    sm = StateMachine()
    sm.enter_long(1.0, 10.0, 1)
    sm.exit(12.0, 2)  # +2
    sm.enter_short(3.0, 20.0, 3)
    sm.exit(21.0, 4)  # 3 * (20 - 21) = -3
    sm.enter_long(0.25, 100.0, 5)
    sm.exit(140.0, 6)  # 0.25 * 40 = +10
    assert sm.realized_pnl == 9.0  # 2 - 3 + 10
    assert sm.n_trades == 3 and [p.realized_pnl for p in sm.closed_positions] == [2.0, -3.0, 10.0]


def test_position_to_dict_is_json_with_nulls_for_unset_values():
    pos = StateMachine().enter_long(1.0, 100.0, 7, take_profit=120.0, reason="breakout")
    d = json.loads(json.dumps(pos.to_dict(), allow_nan=False))
    assert d["side"] == "long" and d["stop_loss"] is None and d["take_profit"] == 120.0
    assert d["exit_price"] is None and d["exit_time"] is None and d["is_open"] is True
    assert d["entry_reason"] == "breakout"


# ---------------------------------------------------------------------------
# Stop-loss / take-profit fills
# ---------------------------------------------------------------------------

def long_at_100(policy="stop_loss_first"):
    sm = StateMachine(ambiguity_policy=policy)
    sm.enter_long(2.0, 100.0, 1000, stop_loss=95.0, take_profit=110.0)
    return sm


def short_at_100(policy="stop_loss_first"):
    sm = StateMachine(ambiguity_policy=policy)
    sm.enter_short(2.0, 100.0, 1000, stop_loss=105.0, take_profit=90.0)
    return sm


@pytest.mark.parametrize("make, b, reason, fill, pnl", [
    # long SL 95 touched from above: fill at the level; 2 * (95 - 100) = -10
    (long_at_100, (99.0, 100.0, 94.0, 96.0), "stop_loss", 95.0, -10.0),
    # long SL touched exactly (low == SL)
    (long_at_100, (99.0, 100.0, 95.0, 96.0), "stop_loss", 95.0, -10.0),
    # long TP 110 touched: 2 * (110 - 100) = 20
    (long_at_100, (105.0, 111.0, 104.0, 108.0), "take_profit", 110.0, 20.0),
    # long gap down through SL: fill at the open 93; 2 * (93 - 100) = -14
    (long_at_100, (93.0, 96.0, 90.0, 94.0), "stop_loss", 93.0, -14.0),
    # long gap up through TP: fill at the open 112; 2 * (112 - 100) = 24
    (long_at_100, (112.0, 113.0, 111.0, 112.5), "take_profit", 112.0, 24.0),
    # short SL 105 touched: 2 * (100 - 105) = -10
    (short_at_100, (101.0, 105.5, 100.0, 104.0), "stop_loss", 105.0, -10.0),
    # short TP 90 touched: 2 * (100 - 90) = 20
    (short_at_100, (95.0, 96.0, 89.0, 91.0), "take_profit", 90.0, 20.0),
    # short gap up through SL: fill at the open 107; 2 * (100 - 107) = -14
    (short_at_100, (107.0, 108.0, 106.0, 107.5), "stop_loss", 107.0, -14.0),
    # short gap down through TP: fill at the open 88; 2 * (100 - 88) = 24
    (short_at_100, (88.0, 89.5, 87.0, 88.5), "take_profit", 88.0, 24.0),
])
def test_level_touch_fills_at_the_level_or_at_the_gap_open(make, b, reason, fill, pnl):
    sm = make()
    closed = sm.update(bar(2000, *b))
    assert closed is not None and closed is sm.last_closed
    assert (closed.exit_reason, closed.exit_price, closed.realized_pnl) == (reason, fill, pnl)
    assert closed.exit_time == 2000 and not closed.ambiguous and closed.bars_held == 1
    assert sm.state == State.IDLE and sm.position is None and sm.realized_pnl == pnl
    last = sm.history()[-1]
    assert (last.from_state, last.to_state, last.reason, last.timestamp, last.action) == (
        State.IN_POSITION, State.IDLE, reason, 2000, ActionType.EXIT)


def test_bar_inside_the_levels_only_marks():
    sm = long_at_100()
    assert sm.update(bar(2000, 99.0, 109.5, 95.5, 101.0)) is None
    assert sm.state == State.IN_POSITION and sm.position.unrealized_pnl == 2.0  # 2 * (101 - 100)


@pytest.mark.parametrize("policy, reason, fill", [
    ("stop_loss_first", "stop_loss", 95.0),
    ("take_profit_first", "take_profit", 110.0),
    # open 101: 6 to the SL, 9 to the TP -> SL is nearer
    ("open_distance", "stop_loss", 95.0),
])
def test_long_bar_touching_both_levels_follows_policy_and_is_ambiguous(policy, reason, fill):
    sm = long_at_100(policy)
    closed = sm.update(bar(2000, 101.0, 111.0, 94.0, 100.0))
    assert (closed.exit_reason, closed.exit_price, closed.ambiguous) == (reason, fill, True)
    assert closed.realized_pnl == 2.0 * (fill - 100.0)


def test_open_distance_picks_the_level_nearer_the_open():
    sm = long_at_100("open_distance")
    # open 108: 13 to the SL, 2 to the TP -> TP; 2 * (110 - 100) = 20
    closed = sm.update(bar(2000, 108.0, 111.0, 94.0, 100.0))
    assert (closed.exit_reason, closed.exit_price, closed.realized_pnl, closed.ambiguous) == (
        "take_profit", 110.0, 20.0, True)


def test_open_distance_tie_goes_to_the_stop():
    sm = long_at_100("open_distance")
    # open 102.5: 7.5 to both levels
    closed = sm.update(bar(2000, 102.5, 111.0, 94.0, 100.0))
    assert (closed.exit_reason, closed.ambiguous) == ("stop_loss", True)


@pytest.mark.parametrize("policy, reason, fill", [
    ("stop_loss_first", "stop_loss", 105.0),
    ("take_profit_first", "take_profit", 90.0),
    # open 99: 6 to the SL (105), 9 to the TP (90) -> SL
    ("open_distance", "stop_loss", 105.0),
])
def test_short_bar_touching_both_levels_follows_policy(policy, reason, fill):
    sm = short_at_100(policy)
    closed = sm.update(bar(2000, 99.0, 106.0, 89.0, 100.0))
    assert (closed.exit_reason, closed.exit_price, closed.ambiguous) == (reason, fill, True)
    assert closed.realized_pnl == 2.0 * (100.0 - fill)


def test_short_open_distance_tie_goes_to_the_stop():
    sm = short_at_100("open_distance")
    # open 97.5: 7.5 to the SL (105) and to the TP (90)
    closed = sm.update(bar(2000, 97.5, 106.0, 89.0, 100.0))
    assert (closed.exit_reason, closed.exit_price, closed.ambiguous) == ("stop_loss", 105.0, True)


def test_short_open_distance_takes_profit_when_open_is_near_the_target():
    sm = short_at_100("open_distance")
    # open 92: 13 to the SL, 2 to the TP -> TP at 90; 2 * (100 - 90) = 20
    closed = sm.update(bar(2000, 92.0, 106.0, 89.0, 100.0))
    assert (closed.exit_reason, closed.exit_price, closed.realized_pnl) == ("take_profit", 90.0, 20.0)


@pytest.mark.parametrize("policy", POLICIES)
def test_gap_through_a_level_decides_even_when_both_are_touched(policy):
    sm = long_at_100(policy)
    # opens at 93 below the SL, later trades up through the TP: the open decides
    closed = sm.update(bar(2000, 93.0, 111.0, 92.0, 100.0))
    assert (closed.exit_reason, closed.exit_price, closed.ambiguous) == ("stop_loss", 93.0, False)
    sm = short_at_100(policy)
    # opens at 88 below the short's TP, later trades up through the SL
    closed = sm.update(bar(2000, 88.0, 106.0, 87.0, 100.0))
    assert (closed.exit_reason, closed.exit_price, closed.ambiguous) == ("take_profit", 88.0, False)


def test_unset_levels_never_fire():
    sm = StateMachine()
    pos = sm.enter_long(1.0, 100.0, 1)
    assert sm.update(bar(2, 100.0, 1000.0, 1.0, 50.0)) is None
    assert pos.is_open and pos.unrealized_pnl == -50.0


def test_updated_levels_are_used_and_trailing_past_entry_is_allowed():
    sm = StateMachine()
    pos = sm.enter_long(1.0, 100.0, 1, stop_loss=90.0)
    sm.update(bar(2, 100.0, 121.0, 99.0, 120.0))
    sm.update_stop_loss(115.0)  # above the entry, below the mark 120
    sm.update_take_profit(130.0)
    assert (pos.stop_loss, pos.take_profit) == (115.0, 130.0)
    closed = sm.update(bar(3, 119.0, 119.5, 114.0, 116.0))
    assert (closed.exit_reason, closed.exit_price, closed.realized_pnl) == ("stop_loss", 115.0, 15.0)


def test_removing_a_level_with_nan():
    sm = long_at_100()
    sm.update_stop_loss(NAN)
    assert math.isnan(sm.position.stop_loss)
    assert sm.update(bar(2, 99.0, 100.0, 50.0, 60.0)) is None


def test_update_values_validates_the_bar():
    sm = long_at_100()
    with pytest.raises(InvalidMarketData, match="high"):
        sm.update_values(2, 100.0, 90.0, 95.0, 96.0)
    assert sm.bars_processed == 0
    closed = sm.update_values(2, 99.0, 100.0, 94.0, 96.0)
    assert closed.exit_price == 95.0 and sm.bars_processed == 1


# ---------------------------------------------------------------------------
# Counters, analysis timeout, history ring
# ---------------------------------------------------------------------------

def test_bar_counters():
    sm = StateMachine()
    for i in range(3):
        sm.update(bar(i, 100.0, 101.0, 99.0, 100.0))
    assert (sm.bars_processed, sm.bars_in_state) == (3, 3)
    sm.start_analyzing(3)
    assert (sm.bars_processed, sm.bars_in_state) == (3, 0)
    sm.update(bar(4, 100.0, 101.0, 99.0, 100.0))
    assert (sm.bars_processed, sm.bars_in_state) == (4, 1)


def test_analysis_times_out_after_the_given_number_of_bars():
    sm = StateMachine(analysis_timeout_bars=3)
    sm.start_analyzing(100)
    sm.context["x"] = 1
    for ts in (101, 102, 103):  # the strategy gets 3 bars in ANALYZING
        assert sm.update(bar(ts, 100.0, 101.0, 99.0, 100.0)) is None
        assert sm.state == State.ANALYZING
    assert sm.update(bar(104, 100.0, 101.0, 99.0, 100.0)) is None
    assert sm.state == State.IDLE and sm.bars_in_state == 0 and len(sm.context) == 0
    assert sm.history()[-1] == Transition(State.ANALYZING, State.IDLE, "analysis_timeout", 104,
                                          ActionType.CANCEL_ANALYSIS)


def test_no_timeout_by_default_or_once_in_position():
    sm = StateMachine()
    sm.start_analyzing(0)
    for ts in range(1, 1001):
        sm.update(bar(ts, 100.0, 101.0, 99.0, 100.0))
    assert sm.state == State.ANALYZING and sm.bars_in_state == 1000
    sm = StateMachine(analysis_timeout_bars=1)
    sm.start_analyzing(0)
    sm.update(bar(1, 100.0, 101.0, 99.0, 100.0))
    sm.enter_long(1.0, 100.0, 1)
    for ts in range(2, 10):
        sm.update(bar(ts, 100.0, 101.0, 99.0, 100.0))
    assert sm.state == State.IN_POSITION


def test_timeout_constructor_validation():
    with pytest.raises(ValueError, match="analysis_timeout_bars = -1"):
        StateMachine(analysis_timeout_bars=-1)
    with pytest.raises(ValueError, match="'worst_case'"):
        StateMachine(ambiguity_policy="worst_case")


def test_history_ring_keeps_exactly_the_last_100():
    sm = StateMachine()
    model = deque(maxlen=100)
    for ts in range(250):
        if ts % 2 == 0:
            sm.start_analyzing(ts, f"go{ts}")
            model.append(("IDLE", "ANALYZING", f"go{ts}", ts))
        else:
            sm.cancel_analysis(ts, f"no{ts}")
            model.append(("ANALYZING", "IDLE", f"no{ts}", ts))
        got = [(t.from_state.name, t.to_state.name, t.reason, t.timestamp) for t in sm.history()]
        assert got == list(model)
    assert len(sm.history()) == 100 and sm.history()[0].timestamp == 150
    assert sm.transition_count == 250


def test_reset_then_replay_gives_identical_results():
    def run(sm):
        sm.start_analyzing(1)
        sm.context["a"] = 1
        sm.enter_long(1.0, 100.0, 2, stop_loss=95.0)
        sm.update(bar(3, 100.0, 101.0, 94.0, 96.0))
        sm.enter_short(1.0, 96.0, 4)
        sm.update(bar(5, 96.0, 97.0, 90.0, 91.0))
        return sm.to_dict(history=True)

    sm = StateMachine()
    first = run(sm)
    sm.reset()
    assert sm.to_dict(history=True)["history"] == [] and sm.closed_positions == []
    assert run(sm) == first


def test_snapshot_is_strict_json_in_every_state():
    for state in STATE_NAMES:
        sm = machine_in(state)
        sm.context["nan"] = NAN
        d = json.loads(json.dumps(sm.to_dict(history=True), allow_nan=False))
        assert d["state"] == state
        assert d["context"] == {"level": 99.5, "nan": None}
        assert (d["position"] is None) == (state != "IN_POSITION")


# ---------------------------------------------------------------------------
# Context
# ---------------------------------------------------------------------------

def test_context_accepts_only_float_int_str_bool():
    ctx = Context()
    ctx["f"] = 1.5
    ctx.set("i", 3)
    ctx["s"] = "breakout"
    ctx["b"] = True
    assert ctx.to_dict() == {"f": 1.5, "i": 3, "s": "breakout", "b": True}
    for bad in ([1], {"a": 1}, None, b"x", (1, 2), 1j, object()):
        with pytest.raises(TypeError, match=rf"'k'.*{type(bad).__name__}"):
            ctx["k"] = bad
    with pytest.raises(TypeError, match="int"):
        ctx[5] = 1.0
    with pytest.raises(TypeError, match="'bad'.*list"):
        ctx.update({"ok": 1, "bad": []})
    assert "ok" not in ctx and len(ctx) == 4


def test_context_dict_operations():
    ctx = Context()
    ctx.update({"a": 1}, b=2.5)
    assert ctx.get("a") == 1 and ctx.get("zz") is None and ctx.get("zz", 7) == 7
    assert "a" in ctx and "zz" not in ctx and len(ctx) == 2
    assert sorted(ctx) == ["a", "b"] and dict(ctx.items()) == {"a": 1, "b": 2.5}
    ctx.delete("a")
    del ctx["b"]
    assert len(ctx) == 0
    with pytest.raises(KeyError, match="nope"):
        ctx.delete("nope")
    with pytest.raises(KeyError, match="nope"):
        ctx["nope"]
    ctx["x"] = 1
    ctx.clear()
    assert ctx.to_dict() == {} and ctx == {}


def test_context_set_while_analyzing_is_visible_in_position_and_cleared_on_exit():
    sm = StateMachine()
    sm.start_analyzing(1)
    sm.context["support"] = 95.0
    sm.enter_long(1.0, 100.0, 2)
    assert sm.context.get("support") == 95.0
    sm.exit(101.0, 3)
    assert len(sm.context) == 0


@pytest.mark.parametrize("to_idle", ["exit", "stop_loss", "cancel", "timeout"])
def test_context_cleared_on_every_return_to_idle_unless_kept(to_idle):
    for keep in (False, True):
        sm = StateMachine(analysis_timeout_bars=1, keep_context=keep)
        sm.start_analyzing(1)
        sm.context["k"] = "v"
        if to_idle == "cancel":
            sm.cancel_analysis(2)
        elif to_idle == "timeout":
            sm.update(bar(2, 100.0, 101.0, 99.0, 100.0))
            sm.update(bar(3, 100.0, 101.0, 99.0, 100.0))
        else:
            sm.enter_long(1.0, 100.0, 2, stop_loss=95.0)
            if to_idle == "exit":
                sm.exit(100.0, 3)
            else:
                sm.update(bar(3, 99.0, 100.0, 94.0, 96.0))
        assert sm.state == State.IDLE
        assert sm.context.to_dict() == ({"k": "v"} if keep else {})


# ---------------------------------------------------------------------------
# Validation
# ---------------------------------------------------------------------------

BAD_QUANTITIES = [0.0, -1.0, NAN, math.inf, -math.inf]
BAD_PRICES = [0.0, -5.0, NAN, math.inf, -math.inf]


@pytest.mark.parametrize("q", BAD_QUANTITIES)
@pytest.mark.parametrize("enter", ["enter_long", "enter_short"])
def test_bad_quantity_is_rejected_and_changes_nothing(enter, q):
    sm = machine_in("ANALYZING")
    before = snapshot(sm)
    with pytest.raises(ValueError, match=rf"quantity = {q!r}"):
        getattr(sm, enter)(q, 100.0, 5)
    assert snapshot(sm) == before


@pytest.mark.parametrize("p", BAD_PRICES)
@pytest.mark.parametrize("enter", ["enter_long", "enter_short"])
def test_bad_entry_price_is_rejected_and_changes_nothing(enter, p):
    sm = machine_in("IDLE")
    before = snapshot(sm)
    with pytest.raises(ValueError, match=rf"price = {p!r}"):
        getattr(sm, enter)(1.0, p, 5)
    assert snapshot(sm) == before


@pytest.mark.parametrize("enter, field, value", [
    ("enter_long", "stop_loss", 100.0),    # must be below entry
    ("enter_long", "stop_loss", 101.0),
    ("enter_long", "take_profit", 100.0),  # must be above entry
    ("enter_long", "take_profit", 99.0),
    ("enter_short", "stop_loss", 100.0),   # must be above entry
    ("enter_short", "stop_loss", 99.0),
    ("enter_short", "take_profit", 100.0),  # must be below entry
    ("enter_short", "take_profit", 101.0),
    ("enter_long", "stop_loss", 0.0),
    ("enter_long", "stop_loss", -1.0),
    ("enter_short", "take_profit", -math.inf),
    ("enter_short", "stop_loss", math.inf),
])
def test_levels_on_the_wrong_side_or_not_prices_are_rejected(enter, field, value):
    sm = machine_in("ANALYZING")
    before = snapshot(sm)
    with pytest.raises(ValueError, match=rf"{field} = {value!r}"):
        getattr(sm, enter)(1.0, 100.0, 5, **{field: value})
    assert snapshot(sm) == before


def test_level_updates_are_checked_against_the_current_mark():
    sm = long_at_100()
    sm.update(bar(2000, 100.0, 104.0, 99.0, 103.0))  # mark 103
    before = snapshot(sm)
    with pytest.raises(ValueError, match=r"stop_loss = 103\.0.*below.*103\.0"):
        sm.update_stop_loss(103.0)
    with pytest.raises(ValueError, match=r"take_profit = 102\.0.*above"):
        sm.update_take_profit(102.0)
    with pytest.raises(ValueError, match=r"stop_loss = -1\.0"):
        sm.update_stop_loss(-1.0)
    assert snapshot(sm) == before


@pytest.mark.parametrize("p", BAD_PRICES)
def test_bad_exit_price_is_rejected_and_changes_nothing(p):
    sm = machine_in("IN_POSITION")
    before = snapshot(sm)
    with pytest.raises(ValueError, match=rf"price = {p!r}"):
        sm.exit(p, 5000)
    assert snapshot(sm) == before


def test_exit_before_entry_time_is_rejected():
    sm = machine_in("IN_POSITION")  # entered at 1001
    with pytest.raises(ValueError, match="timestamp = 1000"):
        sm.exit(100.0, 1000)
    assert sm.state == State.IN_POSITION


def test_position_constructor_validates():
    pos = Position("short", 1.0, 50.0, 9, stop_loss=55.0)
    assert pos.side == Side.SHORT and pos.is_open and pos.exit_time is None
    assert math.isnan(pos.exit_price) and pos.exit_reason is None
    with pytest.raises(ValueError, match="side = 0"):
        Position(0, 1.0, 50.0, 9)
    with pytest.raises(ValueError, match="quantity = 0.0"):
        Position(Side.LONG, 0.0, 50.0, 9)
    with pytest.raises(ValueError, match="take_profit = 40.0"):
        Position(Side.LONG, 1.0, 50.0, 9, take_profit=40.0)


# ---------------------------------------------------------------------------
# Hypothesis: the machine against a pure-Python dict model
# ---------------------------------------------------------------------------

class Model:
    """The spec, restated in plain Python. Short positions are handled by mirroring prices
    (x -> -x), which turns every short rule into the long rule."""

    ALLOWED = {
        "IDLE": {"start_analyzing", "enter_long", "enter_short"},
        "ANALYZING": {"cancel_analysis", "enter_long", "enter_short"},
        "IN_POSITION": {"exit", "update_stop_loss", "update_take_profit"},
    }

    def __init__(self, policy, timeout, keep):
        self.policy, self.timeout, self.keep = policy, timeout, keep
        self.state = "IDLE"
        self.pos = None
        self.closed = []
        self.realized = 0.0
        self.hist = deque(maxlen=100)
        self.ctx = {}
        self.bars_in_state = 0

    def _check(self, action):
        if action not in self.ALLOWED[self.state]:
            raise InvalidTransition(f"{action} in {self.state}")

    def _go(self, to, reason, ts):
        self.hist.append((self.state, to, reason, ts))
        self.state = to
        self.bars_in_state = 0
        if to == "IDLE" and not self.keep:
            self.ctx = {}

    @staticmethod
    def _level_ok(level, sign, ref, is_stop):
        if math.isnan(level):
            return True
        if not (math.isfinite(level) and level > 0):
            return False
        # mirrored: a stop is below the reference, a target above
        return sign * level < sign * ref if is_stop else sign * level > sign * ref

    def start_analyzing(self, ts):
        self._check("start_analyzing")
        self._go("ANALYZING", "", ts)

    def cancel_analysis(self, ts):
        self._check("cancel_analysis")
        self._go("IDLE", "", ts)

    def enter(self, sign, qty, price, ts, sl, tp):
        self._check("enter_long" if sign == 1 else "enter_short")
        if not (math.isfinite(qty) and qty > 0):
            raise ValueError("quantity")
        if not (math.isfinite(price) and price > 0):
            raise ValueError("price")
        if not self._level_ok(sl, sign, price, True) or not self._level_ok(tp, sign, price, False):
            raise ValueError("level")
        self.pos = dict(sign=sign, qty=qty, entry=price, sl=sl, tp=tp, mark=price, upnl=0.0)
        self._go("IN_POSITION", "", ts)

    def _close(self, price, ts, reason, ambiguous):
        p = self.pos
        p.update(exit=price, reason=reason, ambiguous=ambiguous,
                 pnl=p["qty"] * (price - p["entry"]) if p["sign"] == 1
                 else p["qty"] * (p["entry"] - price))
        self.realized += p["pnl"]
        self.closed.append(p)
        self.pos = None
        self._go("IDLE", reason, ts)

    def exit(self, price, ts):
        self._check("exit")
        if not (math.isfinite(price) and price > 0):
            raise ValueError("price")
        self._close(price, ts, "exit", False)

    def update_level(self, which, price):
        self._check("update_stop_loss" if which == "sl" else "update_take_profit")
        p = self.pos
        if not self._level_ok(price, p["sign"], p["mark"], which == "sl"):
            raise ValueError(which)
        p[which] = price

    def bar(self, ts, o, h, l, c):
        self.bars_in_state += 1
        if self.state == "ANALYZING" and self.timeout and self.bars_in_state > self.timeout:
            self._go("IDLE", "analysis_timeout", ts)
        elif self.state == "IN_POSITION":
            p = self.pos
            s = p["sign"]
            # Mirror a short into a long: its stop is below, its target above.
            mo = s * o
            lo, hi = (l, h) if s == 1 else (-h, -l)
            sl = s * p["sl"] if not math.isnan(p["sl"]) else -math.inf
            tp = s * p["tp"] if not math.isnan(p["tp"]) else math.inf
            outcome = None
            if mo <= sl:
                outcome = ("stop_loss", mo, False)
            elif mo >= tp:
                outcome = ("take_profit", mo, False)
            elif lo <= sl and hi >= tp:
                stop_first = {"stop_loss_first": True, "take_profit_first": False,
                              "open_distance": mo - sl <= tp - mo}[self.policy]
                outcome = ("stop_loss", sl, True) if stop_first else ("take_profit", tp, True)
            elif lo <= sl:
                outcome = ("stop_loss", sl, False)
            elif hi >= tp:
                outcome = ("take_profit", tp, False)
            if outcome is None:
                p["mark"] = c
                p["upnl"] = p["qty"] * (c - p["entry"]) if s == 1 else p["qty"] * (p["entry"] - c)
            else:
                reason, fill, amb = outcome
                self._close(s * fill, ts, reason, amb)


HALF = st.integers(-4, 4).map(lambda i: i / 2)  # price offsets on a 0.5 grid: many exact ties
BAD_PRICE = st.sampled_from([None] * 12 + [0.0, -2.0, NAN, math.inf])  # None = use the offset
# Distance of a level from its reference, on the 0.5 grid: None = unset; <= 0 is the wrong side.
DIST = st.sampled_from([None, None, "zero", "inf"] + [i / 2 for i in range(-2, 13)])
QTY = st.sampled_from([0.5, 1.0, 2.0, 3.0, 0.25, 1.5] * 3 + [0.0, -1.0, NAN, math.inf])
CTX_VALUE = st.one_of(st.floats(allow_nan=False), st.integers(), st.text(max_size=3),
                      st.booleans(), st.lists(st.integers(), max_size=1), st.none())


def level(ref, sign, dist, is_stop):
    """A stop `dist` on the losing side of `ref`, a target `dist` on the winning side."""
    if dist is None:
        return NAN
    if dist == "zero":
        return 0.0
    if dist == "inf":
        return math.inf
    return ref - sign * dist if is_stop else ref + sign * dist


class StateMachineVsModel(RuleBasedStateMachine):
    @initialize(policy=st.sampled_from(POLICIES), timeout=st.integers(0, 3), keep=st.booleans())
    def setup(self, policy, timeout, keep):
        self.sm = StateMachine(ambiguity_policy=policy, analysis_timeout_bars=timeout,
                               keep_context=keep)
        self.model = Model(policy, timeout, keep)
        self.t = 0
        self.last = 100.0  # last close: bars are a random walk so levels get touched, not jumped

    def both(self, sm_call, model_call):
        """Run the same step on both; they must raise the same error type or both succeed."""
        self.t += 1
        try:
            model_call()
        except (InvalidTransition, ValueError, TypeError) as exc:
            before = snapshot(self.sm)
            with pytest.raises(type(exc)):
                sm_call()
            assert snapshot(self.sm) == before
            return None
        return sm_call()

    @rule()
    def start_analyzing(self):
        self.both(lambda: self.sm.start_analyzing(self.t), lambda: self.model.start_analyzing(self.t))

    @rule()
    def cancel_analysis(self):
        self.both(lambda: self.sm.cancel_analysis(self.t), lambda: self.model.cancel_analysis(self.t))

    @rule(long=st.booleans(), qty=QTY, off=HALF, bad=BAD_PRICE, sl=DIST, tp=DIST)
    def enter(self, long, qty, off, bad, sl, tp):
        sign = 1 if long else -1
        price = self.last + off if bad is None else bad
        ref = price if math.isfinite(price) else 100.0
        sl, tp = level(ref, sign, sl, True), level(ref, sign, tp, False)
        method = self.sm.enter_long if long else self.sm.enter_short
        self.both(lambda: method(qty, price, self.t, sl, tp),
                  lambda: self.model.enter(sign, qty, price, self.t, sl, tp))

    @rule(off=HALF, bad=BAD_PRICE)
    def exit(self, off, bad):
        price = self.last + off if bad is None else bad
        self.both(lambda: self.sm.exit(price, self.t), lambda: self.model.exit(price, self.t))

    @rule(stop=st.booleans(), dist=DIST)
    def update_level(self, stop, dist):
        pos = self.model.pos
        price = level(pos["mark"], pos["sign"], dist, stop) if pos else level(100.0, 1, dist, stop)
        call = self.sm.update_stop_loss if stop else self.sm.update_take_profit
        self.both(lambda: call(price), lambda: self.model.update_level("sl" if stop else "tp", price))

    @rule(gap=st.integers(-8, 8), move=st.integers(-8, 8), up=st.integers(0, 20),
          down=st.integers(0, 20))
    def bar(self, gap, move, up, down):
        o = min(max(self.last + gap / 2, 40.0), 160.0)
        c = min(max(o + move / 2, 40.0), 160.0)
        h, l = max(o, c) + up / 2, min(o, c) - down / 2
        self.last = c
        n_closed = len(self.model.closed)
        got = self.both(lambda: self.sm.update(bar(self.t, o, h, l, c)),
                        lambda: self.model.bar(self.t, o, h, l, c))
        if len(self.model.closed) > n_closed:
            want = self.model.closed[-1]
            assert got is self.sm.last_closed
            assert (got.exit_reason, got.exit_price, got.ambiguous, got.exit_time) == (
                want["reason"], want["exit"], want["ambiguous"], self.t)
            assert got.realized_pnl == pytest.approx(want["pnl"], rel=1e-12, abs=1e-12)
        else:
            assert got is None

    @rule(key=st.sampled_from(["a", "b", "c"]), value=CTX_VALUE)
    def set_context(self, key, value):
        def model_set():
            if not isinstance(value, (bool, int, float, str)):
                raise TypeError(key)
            self.model.ctx[key] = value
        self.both(lambda: self.sm.context.set(key, value), model_set)

    @precondition(lambda self: hasattr(self, "sm"))
    @invariant()
    def agree(self):
        sm, m = self.sm, self.model
        assert sm.state.name == m.state
        assert sm.bars_in_state == m.bars_in_state
        assert sm.n_trades == len(m.closed) == len(sm.closed_positions)
        assert sm.realized_pnl == pytest.approx(m.realized, rel=1e-12, abs=1e-12)
        assert sm.context.to_dict() == m.ctx
        got_hist = [(t.from_state.name, t.to_state.name, t.reason, t.timestamp) for t in sm.history()]
        assert got_hist == list(m.hist)
        if m.pos is None:
            assert sm.position is None
        else:
            p, w = sm.position, m.pos
            assert int(p.side) == w["sign"] and p.is_open
            assert (p.quantity, p.entry_price, p.mark_price) == (w["qty"], w["entry"], w["mark"])
            for got, want in ((p.stop_loss, w["sl"]), (p.take_profit, w["tp"])):
                assert got == want or (math.isnan(got) and math.isnan(want))
            assert p.unrealized_pnl == pytest.approx(w["upnl"], rel=1e-12, abs=1e-12)


@settings(max_examples=2000, deadline=None)
@given(policy=st.sampled_from(POLICIES), long=st.booleans(), sl=DIST, tp=DIST,
       o=st.integers(-12, 12), c=st.integers(-12, 12), up=st.integers(0, 12), down=st.integers(0, 12))
def test_one_bar_exit_agrees_with_dict_model(policy, long, sl, tp, o, c, up, down):
    sign = 1 if long else -1
    sl, tp = level(100.0, sign, sl, True), level(100.0, sign, tp, False)
    model = Model(policy, 0, False)
    sm = StateMachine(ambiguity_policy=policy)
    try:
        model.enter(sign, 1.0, 100.0, 1, sl, tp)
    except ValueError:
        return
    (sm.enter_long if long else sm.enter_short)(1.0, 100.0, 1, sl, tp)
    o, c = 100.0 + o / 2, 100.0 + c / 2
    h, l = max(o, c) + up / 2, min(o, c) - down / 2
    model.bar(2, o, h, l, c)
    got = sm.update(bar(2, o, h, l, c))
    if model.closed:
        want = model.closed[0]
        assert (got.exit_reason, got.exit_price, got.ambiguous) == (
            want["reason"], want["exit"], want["ambiguous"])
        assert got.realized_pnl == want["pnl"]
    else:
        assert got is None and sm.position.unrealized_pnl == model.pos["upnl"]


StateMachineVsModel.TestCase.settings = settings(max_examples=300, stateful_step_count=60,
                                                 deadline=None)
test_state_machine_agrees_with_dict_model = StateMachineVsModel.TestCase


# ---------------------------------------------------------------------------
# The enums: one definition (cpdef enums of state_machine.pxd) for C and Python
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("enum_type", [State, Side, ActionType])
def test_enums_behave_as_int_enums(enum_type):
    import enum
    import pickle

    assert issubclass(enum_type, enum.IntEnum)
    for member in enum_type:
        assert enum_type(int(member)) is member and enum_type[member.name] is member
        assert member == int(member) and pickle.loads(pickle.dumps(member)) is member
    with pytest.raises(ValueError, match="is not a valid"):
        enum_type(99)


def test_the_stub_lists_the_compiled_enums():
    import ast
    from pathlib import Path

    import tradesim._core
    import tradesim._core.state_machine as module

    stub = ast.parse((Path(tradesim._core.__file__).parent / "state_machine.pyi").read_text())
    enums = [node for node in stub.body
             if isinstance(node, ast.ClassDef) and node.name in ("State", "Side", "ActionType")]
    assert len(enums) == 3
    for node in enums:
            members = {t.targets[0].id: ast.literal_eval(t.value) for t in node.body
                       if isinstance(t, ast.Assign)}
            assert members == {m.name: int(m) for m in getattr(module, node.name)}
