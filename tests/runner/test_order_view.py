"""What a strategy and an owner see of a working order: `indicators.order` in Lua, the
runner's `state()`, and both kept across a hot reload (docs/orders.md)."""

from tradesim import MarketData
from tradesim.runner import SymbolRunner

MIN = 60_000
T0 = 28_333_332 * MIN
SYMBOL = "BTCUSDT"

# Places a buy limit at 95 (expiring at the decision bar + 10 minutes) on the first bar and
# copies what it sees of `indicators.order` into its context every bar.
VIEWER = """
name = "viewer"
local function look(ctx, ind)
  local o = ind.order
  ctx.has_order = o ~= nil
  if o then
    ctx.side, ctx.type, ctx.limit = o.side, o.type, o.limit_price
    ctx.stop_is_nil, ctx.placed, ctx.expires, ctx.qty = o.stop_price == nil, o.placed_time,
      o.expires_time, o.quantity
  end
end
function detect_opportunity(md, ctx, ind)
  return {reason = "setup"}
end
function filter_commitment(md, ctx, ind)
  look(ctx, ind)
  if not ctx.placed_once then
    ctx.placed_once = true
    return {action = "enter_long", limit_price = 95, quantity = 2, expiry_ms = 600000}
  end
  return nil
end
function manage_position(md, ctx, ind)
  look(ctx, ind)
  return nil
end
"""


def bar(r, i, o=100.0, h=101.0, l=99.0, c=100.0):
    r.process(MarketData(SYMBOL, T0 + i * MIN, o, h, l, c, 1.0))


def test_the_working_order_is_visible_to_the_strategy_and_the_owner(tmp_path):
    path = tmp_path / "viewer.lua"
    path.write_text(VIEWER)
    r = SymbolRunner(SYMBOL, path)
    bar(r, 0)                      # the order is placed at this close
    bar(r, 1)                      # low 99 > 95: still working
    ctx = r.strategy.context()
    assert ctx["has_order"] is True
    assert (ctx["side"], ctx["type"], ctx["limit"], ctx["stop_is_nil"]) == ("long", "limit", 95, True)
    assert (ctx["placed"], ctx["expires"], ctx["qty"]) == (T0, T0 + 600_000, 2)
    state = r.state()
    assert state["state"] == "ANALYZING" and state["working_order"]["type"] == "limit"
    assert state["working_order"]["price"] == 95.0 and state["working_order"]["expires_time"] == T0 + 600_000
    # A hot reload keeps the order, and shows it to the new version of the script.
    r.strategy.set_context("has_order", False)
    r.reload()
    bar(r, 2)
    assert r.strategy.context()["has_order"] is True
    # Filled at 95 on a bar reaching down to 94: the strategy sees no order any more.
    bar(r, 3, o=100.0, h=100.0, l=94.0, c=96.0)
    assert r.machine.position is not None and r.machine.position.entry_price == 95.0
    assert r.strategy.context()["has_order"] is False and r.state()["working_order"] is None


def test_an_order_past_its_time_expiry_is_dropped_before_the_bar_that_could_fill_it(tmp_path):
    path = tmp_path / "viewer.lua"
    path.write_text(VIEWER)
    events = []
    r = SymbolRunner(SYMBOL, path, on_event=events.append)
    bar(r, 0)                      # placed; works on bars opening at most T0 + 10 min
    bar(r, 10)                     # opens at T0 + 10 min: still works (low 99: no fill)
    assert r.core.working
    bar(r, 11, o=100.0, h=100.0, l=90.0, c=91.0)   # would fill, but the order expired first
    assert r.machine.position is None and not r.core.working
    cancelled = [e for e in events if e["type"] == "order_cancelled"]
    assert [(e["reason"], e["timestamp"]) for e in cancelled] == [("expired", T0 + 11 * MIN)]
    assert r.machine.state.name == "ANALYZING"
