"""Hypothesis: in an interleaved backtest, the ledger's cash plus every position's value is the
portfolio equity at every bar, and that equity is the starting cash plus closed trades' P&L plus
open positions marked at their close (an independent reference from the trades and the bars)."""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tradesim.backtest import Backtest
from tradesim.data import Bars
from tradesim.portfolio import PortfolioConfig

from .conftest import HOUR, LEVEL, T0


def _bars(symbol, start_bar, steps):
    close = 100.0 * np.cumprod(1.0 + np.asarray(steps) / 100.0)   # steps in percent
    ts = T0 + (start_bar + np.arange(len(close))) * HOUR
    return Bars(symbol, ts.astype(np.int64), close.copy(), close + 0.5, close - 0.5, close, np.ones(len(close)))


def reference_equity(ts, bars_by_symbol, trades, starting_cash):
    """Starting cash + P&L of trades closed by each bar + open lots marked at their symbol's last close."""
    out = np.full(len(ts), float(starting_cash))
    for k, t in enumerate(ts):
        for tr in trades:
            sign = 1.0 if tr.side == "long" else -1.0
            if tr.exit_time <= t:
                out[k] += tr.pnl
            elif tr.entry_time <= t:
                b = bars_by_symbol[tr.symbol]
                mark = b.close[np.searchsorted(b.timestamp, t, side="right") - 1]
                out[k] += sign * tr.quantity * (mark - tr.entry_price)
    return out


steps = st.lists(st.sampled_from([-3.0, -1.0, 0.0, 1.0, 2.0, 4.0]), min_size=3, max_size=40)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(a_steps=steps, b_steps=steps, b_start=st.integers(0, 10),
       cash=st.sampled_from(["per_runner", "shared"]), max_open=st.integers(0, 2),
       fill=st.sampled_from(["close", "next_open"]), slippage=st.sampled_from([0.0, 5.0]),
       quantity=st.sampled_from([0, 1, 30]), size_fraction=st.sampled_from([0.3, 1.0]),
       enter_above=st.sampled_from([100, 102, 104]), exit_below=st.sampled_from([96, 99, 101]))
def test_cash_plus_positions_is_equity_at_every_bar(tmp_path, a_steps, b_steps, b_start, cash, max_open, fill,
                                                    slippage, quantity, size_fraction, enter_above, exit_below):
    if cash == "per_runner" and max_open == 0:
        max_open = 2   # some portfolio setting, so the runners run interleaved with a live ledger
    script = tmp_path / "level.lua"
    script.write_text(LEVEL)
    a, b = _bars("AAAUSDT", 0, a_steps), _bars("BBBUSDT", b_start, b_steps)
    result = Backtest(script, [a, b], params={"enter_above": enter_above, "exit_below": exit_below,
                                              "quantity": quantity},
                      portfolio=PortfolioConfig(cash=cash, max_open_positions=max_open), fill=fill,
                      slippage_bps=slippage, size_fraction=size_fraction, starting_cash=10_000).run()
    p = result.portfolio
    assert p.interleaved
    total_exposure = sum(p.exposure.values())
    np.testing.assert_allclose(p.cash + total_exposure, result.equity, rtol=0, atol=1e-7)
    expected = reference_equity(result.timestamps, {"AAAUSDT": a, "BBBUSDT": b}, result.trades, 10_000)
    np.testing.assert_allclose(result.equity, expected, rtol=0, atol=1e-7)
    np.testing.assert_allclose(p.realised + p.unrealised + 10_000, result.equity, rtol=0, atol=1e-7)
    if max_open:   # never more positions than allowed, at any close
        held = sum((x != 0).astype(int) for x in p.exposure.values())
        assert held.max() <= max_open
