"""Properties of orders and position management over random bars and random (valid) actions.

Hypothesis draws a bar series and, per bar, an entry (market, limit or stop; long or short;
with or without stop-loss, take-profit, trailing stop, expiry; any sizing mode), a
`cancel_order`, or in position an exit (whole, by quantity, by fraction) or a scale-in. Then:

- cash + position value (signed quantity times the close) == equity at every bar;
- every fill (entry and exit, no slippage) is inside its bar's [low, high] (a gapped open
  is inside it too), and a long never sells above / buys below what the bar traded;
- valid actions never raise strategy errors (rejections are allowed: a level beyond a fill).
"""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradesim import MarketData
from tradesim.runner import SymbolRunner
from tradesim.runner.execution import ExecutionConfig

T0 = 28_333_332 * 60_000
MIN = 60_000
N = 40

SCRIPT = """
name = "order_props"
local T0, MIN = {t0}, 60000
local F = {{ {filter} }}
local M = {{ {manage} }}
local function bar(md) return (md.timestamp - T0) // MIN end

local function entry(p, md, side)
  local s = side == "long" and 1 or -1
  local a = {{action = side == "long" and "enter_long" or "enter_short", reason = "prop"}}
  local ref = md.close
  if p.kind == "limit" then a.limit_price = md.close * (1 - s * p.off); ref = a.limit_price
  elseif p.kind == "stop" then a.stop_price = md.close * (1 + s * p.off); ref = a.stop_price end
  if p.sl > 0 then a.stop_loss = ref * (1 - s * p.sl) end
  if p.tp > 0 then a.take_profit = ref * (1 + s * p.tp) end
  if p.expiry > 0 and p.kind ~= "market" then a.expiry_bars = p.expiry end
  if p.trail == "distance" then a.trailing_stop = ref * 0.01
  elseif p.trail == "percent" then a.trailing_percent = 1.5
  elseif p.trail == "atr" then a.trailing_atr = 1.5; a.atr_period = 3 end
  if p.size == "notional" then a.notional = 1000
  elseif p.size == "equity_fraction" then a.equity_fraction = 0.3
  elseif p.size == "risk_fraction" and p.sl > 0 then a.risk_fraction = 0.005
  else a.quantity = p.qty end
  return a
end

function detect_opportunity(md, ctx, ind)
  if F[bar(md)] then return {{reason = "go"}} end
  return nil
end

function filter_commitment(md, ctx, ind)
  local p = F[bar(md)]
  if p == nil then return nil end
  if p.kind == "cancel" then
    if ind.order then return {{action = "cancel_order"}} end
    return nil
  end
  return entry(p, md, p.side)
end

function manage_position(md, ctx, ind)
  local p = M[bar(md)]
  if p == nil then return nil end
  local pos = ind.position
  if p.kind == "exit" then return {{action = "exit"}} end
  if p.kind == "exit_fraction" then return {{action = "exit", fraction = p.fraction}} end
  if p.kind == "exit_quantity" then return {{action = "exit", quantity = pos.quantity * p.fraction}} end
  return entry({{kind = "market", off = 0, sl = 0, tp = 0, expiry = 0, trail = "none", size = "quantity",
                qty = p.qty}}, md, pos.side)
end
"""

entries = st.fixed_dictionaries({
    "kind": st.sampled_from(["market", "limit", "stop", "limit", "stop", "cancel"]),
    "side": st.sampled_from(["long", "short"]),
    "off": st.sampled_from([0.001, 0.003, 0.01]),
    "sl": st.sampled_from([0, 0.005, 0.02]),
    "tp": st.sampled_from([0, 0.005, 0.02]),
    "expiry": st.integers(0, 3),
    "trail": st.sampled_from(["none", "distance", "percent", "atr"]),
    "size": st.sampled_from(["quantity", "notional", "equity_fraction", "risk_fraction"]),
    "qty": st.sampled_from([0.5, 1.0, 3.0]),
})
manages = st.fixed_dictionaries({
    "kind": st.sampled_from(["exit", "exit_fraction", "exit_quantity", "scale_in"]),
    "fraction": st.sampled_from([0.25, 0.5, 1.0]),
    "qty": st.sampled_from([0.5, 2.0]),
})


def lua_table(d):
    def val(v):
        return f'"{v}"' if isinstance(v, str) else repr(v)
    return "{" + ", ".join(f"{k} = {val(v)}" for k, v in d.items()) + "}"


def make_bars(seed):
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.006, N)))
    open_ = np.r_[100.0, close[:-1]] * np.exp(rng.normal(0, 0.003, N) * (rng.random(N) < 0.3))  # some gaps
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.004, N)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.004, N)))
    return open_, high, low, close


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(seed=st.integers(0, 2**32 - 1),
       filter=st.dictionaries(st.integers(1, N - 2), entries, max_size=12),
       manage=st.dictionaries(st.integers(1, N - 2), manages, max_size=12),
       fill=st.sampled_from(["next_open", "close"]))
def test_books_balance_and_fills_stay_inside_their_bar(tmp_path, seed, filter, manage, fill):
    path = tmp_path / "order_props.lua"
    path.write_text(SCRIPT.format(t0=T0, filter=", ".join(f"[{k}] = {lua_table(v)}" for k, v in filter.items()),
                                  manage=", ".join(f"[{k}] = {lua_table(v)}" for k, v in manage.items())))
    o, h, l, c = make_bars(seed)
    r = SymbolRunner("BTCUSDT", path, execution=ExecutionConfig(fill=fill, starting_cash=10_000.0))
    for i in range(N):
        r.process(MarketData("BTCUSDT", T0 + i * MIN, o[i], h[i], l[i], c[i], 1.0))
        pos = r.machine.position
        signed = 0.0 if pos is None else pos.quantity * (1.0 if pos.side.name == "LONG" else -1.0)
        assert r.equity == pytest.approx(r.core.cash + signed * c[i], rel=1e-12, abs=1e-9), i
    r.close_position()
    assert r.errors == []
    eps = 1e-9
    for t in r.trades:
        assert l[t.entry_bar] - eps <= t.entry_price <= h[t.entry_bar] + eps, t
        assert l[t.exit_bar] - eps <= t.exit_price <= h[t.exit_bar] + eps, t
        assert t.exit_bar >= t.entry_bar
    # flat at the end: the equity is the starting cash plus every lot's P&L
    assert r.machine.position is None
    assert r.equity == pytest.approx(10_000.0 + sum(t.pnl for t in r.trades), abs=1e-6)
