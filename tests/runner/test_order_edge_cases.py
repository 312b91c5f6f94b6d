"""Edge cases of the order core found in review (docs/orders.md): rounding dust in partial
exits, replacements that are rejected, a working order whose fill is rejected, the entry gate's
answers, and trailing distances larger than the price."""

import math

from tradesim import MarketData
from tradesim.runner import SymbolRunner
from tradesim.runner.execution import ExecutionConfig

MIN = 60_000
T0 = 28_333_332 * MIN
SYMBOL = "BTCUSDT"


def plan_runner(tmp_path, plan, events=None, **execution):
    """`plan` maps a bar index to the Lua action table returned on that bar (any state)."""
    rows = "\n".join(f"  [{i}] = {{{table}}}," for i, table in plan.items())
    path = tmp_path / "plan.lua"
    path.write_text(f"""
local T0, MIN = {T0}, {MIN}
local plan = {{
{rows}
}}
local function act(md) return plan[(md.timestamp - T0) // MIN] end
function detect_opportunity(md, ctx, ind) if act(md) then return {{reason = "plan"}} end end
function filter_commitment(md, ctx, ind) return act(md) end
function manage_position(md, ctx, ind) return act(md) end
""")
    return SymbolRunner(SYMBOL, path, on_event=(events.append if events is not None else None),
                        execution=ExecutionConfig(**execution))


def bar(r, i, o=100.0, h=101.0, l=99.0, c=100.0):
    r.process(MarketData(SYMBOL, T0 + i * MIN, o, h, l, c, 1.0))


def test_a_fractional_exit_leaves_no_dust_trade(tmp_path):
    # lots 0.7 and 0.6; exit fraction 0.7 / 1.3 closes exactly the first lot: one trade, not two
    r = plan_runner(tmp_path, {0: 'action = "enter_long", quantity = 0.7',
                               1: 'action = "enter_long", quantity = 0.6',
                               2: 'action = "exit", fraction = 0.7 / 1.3'})
    for i in range(4):
        bar(r, i)
    assert [t.quantity for t in r.trades] == [0.7]
    assert [lot["quantity"] for lot in r.core.lots()] == [0.6]


def test_a_rejected_market_replacement_keeps_the_working_order(tmp_path):
    # fill="close": a buy limit at 95 works; a market entry sized to 0 at the lot size is
    # rejected at once, so the limit still works (and fills on a later dip)
    events = []
    r = plan_runner(tmp_path, {0: 'action = "enter_long", limit_price = 95, quantity = 1',
                               1: 'action = "enter_long", quantity = 0.0001'}, events,
                    fill="close", lot_size=0.01)
    bar(r, 0)
    bar(r, 1)
    assert r.core.working and "rounds to 0" in r.rejections[0].reason
    assert not [e for e in events if e["type"] == "order_cancelled"]
    bar(r, 2, o=100.0, h=100.0, l=94.0, c=96.0)
    assert r.machine.position is not None and r.machine.position.entry_price == 95.0


def test_a_working_order_whose_fill_is_rejected_says_so(tmp_path):
    events = []
    r = plan_runner(tmp_path, {0: 'action = "enter_long", limit_price = 95, quantity = 0.004'}, events,
                    min_notional=1.0)
    bar(r, 0)
    bar(r, 1, o=100.0, h=100.0, l=94.0, c=96.0)     # 0.004 x 95 = 0.38 < 1: rejected at the fill
    assert r.machine.position is None and not r.core.working
    assert "notional 0.38 < min_notional 1" in r.rejections[0].reason
    cancelled = [(e["reason"], e["timestamp"]) for e in events if e["type"] == "order_cancelled"]
    assert cancelled == [("rejected", T0 + MIN)]
    assert r.machine.state.name == "ANALYZING" and not r.machine.order_working


def test_a_partial_exit_below_min_notional_or_leaving_less_is_rejected(tmp_path):
    # 1 unit bought at the bar-1 open 100; min_notional 10. Bar 2 asks to sell 0.05 (5 at the bar-3
    # open 100 < 10); bar 3 asks to sell 0.95, which would leave 0.05 (5 < 10); bar 4 sells 0.5 (50,
    # leaving 50); bar 5 exits the rest whatever its size.
    r = plan_runner(tmp_path, {0: 'action = "enter_long", quantity = 1',
                               2: 'action = "exit", quantity = 0.05',
                               3: 'action = "exit", fraction = 0.95',
                               4: 'action = "exit", quantity = 0.5',
                               5: 'action = "exit"'}, min_notional=10.0)
    for i in range(7):
        bar(r, i)
    reasons = [x.reason for x in r.rejections]
    assert reasons[0].startswith("exit notional 5 < min_notional 10 (quantity 0.05 at 100)")
    assert reasons[1].startswith("the exit would leave 0.05 (notional 5) < min_notional 10")
    assert len(reasons) == 2
    assert [(t.quantity, t.exit_time) for t in r.trades] == [(0.5, T0 + 5 * MIN), (0.5, T0 + 6 * MIN)]


class Gate:
    def __init__(self, answer):
        self.answer, self.asked = answer, []

    def allow_entry(self, core, ts, side, quantity, price):
        self.asked.append((ts, side, quantity, price))
        return self.answer


def test_the_gate_rejects_only_with_a_reason(tmp_path):
    for answer, entered in ((None, True), (True, True), (False, True), ("portfolio full", False)):
        r = plan_runner(tmp_path, {0: 'action = "enter_long", quantity = 2'})
        gate = r.core.gate = Gate(answer)
        bar(r, 0)
        bar(r, 1, o=102.0, h=103.0)
        assert gate.asked == [(T0 + MIN, 1, 2.0, 102.0)]
        assert (r.machine.position is not None) == entered
        if not entered:
            assert r.rejections[0].reason == "portfolio full" and r.core.cash == 10_000.0


def test_a_trailing_distance_beyond_the_price_sets_no_stop(tmp_path):
    # a long trailing 150 below closes of 100: no stop at a negative price
    r = plan_runner(tmp_path, {0: 'action = "enter_long", quantity = 1, trailing_stop = 150'})
    for i in range(3):
        bar(r, i)
    assert r.machine.position is not None and math.isnan(r.machine.position.stop_loss)


def test_every_order_event_a_runner_emits_is_an_engine_event(tmp_path):
    # What the engine publishes (and a recorded stream carries) is what the runner emitted, field
    # for field: working orders, partial exits and risk events included.
    from tradesim.engine.events import event_from_runner_dict
    from tradesim.serve.broadcast import RUNNER_TYPES

    events = []
    r = plan_runner(tmp_path, {0: 'action = "enter_long", limit_price = 95, quantity = 2',
                               1: 'action = "enter_long", limit_price = 96, quantity = 2',
                               3: 'action = "exit", quantity = 1'}, events)
    bar(r, 0)
    bar(r, 1)                                          # replaced by the limit at 96
    bar(r, 2, o=100.0, h=100.0, l=95.5, c=97.0)        # filled at 96
    bar(r, 3)
    bar(r, 4)                                          # 1 of 2 sold at the open
    kinds = [e["type"] for e in events]
    for kind in ("order_placed", "order_cancelled", "position_opened", "position_reduced"):
        assert kind in kinds and kind in RUNNER_TYPES
    for e in events:
        mapped = event_from_runner_dict(e)
        assert mapped is not None, e["type"]
        cls, fields = mapped
        assert {k: v for k, v in e.items() if k not in ("type", "symbol", "strategy")} == {
            k: v for k, v in fields.items() if k not in ("symbol", "strategy")}


def test_every_booked_trade_reaches_the_events_and_a_batch_recording(tmp_path):
    # Lots 1, 2 and 0.5 (bar opens 100); exit 1.5 closes lot 1 and half of lot 2 (two trades, one
    # position_reduced); the exit of the rest closes 1.5 of lot 2 and lot 3 (two trades, two
    # position_closed events). Every trade is in some event, and a batch recording's rows expand
    # to the same events.
    from tradesim.recording.outcomes import expand_outcomes

    plan = {0: 'action = "enter_long", quantity = 1', 1: 'action = "enter_long", quantity = 2',
            2: 'action = "enter_long", quantity = 0.5', 3: 'action = "exit", quantity = 1.5',
            4: 'action = "exit"'}
    events = []
    live = plan_runner(tmp_path, plan, events)
    (tmp_path / "b").mkdir()
    batch = plan_runner(tmp_path / "b", plan)
    batch.record_to(lambda event: None, batch=True)
    for r in (live, batch):
        for i in range(6):
            bar(r, i)
    assert [t.quantity for t in live.trades] == [1.0, 0.5, 1.5, 0.5]
    reduced = [e for e in events if e["type"] == "position_reduced"]
    closed = [e for e in events if e["type"] == "position_closed"]
    assert [[t["quantity"] for t in e["trades"]] for e in reduced] == [[1.0, 0.5]]
    assert [e["trade"]["quantity"] for e in closed] == [1.5, 0.5]
    assert {e["timestamp"] for e in closed} == {T0 + 5 * MIN}
    booked = [t for e in reduced for t in e["trades"]] + [e["trade"] for e in closed]
    assert [(t["quantity"], t["entry_price"], t["pnl"]) for t in booked] == \
        [(t.quantity, t.entry_price, t.pnl) for t in live.trades]

    expanded = expand_outcomes({"runner": "r", "symbol": SYMBOL, "strategy": "plan", "seq": 1,
                                "indicators": [], "rows": batch.take_records()})
    def kept(evs):
        return [{k: v for k, v in e.items() if k not in ("runner", "seq", "sub", "time")} for e in evs
                if e["type"] in ("position_reduced", "position_closed", "position_opened")]
    assert kept(expanded) == kept(events)
