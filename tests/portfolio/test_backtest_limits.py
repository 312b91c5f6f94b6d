"""Portfolio limits in multi-runner backtests (docs/orders.md, Risk limits): hand-computed cases.

Every case runs the LEVEL strategy (enter long at close >= 100, exit at close <= 90, fill at
the signal bar's close, no costs) on two symbols whose closes are written out below; the
expected trades, rejections and events follow from the rules by hand.
"""

from __future__ import annotations

import numpy as np
import pytest

from tradesim.backtest import Backtest
from tradesim.portfolio import PortfolioConfig

HOUR = 3_600_000
T0 = 1_735_689_600_000   # 2025-01-01 00:00 UTC


def t(i, step=HOUR):
    return T0 + i * step


def run(level, files, **kwargs):
    kwargs.setdefault("fill", "close")
    return Backtest(level, files, **kwargs).run()


def trades_of(result, symbol):
    return [(x.entry_time, x.entry_price, x.exit_time, x.exit_price, x.quantity, x.exit_reason)
            for x in result.trades if x.symbol == symbol]


def test_max_open_positions_across_two_runners(level, bars_csv):
    a = bars_csv("AAAUSDT", [99, 100, 101, 89, 95, 95])
    b = bars_csv("BBBUSDT", [99, 99, 100, 100, 100, 100])
    free = run(level, [a, b])
    # without the limit B enters at bar 2
    assert trades_of(free, "BBBUSDT")[0][:2] == (t(2), 100.0)
    result = run(level, [a, b], portfolio=PortfolioConfig(max_open_positions=1))
    # A holds bars 1..3; B's entry at bar 2 is rejected; at bar 3 A exits first (runner order),
    # so B's entry at bar 3 fits; B is closed at the end (bar 5, close 100).
    assert trades_of(result, "AAAUSDT") == [(t(1), 100.0, t(3), 89.0, 1.0, "below")]
    assert trades_of(result, "BBBUSDT") == [(t(3), 100.0, t(5), 100.0, 1.0, "end_of_data")]
    b_run = next(r for r in result.runs if r.symbol == "BBBUSDT")
    assert [(r.timestamp, r.action) for r in b_run.rejections] == [(t(2), "enter_long")]
    assert "max_open_positions" in b_run.rejections[0].reason
    p = result.portfolio
    assert p.interleaved and p.event_count == 1
    (event,) = p.events
    assert (event["scope"], event["limit"], event["threshold"], event["value"], event["timestamp"],
            event["symbol"]) == ("portfolio", "max_open_positions", 1, 1, t(2), "BBBUSDT")
    # held at the closes: A bars 1-2, B bars 3-4 (closed at the end of bar 5)
    np.testing.assert_array_equal(p.exposure["AAAUSDT"], [0, 100, 101, 0, 0, 0])
    np.testing.assert_array_equal(p.exposure["BBBUSDT"], [0, 0, 0, 100, 100, 0])


def test_portfolio_daily_loss_blocks_entries_until_the_next_utc_day(level, bars_csv):
    six = 6 * HOUR
    # A (10 units): enters at 100 on day 0; day 1 opens at 95: equity 19,950 against 20,000 at
    # day 0's last close = 0.25 % loss > 0.2 % -> block. A exits at 89 (exits still work); its
    # entries at bars 6 and 7 are rejected; on day 2 (bar 8) the block is gone and A enters.
    a = bars_csv("AAAUSDT", [99, 100, 100, 100, 95, 89, 100, 100, 100, 100], step=six)
    b = bars_csv("BBBUSDT", [50] * 10, step=six)   # never enters
    cfg = PortfolioConfig(max_daily_loss_pct=0.2)
    result = run(level, [a, b], portfolio=cfg, params={"quantity": 10}, starting_cash=20_000)
    assert trades_of(result, "AAAUSDT") == [
        (t(1, six), 100.0, t(5, six), 89.0, 10.0, "below"),
        (t(8, six), 100.0, t(9, six), 100.0, 10.0, "end_of_data")]
    a_run = next(r for r in result.runs if r.symbol == "AAAUSDT")
    assert [r.timestamp for r in a_run.rejections] == [t(6, six), t(7, six)]
    assert all("max_daily_loss_pct" in r.reason for r in a_run.rejections)
    (event,) = result.portfolio.events   # one event per breach, not one per bar below the line
    assert (event["limit"], event["threshold"], event["action"], event["timestamp"]) == \
        ("max_daily_loss_pct", 0.2, "block", t(4, six))
    assert event["value"] == pytest.approx(0.25, abs=1e-12)
    assert result.equity[-1] == pytest.approx(20_000 - 110, abs=1e-9)


def test_portfolio_drawdown_blocks_until_resume(level, bars_csv):
    half = 12 * HOUR
    # peak 20,100 at bar 2 (A at 110); bar 3 at 104: (20,100 - 20,040) / 20,100 = 0.2985 % > 0.25 %
    a = bars_csv("AAAUSDT", [99, 100, 110, 104, 89, 100, 100, 100], step=half)
    b = bars_csv("BBBUSDT", [50] * 8, step=half)
    result = run(level, [a, b], portfolio=PortfolioConfig(max_drawdown_pct=0.25),
                 params={"quantity": 10}, starting_cash=20_000)
    # the block outlives the UTC days: no entry after the exit at bar 4
    assert trades_of(result, "AAAUSDT") == [(t(1, half), 100.0, t(4, half), 89.0, 10.0, "below")]
    a_run = next(r for r in result.runs if r.symbol == "AAAUSDT")
    assert [r.timestamp for r in a_run.rejections] == [t(i, half) for i in (5, 6, 7)]
    (event,) = result.portfolio.events
    assert (event["limit"], event["action"], event["timestamp"]) == ("max_drawdown_pct", "block", t(3, half))
    assert event["value"] == pytest.approx(60 / 20_100 * 100, rel=1e-12)


def test_portfolio_drawdown_halt_closes_everything_and_halts_every_runner(level, bars_csv):
    half = 12 * HOUR
    a = bars_csv("AAAUSDT", [99, 100, 110, 104, 89, 100, 100, 100], step=half)
    b = bars_csv("BBBUSDT", [99, 99, 100, 101, 101, 100, 100, 100], step=half)
    # B enters 10 at 100 on bar 2: peak 20,100 at bar 2 (A +100, B 0); bar 3: A +40, B +10:
    # 20,050, (20,100 - 20,050) / 20,100 = 0.2488 % > 0.2 % -> halt at bar 3's closes
    cfg = PortfolioConfig(max_drawdown_pct=0.2, on_breach="halt")
    result = run(level, [a, b], portfolio=cfg, params={"quantity": 10}, starting_cash=20_000)
    # both positions close at bar 3's close and nothing opens again (A's close of 100 at
    # bar 5 would enter, and so would B's)
    (ta,) = trades_of(result, "AAAUSDT")
    (tb,) = trades_of(result, "BBBUSDT")
    assert ta[:5] == (t(1, half), 100.0, t(3, half), 104.0, 10.0)
    assert tb[:5] == (t(2, half), 100.0, t(3, half), 101.0, 10.0)
    assert {r.status for r in result.runs} == {"halted"}
    (event,) = result.portfolio.events
    assert (event["limit"], event["action"], event["timestamp"]) == ("max_drawdown_pct", "halt", t(3, half))
    assert event["value"] == pytest.approx(50 / 20_100 * 100, rel=1e-12)
    assert result.equity[-1] == pytest.approx(20_000 + 40 + 10, abs=1e-9)


@pytest.mark.parametrize("cash, qa, qb", [("shared", 50.0, 12.5), ("per_runner", 25.0, 12.5)])
def test_shared_cash_sizing(level, bars_csv, cash, qa, qb):
    # size_fraction 0.5 of the cash (no quantity given). Shared 10,000: A takes
    # 0.5 x 10,000 / 100 = 50 units at bar 1, leaving 5,000; B then 0.5 x 5,000 / 200 = 12.5 at
    # bar 2. Per runner (5,000 each): A 0.5 x 5,000 / 100 = 25, B 0.5 x 5,000 / 200 = 12.5.
    a = bars_csv("AAAUSDT", [99, 100, 100, 100])
    b = bars_csv("BBBUSDT", [99, 99, 200, 200])
    result = run(level, [a, b], portfolio=PortfolioConfig(cash=cash), params={"quantity": 0},
                 size_fraction=0.5, starting_cash=10_000)
    assert [(x.symbol, x.entry_time, x.quantity) for x in result.trades] == [
        ("AAAUSDT", t(1), qa), ("BBBUSDT", t(2), qb)]
    p = result.portfolio
    if cash == "shared":   # the ledger: one account, spent by both
        np.testing.assert_allclose(p.cash, [10_000, 5_000, 2_500, 10_000], rtol=0, atol=1e-9)


def test_interleaved_run_with_limits_that_never_bind_equals_the_fast_path(btc_bars, eth_bars):
    # Two symbols whose bars start and end at different times, EMA crossover on each: a
    # portfolio limit that never binds must change nothing (trades, curves, positions).
    from pathlib import Path

    ema = Path(__file__).resolve().parents[2] / "lua-strategies" / "examples" / "ema_crossover.lua"
    bars = [btc_bars.slice(None, int(btc_bars.timestamp[20_000])),
            eth_bars.slice(int(eth_bars.timestamp[3_000]), int(eth_bars.timestamp[25_000]))]
    fast = Backtest(ema, bars, commission_bps=10).run()
    slow = Backtest(ema, bars, commission_bps=10, portfolio=PortfolioConfig(max_open_positions=2,
                                                                            max_drawdown_pct=99)).run()
    assert not fast.portfolio.interleaved and slow.portfolio.interleaved
    assert len(fast.trades) > 500
    assert [x.to_dict() for x in slow.trades] == [x.to_dict() for x in fast.trades]
    np.testing.assert_array_equal(slow.equity, fast.equity)
    np.testing.assert_array_equal(slow.in_position, fast.in_position)
    for a, b in zip(slow.runs, fast.runs):
        np.testing.assert_array_equal(a.equity, b.equity)
    # the ledger's cash (interleaved) against equity minus exposure (fast path)
    np.testing.assert_allclose(slow.portfolio.cash, fast.portfolio.cash, rtol=0, atol=1e-6)


def test_runner_risk_events_join_the_result_in_the_fast_path(level, bars_csv):
    from tradesim.runner.risk import RiskConfig

    a = bars_csv("AAAUSDT", [99, 100, 101, 89, 95, 95])
    # 1 unit at 100 is a notional of 100 > 50: each entry the strategy tries is rejected
    result = run(level, [a], risk=RiskConfig(max_position_notional=50))
    assert not result.trades and not result.portfolio.interleaved
    events = result.portfolio.events
    assert [(e["scope"], e["limit"], e["timestamp"], e["symbol"]) for e in events] == [
        ("runner", "max_position_notional", t(1), "AAAUSDT"), ("runner", "max_position_notional", t(2), "AAAUSDT")]
    assert events[0]["threshold"] == 50 and events[0]["value"] == pytest.approx(100.0)
    assert result.ledger["risk"]["max_position_notional"] == 50


def test_a_recorded_interleaved_backtest_replays_identically(btc_bars, eth_bars, tmp_path):
    # a limit that never binds: the replay (which has no portfolio) makes the same decisions and
    # trades; the end-of-data closes come after each runner's shutdown, as in the fast path
    from pathlib import Path

    from tradesim.recording import SessionRecorder
    from tradesim.sessions import open_session, replay

    ema = Path(__file__).resolve().parents[2] / "lua-strategies" / "examples" / "ema_crossover.lua"
    bars = [btc_bars.slice(None, int(btc_bars.timestamp[3_000])),
            eth_bars.slice(int(eth_bars.timestamp[500]), int(eth_bars.timestamp[4_000]))]
    bt = Backtest(ema, bars, portfolio=PortfolioConfig(max_open_positions=2))
    bt.run(SessionRecorder(tmp_path, kind="backtest", name="pf"))
    rep = replay(open_session(tmp_path / "pf"))
    assert rep.identical, rep.comparison.to_dict()["first"]
    assert rep.comparison.decisions > 50
    assert any("max_open_positions = 2" in note for note in rep.notes)
