"""Trade records and backtest metrics: hand-computed curves, an independent numpy
reference on a random curve, and edge cases (no trades, all wins, flat equity)."""

import csv
import dataclasses
import math

import numpy as np
import pytest

from tradesim.backtest import Metrics, Trade, compute_metrics, drawdown_series, trades_to_csv
from tradesim.runner.trades import TRADE_CSV_COLUMNS

DAY = 86_400_000
MINUTE = 60_000


def trade(pnl=1.0, *, side="long", fees=0.5, entry_bar=0, exit_bar=1, ambiguous=False,
          reason="signal", strategy="ema_cross", symbol="BTCUSDT"):
    return Trade(symbol=symbol, strategy=strategy, side=side, quantity=2.0,
                 entry_time=1_700_000_000_000 + entry_bar * MINUTE, entry_price=100.0,
                 exit_time=1_700_000_000_000 + exit_bar * MINUTE, exit_price=101.0, pnl=pnl,
                 fees=fees, exit_reason=reason, ambiguous=ambiguous, entry_bar=entry_bar,
                 exit_bar=exit_bar)


def days(n):
    return np.arange(n, dtype=np.int64) * DAY


# --------------------------------------------------------------------------- Trade

def test_trade_derived_fields():
    t = trade(pnl=3.0, fees=0.5)
    assert t.gross_pnl == 3.5
    # 100 * 3.0 / (2.0 * 100.0)
    assert t.return_pct == pytest.approx(1.5)
    d = t.to_dict()
    assert tuple(d) == TRADE_CSV_COLUMNS
    assert d["gross_pnl"] == 3.5 and d["return_pct"] == pytest.approx(1.5)


def test_trade_is_frozen_and_normalises_numpy_scalars():
    t = Trade("ETHUSDT", "s", "short", np.float64(1.5), np.int64(1000), np.float64(10.0),
              np.int64(2000), 9.0, np.float32(1.25), 0.0, "take_profit", np.bool_(True),
              np.int64(3), np.int64(4))
    assert type(t.quantity) is float and type(t.entry_time) is int and type(t.ambiguous) is bool
    with pytest.raises(dataclasses.FrozenInstanceError):
        t.pnl = 0.0


@pytest.mark.parametrize("changes, message", [
    ({"side": "buy"}, "side"),
    ({"quantity": 0.0}, "quantity"),
    ({"entry_price": float("nan")}, "entry_price"),
    ({"fees": -1.0}, "fees"),
    ({"pnl": float("inf")}, "pnl"),
    ({"exit_time": 1_699_999_999_999}, "exit_time"),
    ({"exit_bar": -1}, "entry_bar"),
    ({"entry_time": 1.5}, "entry_time"),
    ({"ambiguous": "false"}, "ambiguous"),
])
def test_trade_rejects_bad_values(changes, message):
    with pytest.raises(ValueError, match=message):
        dataclasses.replace(trade(), **changes)


def test_trades_to_csv_round_trips(tmp_path):
    trades = [trade(1.0 / 3.0, reason='stop_loss, "quoted"'), trade(-2.5, side="short", ambiguous=True)]
    path = trades_to_csv(trades, tmp_path / "trades.csv")
    with open(path, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert list(rows[0]) == list(TRADE_CSV_COLUMNS)
    assert float(rows[0]["pnl"]) == 1.0 / 3.0  # repr precision: exact round trip
    assert rows[0]["exit_reason"] == 'stop_loss, "quoted"'
    assert rows[1]["ambiguous"] == "true" and rows[0]["ambiguous"] == "false"
    assert int(rows[1]["entry_time"]) == trades[1].entry_time


# --------------------------------------------------------------------------- hand-computed

def test_hand_computed_returns_volatility_sharpe_sortino():
    # Starting cash 100, daily bars. Extended curve E = 100, 110, 99, 108.9, 119.79, so the
    # per-bar returns are r = +10 %, -10 %, +10 %, +10 %.
    # mean(r) = 0.05; deviations 0.05, -0.15, 0.05, 0.05 -> squares sum 0.03;
    # sample variance 0.03 / 3 = 0.01 -> std = 0.1. Bars per year B = 365.25.
    # volatility = 0.1 * sqrt(365.25) = 1.9111514853616
    # Sharpe (rf = 0) = 0.05 / 0.1 * sqrt(365.25) = 9.5557574268082
    # Downside: min(r, 0) = 0, -0.1, 0, 0 -> mean square 0.01 / 4 = 0.0025 -> DD = 0.05;
    # Sortino = 0.05 * sqrt(365.25) / 0.05 = sqrt(365.25) = 19.111515...
    # Drawdown: running peak 100, 110, 110, 110, 119.79 -> D = 0, 0, -0.1, -0.01, 0.
    # Max drawdown -0.1; its episode runs from the peak (point 1, close of day 0) to the
    # recovery (point 4, close of day 3): 3 bars, 3 days.
    # Elapsed: 4 days -> years = 4 / 365.25; total return 0.1979.
    m = compute_metrics([110.0, 99.0, 108.9, 119.79], days(4), [], interval_ms=DAY,
                        starting_cash=100.0)
    assert m.bars_per_year == 365.25
    assert m.years == pytest.approx(4 / 365.25)
    assert m.total_return == pytest.approx(0.1979, rel=1e-12)
    assert m.cagr == pytest.approx(1.1979 ** (365.25 / 4) - 1, rel=1e-9)
    assert m.volatility == pytest.approx(1.9111514853616, rel=1e-9)
    assert m.sharpe == pytest.approx(9.5557574268082, rel=1e-9)
    assert m.sortino == pytest.approx(19.111514853616, rel=1e-9)
    assert m.max_drawdown == pytest.approx(-0.1, rel=1e-12)
    assert (m.max_drawdown_bars, m.max_drawdown_ms, m.max_drawdown_recovered) == (3, 3 * DAY, True)
    assert (m.longest_drawdown_bars, m.longest_drawdown_ms) == (3, 3 * DAY)
    assert m.calmar == pytest.approx(m.cagr / 0.1, rel=1e-12)
    assert (m.start_time, m.end_time, m.n_bars) == (0, 4 * DAY, 4)


def test_hand_computed_sharpe_with_risk_free_rate():
    # Same curve; 5 % a year -> per-bar rf = 1.05 ** (1 / 365.25) - 1 = 1.33589...e-4.
    # Excess returns shift by a constant: std stays 0.1.
    # Sharpe = (0.05 - rf) / 0.1 * sqrt(365.25). Downside of excess: only bar 2 is negative,
    # -0.1 - rf, so DD = |(-0.1 - rf)| / 2 and Sortino = (0.05 - rf) * sqrt(365.25) / DD.
    rf = 1.05 ** (1 / 365.25) - 1
    m = compute_metrics([110.0, 99.0, 108.9, 119.79], days(4), [], interval_ms=DAY,
                        starting_cash=100.0, risk_free_rate=0.05)
    assert rf == pytest.approx(1.335895e-4, rel=1e-5)
    assert m.sharpe == pytest.approx((0.05 - rf) / 0.1 * math.sqrt(365.25), rel=1e-9)
    assert m.sortino == pytest.approx((0.05 - rf) * math.sqrt(365.25) / ((0.1 + rf) / 2), rel=1e-9)
    assert m.volatility == pytest.approx(0.1 * math.sqrt(365.25), rel=1e-9)


def test_drawdown_not_recovered_runs_to_the_end():
    # E = 100 | 100, 120, 90, 96, 108 (1-minute bars from t = 0).
    # Peak 120 at point 2 (close of bar 1, t = 120 000); trough 90 -> 90 / 120 - 1 = -0.25.
    # Never back to 120: the episode ends at the last point 5 (close of bar 4, t = 300 000):
    # 5 - 2 = 3 bars, 180 000 ms.
    ts = np.arange(5, dtype=np.int64) * MINUTE
    m = compute_metrics([100.0, 120.0, 90.0, 96.0, 108.0], ts, [], interval_ms=MINUTE,
                        starting_cash=100.0)
    assert m.max_drawdown == pytest.approx(-0.25, rel=1e-12)
    assert (m.max_drawdown_bars, m.max_drawdown_ms, m.max_drawdown_recovered) == (3, 180_000, False)
    assert m.total_return == pytest.approx(0.08)
    # 8 % in 5 minutes, compounded over a year, overflows a float: CAGR is +inf, not an error.
    assert m.cagr == math.inf


def test_longest_drawdown_differs_from_deepest():
    # E = 100 | 95, 100, 99, 98, 97, 101.
    # Episode A: peak point 0, under at 1 (-5 %), recovered at point 2 -> 2 bars, the deepest.
    # Episode B: peak point 2, under at 3..5 (-1 %, -2 %, -3 %), recovered at 6 -> 4 bars.
    m = compute_metrics([95.0, 100.0, 99.0, 98.0, 97.0, 101.0], days(6), [], interval_ms=DAY,
                        starting_cash=100.0)
    assert m.max_drawdown == pytest.approx(-0.05, rel=1e-12)
    assert (m.max_drawdown_bars, m.max_drawdown_ms) == (2, 2 * DAY)
    assert (m.longest_drawdown_bars, m.longest_drawdown_ms) == (4, 4 * DAY)


def test_drawdown_before_first_bar_counts_against_starting_cash():
    # The first bar already loses 10 % of the starting cash: that is a drawdown.
    m = compute_metrics([90.0, 100.0], days(2), [], interval_ms=DAY, starting_cash=100.0)
    assert m.max_drawdown == pytest.approx(-0.1)
    assert (m.max_drawdown_bars, m.max_drawdown_ms) == (2, 2 * DAY)


def test_drawdown_duration_in_ms_spans_data_gaps():
    # Bars at 0, 1, 10, 11 minutes. E = 100 | 100, 90, 95, 101; the episode starts at the
    # last point at the peak, point 1 (close of bar 0, t = 60 000), and recovers at point 4
    # (close of bar 3, t = 11 min + 1 min = 720 000): 3 bars but 660 000 ms.
    ts = np.array([0, 1, 10, 11], dtype=np.int64) * MINUTE
    m = compute_metrics([100.0, 90.0, 95.0, 101.0], ts, [], interval_ms=MINUTE,
                        starting_cash=100.0)
    assert (m.max_drawdown_bars, m.max_drawdown_ms) == (3, 660_000)
    # Elapsed time includes the gap: 12 minutes from first open to last close.
    assert m.years * 365.25 * DAY == pytest.approx(12 * MINUTE)


def test_hand_computed_trade_statistics():
    # Net P&L 10, -5, 20, 0, -15: wins 10 + 20 = 30, losses -5 - 15 = -20.
    # win rate 2 / 5 = 0.4; profit factor 30 / 20 = 1.5; expectancy 10 / 5 = 2;
    # average win 15, average loss -10; best 20, worst -15; fees 5 * 0.5.
    trades = [trade(10.0), trade(-5.0, ambiguous=True), trade(20.0), trade(0.0), trade(-15.0)]
    m = compute_metrics([100.0, 101.0], days(2), trades, interval_ms=DAY, starting_cash=100.0)
    assert (m.n_trades, m.n_wins, m.n_losses, m.n_ambiguous) == (5, 2, 2, 1)
    assert m.win_rate == pytest.approx(0.4)
    assert m.profit_factor == pytest.approx(1.5)
    assert m.expectancy == pytest.approx(2.0)
    assert (m.avg_win, m.avg_loss, m.best_trade, m.worst_trade) == (15.0, -10.0, 20.0, -15.0)
    assert m.total_fees == pytest.approx(2.5)


def test_exposure_from_trade_bar_indices():
    # 10 bars. Trade A: bars 1..3 -> held 1, 2 (exit bar flat). Trade B: 2..5 -> 2, 3, 4.
    # Trade C enters and exits on bar 7 -> held during bar 7. Union {1, 2, 3, 4, 7} = 5 / 10.
    trades = [trade(entry_bar=1, exit_bar=3), trade(entry_bar=2, exit_bar=5),
              trade(entry_bar=7, exit_bar=7)]
    m = compute_metrics(np.full(10, 100.0), days(10), trades, interval_ms=DAY, starting_cash=100.0)
    assert m.exposure == 0.5


def test_exposure_from_in_position_mask():
    mask = np.array([True, False, True, True])
    m = compute_metrics(np.full(4, 100.0), days(4), [trade(entry_bar=0, exit_bar=3)],
                        interval_ms=DAY, starting_cash=100.0, in_position=mask)
    assert m.exposure == 0.75


# --------------------------------------------------------------------------- edge cases

def test_no_trades_gives_nan_trade_statistics():
    m = compute_metrics([101.0, 102.0], days(2), [], interval_ms=DAY, starting_cash=100.0)
    assert m.n_trades == 0 and m.exposure == 0.0 and m.total_fees == 0.0
    for name in ("win_rate", "profit_factor", "expectancy", "avg_win", "avg_loss",
                 "best_trade", "worst_trade"):
        assert math.isnan(getattr(m, name)), name


def test_all_winning_trades_have_infinite_profit_factor():
    m = compute_metrics([101.0, 102.0], days(2), [trade(1.0), trade(3.0)], interval_ms=DAY,
                        starting_cash=100.0)
    assert m.profit_factor == math.inf
    assert m.win_rate == 1.0 and m.avg_win == 2.0 and math.isnan(m.avg_loss)


def test_only_breakeven_trades_have_nan_profit_factor():
    m = compute_metrics([100.0, 100.0], days(2), [trade(0.0)], interval_ms=DAY, starting_cash=100.0)
    assert math.isnan(m.profit_factor) and m.win_rate == 0.0 and m.expectancy == 0.0


def test_flat_equity_has_nan_ratios_and_no_drawdown():
    m = compute_metrics(np.full(50, 100.0), days(50), [], interval_ms=DAY, starting_cash=100.0)
    assert m.total_return == 0.0 and m.cagr == 0.0 and m.volatility == 0.0
    assert math.isnan(m.sharpe) and math.isnan(m.sortino) and math.isnan(m.calmar)
    assert m.max_drawdown == 0.0 and m.max_drawdown_bars == 0 and m.longest_drawdown_bars == 0


def test_constant_growth_is_not_a_huge_sharpe_from_rounding_noise():
    # 1 % a bar: the returns differ only by rounding, so std counts as zero -> Sharpe NaN,
    # and with no downside Sortino is +inf.
    eq = 100.0 * 1.01 ** np.arange(1, 200)
    m = compute_metrics(eq, days(199), [], interval_ms=DAY, starting_cash=100.0)
    assert math.isnan(m.sharpe)
    assert m.sortino == math.inf
    assert m.max_drawdown == 0.0


def test_single_bar_has_nan_return_ratios():
    m = compute_metrics([105.0], days(1), [], interval_ms=DAY, starting_cash=100.0)
    assert m.total_return == pytest.approx(0.05)
    assert math.isnan(m.volatility) and math.isnan(m.sharpe) and math.isnan(m.sortino)


def test_equity_wiped_out():
    m = compute_metrics([50.0, -10.0, 0.0], days(3), [], interval_ms=DAY, starting_cash=100.0)
    assert m.cagr == -1.0 and m.total_return == -1.0
    assert m.max_drawdown == pytest.approx(-1.1)
    assert math.isnan(m.volatility) and math.isnan(m.sharpe)


def test_metrics_to_dict_has_every_field():
    m = compute_metrics([101.0, 102.0], days(2), [trade()], interval_ms=DAY, starting_cash=100.0)
    d = m.to_dict()
    assert list(d) == [f.name for f in dataclasses.fields(Metrics)]
    assert d["n_trades"] == 1


@pytest.mark.parametrize("kwargs, error, message", [
    ({"equity": np.ones((2, 2))}, ValueError, "1-D"),
    ({"equity": np.array([])}, ValueError, "empty"),
    ({"equity": np.array([1.0, np.nan, 1.0])}, ValueError, r"equity\[1\]"),
    ({"timestamps": days(2)}, ValueError, "does not match"),
    ({"timestamps": days(3).astype(float)}, ValueError, "integers"),
    ({"timestamps": np.array([0, DAY, DAY])}, ValueError, r"timestamps\[2\]"),
    ({"interval_ms": 0}, ValueError, "interval_ms"),
    ({"interval_ms": 1.5}, ValueError, "interval_ms"),
    ({"starting_cash": 0.0}, ValueError, "starting_cash"),
    ({"starting_cash": float("nan")}, ValueError, "starting_cash"),
    ({"risk_free_rate": -1.0}, ValueError, "risk_free_rate"),
    ({"in_position": np.ones(2, bool)}, ValueError, "in_position shape"),
    ({"in_position": np.ones(3)}, ValueError, "bool"),
    ({"trades": [trade(entry_bar=1, exit_bar=4)]}, ValueError, r"trades\[0\]"),
    ({"trades": [{"pnl": 1.0}]}, TypeError, "not Trade"),
])
def test_bad_inputs_raise_clear_errors(kwargs, error, message):
    args = {"equity": np.array([100.0, 101.0, 99.0]), "timestamps": days(3), "trades": [],
            "interval_ms": DAY, "starting_cash": 100.0}
    args.update(kwargs)
    with pytest.raises(error, match=message):
        compute_metrics(args.pop("equity"), args.pop("timestamps"), args.pop("trades"), **args)


def test_drawdown_series_seeded_by_starting_cash():
    np.testing.assert_allclose(drawdown_series([90.0, 100.0, 80.0]), [0.0, 0.0, -0.2])
    np.testing.assert_allclose(drawdown_series([90.0, 100.0, 80.0], 120.0),
                               [-0.25, -1 / 6, -1 / 3])


# --------------------------------------------------------------------------- cross-check

def reference_metrics(starting_cash, equity, bars_per_year, rf_annual):
    """Straightforward, loop-based formulas written independently of tradesim.metrics."""
    curve = [starting_cash] + list(equity)
    returns = [curve[i] / curve[i - 1] - 1 for i in range(1, len(curve))]
    n = len(returns)
    rf = (1 + rf_annual) ** (1 / bars_per_year) - 1
    mean = sum(returns) / n
    var = sum((r - mean) ** 2 for r in returns) / (n - 1)
    excess = [r - rf for r in returns]
    mean_ex = sum(excess) / n
    downside = math.sqrt(sum(min(x, 0.0) ** 2 for x in excess) / n)
    peak, worst, peak_at, worst_peak_at, worst_at = curve[0], 0.0, 0, 0, 0
    for i, value in enumerate(curve):
        if value >= peak:
            peak, peak_at = value, i
        dd = value / peak - 1
        if dd < worst:
            worst, worst_peak_at, worst_at = dd, peak_at, i
    recovery = next((i for i in range(worst_at, len(curve)) if curve[i] >= curve[worst_peak_at]),
                    len(curve) - 1)
    return {
        "volatility": math.sqrt(var) * math.sqrt(bars_per_year),
        "sharpe": mean_ex / math.sqrt(var) * math.sqrt(bars_per_year),
        "sortino": mean_ex * math.sqrt(bars_per_year) / downside,
        "max_drawdown": worst,
        "max_drawdown_bars": recovery - worst_peak_at if worst < 0 else 0,
    }


@pytest.mark.parametrize("seed, rf", [(1, 0.0), (2, 0.03), (3, 0.0)])
def test_random_curve_matches_independent_reference(seed, rf):
    rng = np.random.default_rng(seed)
    n = 5000
    equity = 10_000.0 * np.cumprod(1 + rng.normal(0.0002, 0.01, n))
    ts = 1_700_000_000_000 + np.arange(n, dtype=np.int64) * 3_600_000
    m = compute_metrics(equity, ts, [], interval_ms=3_600_000, starting_cash=10_000.0,
                        risk_free_rate=rf)
    ref = reference_metrics(10_000.0, equity, 365.25 * 24, rf)
    for name in ("volatility", "sharpe", "sortino", "max_drawdown"):
        assert getattr(m, name) == pytest.approx(ref[name], rel=1e-9), name
    assert m.max_drawdown_bars == ref["max_drawdown_bars"]


def test_matches_empyrical_when_installed():
    empyrical = pytest.importorskip("empyrical", reason="empyrical not installed (optional cross-check)")
    rng = np.random.default_rng(7)
    equity = 1000.0 * np.cumprod(1 + rng.normal(0.001, 0.02, 800))
    returns = np.diff(np.concatenate(([1000.0], equity))) / np.concatenate(([1000.0], equity[:-1]))
    m = compute_metrics(equity, days(800), [], interval_ms=DAY, starting_cash=1000.0)
    assert m.sharpe == pytest.approx(empyrical.sharpe_ratio(returns, annualization=365.25), rel=1e-9)
    assert m.sortino == pytest.approx(empyrical.sortino_ratio(returns, annualization=365.25), rel=1e-9)
    assert m.volatility == pytest.approx(empyrical.annual_volatility(returns, annualization=365.25),
                                         rel=1e-9)
    assert m.max_drawdown == pytest.approx(empyrical.max_drawdown(returns), rel=1e-9)
