"""Portfolio cases found in review, each checked against hand-computed or invariant values:
a halt across symbols whose bars do not line up, an open scaled-in position's lots, resume
restoring only what the portfolio halted, and a removed engine runner leaving the portfolio."""

from __future__ import annotations

import numpy as np

from tradesim import MarketData
from tradesim.backtest.backtester import Backtest
from tradesim.engine import TradingEngine
from tradesim.feeds.simulated import SimulatedFeed
from tradesim.portfolio import Portfolio, PortfolioConfig
from tradesim.runner import RunnerStatus, SymbolRunner
from tradesim.runner.execution import ExecutionConfig
from tradesim.runner.risk import RiskConfig

from .conftest import HOUR, T0, write_bars

ALWAYS_LONG = """
name = "always_long"
function detect_opportunity(md, ctx, ind) return {reason = "go"} end
function filter_commitment(md, ctx, ind) return {action = "enter_long", quantity = 10} end
function manage_position(md, ctx, ind) return nil end
"""


def test_a_halt_waits_for_the_bar_of_a_symbol_that_has_none_at_the_breach(tmp_path, level):
    # BBB's bars open 30 minutes after AAA's: the drawdown breach happens at a BBB bar, and AAA
    # (no bar then) closes at its next bar's close, not at a close from before the breach.
    a = write_bars(tmp_path / "AAA-bars.csv", [95, 101, 102, 103, 99, 98, 80, 85, 101, 104, 100, 89])
    b = write_bars(tmp_path / "BBB-bars.csv", [100, 105, 110, 70, 60, 101, 102, 103, 89, 95, 96, 97],
                   start=T0 + HOUR // 2)
    result = Backtest([level], [a, b], params={"quantity": 0}, starting_cash=1000,
                      portfolio=PortfolioConfig(max_drawdown_pct=10, on_breach="halt")).run()
    p = result.portfolio
    (event,) = p.events
    breach = event["timestamp"]
    halted = [t for t in result.trades if t.exit_reason == "risk_halt"]
    assert len(halted) == 2 and all(t.exit_time >= breach for t in halted)
    # the invariant holds at every bar of the union
    np.testing.assert_allclose(p.cash + sum(p.exposure.values()), p.equity, atol=1e-9)


def test_an_open_scaled_in_position_is_counted_lot_by_lot(tmp_path):
    # 1 unit bought at 105 (bar 2's close... next open), 1 more added later: between the two the
    # exposure is one unit, not two (hand-computed from the bars below, fills at the next open).
    script = tmp_path / "scale.lua"
    script.write_text("""
function detect_opportunity(md, ctx, ind) if md.close >= 100 then return {reason = "up"} end end
function filter_commitment(md, ctx, ind) return {action = "enter_long", quantity = 1} end
function manage_position(md, ctx, ind)
  if md.close >= 110 and md.close < 111 then return {action = "enter_long", quantity = 1} end
end
""")
    bars = write_bars(tmp_path / "AAA-bars.csv", [95, 101, 105, 110.5, 112, 113, 114])
    for portfolio in (None, PortfolioConfig(max_open_positions=5)):
        p = Backtest([script], [bars], starting_cash=1000, close_at_end=False,
                     portfolio=portfolio).run().portfolio
        # signal at bar 1 (101) -> 1 @ bar 2's open 105; add at bar 3 (110.5) -> 1 @ bar 4's open 112
        np.testing.assert_allclose(p.exposure["AAA"], [0, 0, 105, 110.5, 224, 226, 228])
        np.testing.assert_allclose(p.cash, [1000, 1000, 895, 895, 783, 783, 783])
        np.testing.assert_allclose(p.cash + p.exposure["AAA"], p.equity)


def test_resume_restores_only_what_the_portfolio_halted(tmp_path):
    path = tmp_path / "always_long.lua"
    path.write_text(ALWAYS_LONG)
    cash = ExecutionConfig(starting_cash=10_000.0)
    a = SymbolRunner("AAA", path, risk=RiskConfig(max_drawdown_pct=1.5, on_breach="halt"), execution=cash)
    b = SymbolRunner("BBB", path, execution=cash)
    c = SymbolRunner("CCC", path, execution=cash)
    book = Portfolio([a, b, c], PortfolioConfig(max_drawdown_pct=2, on_breach="halt"))

    def step(t, prices):
        for r, (o, h, lo, cl) in zip((a, b, c), prices):
            r.process(MarketData(r.symbol, t, o, h, lo, cl, 1.0))
        book.after_bar(t)

    c.pause()
    step(T0, [(100, 100, 100, 100)] * 3)
    step(T0 + 60_000, [(100, 101, 99, 100)] * 3)
    step(T0 + 120_000, [(100, 100, 70, 80), (100, 100, 99, 100), (100, 100, 99, 100)])  # A halts itself
    assert a.status == RunnerStatus.HALTED
    step(T0 + 180_000, [(80, 80, 80, 80), (100, 100, 10, 20), (100, 100, 99, 100)])     # the portfolio
    assert book.halted and {a.status, b.status, c.status} == {RunnerStatus.HALTED}
    book.resume()
    assert (a.status, b.status, c.status) == (RunnerStatus.HALTED, RunnerStatus.RUNNING, RunnerStatus.PAUSED)


def test_a_removed_engine_runner_leaves_the_portfolio(tmp_path):
    path = tmp_path / "always_long.lua"
    path.write_text(ALWAYS_LONG)
    engine = TradingEngine(workers=1, portfolio=PortfolioConfig(max_open_positions=1))
    engine.add_feed(SimulatedFeed(("AAAUSDT", "BBBUSDT"), bars=5, seed=7, start_price=100.0), "sim")
    a_id, b_id = engine.add_runner("AAAUSDT", path), engine.add_runner("BBBUSDT", path)
    a, b = engine.runner(a_id), engine.runner(b_id)
    t0 = 1_700_000_000_000
    for i in range(3):              # (the engine is not running: bars go to the runners directly)
        for r in (a, b):
            r.process(MarketData(r.symbol, t0 + i * 60_000, 100, 101, 99, 100, 1.0))
            engine.portfolio.after_bar(t0 + i * 60_000, r)
    assert a.core.quantity == 10 and b.core.quantity == 0      # the one slot is A's
    equity = engine.portfolio.equity()
    engine.remove_runner(a_id)
    assert a.status == RunnerStatus.STOPPED and a.core.quantity == 0
    assert engine.portfolio.open_positions() == 0 and a not in engine.portfolio.runners
    assert abs(engine.portfolio.equity() - equity) < 1e-9    # its cash stays in the portfolio's
    for i in range(3, 5):
        b.process(MarketData(b.symbol, t0 + i * 60_000, 100, 101, 99, 100, 1.0))
        engine.portfolio.after_bar(t0 + i * 60_000, b)
    assert b.core.quantity == 10
