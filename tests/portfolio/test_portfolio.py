"""`Portfolio` driven bar by bar, `PortfolioConfig` validation and `portfolio_curves` on a hand-computed case."""

from __future__ import annotations

import numpy as np
import pytest
from pydantic import ValidationError

from tradesim.portfolio import Portfolio, PortfolioConfig, RunPositions, portfolio_curves
from tradesim.runner.trades import Trade

HOUR = 3_600_000
T0 = 1_735_689_600_000   # 2025-01-01 00:00 UTC


@pytest.mark.parametrize("field, value, message", [
    ("cash", "pooled", "'per_runner' or 'shared'"),
    ("max_open_positions", -1, "greater than or equal to 0"),
    ("max_daily_loss_pct", 100, "less than 100"),
    ("max_drawdown_pct", float("nan"), "finite number"),
    ("on_breach", "flatten", "'block' or 'halt'"),
    ("max_positions", 2, "Unexpected keyword argument"),
])
def test_config_errors_name_the_field_and_value(field, value, message):
    with pytest.raises(ValidationError) as info:
        PortfolioConfig(**{field: value})
    text = str(info.value)
    assert field in text and message in text and repr(value).strip("'") in text


def test_config_active_only_with_a_limit_or_shared_cash():
    assert not PortfolioConfig().active and not PortfolioConfig(on_breach="halt").active
    assert PortfolioConfig(cash="shared").active and not PortfolioConfig(cash="shared").limited
    assert PortfolioConfig(max_drawdown_pct=5).limited


def _trade(symbol, side, q, entry_bar, entry_price, exit_bar, exit_price, fees=0.0):
    sign = 1 if side == "long" else -1
    return Trade(symbol, "s", side, q, T0 + entry_bar * HOUR, entry_price, T0 + exit_bar * HOUR,
                 exit_price, (exit_price - entry_price) * q * sign - fees, fees, "x", False,
                 entry_bar, exit_bar)


def test_curves_hand_computed_two_symbols_with_different_bars():
    # A: bars 0..3, long 2 from bar 1 (at 10, fee 1 paid at entry and 1 at exit) to bar 3 (at 13).
    # B: bars 1..3 only (joins one hour late), short 1 from bar 1 (at 20), still open at the end.
    ts = T0 + np.arange(4) * HOUR
    a_close = np.array([10.0, 11.0, 12.0, 13.0])
    b_close = np.array([20.0, 18.0, 19.0])
    trade = _trade("AAA", "long", 2.0, 1, 10.0, 3, 13.0, fees=2.0)
    # equity per runner (cash 100 each): A 100, 100 - 20 - 1 + 22 = 101, 103, 100 + 6 - 2 = 104;
    # B (from bar 1): 100, 102, 101 (shorted at 20, marked 20, 18, 19)
    a_eq = np.array([100.0, 101.0, 103.0, 104.0])
    b_eq = np.array([100.0, 102.0, 101.0])
    equity = a_eq + np.array([100.0, *b_eq])
    runs = [RunPositions("AAA", ts, a_close, a_eq, [trade], 100.0, 4),
            RunPositions("BBB", ts[1:], b_close, b_eq, [], 100.0, 3, [("short", 1.0, 20.0, 0)])]
    c = portfolio_curves(ts, equity, runs, starting_cash=200.0)
    np.testing.assert_allclose(c.exposure["AAA"], [0, 22, 24, 0])
    np.testing.assert_allclose(c.exposure["BBB"], [0, -20, -18, -19])
    # unrealised: A 2 x (11 - 10), 2 x (12 - 10); B -(20 - 20), -(18 - 20), -(19 - 20)
    np.testing.assert_allclose(c.unrealised, [0, 2, 6, 1])
    # realised = equity - 200 - unrealised: A's entry fee while open, then its net P&L 4
    np.testing.assert_allclose(c.realised, [0, -1, -1, 4])
    np.testing.assert_allclose(c.cash, equity - c.exposure["AAA"] - c.exposure["BBB"])
    s = c.summary()
    assert s["exposure"]["BBB"] == {"final": -19.0, "max_abs": 20.0, "time_in_market": 0.75}
    assert (s["equity"], s["realised_pnl"], s["unrealised_pnl"]) == (205.0, 4.0, 1.0)


# --------------------------------------------------------------------------- driven bar by bar

ALWAYS_LONG = """
name = "always_long"
function detect_opportunity(md, ctx, ind) return {reason = "go"} end
function filter_commitment(md, ctx, ind) return {action = "enter_long", quantity = 1, reason = "go"} end
function manage_position(md, ctx, ind)
  if md.close < 50 then return {action = "exit", reason = "cut"} end
  return nil
end
"""


def test_halted_runners_open_nothing_until_resume(tmp_path):
    from tradesim.runner import RunnerStatus, SymbolRunner
    from tradesim.runner.execution import ExecutionConfig

    script = tmp_path / "always_long.lua"
    script.write_text(ALWAYS_LONG)
    exe = ExecutionConfig(fill="close", starting_cash=1_000.0)
    runners = [SymbolRunner(s, script, execution=exe) for s in ("AAAUSDT", "BBBUSDT")]
    events = []
    book = Portfolio(runners, PortfolioConfig(max_drawdown_pct=1, on_breach="halt"), on_event=events.append)
    assert book.starting_cash == 2_000.0

    def bar(i, close):
        ts = T0 + i * HOUR
        for r in runners:
            r.core.process_values(ts, close, close + 1, close - 1, close, 1.0)
        return book.after_bar(ts)

    assert bar(0, 100.0) == 2_000.0          # both enter 1 unit at 100
    assert bar(1, 79.0) == 2_000.0 - 42.0    # 2.1 % below the peak: halt, both closed at 79
    assert [e["limit"] for e in events] == ["max_drawdown_pct"]
    assert all(r.status == RunnerStatus.HALTED and r.core.quantity == 0 for r in runners)
    for i in range(2, 6):                     # would enter every bar: nothing opens
        bar(i, 100.0)
    assert all(len(r.trades) == 1 and r.core.quantity == 0 for r in runners)
    book.resume()
    assert all(r.status == RunnerStatus.RUNNING for r in runners)
    assert book.peak == 2_000.0 - 42.0        # the drawdown is measured again from here
    bar(6, 100.0)
    assert all(r.core.quantity == 1.0 for r in runners)
    assert book.state()["open_positions"] == 2 and book.state()["exposure"] == {"AAAUSDT": 100.0,
                                                                                 "BBBUSDT": 100.0}
