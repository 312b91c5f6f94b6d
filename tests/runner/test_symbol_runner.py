"""SymbolRunner on small hand-made bars: fills and cash with costs (long and short), sizing,
automatic stop-loss / take-profit exits, rejected actions, strategy errors and the
FAILED status, pause/resume, and bars that must be refused.

Every expected number is worked out by hand in the comments from the rules documented in
`tradesim.runner.execution`: market fills at the next bar's open (or the signal bar's close),
slippage against the trader on market and stop fills, none on take-profit fills,
commission in bps of notional per side plus a fixed fee per order.
"""

from pathlib import Path

import numpy as np
import pytest

from tradesim import MarketData
from tradesim._core import InvalidMarketData, OutOfOrderBar
from tradesim._core.state_machine import State
from tradesim.runner import RunnerStatus, SymbolRunner
from tradesim.runner.execution import ExecutionConfig

REPO = Path(__file__).resolve().parents[2]
TEST_STRATEGY = REPO / "lua-strategies" / "test_strategy.lua"
T0 = 28_333_332 * 60_000  # 2023-11-14T22:12Z, an even minute count
MIN = 60_000
SYMBOL = "BTCUSDT"

# Enters on the bar whose open time is `enter_ts` (setup and commitment on the same bar),
# exits on the bar whose open time is `exit_ts`; levels and quantity are optional (0 = none).
SCRIPTED = """
name = "scripted"
params = {enter_ts = -1, exit_ts = -1, side = "long", quantity = 0.0,
          stop_loss = 0.0, take_profit = 0.0}

function detect_opportunity(md, ctx, ind)
  if md.timestamp == params.enter_ts then return {reason = "go"} end
  return nil
end

function filter_commitment(md, ctx, ind)
  local a = {action = params.side == "short" and "enter_short" or "enter_long", reason = "scripted"}
  if params.quantity > 0 then a.quantity = params.quantity end
  if params.stop_loss > 0 then a.stop_loss = params.stop_loss end
  if params.take_profit > 0 then a.take_profit = params.take_profit end
  return a
end

function manage_position(md, ctx, ind)
  if md.timestamp == params.exit_ts then return {action = "exit", reason = "scripted_exit"} end
  return nil
end
"""

SKELETON = """
name = "inline"
function detect_opportunity(md, ctx, ind) {detect} end
function filter_commitment(md, ctx, ind) {filter} end
function manage_position(md, ctx, ind) {manage} end
"""


def ts(i):
    return T0 + i * MIN


def scripted(tmp_path):
    p = tmp_path / "scripted.lua"
    p.write_text(SCRIPTED)
    return p


def inline(tmp_path, detect="return nil", filter="return nil", manage="return nil", head=""):
    p = tmp_path / "inline.lua"
    p.write_text(head + SKELETON.format(detect=detect, filter=filter, manage=manage))
    return p


def feed(runner, rows, start=0):
    """Process (open, high, low, close) rows as bars start, start+1, ...; equity after each."""
    equity = []
    for i, (o, h, l, c) in enumerate(rows, start=start):
        runner.process(MarketData(SYMBOL, ts(i), o, h, l, c, 1.0))
        equity.append(runner.equity)
    return equity


# Bars shared by the fill tests: signal on bar 1, entry fill at bar 2's open (102),
# exit signal on bar 3, exit fill at bar 4's open (105).
FILL_ROWS = [
    (100.0, 101.0, 99.0, 100.0),
    (100.0, 101.0, 99.0, 100.0),
    (102.0, 104.0, 101.0, 103.0),
    (103.0, 106.0, 102.0, 105.0),
    (105.0, 106.0, 104.0, 104.0),
]
COSTS = ExecutionConfig(slippage_bps=10.0, commission_bps=20.0, fixed_fee=1.0, starting_cash=10_000.0)


# --------------------------------------------------------------------------- fills and cash

def test_long_round_trip_with_costs_matches_hand_computation(tmp_path):
    r = SymbolRunner(SYMBOL, scripted(tmp_path), execution=COSTS,
                     params={"enter_ts": ts(1), "exit_ts": ts(3), "quantity": 2.0})
    equity = feed(r, FILL_ROWS)
    # Entry: 102 * (1 + 0.001) = 102.102; fee 2 * 102.102 * 0.002 + 1 = 1.408408
    # cash 10000 - 204.204 - 1.408408 = 9794.387592
    # Exit: 105 * (1 - 0.001) = 104.895; fee 2 * 104.895 * 0.002 + 1 = 1.41958
    # cash 9794.387592 + 209.79 - 1.41958 = 10002.758012
    assert equity == pytest.approx([10_000.0, 10_000.0,
                                    9794.387592 + 2 * 103.0,   # marked at bar 2's close
                                    9794.387592 + 2 * 105.0,
                                    10_002.758012], rel=1e-12)
    (t,) = r.trades
    assert (t.side, t.quantity, t.entry_bar, t.exit_bar) == ("long", 2.0, 2, 4)
    assert (t.entry_time, t.exit_time) == (ts(2), ts(4))
    assert t.entry_price == pytest.approx(102.102, rel=1e-13)
    assert t.exit_price == pytest.approx(104.895, rel=1e-13)
    assert t.fees == pytest.approx(1.408408 + 1.41958, rel=1e-12)
    # gross 2 * (104.895 - 102.102) = 5.586; net 5.586 - 2.827988
    assert t.pnl == pytest.approx(2.758012, rel=1e-10)
    assert t.exit_reason == "scripted_exit" and not t.ambiguous
    assert r.core.quantity == 0.0 and r.machine.state == State.IDLE
    # the core's raw record became the Trade: kept once, and the same on every read
    assert r.core.closed == [] and r.trades == [t] and r.trades[0] is t


def test_short_round_trip_with_costs_matches_hand_computation(tmp_path):
    r = SymbolRunner(SYMBOL, scripted(tmp_path), execution=COSTS,
                     params={"enter_ts": ts(1), "exit_ts": ts(3), "quantity": 2.0, "side": "short"})
    equity = feed(r, FILL_ROWS)
    # Entry (a sell): 102 * (1 - 0.001) = 101.898; fee 2 * 101.898 * 0.002 + 1 = 1.407592
    # cash 10000 + 203.796 - 1.407592 = 10202.388408
    # Exit (a buy): 105 * (1 + 0.001) = 105.105; fee 2 * 105.105 * 0.002 + 1 = 1.42042
    # cash 10202.388408 - 210.21 - 1.42042 = 9990.757988
    assert equity == pytest.approx([10_000.0, 10_000.0,
                                    10_202.388408 - 2 * 103.0,
                                    10_202.388408 - 2 * 105.0,
                                    9990.757988], rel=1e-12)
    (t,) = r.trades
    assert (t.side, t.entry_bar, t.exit_bar) == ("short", 2, 4)
    assert t.entry_price == pytest.approx(101.898, rel=1e-13)
    assert t.exit_price == pytest.approx(105.105, rel=1e-13)
    # gross 2 * (101.898 - 105.105) = -6.414; fees 2.828012
    assert t.pnl == pytest.approx(-9.242012, rel=1e-10)
    assert t.fees == pytest.approx(2.828012, rel=1e-12)


def test_fill_at_close_uses_the_signal_bars_close(tmp_path):
    exe = ExecutionConfig(fill="close", slippage_bps=10.0, commission_bps=20.0, fixed_fee=1.0)
    r = SymbolRunner(SYMBOL, scripted(tmp_path), execution=exe,
                     params={"enter_ts": ts(1), "exit_ts": ts(3), "quantity": 2.0})
    equity = feed(r, FILL_ROWS)
    (t,) = r.trades
    # Entry at bar 1's close 100 * 1.001 = 100.1; exit at bar 3's close 105 * 0.999 = 104.895.
    assert (t.entry_bar, t.exit_bar, t.entry_time, t.exit_time) == (1, 3, ts(1), ts(3))
    assert t.entry_price == pytest.approx(100.1, rel=1e-13)
    assert t.exit_price == pytest.approx(104.895, rel=1e-13)
    # fees (200.2 + 209.79) * 0.002 + 2 = 2.81998; gross 2 * 4.795 = 9.59
    assert t.pnl == pytest.approx(9.59 - 2.81998, rel=1e-10)
    # Bar 1: cash 10000 - 200.2 - 1.4004 = 9798.3996, marked at 100.
    assert equity[1] == pytest.approx(9798.3996 + 200.0, rel=1e-12)
    assert equity[-1] == pytest.approx(10_000.0 + 9.59 - 2.81998, rel=1e-12)


def test_quantity_omitted_sizes_from_equity_net_of_costs(tmp_path):
    exe = ExecutionConfig(slippage_bps=10.0, commission_bps=20.0, fixed_fee=1.0,
                          starting_cash=10_000.0, size_fraction=0.5)
    r = SymbolRunner(SYMBOL, scripted(tmp_path), execution=exe, params={"enter_ts": ts(1)})
    feed(r, FILL_ROWS[:3])
    pos = r.machine.position
    # budget 0.5 * 10000 - 1 (fixed fee) = 4999 at 102.102 plus 20 bps commission
    assert pos.quantity == pytest.approx(4999.0 / (102.102 * 1.002), rel=1e-12)
    # The order spends exactly the fraction: half the equity is left as cash.
    assert r.core.cash == pytest.approx(5000.0, rel=1e-12)


def test_sizing_uses_the_equity_after_earlier_trades(tmp_path):
    p = inline(tmp_path,
               detect=f'if md.timestamp == {ts(1)} or md.timestamp == {ts(4)} then return {{reason = "go"}} end',
               filter=f'if md.timestamp == {ts(1)} then return {{action = "enter_long", quantity = 1}} end '
                      'return {action = "enter_long"}',
               manage=f'if md.timestamp == {ts(3)} then return {{action = "exit"}} end')
    r = SymbolRunner(SYMBOL, p)
    feed(r, FILL_ROWS + [(104.0, 105.0, 103.0, 104.0)])
    # First trade: 1 unit, no costs, 102 -> 105 = +3, so equity is 10003 when flat again.
    assert r.trades[0].pnl == pytest.approx(3.0)
    # The second setup (bar 4) fills at bar 5's open 104 with the whole equity.
    assert r.machine.position.entry_price == 104.0
    assert r.machine.position.quantity == pytest.approx(10_003.0 / 104.0, rel=1e-12)
    assert r.core.cash == pytest.approx(0.0, abs=1e-9)


# --------------------------------------------------------------------------- automatic exits

# Long entered at bar 2's open (100) with stop 95 and take-profit 110; bar 3 decides.
FLAT = (100.0, 101.0, 99.0, 100.0)


@pytest.mark.parametrize("bar3, policy, reason, price, ambiguous", [
    ((99.0, 100.0, 94.0, 96.0), "stop_loss_first", "stop_loss", 95.0 * 0.999, False),       # at level
    ((93.0, 94.0, 90.0, 92.0), "stop_loss_first", "stop_loss", 93.0 * 0.999, False),       # gap below
    ((105.0, 111.0, 104.0, 108.0), "stop_loss_first", "take_profit", 110.0, False),        # at level
    ((112.0, 115.0, 111.0, 113.0), "stop_loss_first", "take_profit", 112.0, False),        # gap above
    ((100.0, 111.0, 94.0, 100.0), "stop_loss_first", "stop_loss", 95.0 * 0.999, True),     # both
    ((100.0, 111.0, 94.0, 100.0), "take_profit_first", "take_profit", 110.0, True),        # both
], ids=["stop", "stop-gap", "tp", "tp-gap", "both-sl-first", "both-tp-first"])
def test_long_automatic_exit_price_and_reason(tmp_path, bar3, policy, reason, price, ambiguous):
    # 10 bps slippage applies to the stop fill (a market order once triggered), never to
    # the take-profit (a limit at the level, or the better gapped open).
    exe = ExecutionConfig(slippage_bps=10.0)
    r = SymbolRunner(SYMBOL, scripted(tmp_path), execution=exe, ambiguity_policy=policy,
                     params={"enter_ts": ts(1), "quantity": 1.0, "stop_loss": 95.0,
                             "take_profit": 110.0})
    feed(r, [FLAT, FLAT, FLAT, bar3, FLAT])
    (t,) = r.trades
    entry = 100.0 * 1.001
    assert t.entry_price == pytest.approx(entry, rel=1e-13)
    assert (t.exit_reason, t.ambiguous, t.exit_bar, t.exit_time) == (reason, ambiguous, 3, ts(3))
    assert t.exit_price == pytest.approx(price, rel=1e-13)
    assert t.pnl == pytest.approx(price - entry, rel=1e-12)
    assert r.equity == pytest.approx(10_000.0 + price - entry, rel=1e-12)
    assert r.machine.state == State.IDLE
    # the state machine's closed position follows the (slipped) fill, as the trade does
    assert r.machine.last_closed.exit_price == pytest.approx(price, rel=1e-13)
    assert r.machine.realized_pnl == pytest.approx(price - entry, rel=1e-12)


@pytest.mark.parametrize("bar3, reason, price", [
    ((101.0, 106.0, 100.0, 104.0), "stop_loss", 105.0 * 1.001),
    ((107.0, 108.0, 104.0, 106.0), "stop_loss", 107.0 * 1.001),
    ((95.0, 96.0, 89.0, 92.0), "take_profit", 90.0),
    ((88.0, 89.0, 87.0, 88.0), "take_profit", 88.0),
], ids=["stop", "stop-gap", "tp", "tp-gap"])
def test_short_automatic_exit_price_and_reason(tmp_path, bar3, reason, price):
    exe = ExecutionConfig(slippage_bps=10.0)
    r = SymbolRunner(SYMBOL, scripted(tmp_path), execution=exe,
                     params={"enter_ts": ts(1), "quantity": 1.0, "side": "short",
                             "stop_loss": 105.0, "take_profit": 90.0})
    feed(r, [FLAT, FLAT, FLAT, bar3])
    (t,) = r.trades
    entry = 100.0 * 0.999
    assert (t.side, t.exit_reason, t.exit_bar) == ("short", reason, 3)
    assert t.exit_price == pytest.approx(price, rel=1e-13)
    assert t.pnl == pytest.approx(entry - price, rel=1e-12)
    assert r.machine.last_closed.exit_price == pytest.approx(price, rel=1e-13)
    assert r.machine.last_closed.realized_pnl == pytest.approx(entry - price, rel=1e-12)


def test_stop_is_live_on_the_entry_bar_after_the_open_fill(tmp_path):
    r = SymbolRunner(SYMBOL, scripted(tmp_path),
                     params={"enter_ts": ts(1), "quantity": 1.0, "stop_loss": 95.0})
    feed(r, [FLAT, FLAT, (100.0, 101.0, 90.0, 92.0)])
    (t,) = r.trades
    assert (t.entry_bar, t.exit_bar, t.exit_reason, t.exit_price) == (2, 2, "stop_loss", 95.0)


def test_strategy_exit_and_stop_in_the_same_bar_fills_at_the_open(tmp_path):
    # The exit decided on bar 3 fills at bar 4's open before the stop is checked on bar 4.
    r = SymbolRunner(SYMBOL, scripted(tmp_path),
                     params={"enter_ts": ts(1), "exit_ts": ts(3), "quantity": 1.0, "stop_loss": 95.0})
    feed(r, [FLAT, FLAT, FLAT, FLAT, (98.0, 99.0, 90.0, 91.0)])
    (t,) = r.trades
    assert (t.exit_bar, t.exit_reason, t.exit_price) == (4, "scripted_exit", 98.0)


# --------------------------------------------------------------------------- rejections

def test_exit_while_not_in_position_is_rejected_not_fatal(tmp_path):
    p = inline(tmp_path, detect='return {reason = "x"}', filter='return {action = "exit"}')
    events = []
    r = SymbolRunner(SYMBOL, p, on_event=events.append)
    feed(r, [FLAT] * 3)
    assert [x.action for x in r.rejections] == ["exit"] * 3
    assert [x.timestamp for x in r.rejections] == [ts(0), ts(1), ts(2)]
    assert "ANALYZING" in r.rejections[0].reason
    assert r.status == RunnerStatus.RUNNING and r.trades == [] and r.errors == []
    assert sum(e["type"] == "action_rejected" for e in events) == 3


def test_enter_while_in_position_is_rejected_and_the_position_kept(tmp_path):
    p = inline(tmp_path, detect='return {reason = "x"}',
               filter='return {action = "enter_long", quantity = 1}',
               manage='return {action = "enter_short", quantity = 1}')
    r = SymbolRunner(SYMBOL, p)
    feed(r, [FLAT] * 4)
    # Entered at bar 1's open; manage_position asks to enter on bars 1, 2, 3.
    assert [x.action for x in r.rejections] == ["enter_short"] * 3
    assert "IN_POSITION" in r.rejections[0].reason
    assert r.machine.position is not None and r.machine.position.entry_time == ts(1)
    assert r.core.quantity == 1.0


def test_stop_loss_on_the_wrong_side_is_rejected_at_the_fill(tmp_path):
    r = SymbolRunner(SYMBOL, scripted(tmp_path),
                     params={"enter_ts": ts(1), "quantity": 1.0, "stop_loss": 120.0})
    feed(r, [FLAT] * 4)
    # Checked against the fill price (bar 2's open): the entry is refused and nothing is
    # traded. The setup stays under analysis, so filter_commitment asks again on bar 2
    # (refused at bar 3's fill) and on bar 3 (still pending at the end).
    assert [(x.action, x.timestamp) for x in r.rejections] == [("enter_long", ts(2)),
                                                               ("enter_long", ts(3))]
    assert "stop_loss = 120.0" in r.rejections[0].reason and "below" in r.rejections[0].reason
    assert r.machine.state == State.ANALYZING
    assert r.machine.position is None and r.core.cash == 10_000.0 and r.trades == []


def test_update_stop_loss_above_the_mark_is_rejected(tmp_path):
    p = inline(tmp_path, detect='return {reason = "x"}',
               filter='return {action = "enter_long", quantity = 1, stop_loss = 90}',
               manage='return {action = "update_stop_loss", price = md.close + 5}')
    r = SymbolRunner(SYMBOL, p)
    feed(r, [FLAT] * 3)
    assert {x.action for x in r.rejections} == {"update_stop_loss"}
    assert r.machine.position.stop_loss == 90.0


def test_short_rejected_when_shorting_is_disabled(tmp_path):
    r = SymbolRunner(SYMBOL, scripted(tmp_path), execution=ExecutionConfig(allow_short=False),
                     params={"enter_ts": ts(1), "quantity": 1.0, "side": "short"})
    feed(r, [FLAT] * 3)
    # Refused when decided; the setup stays under analysis and is asked again each bar.
    assert [(x.action, x.timestamp) for x in r.rejections] == [("enter_short", ts(1)),
                                                               ("enter_short", ts(2))]
    assert "allow_short" in r.rejections[0].reason and r.trades == []
    assert r.machine.state == State.ANALYZING and not r.core.pending


def test_analysis_times_out_after_the_allowed_bars(tmp_path):
    p = inline(tmp_path, detect=f'if md.timestamp == {ts(1)} or md.timestamp == {ts(7)} then '
                                'return {reason = "setup", mark = 1} end')
    events = []
    r = SymbolRunner(SYMBOL, p, analysis_timeout_bars=3, on_event=events.append)
    feed(r, [FLAT] * 6)
    # Analysis started on bar 1; bars 2, 3, 4 are allowed; bar 5 times out.
    assert [e["timestamp"] for e in events if e["type"] == "analysis_timeout"] == [ts(5)]
    assert r.machine.state == State.IDLE
    assert r.strategy.context() == {}
    feed(r, [FLAT] * 2, start=6)
    assert r.machine.state == State.ANALYZING  # a new setup is taken again on bar 7
    assert r.strategy.context()["mark"] == 1


# --------------------------------------------------------------------------- errors

def test_strategy_failing_every_bar_stops_the_runner(tmp_path):
    p = inline(tmp_path, detect='error("boom")')
    events = []
    r = SymbolRunner(SYMBOL, p, max_consecutive_errors=3, on_event=events.append)
    results = [r.process(MarketData(SYMBOL, ts(i), *FLAT, 1.0)) for i in range(6)]
    assert results == [True, True, False, False, False, False]
    assert [e.timestamp for e in r.errors] == [ts(0), ts(1), ts(2)]
    assert all("boom" in e.message and e.kind == "StrategyError" for e in r.errors)
    assert r.status == RunnerStatus.FAILED
    assert "3 consecutive strategy errors" in r.status_reason and "boom" in r.status_reason
    assert r.core.bars == 3 and len(r.window) == 3  # later bars are ignored
    assert events[-1]["type"] == "runner_status" and events[-1]["status"] == "failed"


def test_invalid_action_every_bar_stops_the_runner(tmp_path):
    # A malformed action is a failed strategy call like a Lua error.
    p = inline(tmp_path, detect='return {reason = "x"}', filter='return {action = "fly"}')
    r = SymbolRunner(SYMBOL, p, max_consecutive_errors=3)
    results = [r.process(MarketData(SYMBOL, ts(i), *FLAT, 1.0)) for i in range(5)]
    assert results == [True, True, False, False, False]
    assert len(r.errors) == 3 and "unknown action 'fly'" in r.errors[0].message
    assert r.status == RunnerStatus.FAILED


def test_intermittent_errors_do_not_stop_the_runner(tmp_path):
    p = inline(tmp_path, detect='if (md.timestamp // 60000) % 2 == 0 then error("odd luck") end')
    r = SymbolRunner(SYMBOL, p, max_consecutive_errors=2)
    assert all(r.process(MarketData(SYMBOL, ts(i), *FLAT, 1.0)) for i in range(20))
    assert len(r.errors) == 10 and r.status == RunnerStatus.RUNNING
    assert [e.timestamp for e in r.errors] == [ts(i) for i in range(0, 20, 2)]


def test_alternating_lua_and_action_errors_count_as_one_streak(tmp_path):
    p = inline(tmp_path, detect='if (md.timestamp // 60000) % 2 == 0 then error("lua") end '
                                'return {reason = "x"}', filter='return {action = 7}')
    r = SymbolRunner(SYMBOL, p, max_consecutive_errors=4)
    results = [r.process(MarketData(SYMBOL, ts(i), *FLAT, 1.0)) for i in range(6)]
    assert results == [True, True, True, False, False, False]
    assert r.status == RunnerStatus.FAILED


def test_looping_strategy_times_out_and_the_runner_continues(tmp_path):
    p = inline(tmp_path, detect='if md.close > 150 then while true do end end '
                                'return {reason = "x"}',
               filter='return {action = "enter_long", quantity = 1}',
               manage='return {action = "exit"}')
    r = SymbolRunner(SYMBOL, p)
    # Bar 0: setup, filled at bar 1; bar 1: exit, filled at bar 2; bar 2 (idle again)
    # loops; bar 3: setup again, filled at bar 4; exit filled at bar 5.
    feed(r, [FLAT, FLAT, (200.0, 201.0, 199.0, 200.0), FLAT, FLAT, FLAT])
    assert [(e.timestamp, e.kind) for e in r.errors] == [(ts(2), "StrategyTimeout")]
    assert r.status == RunnerStatus.RUNNING
    assert [(t.entry_bar, t.exit_bar) for t in r.trades] == [(1, 2), (4, 5)]


# --------------------------------------------------------------------------- pause, bad bars

def prices(n):
    i = np.arange(n)
    close = 100.0 + 5.0 * np.sin(i / 3.0) + 0.1 * i
    return [(c - 0.2, c + 1.0, c - 1.0, c) for c in close]


def test_pause_keeps_indicators_warm_and_resume_decides_again():
    rows = prices(80)
    a = SymbolRunner(SYMBOL, TEST_STRATEGY, params={"every": 4, "hold": 2})
    b = SymbolRunner(SYMBOL, TEST_STRATEGY, params={"every": 4, "hold": 2})
    for i, row in enumerate(rows):
        if i == 10:
            b.pause()
        if i == 50:
            b.resume()
        bar = MarketData(SYMBOL, ts(i), *row, 1.0)
        a.process(bar)
        b.process(bar)
        np.testing.assert_array_equal(b.bank.values_view(), a.bank.values_view())
        assert len(b.window) == len(a.window)
        if i == 30:
            assert b.status == RunnerStatus.PAUSED
    assert b.status == RunnerStatus.RUNNING
    # No decision while paused: nothing enters from a signal on bars 10..49.
    assert not [t for t in b.trades if 11 <= t.entry_bar <= 50]
    assert [t for t in b.trades if t.entry_bar > 50]
    assert b.bank.keys() and not np.isnan(b.bank.values_view()).any()


def test_paused_runner_still_takes_its_stop_loss(tmp_path):
    r = SymbolRunner(SYMBOL, scripted(tmp_path),
                     params={"enter_ts": ts(1), "quantity": 1.0, "stop_loss": 95.0})
    feed(r, [FLAT] * 3)
    r.pause()
    feed(r, [FLAT, (96.0, 97.0, 93.0, 94.0)], start=3)
    (t,) = r.trades
    assert (t.exit_reason, t.exit_bar, t.exit_price) == ("stop_loss", 4, 95.0)


def test_out_of_order_bar_raises_and_changes_nothing():
    r = SymbolRunner(SYMBOL, TEST_STRATEGY, params={"every": 2, "hold": 50})
    feed(r, prices(12))
    assert r.machine.position is not None
    before = (r.core.bars, len(r.window), r.window.latest().timestamp, list(r.bank.values_view()),
              r.machine.bars_processed, r.machine.position.bars_held, r.equity, r.core.cash,
              r.strategy.context())
    for t in (ts(11), ts(3)):
        with pytest.raises(OutOfOrderBar):
            r.process(MarketData(SYMBOL, t, 50.0, 51.0, 49.0, 50.0, 1.0))
        after = (r.core.bars, len(r.window), r.window.latest().timestamp,
                 list(r.bank.values_view()), r.machine.bars_processed,
                 r.machine.position.bars_held, r.equity, r.core.cash, r.strategy.context())
        assert after == before
    assert r.errors == [] and r.status == RunnerStatus.RUNNING


def test_bar_for_another_symbol_raises_and_changes_nothing():
    r = SymbolRunner(SYMBOL, TEST_STRATEGY)
    feed(r, prices(3))
    with pytest.raises(InvalidMarketData, match="ETHUSDT"):
        r.process(MarketData("ETHUSDT", ts(3), 100.0, 101.0, 99.0, 100.0, 1.0))
    assert r.core.bars == 3 and len(r.window) == 3


def test_stopped_runner_ignores_bars():
    r = SymbolRunner(SYMBOL, TEST_STRATEGY)
    feed(r, prices(3))
    r.stop("done")
    assert r.process(MarketData(SYMBOL, ts(3), 100.0, 101.0, 99.0, 100.0, 1.0)) is False
    assert r.core.bars == 3 and (r.status, r.status_reason) == (RunnerStatus.STOPPED, "done")


def test_process_per_bar_equals_the_array_run():
    rows = prices(300)
    a = SymbolRunner(SYMBOL, TEST_STRATEGY, params={"every": 7, "hold": 4})
    feed(a, rows)
    b = SymbolRunner(SYMBOL, TEST_STRATEGY, params={"every": 7, "hold": 4})
    cols = np.array(rows).T
    n = len(rows)
    stamps = np.array([ts(i) for i in range(n)], dtype=np.int64)
    nan = np.full(n, np.nan)
    equity, in_pos = np.empty(n), np.zeros(n, dtype=np.uint8)
    b.core.run(stamps, *[np.ascontiguousarray(c) for c in cols], np.ones(n), nan, nan, equity, in_pos)
    assert a.trades == b.trades and len(a.trades) > 10
    assert a.equity == b.equity


# --------------------------------------------------------------------------- the Lua mirror of fills

MIRROR = """
function detect_opportunity(md, ctx, ind)
  if ind.position ~= nil then error("flat, yet indicators.position is set") end
  if next(ctx) ~= nil then error("flat, yet the context was not emptied") end
  if md.timestamp == {t1} then return {{reason = "go", note = "kept until the exit"}} end
  return nil
end
function filter_commitment(md, ctx, ind)
  return {{action = "enter_short", quantity = 2.0, stop_loss = 150.0, reason = "in"}}
end
function manage_position(md, ctx, ind)
  local p = ind.position
  if md.timestamp == {t3} then
    return {{action = "exit", reason = string.format("%s %g %.6f %g %s %d %s", p.side, p.quantity,
             p.entry_price, p.stop_loss, tostring(p.take_profit), p.entry_time, ctx.note)}}
  end
  return nil
end
"""


@pytest.mark.parametrize("direct", [True, False], ids=["lua_direct", "lupa_fallback"])
def test_fills_are_mirrored_into_lua_position_and_context(tmp_path, direct):
    """The core's C fills tell the script its position and empty its context on exit,
    through `LuaDirect` or, where that is unavailable, through lupa; both say the same."""
    path = tmp_path / "mirror.lua"
    path.write_text(MIRROR.format(t1=ts(1), t3=ts(3)))
    r = SymbolRunner(SYMBOL, path, execution=ExecutionConfig(slippage_bps=10.0))
    if direct:
        assert r.core.sync is not None   # this build offers the direct path: test it
    else:
        r.core.sync = None
    feed(r, FILL_ROWS + [FLAT, FLAT])
    assert r.errors == []   # flat bars after the exit saw no position and an empty context
    (t,) = r.trades
    # short entry at bar 2's open, slipped down: 102 * 0.999 = 101.898
    assert t.exit_reason == f"short 2 101.898000 150 nil {ts(2)} kept until the exit"
    assert r.strategy.context() == {}


def test_events_are_built_only_while_wanted(tmp_path):
    """`events_wanted` False: no event at all (no context snapshot, no trade dict);
    True: the opportunity, the fills and the closed trade, matching the booked `Trade`."""
    got, wanted = [], [False]
    r = SymbolRunner(SYMBOL, scripted(tmp_path), on_event=got.append,
                     params={"enter_ts": ts(1), "exit_ts": ts(3), "quantity": 2.0})
    r.events_wanted = lambda: wanted[0]
    feed(r, FILL_ROWS)
    assert got == [] and len(r.trades) == 1
    wanted[0] = True
    r2 = SymbolRunner(SYMBOL, scripted(tmp_path), on_event=got.append,
                      params={"enter_ts": ts(1), "exit_ts": ts(3), "quantity": 2.0})
    r2.events_wanted = lambda: wanted[0]
    feed(r2, FILL_ROWS)
    kinds = [e["type"] for e in got]
    assert kinds == ["opportunity_detected", "position_opened", "position_closed"]
    opened, closed = got[1], got[2]
    assert (opened["side"], opened["quantity"], opened["price"], opened["timestamp"]) == \
        ("long", 2.0, 102.0, ts(2))
    assert closed["trade"] == r2.trades[0].to_dict() and closed["trade"]["exit_price"] == 105.0


def test_a_market_exit_while_flat_is_refused_and_changes_nothing(tmp_path):
    from tradesim._core.state_machine import InvalidTransition

    r = SymbolRunner(SYMBOL, scripted(tmp_path))
    feed(r, [FLAT])
    with pytest.raises(InvalidTransition, match="cannot exit in state IDLE"):
        r.core.exit_market(100.0, ts(0), "manual")
    assert r.trades == [] and r.core.cash == 10_000.0 and r.machine.state == State.IDLE


# --------------------------------------------------------------------------- bounded history

# Enters on every idle bar and exits on the next: a trade every couple of bars.
CHURN = dict(detect='return {reason = "always"}',
             filter='return {action = "enter_long", quantity = 1, reason = "churn"}',
             manage='return {action = "exit", reason = "next_bar"}')


def _zigzag(n):
    return [(100.0 + (i % 5), 101.0 + (i % 5), 99.0 + (i % 5), 100.5 + (i % 5)) for i in range(n)]


def test_history_limit_keeps_the_newest_trades_and_exact_counts(tmp_path):
    rows = _zigzag(200)
    full = SymbolRunner(SYMBOL, inline(tmp_path, **CHURN))
    kept = SymbolRunner(SYMBOL, inline(tmp_path, **CHURN), history_limit=5)
    for i, row in enumerate(rows):
        full.process(MarketData(SYMBOL, ts(i), *row, 1.0))
        kept.process(MarketData(SYMBOL, ts(i), *row, 1.0))
        if i % 7 == 0:
            kept.trim_history()        # as the engine does after bars that change state
    kept.trim_history()
    assert len(full.trades) > 50       # the limit really bit
    assert list(kept.trades) == full.trades[-5:]
    assert kept.trade_count == len(full.trades)
    assert kept.winning_trades == sum(t.pnl > 0 for t in full.trades) > 0
    assert len(kept.machine.closed_positions) == 5
    assert [p.exit_time for p in kept.machine.closed_positions] == \
        [p.exit_time for p in full.machine.closed_positions[-5:]]
    assert kept.equity == full.equity  # trimming never touches the books


def test_history_limit_bounds_errors_and_rejections_as_they_come(tmp_path):
    # fails on every other bar (never 10 in a row), and asks to exit while flat on the others
    script = inline(tmp_path, detect='if md.timestamp % 120000 == 0 then error("odd bar") end '
                                     'return nil',
                    head="")
    runner = SymbolRunner(SYMBOL, script, history_limit=3)
    feed(runner, _zigzag(40))
    assert runner.status is RunnerStatus.RUNNING
    assert runner.error_count == 20 and len(runner.errors) == 3
    assert [e.timestamp for e in runner.errors] == [ts(i) for i in (34, 36, 38)]
    flat_exit = inline(tmp_path, detect='return {reason = "x"}',
                       filter='return {action = "exit"}')
    runner = SymbolRunner(SYMBOL, flat_exit, history_limit=2)
    feed(runner, _zigzag(6))
    assert runner.rejection_count == 6 and len(runner.rejections) == 2
    assert runner.rejections[-1].timestamp == ts(5)


def test_history_limit_must_be_positive(tmp_path):
    with pytest.raises(ValueError, match="history_limit = 0"):
        SymbolRunner(SYMBOL, inline(tmp_path), history_limit=0)
