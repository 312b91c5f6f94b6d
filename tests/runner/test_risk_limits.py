"""A runner's own risk limits (docs/orders.md, "Risk limits") on hand-made bars.

The strategy buys 10 units at every opportunity (market, next open) and never exits by
itself, so equity is easy to follow by hand: starting cash 10,000, no costs;
equity at a close = cash + 10 * close while long.
"""

import math

import pytest

from tradesim import MarketData
from tradesim.runner import RunnerStatus, SymbolRunner
from tradesim.runner.execution import ExecutionConfig
from tradesim.runner.risk import RiskConfig

DAY = 86_400_000
MIN = 60_000
T0 = 20_000 * DAY            # a UTC midnight
SYMBOL = "BTCUSDT"

ALWAYS_LONG = """
name = "always_long"
function detect_opportunity(md, ctx, ind) return {reason = "go"} end
function filter_commitment(md, ctx, ind) return {action = "enter_long", quantity = 10} end
function manage_position(md, ctx, ind)
  if ctx.exit_now then return {action = "exit"} end
  return nil
end
"""


def runner(tmp_path, events, **risk):
    path = tmp_path / "always_long.lua"
    path.write_text(ALWAYS_LONG)
    return SymbolRunner(SYMBOL, path, risk=RiskConfig(**risk), on_event=events.append,
                        execution=ExecutionConfig(starting_cash=10_000.0))


def bar(r, t, o, h, l, c):
    r.process(MarketData(SYMBOL, t, o, h, l, c, 1.0))


def kinds(events, kind):
    return [e for e in events if e["type"] == kind]


def test_drawdown_blocks_new_entries_until_resume(tmp_path):
    events = []
    r = runner(tmp_path, events, max_drawdown_pct=1.5)
    bar(r, T0, 100, 100, 100, 100)             # signal: buy 10 at the next open
    bar(r, T0 + MIN, 100, 101, 99, 100)        # filled at 100: cash 9,000, equity 10,000
    bar(r, T0 + 2 * MIN, 100, 100, 97, 99)     # equity 9,990: -0.1 % from the peak 10,000
    assert not kinds(events, "risk_limit")
    bar(r, T0 + 3 * MIN, 99, 99, 70, 80)       # equity 9,800: -2 % < -1.5 %: breach
    (event,) = kinds(events, "risk_limit")
    assert (event["limit"], event["action"], event["timestamp"]) == ("max_drawdown_pct", "block",
                                                                     T0 + 3 * MIN)
    assert event["threshold"] == 1.5 and event["value"] == pytest.approx(2.0)
    # "block" keeps the position; the strategy still manages it.
    assert r.machine.position is not None and r.status == RunnerStatus.RUNNING
    r.strategy.set_context("exit_now", True)
    bar(r, T0 + 4 * MIN, 80, 81, 79, 80)       # exit signal
    bar(r, T0 + 5 * MIN, 80, 81, 79, 80)       # exit fills at 80; new entries are rejected
    assert r.machine.position is None and len(r.trades) == 1
    assert r.trades[0].pnl == pytest.approx(10 * (80 - 100))
    bar(r, T0 + 6 * MIN, 80, 81, 79, 80)
    assert r.rejections and "entries blocked: max_drawdown_pct" in r.rejections[-1].reason
    # The block holds for good (not lifted by a new day) ...
    bar(r, T0 + DAY, 80, 81, 79, 80)
    bar(r, T0 + DAY + MIN, 80, 81, 79, 80)
    assert r.machine.position is None
    # ... until an explicit resume, which restarts the peak from the current equity.
    r.resume()
    bar(r, T0 + DAY + 2 * MIN, 80, 81, 79, 80)     # signal
    bar(r, T0 + DAY + 3 * MIN, 80, 81, 79, 80)     # filled at 80
    assert r.machine.position is not None and r.machine.position.entry_price == 80
    assert len(kinds(events, "risk_limit")) == 1


def test_halt_closes_at_the_breach_close_and_takes_no_more_decisions(tmp_path):
    events = []
    r = runner(tmp_path, events, max_drawdown_pct=1.5, on_breach="halt")
    bar(r, T0, 100, 100, 100, 100)
    bar(r, T0 + MIN, 100, 101, 99, 100)         # long 10 @ 100
    bar(r, T0 + 2 * MIN, 99, 99, 70, 80)        # equity 9,800: breach -> close at 80
    assert r.status == RunnerStatus.HALTED and r.machine.position is None
    (trade,) = r.trades
    assert (trade.exit_price, trade.exit_reason, trade.exit_time) == (80.0, "risk_halt", T0 + 2 * MIN)
    assert [e["action"] for e in kinds(events, "risk_limit")] == ["halt"]
    decisions = r.decisions
    for i in range(3, 8):                        # halted: no decisions, no entries
        bar(r, T0 + i * MIN, 80, 81, 79, 80)
    assert r.decisions == decisions and r.machine.position is None
    r.resume()
    assert r.status == RunnerStatus.RUNNING
    bar(r, T0 + 8 * MIN, 80, 81, 79, 80)
    bar(r, T0 + 9 * MIN, 80, 81, 79, 80)
    assert r.machine.position is not None


def test_daily_loss_counts_from_the_previous_days_last_close_and_lifts_next_day(tmp_path):
    events = []
    r = runner(tmp_path, events, max_daily_loss_pct=3.0)
    bar(r, T0 + DAY - 3 * MIN, 100, 100, 100, 100)    # day 1: signal
    bar(r, T0 + DAY - 2 * MIN, 100, 111, 99, 110)     # long 10 @ 100; equity 10,100
    bar(r, T0 + DAY - MIN, 110, 121, 109, 120)        # day 1's last close: equity 10,200
    # Day 2 starts from 10,200: a loss of more than 3 % is equity < 9,894, close < 89.4.
    bar(r, T0 + DAY, 120, 120, 90, 90)                # equity 9,900: -2.94 %: no breach
    assert not kinds(events, "risk_limit")
    bar(r, T0 + DAY + MIN, 90, 90, 85, 89)            # equity 9,890: -3.04 %: breach
    (event,) = kinds(events, "risk_limit")
    assert event["limit"] == "max_daily_loss_pct"
    assert event["value"] == pytest.approx(100 * (1 - 9_890 / 10_200))
    r.strategy.set_context("exit_now", True)
    bar(r, T0 + DAY + 2 * MIN, 89, 90, 88, 89)        # exit signal
    bar(r, T0 + DAY + 3 * MIN, 89, 90, 88, 89)        # exit at 89; entry rejected (blocked)
    bar(r, T0 + DAY + 4 * MIN, 89, 90, 88, 89)
    assert r.machine.position is None and "max_daily_loss_pct" in r.rejections[-1].reason
    # Day 3: the block is lifted by itself; a new signal enters again.
    bar(r, T0 + 2 * DAY, 89, 90, 88, 89)
    bar(r, T0 + 2 * DAY + MIN, 89, 90, 88, 89)
    assert r.machine.position is not None and r.machine.position.entry_time == T0 + 2 * DAY + MIN


def test_max_position_notional_rejects_the_entry_and_says_why(tmp_path):
    events = []
    r = runner(tmp_path, events, max_position_notional=999.0)
    bar(r, T0, 100, 100, 100, 100)
    bar(r, T0 + MIN, 100, 101, 99, 100)          # 10 x 100 = 1,000 > 999: rejected
    assert r.machine.position is None
    assert "max_position_notional: 1000.00 > 999.00" in r.rejections[0].reason
    (event,) = kinds(events, "risk_limit")[:1]
    assert (event["limit"], event["action"], event["value"]) == ("max_position_notional", "rejected",
                                                                1000.0)
    assert r.core.cash == 10_000.0 and not math.isnan(r.equity)


def test_risk_config_names_the_bad_field():
    with pytest.raises(ValueError, match="max_drawdown_pct"):
        RiskConfig(max_drawdown_pct=-1)
    with pytest.raises(ValueError, match="on_breach"):
        RiskConfig(on_breach="panic")


def test_the_owners_unblock_does_not_lift_a_drawdown_block(tmp_path):
    events = []
    r = runner(tmp_path, events, max_drawdown_pct=5.0)
    bar(r, T0, 100, 100, 100, 100)
    bar(r, T0 + MIN, 100, 101, 99, 100)          # long 10 @ 100, equity 10,000
    bar(r, T0 + 2 * MIN, 100, 100, 40, 40)       # equity 9,400: -6 %: blocked
    r.block_entries("portfolio says so")
    assert r.core.entries_blocked == "portfolio says so"     # the owner's reason shows first
    r.unblock_entries()
    assert r.core.entries_blocked.startswith("max_drawdown_pct")
    r.strategy.set_context("exit_now", True)
    bar(r, T0 + 3 * MIN, 40, 41, 39, 40)
    bar(r, T0 + 4 * MIN, 40, 41, 39, 40)          # exit at 40; no new entry
    bar(r, T0 + 5 * MIN, 40, 41, 39, 40)
    assert r.machine.position is None
    assert len(kinds(events, "risk_limit")) == 1


def test_a_short_does_not_scale_in_on_its_own_sale_proceeds(tmp_path):
    # Default sizing (size_fraction 0.5) uses the cash a long of the same size would have left,
    # as for a long: short 50 @ 100 from 10,000 (cash 15,000, of which 2 x 5,000 back the
    # short: 5,000 free), then 0.5 x 5,000 / 100 = 25 more, then 0.5 x 2,500 / 100 = 12.5.
    path = tmp_path / "short.lua"
    path.write_text("""
function detect_opportunity(md, ctx, ind) return {reason = "go"} end
function filter_commitment(md, ctx, ind) return {action = "enter_short"} end
function manage_position(md, ctx, ind) return {action = "enter_short"} end
""")
    r = SymbolRunner(SYMBOL, path, execution=ExecutionConfig(starting_cash=10_000.0, size_fraction=0.5))
    for i in range(4):
        bar(r, T0 + i * MIN, 100, 100, 100, 100)
    assert [lot["quantity"] for lot in r.core.lots()] == [50.0, 25.0, 12.5]
    assert r.core.cash == 10_000.0 + 100 * 87.5 and r.equity == 10_000.0
