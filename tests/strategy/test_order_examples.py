"""The order examples (limit pullback, stop breakout with an ATR trail, risk-per-trade sizing):
`tradesim validate` accepts each, and a backtest over 30k real BTCUSDT 1m bars makes trades
whose every entry and exit is recomputed independently with TA-Lib and the rules of
docs/orders.md (next_open fills, no costs).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import talib
from click.testing import CliRunner

from tradesim.backtest import Backtest
from tradesim.cli import main

EXAMPLES = Path(__file__).resolve().parents[2] / "lua-strategies" / "examples"
NEW = ["pullback_limit", "breakout_stop_atr", "risk_sizing"]
N_BARS = 30_000


@pytest.fixture(scope="module")
def bars(btc_bars):
    return btc_bars.slice(None, int(btc_bars.timestamp[N_BARS]))


_RUNS: dict = {}


def backtest(name, bars):
    if name not in _RUNS:
        _RUNS[name] = Backtest(EXAMPLES / f"{name}.lua", bars).run()
    return _RUNS[name]


@pytest.mark.parametrize("name", NEW)
def test_validate_accepts_the_example(name):
    r = CliRunner().invoke(main, ["validate", str(EXAMPLES / f"{name}.lua")], catch_exceptions=False)
    assert r.exit_code == 0, r.output
    assert r.output.startswith(f"OK  {name}")


@pytest.mark.parametrize("name", NEW)
def test_example_backtests_cleanly(bars, name):
    result = backtest(name, bars)
    run = result.runs[0]
    assert run.errors == [] and run.status != "failed"
    assert len(result.trades) >= 30
    h, l = bars.high, bars.low
    for t in result.trades:
        assert l[t.entry_bar] <= t.entry_price <= h[t.entry_bar]
        assert l[t.exit_bar] <= t.exit_price <= h[t.exit_bar]
    assert result.equity[-1] == pytest.approx(10_000.0 + sum(t.pnl for t in result.trades), abs=1e-6)


def test_pullback_limit_entries_are_limit_fills_at_the_fast_ema(bars):
    o, c = bars.open, bars.close
    fast, slow = talib.EMA(c, 20), talib.EMA(c, 50)
    expiry, max_bars = 10, 60
    trades = backtest("pullback_limit", bars).trades
    for t in trades:
        e = t.entry_bar
        # the order was decided on a bar d of an uptrend within `expiry` bars before the fill,
        # at the fast EMA there; it filled at min(open, limit)
        candidates = [min(o[e], fast[d]) for d in range(max(e - expiry, 0), e)
                      if fast[d] > slow[d] and c[d] > fast[d]]
        assert any(p == pytest.approx(t.entry_price, rel=1e-9) for p in candidates), t
        assert t.exit_reason in {"stop_loss", "take_profit", "time_stop", "end_of_data"}
        if t.exit_reason == "time_stop":
            # at the close of the 60th bar held (the fill bar is the first): the next open
            assert t.exit_bar == e + max_bars and t.exit_price == o[t.exit_bar]
    reasons = {t.exit_reason for t in trades}
    assert {"stop_loss", "take_profit"} <= reasons


def test_breakout_stop_entries_and_atr_trailing_exits(bars):
    o, h, l, c = bars.open, bars.high, bars.low, bars.close
    atr = talib.ATR(h, l, c, 14)
    top = talib.MAX(h, 60)
    expiry = 15
    trades = backtest("breakout_stop_atr", bars).trades
    trailed = 0
    for t in trades:
        e, x = t.entry_bar, t.exit_bar
        options = []
        for d in range(max(e - expiry, 0), e):
            if c[d] > top[d] - atr[d]:
                level = top[d] + 0.1 * atr[d]
                options.append((max(o[e], level), level - 2.0 * atr[d]))
        match = [sl for price, sl in options if price == pytest.approx(t.entry_price, rel=1e-9)]
        assert match, t
        assert t.exit_reason in {"stop_loss", "trailing_stop", "take_profit", "end_of_data"}
        if t.exit_reason in ("stop_loss", "trailing_stop") and x > e:
            # the stop in force on the exit bar: the initial one or the best close - 3 ATR up to the
            # bar before; filled there or at a lower open
            # (several decision bars can give the same gapped fill: one of their stops fits)
            trail = max(c[k] - 3.0 * atr[k] for k in range(e, x))
            assert any(t.exit_price == pytest.approx(min(o[x], max(sl, trail)), rel=1e-9) for sl in match), t
            trailed += t.exit_reason == "trailing_stop"
    assert trailed >= 10


def test_risk_sizing_loses_the_risk_fraction_at_the_stop(bars):
    o, h, l, c = bars.open, bars.high, bars.low, bars.close
    atr, low20 = talib.ATR(h, l, c, 14), talib.MIN(l, 20)
    trades = backtest("risk_sizing", bars).trades
    by_entry: dict[int, list] = {}
    for t in trades:
        by_entry.setdefault(t.entry_bar, []).append(t)
    closed_pnl = 0.0
    for e in sorted(by_entry):
        lots = by_entry[e]
        d = e - 1                       # a market entry at the open after the decision bar
        stop = min(low20[d], c[d] - 2.0 * atr[d])
        qty = sum(t.quantity for t in lots)
        equity = 10_000.0 + closed_pnl  # flat at the fill: the equity is the cash
        assert qty == pytest.approx(0.001 * equity / (o[e] - stop), rel=1e-9)
        assert all(t.entry_price == o[e] for t in lots)
        if len(lots) == 2:
            # half taken off at 1R (the first close at entry + risk), the rest later
            first, rest = sorted(lots, key=lambda t: t.exit_bar)
            assert first.exit_reason == "partial_1r"
            assert first.quantity == pytest.approx(rest.quantity, rel=1e-12)
        closed_pnl += sum(t.pnl for t in lots)
    assert any(len(lots) == 2 for lots in by_entry.values())
    assert "breakeven_stop" in {t.exit_reason for t in trades}
    assert np.isfinite(closed_pnl)
