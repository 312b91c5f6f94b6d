"""Limit and stop orders, position management and sizing on small hand-made bars.

Every expected number is worked out by hand in the comments from the rules of docs/orders.md
(never from this code's output): a limit or stop order works from the bar after the decision;
a buy limit fills at ``min(open, limit)`` once ``low <= limit``, a buy stop at
``max(open, stop)`` once ``high >= stop`` (mirrored for sells); expiry in bars and ms;
cancel and replace; scaling in (average price, per-lot trades); partial exits oldest lot
first; trailing stops, breakeven and time stops at the close, applied from the next bar; the
sizing modes with lot-size rounding and the minimum notional.

The strategies are written per test: `F` maps a bar index to the action `filter_commitment`
returns on it, `M` the one `manage_position` returns; `detect_opportunity` starts an analysis
on every flat bar from `setup` on. Each call logs what the strategy sees (`indicators.order`
and `indicators.position`), parsed back by `seen`.
"""

from __future__ import annotations

import logging
import math

import pytest

from tradesim import MarketData
from tradesim.runner import SymbolRunner
from tradesim.runner.execution import ExecutionConfig

T0 = 28_333_332 * 60_000  # an even minute count
MIN = 60_000
SYMBOL = "BTCUSDT"

SCRIPT = """
name = "orders_case"
local T0, MIN = {t0}, 60000
local function bar(md) return (md.timestamp - T0) // MIN end
local F = {{ {filter} }}
local M = {{ {manage} }}

local function show(where, md, ind)
  local o, p = ind.order, ind.position
  log(where, bar(md), o and o.type, o and o.side, o and o.limit_price, o and o.stop_price, o and o.quantity,
      o and o.placed_time, o and o.expires_time, p and p.quantity, p and p.entry_price, p and p.stop_loss,
      p and p.take_profit)
end

function detect_opportunity(md, ctx, ind)
  show("detect", md, ind)
  if bar(md) >= {setup} and bar(md) <= {until} then return {{reason = "go"}} end
  return nil
end

function filter_commitment(md, ctx, ind)
  show("filter", md, ind)
  {filter_extra}
  return F[bar(md)]
end

function manage_position(md, ctx, ind)
  show("manage", md, ind)
  return M[bar(md)]
end
"""

FIELDS = ("where", "bar", "type", "side", "limit_price", "stop_price", "quantity", "placed_time", "expires_time",
          "pos_quantity", "entry_price", "stop_loss", "take_profit")


def ts(i):
    return T0 + i * MIN


def strategy(tmp_path, filter=None, manage=None, setup=1, until=10**6, filter_extra="", name="orders_case.lua"):
    def table(actions):
        return ", ".join(f"[{k}] = {{{v}}}" for k, v in (actions or {}).items())

    path = tmp_path / name
    path.write_text(SCRIPT.format(t0=T0, filter=table(filter), manage=table(manage), setup=setup, until=until,
                                  filter_extra=filter_extra))
    return path


def run(tmp_path, rows, *, filter=None, manage=None, setup=1, until=10**6, execution=None, stamps=None,
        close=False, **kw):
    """Feed (open, high, low, close) rows as bars 0, 1, ... (or at `stamps`); returns the runner."""
    runner = SymbolRunner(SYMBOL, strategy(tmp_path, filter, manage, setup, until), execution=execution, **kw)
    events = []
    runner.record_to(events.append)
    runner.test_events = events
    for i, (o, h, l, c) in enumerate(rows):
        runner.process(MarketData(SYMBOL, stamps[i] if stamps else ts(i), o, h, l, c, 1.0))
    if close:
        runner.close_position()
    return runner


def seen(caplog, where=None):
    """The strategy's log lines as dicts (FIELDS), by call site and bar."""
    out = []
    for rec in caplog.records:
        if rec.name != "tradesim.strategy" or not rec.getMessage().startswith("orders_case: "):
            continue
        values = rec.getMessage()[len("orders_case: "):].split("\t")

        def conv(v):
            if v == "nil":
                return None
            try:
                return int(v)
            except ValueError:
                try:
                    return float(v)
                except ValueError:
                    return v
        row = dict(zip(FIELDS, map(conv, values)))
        if where is None or row["where"] == where:
            out.append(row)
    return out


def at(caplog, where, bar):
    rows = [r for r in seen(caplog, where) if r["bar"] == bar]
    assert len(rows) == 1, (where, bar, seen(caplog))
    return rows[0]


def kinds(runner, kind):
    return [e for e in runner.test_events if e.get("type") == kind]


def trades(runner):
    return [(t.side, t.entry_bar, t.exit_bar, t.quantity, t.entry_price, t.exit_price) for t in runner.trades]


FLAT = (100.0, 101.0, 99.0, 100.0)


@pytest.fixture(autouse=True)
def _log_info(caplog):
    caplog.set_level(logging.INFO, logger="tradesim.strategy")


# --------------------------------------------------------------------------- limit orders

# Decision on bar 1 (whose low 97 is below the limit: not checked, the order works from bar 2);
# bar 2 stays above 98; bar 3 trades through 98 from an open of 99.5; exit decided on bar 4,
# filled at bar 5's open 101.
LIMIT_ROWS = [FLAT, (100.0, 101.0, 97.0, 100.0), (100.0, 101.0, 98.5, 100.0), (99.5, 100.0, 97.0, 99.0),
              (99.0, 100.0, 98.0, 99.5), (101.0, 102.0, 100.0, 101.0)]
LIMIT_BUY = 'action = "enter_long", limit_price = 98, quantity = 1'


def test_buy_limit_touched_fills_at_the_limit_from_the_bar_after_the_decision(tmp_path, caplog):
    r = run(tmp_path, LIMIT_ROWS, filter={1: LIMIT_BUY}, manage={4: 'action = "exit"'},
            execution=ExecutionConfig(slippage_bps=10.0))
    # no slippage on a limit fill: 98; the market exit at 101 * (1 - 0.001) = 100.899
    assert trades(r) == [("long", 3, 5, 1.0, 98.0, pytest.approx(100.899, rel=1e-13))]
    assert r.trades[0].pnl == pytest.approx(2.899, rel=1e-12)
    # while it works, filter_commitment sees it (bar 2); on the fill bar manage_position runs
    o = at(caplog, "filter", 2)
    assert (o["type"], o["side"], o["limit_price"], o["stop_price"], o["quantity"], o["placed_time"],
            o["expires_time"]) == ("limit", "long", 98.0, None, 1.0, ts(1), None)
    assert at(caplog, "manage", 3)["entry_price"] == 98.0 and at(caplog, "manage", 3)["type"] is None


def test_buy_limit_gapped_through_fills_at_the_open(tmp_path):
    rows = LIMIT_ROWS[:3] + [(97.0, 98.0, 96.0, 97.5)] + LIMIT_ROWS[4:]
    r = run(tmp_path, rows, filter={1: LIMIT_BUY}, manage={4: 'action = "exit"'})
    assert trades(r) == [("long", 3, 5, 1.0, 97.0, 101.0)]   # min(open 97, limit 98)


def test_sell_limit_fills_at_the_limit_or_a_higher_open(tmp_path):
    rows = [FLAT, FLAT, (100.0, 101.5, 99.0, 101.0), (101.0, 102.5, 100.0, 102.0), (103.0, 104.0, 102.0, 103.0),
            (101.0, 102.0, 100.0, 101.0)]
    sell = 'action = "enter_short", limit_price = 102, quantity = 2'
    r = run(tmp_path, rows, filter={1: sell}, manage={4: 'action = "exit"'})
    assert trades(r) == [("short", 3, 5, 2.0, 102.0, 101.0)]        # high 102.5 >= 102 on bar 3
    r = run(tmp_path, rows[:3] + [(102.5, 103.0, 101.0, 102.0)] + rows[4:], filter={1: sell},
            manage={4: 'action = "exit"'})
    assert trades(r)[0][4] == 102.5                                  # max(open 102.5, limit 102)
    assert r.trades[0].pnl == pytest.approx(2 * (102.5 - 101.0))


def test_limit_not_reached_expires_after_expiry_bars(tmp_path, caplog):
    # Lows 98.5, 98.2, then 97: the order works on bars 2 and 3 (expiry_bars = 2) and is gone on bar 4.
    rows = [FLAT, FLAT, (100.0, 101.0, 98.5, 100.0), (99.0, 100.0, 98.2, 99.0), (99.0, 100.0, 97.0, 99.0),
            FLAT]
    r = run(tmp_path, rows, filter={1: LIMIT_BUY + ", expiry_bars = 2"})
    assert r.trades == [] and r.machine.position is None
    cancelled = kinds(r, "order_cancelled")
    assert [(e["timestamp"], e["reason"]) for e in cancelled] == [(ts(3), "expired")]
    assert at(caplog, "filter", 2)["type"] == "limit"
    assert at(caplog, "filter", 3)["type"] is None       # expired after bar 3's check: ANALYZING, no order
    assert r.machine.state.name == "ANALYZING"
    # One more bar of life (expiry_bars = 3) and bar 4's low fills it at 98.
    r = run(tmp_path, rows, filter={1: LIMIT_BUY + ", expiry_bars = 3"}, close=True)
    assert trades(r)[0][:5] == ("long", 4, 5, 1.0, 98.0)


def test_limit_expiry_in_ms_counts_time_not_bars(tmp_path, caplog):
    # Bars at minutes 0, 1, 2, 4, 5 (minute 3 missing). The order decided at minute 1 with
    # expiry_ms = 2 min works on bars opening at most at minute 3: only minute 2's bar.
    stamps = [ts(0), ts(1), ts(2), ts(4), ts(5)]
    rows = [FLAT, FLAT, (100.0, 101.0, 98.5, 100.0), (99.0, 100.0, 97.0, 99.0), FLAT]
    r = run(tmp_path, rows, stamps=stamps, filter={1: LIMIT_BUY + f", expiry_ms = {2 * MIN}"})
    assert r.trades == [] and r.machine.position is None
    assert at(caplog, "filter", 2)["expires_time"] == ts(1) + 2 * MIN
    # 3 minutes: minute 4's bar is still inside (open time <= minute 1 + 3 min) and fills at 98
    r = run(tmp_path, rows, stamps=stamps, filter={1: LIMIT_BUY + f", expiry_ms = {3 * MIN}"}, close=True)
    assert trades(r)[0][:5] == ("long", 3, 4, 1.0, 98.0)
    # expiry_bars = 2 on the same bars is the second bar after the decision: minute 4 again
    r = run(tmp_path, rows, stamps=stamps, filter={1: LIMIT_BUY + ", expiry_bars = 2"}, close=True)
    assert trades(r)[0][:5] == ("long", 3, 4, 1.0, 98.0)


def test_cancel_order_and_cancel_analysis_cancel_the_working_order(tmp_path, caplog):
    r = run(tmp_path, LIMIT_ROWS, filter={1: LIMIT_BUY, 2: 'action = "cancel_order"'})
    assert r.trades == [] and r.machine.position is None
    assert len(kinds(r, "order_cancelled")) == 1
    assert at(caplog, "filter", 3)["type"] is None and r.machine.state.name == "ANALYZING"
    # cancel_analysis cancels it too and returns to IDLE
    r = run(tmp_path, LIMIT_ROWS, filter={1: LIMIT_BUY, 2: 'action = "cancel_analysis"'}, until=1)
    assert r.trades == [] and r.machine.state.name == "IDLE"
    # cancel_order without a working order is rejected, naming why
    r = run(tmp_path, LIMIT_ROWS, filter={1: 'action = "cancel_order"'})
    assert len(r.rejections) == 1 and r.rejections[0].action == "cancel_order"


def test_a_new_entry_replaces_the_working_order(tmp_path, caplog):
    # 98 placed on bar 1, replaced by 97 on bar 2; bar 3 touches 98 (low 97.5) but not 97; bar 4 fills 97.
    rows = [FLAT, FLAT, (100.0, 101.0, 98.5, 100.0), (99.0, 100.0, 97.5, 99.0), (98.0, 99.0, 96.5, 98.0),
            (99.0, 100.0, 98.0, 99.0)]
    r = run(tmp_path, rows, filter={1: LIMIT_BUY, 2: 'action = "enter_long", limit_price = 97, quantity = 1'},
            close=True)
    assert trades(r)[0][:5] == ("long", 4, 5, 1.0, 97.0)
    assert [e["reason"] for e in kinds(r, "order_cancelled")] == ["replaced"]
    assert len(kinds(r, "order_placed")) == 2
    assert at(caplog, "filter", 3)["limit_price"] == 97.0 and at(caplog, "filter", 3)["placed_time"] == ts(2)


def test_both_limit_and_stop_price_is_an_invalid_action_naming_the_fields(tmp_path):
    r = run(tmp_path, LIMIT_ROWS, filter={1: LIMIT_BUY + ", stop_price = 102"})
    assert r.trades == [] and len(r.errors) == 1
    assert "limit_price" in r.errors[0].message and "stop_price" in r.errors[0].message


# --------------------------------------------------------------------------- stop orders

# Buy stop 102 decided on bar 1 (whose high 103 is not checked); bar 2 peaks at 101.5; bar 3 trades
# through 102 from 101 (fill 102, slippage applies), or opens at 103 (a gap: fill at 103).
STOP_ROWS = [FLAT, (100.0, 103.0, 99.0, 100.0), (100.0, 101.5, 99.0, 101.0), (101.0, 103.0, 100.5, 102.5),
             (102.5, 104.0, 102.0, 103.0), (104.0, 105.0, 103.0, 104.0)]
STOP_BUY = 'action = "enter_long", stop_price = 102, quantity = 1'


def test_buy_stop_touched_fills_at_the_stop_with_slippage(tmp_path):
    r = run(tmp_path, STOP_ROWS, filter={1: STOP_BUY}, manage={4: 'action = "exit"'},
            execution=ExecutionConfig(slippage_bps=10.0))
    # 102 * 1.001 = 102.102; exit at 104 * 0.999 = 103.896
    assert trades(r) == [("long", 3, 5, 1.0, pytest.approx(102.102, rel=1e-13),
                          pytest.approx(103.896, rel=1e-13))]


def test_buy_stop_gapped_fills_at_the_open(tmp_path):
    rows = STOP_ROWS[:3] + [(103.0, 104.0, 102.5, 103.5)] + STOP_ROWS[4:]
    r = run(tmp_path, rows, filter={1: STOP_BUY}, manage={4: 'action = "exit"'})
    assert trades(r) == [("long", 3, 5, 1.0, 103.0, 104.0)]     # max(open 103, stop 102)


def test_sell_stop_fills_at_the_stop_or_a_lower_open(tmp_path):
    rows = [FLAT, FLAT, (100.0, 100.5, 98.5, 99.0), (99.0, 99.5, 97.5, 98.0), (98.0, 98.5, 97.0, 97.5),
            (97.0, 98.0, 96.0, 97.0)]
    sell = 'action = "enter_short", stop_price = 98, quantity = 1'
    r = run(tmp_path, rows, filter={1: sell}, manage={4: 'action = "exit"'})
    assert trades(r) == [("short", 3, 5, 1.0, 98.0, 97.0)]
    r = run(tmp_path, rows[:3] + [(97.5, 98.0, 97.0, 97.8)] + rows[4:], filter={1: sell},
            manage={4: 'action = "exit"'})
    assert trades(r) == [("short", 3, 5, 1.0, 97.5, 97.0)]     # min(open 97.5, stop 98)


def test_stop_entry_exits_at_its_take_profit_on_the_fill_bar_when_the_stop_loss_was_not_reached(tmp_path):
    # stop 102, take-profit 104, stop-loss 99; bar 3 (101, 105, 100.5): up through 102 and on to 104
    rows = STOP_ROWS[:3] + [(101.0, 105.0, 100.5, 104.5)] + STOP_ROWS[4:]
    r = run(tmp_path, rows, filter={1: STOP_BUY + ", stop_loss = 99, take_profit = 104"})
    assert trades(r) == [("long", 3, 3, 1.0, 102.0, 104.0)]
    assert r.trades[0].exit_reason == "take_profit" and not r.trades[0].ambiguous
    # the same bar also reaching the stop-loss (low 98.5): the order inside it is unknown, so the
    # levels wait for the next bar (bar 4: 102.5 .. 104 exits at the take-profit 104), flagged
    rows = STOP_ROWS[:3] + [(101.0, 105.0, 98.5, 103.0)] + STOP_ROWS[4:]
    r = run(tmp_path, rows, filter={1: STOP_BUY + ", stop_loss = 99, take_profit = 104"})
    assert trades(r) == [("long", 3, 4, 1.0, 102.0, 104.0)]
    assert r.trades[0].ambiguous


def test_limit_entry_levels_apply_from_the_next_bar(tmp_path):
    # limit 98 with take-profit 100: bar 3 fills at 98 and reaches 100.2, not taken (unknown order
    # inside the bar); bar 4 (99.6 .. 100.5) takes it at 100. The trade is flagged ambiguous.
    rows = LIMIT_ROWS[:3] + [(99.5, 100.2, 97.0, 99.0), (99.6, 100.5, 99.0, 100.0), FLAT]
    r = run(tmp_path, rows, filter={1: LIMIT_BUY + ", stop_loss = 96, take_profit = 100"})
    assert trades(r) == [("long", 3, 4, 1.0, 98.0, 100.0)]
    assert r.trades[0].exit_reason == "take_profit" and r.trades[0].ambiguous


def test_levels_are_checked_against_the_order_price_and_the_fill(tmp_path):
    # stop_loss 99 above the limit 98: rejected when placed, naming the level and the price
    r = run(tmp_path, LIMIT_ROWS, filter={1: LIMIT_BUY + ", stop_loss = 99"})
    assert r.trades == [] and len(r.rejections) == 1
    assert "stop_loss" in r.rejections[0].reason and "98" in r.rejections[0].reason
    # stop_loss 97 is fine at 98, but bar 3 gaps to 96.5: the fill (96.5) is beyond the stop,
    # so the entry is rejected (backtesting.py would open it; see docs/orders.md)
    rows = LIMIT_ROWS[:3] + [(96.5, 97.0, 96.0, 96.8)] + LIMIT_ROWS[4:]
    r = run(tmp_path, rows, filter={1: LIMIT_BUY + ", stop_loss = 97"})
    assert r.trades == [] and r.machine.position is None
    assert len(r.rejections) == 1 and "96.5" in r.rejections[0].reason


def test_a_gap_beyond_the_take_profit_exits_there_even_if_the_bar_reaches_the_stop(tmp_path):
    # long at bar 2's open 100, stop 95, target 104; bar 3 opens at 105 and falls to 94:
    # the open decides (take-profit at 105), not ambiguous. (backtesting.py processes its stop
    # order first and would exit at 95: the one documented difference of exits.)
    rows = [FLAT, FLAT, FLAT, (105.0, 106.0, 94.0, 95.0), FLAT]
    r = run(tmp_path, rows, filter={1: 'action = "enter_long", quantity = 1, stop_loss = 95, take_profit = 104'})
    assert trades(r) == [("long", 2, 3, 1.0, 100.0, 105.0)]
    assert r.trades[0].exit_reason == "take_profit" and not r.trades[0].ambiguous


# --------------------------------------------------------------------------- scaling in, partial exits

# Market entry of 1 decided on bar 1 (fill at bar 2's open 100); 3 more decided on bar 2 (fill at bar 3's
# open 104). Opens 100, 104, 106, 108, 110 on bars 2..6.
SCALE_ROWS = [FLAT, FLAT, (100.0, 102.0, 99.0, 101.0), (104.0, 106.0, 103.0, 105.0), (106.0, 107.0, 105.0, 106.0),
              (108.0, 109.0, 107.0, 108.0), (110.0, 111.0, 109.0, 110.0)]


def test_scaling_in_averages_the_entry_and_keeps_one_trade_per_lot(tmp_path, caplog):
    r = run(tmp_path, SCALE_ROWS, filter={1: 'action = "enter_long", quantity = 1'},
            manage={2: 'action = "enter_long", quantity = 3', 3: 'action = "exit"'},
            execution=ExecutionConfig(commission_bps=10.0))
    pos = at(caplog, "manage", 3)
    # (1 * 100 + 3 * 104) / 4 = 103
    assert (pos["pos_quantity"], pos["entry_price"]) == (4.0, 103.0)
    # both lots exit at bar 4's open 106: lot 1 gains 6, lot 2 3 * 2 = 6
    assert trades(r) == [("long", 2, 4, 1.0, 100.0, 106.0), ("long", 3, 4, 3.0, 104.0, 106.0)]
    # fees per lot, 10 bps of each side's notional: (100 + 106) * 0.001 and 3 * (104 + 106) * 0.001
    assert [t.fees for t in r.trades] == pytest.approx([0.206, 0.63], rel=1e-12)
    assert [t.pnl for t in r.trades] == pytest.approx([6 - 0.206, 6 - 0.63], rel=1e-12)
    assert r.equity == pytest.approx(10_000.0 + 12 - 0.836, rel=1e-12)


def test_scaling_in_with_new_levels_replaces_the_positions(tmp_path, caplog):
    # the scale-in's levels are checked against its fill (bar 3's open 104), as an entry's are:
    # 100.5 < 104 < 120
    r = run(tmp_path, SCALE_ROWS, filter={1: 'action = "enter_long", quantity = 1, stop_loss = 90'},
            manage={2: 'action = "enter_long", quantity = 1, stop_loss = 100.5, take_profit = 120'})
    pos = at(caplog, "manage", 3)
    assert (pos["stop_loss"], pos["take_profit"]) == (100.5, 120.0)
    assert r.machine.position.quantity == 2.0 and r.machine.position.stop_loss == 100.5
    # a scale-in stop at or above its fill is rejected, and nothing is added or moved (not even a
    # valid take-profit given with it)
    r = run(tmp_path, SCALE_ROWS, filter={1: 'action = "enter_long", quantity = 1, stop_loss = 90'},
            manage={2: 'action = "enter_long", quantity = 1, stop_loss = 105, take_profit = 130'})
    assert len(r.rejections) == 1 and "105" in r.rejections[0].reason and "104" in r.rejections[0].reason
    assert r.machine.position.quantity == 1.0 and r.machine.position.stop_loss == 90.0
    assert math.isnan(r.machine.position.take_profit)


def test_opposite_entry_while_in_position_is_rejected(tmp_path):
    r = run(tmp_path, SCALE_ROWS, filter={1: 'action = "enter_long", quantity = 1'},
            manage={2: 'action = "enter_short", quantity = 1'})
    assert len(r.rejections) == 1 and r.rejections[0].action == "enter_short"
    assert r.machine.position.quantity == 1.0


def test_partial_exits_close_the_oldest_lots_first(tmp_path, caplog):
    # lots: 1 @ 100 (bar 2), 3 @ 104 (bar 3). exit 2 on bar 3 -> bar 4's open 106 closes lot 1 and 1 of lot 2;
    # exit fraction 0.5 of the 2 left on bar 4 -> bar 5's open 108 closes 1 of lot 2; exit on bar 5 -> the
    # last unit at bar 6's open 110.
    r = run(tmp_path, SCALE_ROWS, filter={1: 'action = "enter_long", quantity = 1'},
            manage={2: 'action = "enter_long", quantity = 3', 3: 'action = "exit", quantity = 2',
                    4: 'action = "exit", fraction = 0.5', 5: 'action = "exit"'})
    assert trades(r) == [("long", 2, 4, 1.0, 100.0, 106.0), ("long", 3, 4, 1.0, 104.0, 106.0),
                         ("long", 3, 5, 1.0, 104.0, 108.0), ("long", 3, 6, 1.0, 104.0, 110.0)]
    assert [t.pnl for t in r.trades] == pytest.approx([6.0, 2.0, 4.0, 6.0])
    # after the first partial exit 2 units of lot 2 remain: entry price 104
    pos = at(caplog, "manage", 4)
    assert (pos["pos_quantity"], pos["entry_price"]) == (2.0, 104.0)
    assert at(caplog, "manage", 5)["pos_quantity"] == 1.0
    assert r.machine.position is None and r.equity == pytest.approx(10_018.0)


def test_partial_exit_larger_than_the_position_closes_it(tmp_path):
    r = run(tmp_path, SCALE_ROWS, filter={1: 'action = "enter_long", quantity = 1'},
            manage={3: 'action = "exit", quantity = 5'})
    # either closed whole at bar 4's open or rejected: never a short left behind
    assert r.machine.position is None or r.machine.position.side.name == "LONG"
    assert all(t.side == "long" for t in r.trades)


# --------------------------------------------------------------------------- trailing, breakeven, time stop

# Long 1 at bar 2's open 100 (decided on bar 1). Closes 101, 103, 102, 100 on bars 2..5; lows 100, 101, 99.5
# on bars 3..5.
TRAIL_ROWS = [FLAT, FLAT, (100.0, 102.0, 99.0, 101.0), (101.0, 104.0, 100.0, 103.0),
              (103.0, 103.5, 101.0, 102.0), (102.0, 102.5, 99.5, 100.0), FLAT]
ENTER = 'action = "enter_long", quantity = 1'


@pytest.mark.parametrize("field, stops, exit_price", [
    # distance 3: 101-3 = 98, 103-3 = 100, 102-3 = 99 (looser: kept at 100); bar 5's low 99.5 hits 100
    ("trailing_stop = 3", [98.0, 100.0, 100.0], 100.0),
    # 2 % of the close: 98.98, 100.94, 99.96 (kept 100.94); bar 5 hits 100.94
    ("trailing_percent = 2", [98.98, 100.94, 100.94], 100.94),
    # ATR(2), Wilder: TR from bar 1 = 2, 3 (bar 2: 102-99), 4 (bar 3: 104-100), 2.5 (bar 4: max(2.5, 0.5, 2));
    # ATR = 2.5 on bar 2, (2.5 + 4) / 2 = 3.25 on bar 3, (3.25 + 2.5) / 2 = 2.875 on bar 4; multiple 1:
    # stops 101-2.5 = 98.5, 103-3.25 = 99.75, 102-2.875 = 99.125 (kept 99.75); bar 5 hits 99.75
    ("trailing_atr = 1, atr_period = 2", [98.5, 99.75, 99.75], 99.75),
])
def test_trailing_stop_follows_the_close_and_never_loosens(tmp_path, caplog, field, stops, exit_price):
    r = run(tmp_path, TRAIL_ROWS, filter={1: f"{ENTER}, {field}"})
    # manage_position sees the stop moved at its bar's close (README, Execution step 3)
    assert [at(caplog, "manage", k)["stop_loss"] for k in (2, 3, 4)] == pytest.approx(stops, rel=1e-12)
    # A loosened stop (bar 4's close) would not be hit by bar 5's low 99.5, or at another price.
    (t,) = r.trades
    assert (t.entry_bar, t.exit_bar, t.entry_price) == (2, 5, 100.0)
    assert t.exit_price == pytest.approx(exit_price, rel=1e-12)
    assert t.exit_reason == "trailing_stop"


def test_trailing_stop_of_a_short_is_mirrored(tmp_path):
    # Short 1 at bar 2's open 100, distance 3. Closes 99, 97, 98: stops 102, 100, 101 (kept 100);
    # bar 5's high 100.5 hits 100.
    rows = [FLAT, FLAT, (100.0, 101.0, 98.0, 99.0), (99.0, 100.0, 96.0, 97.0), (97.0, 99.0, 96.5, 98.0),
            (98.0, 100.5, 97.5, 100.0), FLAT]
    r = run(tmp_path, rows, filter={1: 'action = "enter_short", quantity = 1, trailing_stop = 3'})
    (t,) = r.trades
    assert (t.side, t.exit_bar, t.exit_price, t.exit_reason) == ("short", 5, 100.0, "trailing_stop")


def test_breakeven_moves_the_stop_to_the_entry(tmp_path, caplog):
    # entry 100, stop 95, breakeven after 2: close 101 (+1) no; close 103 (+3) -> stop 100; bar 5's low
    # 99.5 exits at 100
    r = run(tmp_path, TRAIL_ROWS, filter={1: f"{ENTER}, stop_loss = 95, breakeven_after = 2"})
    assert at(caplog, "manage", 2)["stop_loss"] == 95.0
    assert at(caplog, "manage", 4)["stop_loss"] == 100.0
    (t,) = r.trades
    assert (t.exit_bar, t.exit_price, t.exit_reason) == (5, 100.0, "breakeven_stop")


@pytest.mark.parametrize("fill, entry_bar, exit_bar, exit_price", [("next_open", 2, 5, 102.0), ("close", 1, 4, 102.0)])
def test_time_stop_exits_after_n_bars_held(tmp_path, fill, entry_bar, exit_bar, exit_price):
    # next_open: filled at bar 2's open (bar 1 held), bars 3, 4 -> at bar 4's close the exit is placed: bar
    # 5's open 102. close: entry at bar 1's close 100, counted from the next bar (docs/orders.md: held N whole
    # bars either way): bars 2, 3, 4 -> exit at bar 4's close 102.
    r = run(tmp_path, TRAIL_ROWS, filter={1: f"{ENTER}, time_stop_bars = 3"},
            execution=ExecutionConfig(fill=fill))
    (t,) = r.trades
    assert (t.entry_bar, t.exit_bar, t.exit_price, t.exit_reason) == (entry_bar, exit_bar, exit_price, "time_stop")


def test_manage_position_runs_on_every_bar_held_including_the_time_stops(tmp_path, caplog):
    # The state is IN_POSITION until the exit fills, so manage_position runs on bars 2, 3 and 4 (the
    # bar whose close places the time stop) like on any bar held; a strategy that updates per-bar
    # state in its calls (README: script locals updated once per bar) must not miss bar 4.
    run(tmp_path, TRAIL_ROWS, filter={1: f"{ENTER}, time_stop_bars = 3"})
    assert [row["bar"] for row in seen(caplog, "manage")] == [2, 3, 4]
    assert 4 not in [row["bar"] for row in seen(caplog, "detect")]


def test_with_fill_at_close_the_strategy_manages_the_time_stops_bar_too(tmp_path, caplog):
    # docs/orders.md (time stop): "The strategy is still called on that bar (manage_position)". Entry at
    # bar 1's close; bars held 2, 3, 4; the exit is at bar 4's close, and manage_position runs on 2, 3, 4
    # (as for a strategy's own exit at a close, the strategy is flat again from the next bar).
    run(tmp_path, TRAIL_ROWS, filter={1: f"{ENTER}, time_stop_bars = 3"}, execution=ExecutionConfig(fill="close"))
    assert [row["bar"] for row in seen(caplog, "manage")] == [2, 3, 4]
    assert 4 not in [row["bar"] for row in seen(caplog, "detect")]


def test_while_a_time_stop_exit_is_queued_an_exit_is_the_same_exit_and_entries_are_rejected(tmp_path):
    # docs/orders.md (time stop): bar 4's close queues the exit; manage_position on bar 4 answers
    r = run(tmp_path, TRAIL_ROWS, filter={1: f"{ENTER}, time_stop_bars = 3"},
            manage={4: 'action = "exit", reason = "mine"'})
    assert trades(r) == [("long", 2, 5, 1.0, 100.0, 102.0)] and r.rejections == []
    r = run(tmp_path, TRAIL_ROWS, filter={1: f"{ENTER}, time_stop_bars = 3"},
            manage={4: 'action = "enter_long", quantity = 1'})
    assert trades(r) == [("long", 2, 5, 1.0, 100.0, 102.0)] and r.trades[0].exit_reason == "time_stop"
    assert len(r.rejections) == 1 and r.rejections[0].action == "enter_long"


def test_while_a_time_stop_exit_is_queued_a_level_update_is_rejected(tmp_path):
    # docs/orders.md (time stop): "any other action is rejected" (the core lets level updates through)
    r = run(tmp_path, TRAIL_ROWS, filter={1: f"{ENTER}, time_stop_bars = 3"},
            manage={4: 'action = "update_stop_loss", price = 99'})
    assert trades(r) == [("long", 2, 5, 1.0, 100.0, 102.0)] and r.trades[0].exit_reason == "time_stop"
    assert len(r.rejections) == 1 and r.rejections[0].action == "update_stop_loss"


# --------------------------------------------------------------------------- sizing

SIZE_ROWS = [FLAT, FLAT, (102.0, 103.0, 101.0, 102.0), FLAT]


@pytest.mark.parametrize("fields, lot_size, quantity", [
    ("quantity = 0.123456", 0.001, 0.123),
    # 1000 / 102 = 9.8039...; lot 0.5 -> 9.5
    ("notional = 1000", 0.5, 9.5),
    # 0.5 * 10000 / 102 = 49.0196...; lot 1 -> 49
    ("equity_fraction = 0.5", 1.0, 49.0),
    # 0.01 * 10000 / (102 - 95) = 14.2857...; lot 0.5 -> 14
    ("risk_fraction = 0.01, stop_loss = 95", 0.5, 14.0),
    # no lot size: the exact quotient
    ("notional = 1000", 0.0, 1000 / 102),
    ("risk_fraction = 0.01, stop_loss = 95", 0.0, 100 / 7),
])
def test_sizing_modes_round_down_to_the_lot_size(tmp_path, fields, lot_size, quantity):
    exe = ExecutionConfig(lot_size=lot_size) if lot_size else ExecutionConfig()
    r = run(tmp_path, SIZE_ROWS, filter={1: f'action = "enter_long", {fields}'}, execution=exe)
    assert r.rejections == [] and r.errors == []
    assert r.machine.position.entry_price == 102.0
    assert r.machine.position.quantity == pytest.approx(quantity, rel=1e-12)


def test_equity_fraction_counts_the_open_position_at_the_fill_price(tmp_path):
    # 1 unit bought at 100 (bar 2), then 0.5 of the equity added at bar 3's open 104: equity
    # = 10000 - 100 + 104 = 10004; 0.5 * 10004 / 104 = 48.0961...
    r = run(tmp_path, SCALE_ROWS, filter={1: ENTER}, manage={2: 'action = "enter_long", equity_fraction = 0.5'})
    assert r.machine.position.quantity == pytest.approx(1 + 5002 / 104, rel=1e-12)


def test_zero_lot_rejection_names_the_numbers_as_documented(tmp_path):
    # docs/orders.md: `quantity 0.0000042 rounds to 0 at lot_size 0.00001`
    r = run(tmp_path, SIZE_ROWS, filter={1: 'action = "enter_long", quantity = 0.0000042'},
            execution=ExecutionConfig(lot_size=0.00001))
    assert r.machine.position is None and len(r.rejections) == 1
    assert r.rejections[0].reason.startswith("quantity 0.0000042 rounds to 0 at lot_size 0.00001")


def test_min_notional_rejection_names_the_numbers(tmp_path):
    # 0.042 * 102 = 4.284 < 5 (docs/orders.md: `notional 4.2 < min_notional 5`)
    r = run(tmp_path, SIZE_ROWS, filter={1: 'action = "enter_long", quantity = 0.042'},
            execution=ExecutionConfig(min_notional=5.0))
    assert r.machine.position is None and len(r.rejections) == 1
    assert r.rejections[0].reason.startswith("notional 4.284 < min_notional 5 (quantity 0.042 at 102)")
    # a lot-rounded quantity whose notional is too small: 0.0499 -> 0.04 at lot 0.01, 4.08 < 5
    r = run(tmp_path, SIZE_ROWS, filter={1: 'action = "enter_long", quantity = 0.0499'},
            execution=ExecutionConfig(min_notional=5.0, lot_size=0.01))
    assert r.machine.position is None and r.rejections[0].reason.startswith("notional 4.08 < min_notional 5")


def test_risk_fraction_without_stop_loss_is_an_invalid_action(tmp_path):
    r = run(tmp_path, SIZE_ROWS, filter={1: 'action = "enter_long", risk_fraction = 0.01'})
    assert r.machine.position is None and len(r.errors) == 1
    assert "risk_fraction" in r.errors[0].message and "stop_loss" in r.errors[0].message


def test_two_sizing_fields_are_an_invalid_action(tmp_path):
    r = run(tmp_path, SIZE_ROWS, filter={1: 'action = "enter_long", quantity = 1, notional = 100'})
    assert r.machine.position is None and len(r.errors) == 1
    assert "quantity" in r.errors[0].message and "notional" in r.errors[0].message


@pytest.mark.parametrize("fields, message", [
    ('action = "enter_long", quantity = 1, expiry_bars = 3', "field 'expiry_bars' needs field 'limit_price'"),
    ('action = "enter_long", limit_price = 98, expiry_bars = 3, expiry_ms = 60000',
     "fields 'expiry_bars' and 'expiry_ms' exclude each other"),
    ('action = "enter_long", quantity = 1, trailing_stop = 2, trailing_percent = 1',
     "fields 'trailing_stop' and 'trailing_percent' exclude each other"),
    ('action = "enter_long", quantity = 1, atr_period = 5', "field 'atr_period' needs field 'trailing_atr'"),
    ('action = "enter_long", limit_price = 98, expiry_bars = 1.5',
     "expiry_bars = 1.5: must be a whole number in [1, 1000000000]"),
])
def test_invalid_order_fields_name_the_fields(tmp_path, fields, message):
    r = run(tmp_path, LIMIT_ROWS, filter={1: fields})
    assert r.machine.position is None and len(r.errors) == 1
    assert message in r.errors[0].message


def test_exit_with_quantity_and_fraction_is_invalid(tmp_path):
    r = run(tmp_path, SCALE_ROWS, filter={1: ENTER}, manage={2: 'action = "exit", quantity = 1, fraction = 0.5'})
    assert len(r.errors) == 1 and "'quantity' and 'fraction'" in r.errors[0].message
    assert r.machine.position.quantity == 1.0


# --------------------------------------------------------------------------- more order rules

def test_analysis_timeout_cancels_the_working_order(tmp_path):
    # 2 bars of ANALYZING after the setup bar (2, 3), the timeout on bar 4 at the latest: back to IDLE,
    # the order gone before bar 5's low 97
    above = (99.0, 100.0, 98.2, 99.0)
    rows = [FLAT, FLAT, (100.0, 101.0, 98.5, 100.0), above, above, (99.0, 100.0, 97.0, 99.0), FLAT]
    r = run(tmp_path, rows, filter={1: LIMIT_BUY}, until=1, analysis_timeout_bars=2)
    assert r.trades == [] and r.machine.position is None and r.machine.state.name == "IDLE"
    assert len(kinds(r, "order_cancelled")) == 1


def test_an_order_sized_at_its_fill_shows_no_quantity(tmp_path, caplog):
    r = run(tmp_path, LIMIT_ROWS, filter={1: 'action = "enter_long", limit_price = 98, notional = 490'}, close=True)
    assert at(caplog, "filter", 2)["quantity"] is None
    assert r.trades[0].quantity == pytest.approx(490 / 98, rel=1e-12)     # sized at the fill price 98


@pytest.mark.parametrize("fill", ["next_open", "close"])
def test_limit_orders_work_from_the_next_bar_with_either_fill_rule(tmp_path, fill):
    r = run(tmp_path, LIMIT_ROWS, filter={1: LIMIT_BUY}, execution=ExecutionConfig(fill=fill), close=True)
    assert trades(r)[0][:5] == ("long", 3, 5, 1.0, 98.0)


def test_a_market_entry_replaces_a_working_limit(tmp_path):
    r = run(tmp_path, LIMIT_ROWS, filter={1: LIMIT_BUY, 2: 'action = "enter_long", quantity = 2'}, close=True)
    # the market order fills at bar 3's open 99.5 (the limit 98 would have filled on bar 3 too)
    assert trades(r)[0][:5] == ("long", 3, 5, 2.0, 99.5)
    assert [e["reason"] for e in kinds(r, "order_cancelled")] == ["replaced"]


def test_a_trailing_stop_that_never_moved_exits_as_a_stop_loss(tmp_path):
    # stop 99.6 and distance 5: closes 101, 103, 102 give 96, 98, 97, all below 99.6: the stop stays;
    # bar 5's low 99.5 hits it (bar 2's low is 99.8 here)
    rows = TRAIL_ROWS[:2] + [(100.0, 102.0, 99.8, 101.0)] + TRAIL_ROWS[3:]
    r = run(tmp_path, rows, filter={1: f"{ENTER}, stop_loss = 99.6, trailing_stop = 5"})
    (t,) = r.trades
    assert (t.exit_bar, t.exit_price, t.exit_reason) == (5, 99.6, "stop_loss")


def test_risk_fraction_of_a_short(tmp_path):
    # short at bar 2's open 102 with stop 105: 0.02 * 10000 / 3 = 66.66...
    r = run(tmp_path, SIZE_ROWS, filter={1: 'action = "enter_short", risk_fraction = 0.02, stop_loss = 105'})
    assert r.machine.position.side.name == "SHORT"
    assert r.machine.position.quantity == pytest.approx(200 / 3, rel=1e-12)


def test_partial_exit_with_fill_at_close(tmp_path):
    # entry at bar 1's close 100 (2 units); half exits at bar 2's close 101, the rest at bar 3's close 103
    r = run(tmp_path, TRAIL_ROWS, filter={1: 'action = "enter_long", quantity = 2'},
            manage={2: 'action = "exit", fraction = 0.5', 3: 'action = "exit"'},
            execution=ExecutionConfig(fill="close"))
    assert trades(r) == [("long", 1, 2, 1.0, 100.0, 101.0), ("long", 1, 3, 1.0, 100.0, 103.0)]


def test_breakeven_uses_the_average_entry_of_the_lots(tmp_path):
    # lots 1 @ 100 (bar 2) and 1 @ 104 (bar 3): average 102. Bar 2's close 101 is +1 from 100 (no move);
    # bar 3's close 105 is +3 from 102 (>= 2): the stop moves from 90 to 102; bar 4's low 101 exits both
    # lots at 102 (+2 and -2)
    rows = SCALE_ROWS[:4] + [(104.0, 104.5, 101.0, 103.0), FLAT]
    r = run(tmp_path, rows, filter={1: f"{ENTER}, stop_loss = 90, breakeven_after = 2"},
            manage={2: 'action = "enter_long", quantity = 1'})
    assert trades(r) == [("long", 2, 4, 1.0, 100.0, 102.0), ("long", 3, 4, 1.0, 104.0, 102.0)]
    assert {t.exit_reason for t in r.trades} == {"breakeven_stop"}
    assert [t.pnl for t in r.trades] == pytest.approx([2.0, -2.0])


def test_limit_and_stop_orders_are_not_placed_while_in_position(tmp_path):
    # docs/orders.md: limit and stop orders are placed while flat; scaling in is a market order
    r = run(tmp_path, SCALE_ROWS, filter={1: ENTER},
            manage={2: 'action = "enter_long", limit_price = 99, quantity = 1'})
    assert r.machine.position.quantity == 1.0
    assert len(r.rejections) + len(r.errors) == 1
