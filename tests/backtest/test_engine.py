"""Backtest engine: an independent numpy + TA-Lib reference of the EMA crossover on real
BTCUSDT 1m bars (both fill rules, with and without costs), no look-ahead, the ledger,
multi-symbol / multi-strategy portfolios, the date filter, parameter errors and JSON output."""

import json
import math
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
import pytest

from tradesim.backtest import Backtest
from tradesim.data import Bars
from tradesim.strategy import StrategyLoadError

talib = pytest.importorskip("talib")

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "lua-strategies" / "examples"
EMA = EXAMPLES / "ema_crossover.lua"
RSI = EXAMPLES / "rsi_mean_reversion.lua"
MACD = EXAMPLES / "macd_trend.lua"
EMA_PARAMS = {"fast": 10, "slow": 20, "quantity": 0.01}
MIN = 60_000


# --------------------------------------------------------------------------- reference

def ema_crossover_reference(bars, *, fill="next_open", slippage_bps=0.0, commission_bps=0.0,
                            fast=10, slow=20, quantity=0.01, close_at_end=True):
    """The EMA crossover (long only) written out with TA-Lib and a plain loop.

    A cross up at bar t (both EMAs defined at t-1 and t, fast <= slow at t-1, fast > slow
    at t) enters when flat; a cross down exits when in position. Orders fill at bar t+1's
    open (``next_open``) or bar t's close (``close``); buys pay ``slippage_bps`` above the
    price, sells receive that much below; commission is ``commission_bps`` of each fill's
    notional. A position still open at the end closes at the last close ("end_of_data").

    Returns a list of dicts: entry_bar, entry_price, exit_bar, exit_price, reason, fees, pnl.
    """
    o, c = bars.open, bars.close
    f, s = talib.EMA(c, fast), talib.EMA(c, slow)
    pf, ps = np.r_[np.nan, f[:-1]], np.r_[np.nan, s[:-1]]
    defined = ~(np.isnan(pf) | np.isnan(ps) | np.isnan(f) | np.isnan(s))
    up = defined & (pf <= ps) & (f > s)
    down = defined & (pf >= ps) & (f < s)
    buy, sell = 1 + slippage_bps / 10_000, 1 - slippage_bps / 10_000

    trades, pos, pending = [], None, None

    def close_trade(bar, price, reason):
        entry_bar, entry_price = pos
        fees = (entry_price + price) * quantity * commission_bps / 10_000
        trades.append({"entry_bar": entry_bar, "entry_price": entry_price, "exit_bar": bar,
                       "exit_price": price, "reason": reason, "fees": fees,
                       "pnl": (price - entry_price) * quantity - fees})

    n = len(c)
    for t in range(n):
        if pending == "enter":
            pos = (t, o[t] * buy)
        elif pending == "exit":
            close_trade(t, o[t] * sell, "ema_cross_down")
            pos = None
        pending = None
        if pos is None and up[t]:
            if fill == "close":
                pos = (t, c[t] * buy)
            else:
                pending = "enter"
        elif pos is not None and down[t]:
            if fill == "close":
                close_trade(t, c[t] * sell, "ema_cross_down")
                pos = None
            else:
                pending = "exit"
    if pos is not None and close_at_end:
        close_trade(n - 1, c[-1] * sell, "end_of_data")
    return trades


def assert_same_trades(got, expected, bars):
    assert len(got) == len(expected)
    for t, e in zip(got, expected):
        assert (t.entry_bar, t.exit_bar, t.exit_reason) == (e["entry_bar"], e["exit_bar"], e["reason"])
        assert (t.entry_time, t.exit_time) == (bars.timestamp[e["entry_bar"]], bars.timestamp[e["exit_bar"]])
        # Same price times the same factor: equal to the last bit or one ulp.
        assert t.entry_price == pytest.approx(e["entry_price"], rel=1e-15, abs=0)
        assert t.exit_price == pytest.approx(e["exit_price"], rel=1e-15, abs=0)
        # P&L in quote currency of a 0.01 BTC trade (notional ~1000 USDT): rounding in a
        # different order of operations is ~1e-13 here, so 1e-9 absolute leaves a wide
        # margin while still catching any one-cent or one-bps error.
        assert t.fees == pytest.approx(e["fees"], abs=1e-9)
        assert t.pnl == pytest.approx(e["pnl"], abs=1e-9)
        assert t.quantity == 0.01 and t.side == "long" and not t.ambiguous


@pytest.mark.parametrize("fill, slippage_bps, commission_bps", [
    ("next_open", 0.0, 0.0),
    ("close", 0.0, 0.0),
    ("next_open", 5.0, 10.0),
    ("close", 2.5, 7.5),
])
def test_ema_crossover_matches_independent_reference(btc_bars, fill, slippage_bps, commission_bps):
    result = Backtest(EMA, btc_bars, params=EMA_PARAMS, fill=fill, slippage_bps=slippage_bps,
                      commission_bps=commission_bps).run()
    expected = ema_crossover_reference(btc_bars, fill=fill, slippage_bps=slippage_bps,
                                       commission_bps=commission_bps)
    assert len(expected) > 1000  # three months of 1m bars: thousands of crosses
    assert_same_trades(result.trades, expected, btc_bars)
    # Flat at the end: equity is the starting cash plus every trade's net P&L.
    assert result.equity[-1] == pytest.approx(10_000.0 + sum(e["pnl"] for e in expected), abs=1e-7)
    assert result.metrics.n_trades == len(expected)
    assert result.metrics.total_fees == pytest.approx(sum(e["fees"] for e in expected), abs=1e-7)


def test_ema_crossover_equity_curve_matches_reference_marks(btc_bars):
    # Equity at each close = cash + position marked at that close, from the reference trades.
    bars = btc_bars.slice(None, int(btc_bars.timestamp[20_000]))
    result = Backtest(EMA, bars, params=EMA_PARAMS, slippage_bps=3.0, commission_bps=4.0).run()
    expected = ema_crossover_reference(bars, slippage_bps=3.0, commission_bps=4.0)
    equity = np.full(len(bars), 10_000.0)
    for e in expected:
        q = 0.01
        entry_cost = e["entry_price"] * q * (1 + 4.0 / 10_000)
        held = slice(e["entry_bar"], e["exit_bar"])
        equity[held] += q * bars.close[held] - entry_cost
        equity[e["exit_bar"]:] += e["pnl"]
    np.testing.assert_allclose(result.equity, equity, rtol=0, atol=1e-8)
    assert result.in_position.sum() == sum(e["exit_bar"] - e["entry_bar"] for e in expected)


def test_ema_crossover_end_of_data_close(btc_bars):
    # Find a cut where the reference is in position at the last bar.
    full = ema_crossover_reference(btc_bars)
    long_trade = next(e for e in full if e["exit_bar"] - e["entry_bar"] > 5 and e["entry_bar"] > 100)
    cut = long_trade["entry_bar"] + 3
    bars = btc_bars.slice(None, int(btc_bars.timestamp[cut]))  # bars 0 .. cut-1
    result = Backtest(EMA, bars, params=EMA_PARAMS, slippage_bps=5.0).run()
    expected = ema_crossover_reference(bars, slippage_bps=5.0)
    assert expected[-1]["reason"] == "end_of_data"
    assert_same_trades(result.trades, expected, bars)
    last = result.trades[-1]
    assert last.exit_price == pytest.approx(bars.close[-1] * (1 - 5e-4), rel=1e-15)
    assert not result.in_position[-1]
    # Without close_at_end the position is left open and not reported as a trade.
    kept = Backtest(EMA, bars, params=EMA_PARAMS, close_at_end=False).run()
    assert len(kept.trades) == len(expected) - 1 and kept.in_position[-1]


@pytest.mark.filterwarnings("ignore")  # backtesting.py / pandas chatter
def test_ema_crossover_agrees_with_backtesting_py(btc_bars):
    bt = pytest.importorskip("backtesting")
    pd = pytest.importorskip("pandas")
    n = 20_000
    bars = btc_bars.slice(None, int(btc_bars.timestamp[n]))
    df = pd.DataFrame({"Open": bars.open, "High": bars.high, "Low": bars.low, "Close": bars.close,
                       "Volume": bars.volume},
                      index=pd.to_datetime(bars.timestamp, unit="ms"))

    class Cross(bt.Strategy):
        def init(self):
            self.fast = self.I(talib.EMA, self.data.Close, 10)
            self.slow = self.I(talib.EMA, self.data.Close, 20)

        def next(self):
            f0, s0, f1, s1 = self.fast[-2], self.slow[-2], self.fast[-1], self.slow[-1]
            if not self.position and f0 <= s0 and f1 > s1:
                self.buy(size=1)
            elif self.position and f0 >= s0 and f1 < s1:
                self.position.close()

    for fill in ("next_open", "close"):
        # backtesting.py trades whole units: 1 BTC there, 0.01 here (P&L scales by 100).
        # It leaves a position open at the end (ours closes it): compare closed trades.
        stats = bt.Backtest(df, Cross, cash=10_000_000, commission=0.0,
                            trade_on_close=fill == "close").run()
        peer = stats._trades.sort_values("EntryBar")
        ours = [t for t in Backtest(EMA, bars, params=EMA_PARAMS, fill=fill).run().trades
                if t.exit_reason != "end_of_data"]
        assert len(ours) > 300
        assert [(t.entry_bar, t.exit_bar) for t in ours] == list(zip(peer.EntryBar, peer.ExitBar))
        np.testing.assert_allclose([t.entry_price for t in ours], peer.EntryPrice, rtol=1e-12)
        np.testing.assert_allclose([t.exit_price for t in ours], peer.ExitPrice, rtol=1e-12)
        np.testing.assert_allclose([100 * t.pnl for t in ours], peer.PnL, rtol=1e-9, atol=1e-7)


# --------------------------------------------------------------------------- look-ahead

@pytest.mark.parametrize("cut", [2_000, 33_333, 100_001])
def test_truncating_the_future_changes_no_decision(btc_bars, cut):
    full = Backtest(EMA, btc_bars, params=EMA_PARAMS, close_at_end=False).run()
    prefix_bars = btc_bars.slice(None, int(btc_bars.timestamp[cut + 1]))  # bars 0 .. cut
    bt = Backtest(EMA, prefix_bars, params=EMA_PARAMS, close_at_end=False)
    prefix = bt.run()
    done = [t for t in full.trades if t.exit_bar <= cut]
    assert prefix.trades == done
    np.testing.assert_array_equal(prefix.equity, full.equity[:cut + 1])
    np.testing.assert_array_equal(prefix.in_position, full.in_position[:cut + 1])
    # A trade entered at or before `cut` but closed later is the prefix's open position.
    open_now = [t for t in full.trades if t.entry_bar <= cut < t.exit_bar]
    pos = bt.runners[0][0].machine.position
    assert (pos is None) == (not open_now)
    if pos is not None:
        assert (pos.entry_time, pos.entry_price) == (open_now[0].entry_time, open_now[0].entry_price)


def test_perturbing_the_future_changes_no_decision(btc_bars):
    cut = 50_000
    bars = btc_bars.slice(None, int(btc_bars.timestamp[60_000]))
    scrambled = Bars(bars.symbol, bars.timestamp.copy(), bars.open.copy(), bars.high.copy(),
                     bars.low.copy(), bars.close.copy(), bars.volume.copy(), "", bars.interval_ms)
    rng = np.random.default_rng(7)
    factor = np.exp(np.cumsum(rng.normal(0, 0.01, len(bars) - cut - 1)))
    for col in (scrambled.open, scrambled.high, scrambled.low, scrambled.close):
        col[cut + 1:] *= factor
    a = Backtest(EMA, bars, params=EMA_PARAMS, close_at_end=False).run()
    b = Backtest(EMA, scrambled, params=EMA_PARAMS, close_at_end=False).run()
    assert [t for t in a.trades if t.exit_bar <= cut] == [t for t in b.trades if t.exit_bar <= cut]
    np.testing.assert_array_equal(a.equity[:cut + 1], b.equity[:cut + 1])
    assert a.equity[-1] != b.equity[-1]  # the scrambled future did change later results


# --------------------------------------------------------------------------- ledger

def write_csv(path, stamps, o, h, l, c, v):
    rows = ["timestamp,open,high,low,close,volume"]
    rows += [f"{int(t)},{float(a)!r},{float(b)!r},{float(x)!r},{float(y)!r},{float(z)!r}"
             for t, a, b, x, y, z in zip(stamps, o, h, l, c, v)]
    path.write_text("\n".join(rows) + "\n")
    return path


def test_ledger_records_assumptions_and_counts(btc_bars):
    bars = btc_bars.slice(None, int(btc_bars.timestamp[5_000]))
    result = Backtest(MACD, bars, fill="close", slippage_bps=1.5, commission_bps=4.0,
                      fixed_fee=0.25, starting_cash=5_000.0, risk_free_rate=0.03).run()
    ledger = result.ledger
    assert (ledger["fill_rule"], ledger["slippage_bps"], ledger["commission_bps"],
            ledger["fixed_fee"], ledger["starting_cash"]) == ("close", 1.5, 4.0, 0.25, 5_000.0)
    assert ledger["risk_free_rate"] == 0.03 and ledger["close_at_end"] is True
    assert ledger["ambiguity_policy"] == "stop_loss_first"
    assert ledger["bars_processed"] == 5_000
    # MACD(12, 26, 9): TA-Lib's first value is at index lookback = 33, i.e. after 34 bars.
    first = int(np.argmax(~np.isnan(talib.MACD(bars.close, 12, 26, 9)[2])))
    assert ledger["warmup_bars"] == {"BTCUSDT/macd_trend": first + 1}
    assert ledger["gaps"] == {"BTCUSDT": {"count": 0, "missing_bars": 0, "first": []}}
    assert ledger["strategy_errors"] == 0 and ledger["rejected_actions"] == 0
    assert ledger["runners_failed"] == [] and ledger["ambiguous_exits"] == 0
    assert ledger["load_seconds"] >= 0 and ledger["run_seconds"] >= 0
    # Fees in the trades follow the ledger's costs: 4 bps per side plus 0.25 per order.
    t = result.trades[0]
    assert t.fees == pytest.approx((t.entry_price + t.exit_price) * t.quantity * 4e-4 + 0.5, rel=1e-12)


def test_ledger_counts_gaps_in_a_file_with_missing_minutes(tmp_path):
    t0 = 1_750_000_020_000 - 1_750_000_020_000 % MIN
    keep = np.ones(200, dtype=bool)
    keep[50:53] = False   # 3 minutes missing after minute 49
    keep[120] = False     # 1 minute missing after minute 119
    idx = np.flatnonzero(keep)
    close = 100.0 + np.sin(idx / 5.0)
    path = write_csv(tmp_path / "GAPUSDT-1m.csv", t0 + idx * MIN, close, close + 0.5, close - 0.5,
                     close, np.ones(len(idx)))
    result = Backtest(EMA, path).run()
    gaps = result.ledger["gaps"]["GAPUSDT"]
    assert (gaps["count"], gaps["missing_bars"]) == (2, 4)
    assert [tuple(g) for g in gaps["first"]] == [(t0 + 49 * MIN, t0 + 53 * MIN, 3),
                                                 (t0 + 119 * MIN, t0 + 121 * MIN, 1)]
    assert result.ledger["bars_processed"] == 196


AMBIGUOUS = """
name = "bracket"
params = {{quantity = 1.0}}
function detect_opportunity(md, ctx, ind)
  if md.timestamp == {signal} then return {{reason = "go"}} end
  return nil
end
function filter_commitment(md, ctx, ind)
  return {{action = "enter_long", quantity = params.quantity, stop_loss = 95, take_profit = 110}}
end
function manage_position(md, ctx, ind) return nil end
"""


@pytest.mark.parametrize("policy, reason, price", [("stop_loss_first", "stop_loss", 95.0),
                                                   ("take_profit_first", "take_profit", 110.0)])
def test_ledger_counts_ambiguous_exits(tmp_path, policy, reason, price):
    t0 = 1_750_000_020_000 - 1_750_000_020_000 % MIN
    stamps = t0 + np.arange(6) * MIN
    o = np.array([100.0, 100, 100, 100, 100, 100])
    h = np.array([101.0, 101, 101, 111, 101, 101])   # bar 3 touches both levels
    l = np.array([99.0, 99, 99, 94, 99, 99])
    path = write_csv(tmp_path / "AMBUSDT-1m.csv", stamps, o, h, l, o, np.ones(6))
    script = tmp_path / "bracket.lua"
    script.write_text(AMBIGUOUS.format(signal=int(stamps[1])))
    result = Backtest(script, path, ambiguity_policy=policy).run()
    (t,) = result.trades
    assert (t.entry_bar, t.exit_bar, t.exit_reason, t.exit_price, t.ambiguous) == (2, 3, reason, price, True)
    assert result.ledger["ambiguous_exits"] == 1 and result.ledger["ambiguity_policy"] == policy
    assert result.metrics.n_ambiguous == 1


def test_metrics_are_present_and_consistent(btc_bars):
    bars = btc_bars.slice(None, int(btc_bars.timestamp[30_000]))
    result = Backtest(EMA, bars, params=EMA_PARAMS, commission_bps=2.0).run()
    m = result.metrics.to_dict()
    for key in ("total_return", "cagr", "volatility", "sharpe", "sortino", "calmar", "max_drawdown",
                "exposure", "n_trades", "win_rate", "profit_factor", "expectancy", "total_fees"):
        assert key in m
    pnl = np.array([t.pnl for t in result.trades])
    assert m["n_trades"] == len(pnl) and m["n_wins"] == (pnl > 0).sum()
    assert m["final_equity"] == result.equity[-1]
    assert m["total_return"] == pytest.approx(result.equity[-1] / 10_000.0 - 1, rel=1e-12)
    assert m["win_rate"] == pytest.approx((pnl > 0).mean())
    assert m["exposure"] == pytest.approx(result.in_position.mean())
    assert m["max_drawdown"] <= 0 and math.isfinite(m["sharpe"])
    assert m["start_time"] == bars.timestamp[0] and m["n_bars"] == len(bars)


# --------------------------------------------------------------------------- portfolios

def test_multi_symbol_multi_strategy_portfolio(btc_bars, eth_bars):
    n = 20_000
    btc = btc_bars.slice(None, int(btc_bars.timestamp[n]))
    eth = eth_bars.slice(None, int(btc_bars.timestamp[n]))
    result = Backtest([EMA, RSI], [btc, eth], starting_cash=12_000.0).run()
    assert [(r.symbol, r.strategy) for r in result.runs] == [
        ("BTCUSDT", "ema_crossover"), ("ETHUSDT", "ema_crossover"),
        ("BTCUSDT", "rsi_mean_reversion"), ("ETHUSDT", "rsi_mean_reversion")]
    assert all(r.starting_cash == 3_000.0 for r in result.runs)
    # The portfolio curve is the sum of the runners' curves (same minutes for both symbols).
    assert all(np.array_equal(r.timestamps, result.timestamps) for r in result.runs)
    np.testing.assert_allclose(result.equity, sum(r.equity for r in result.runs), rtol=0, atol=1e-9)
    assert result.metrics.starting_cash == 12_000.0
    assert result.ledger["bars_processed"] == 4 * n
    assert len(result.trades) == sum(len(r.trades) for r in result.runs)
    assert [t.exit_time for t in result.trades] == sorted(t.exit_time for t in result.trades)
    # Runners are independent: each equals a backtest of that pair alone with its share.
    alone = Backtest(RSI, eth, starting_cash=3_000.0).run()
    assert alone.trades == result.runs[3].trades
    np.testing.assert_array_equal(alone.equity, result.runs[3].equity)


def test_portfolio_forward_fills_symbols_with_different_minutes(tmp_path):
    t0 = 1_750_000_020_000 - 1_750_000_020_000 % MIN
    a_idx = np.arange(0, 60)
    b_idx = np.arange(30, 90)   # starts 30 minutes later, ends 30 minutes later
    paths = []
    for name, idx, base in (("AAAUSDT", a_idx, 100.0), ("BBBUSDT", b_idx, 50.0)):
        close = base + 3 * np.sin(idx / 2.0)
        paths.append(write_csv(tmp_path / f"{name}-1m.csv", t0 + idx * MIN, close, close + 0.1,
                               close - 0.1, close, np.ones(len(idx))))
    test_strategy = REPO / "lua-strategies" / "test_strategy.lua"
    result = Backtest(test_strategy, paths, starting_cash=2_000.0, params={"every": 3, "hold": 2}).run()
    ra, rb = result.runs
    assert ra.starting_cash == rb.starting_cash == 1_000.0
    np.testing.assert_array_equal(result.timestamps, t0 + np.arange(90) * MIN)
    curve_a = {int(t): e for t, e in zip(ra.timestamps, ra.equity)}
    curve_b = {int(t): e for t, e in zip(rb.timestamps, rb.equity)}
    last_a, last_b = 1_000.0, 1_000.0
    for t, total in zip(result.timestamps, result.equity):
        last_a = curve_a.get(int(t), last_a)   # before its first bar: its starting cash
        last_b = curve_b.get(int(t), last_b)   # after its last bar: its last equity
        assert total == pytest.approx(last_a + last_b, abs=1e-9)
    assert len(ra.trades) > 3 and len(rb.trades) > 3


def test_date_range_keeps_bars_from_start_to_before_end(btc_path, btc_bars):
    start, end = "2025-06-01", "2025-06-03T12:00"
    result = Backtest(EMA, btc_path, start=start, end=end, params=EMA_PARAMS).run()
    lo = int(datetime(2025, 6, 1, tzinfo=UTC).timestamp() * 1000)
    hi = int(datetime(2025, 6, 3, 12, tzinfo=UTC).timestamp() * 1000)
    inside = (btc_bars.timestamp >= lo) & (btc_bars.timestamp < hi)
    np.testing.assert_array_equal(result.timestamps, btc_bars.timestamp[inside])
    assert result.timestamps[0] == lo and result.timestamps[-1] == hi - MIN
    assert result.ledger["bars_processed"] == inside.sum() == 2.5 * 1440
    assert all(lo <= t.entry_time and t.exit_time < hi for t in result.trades)
    # Same trades as the reference run on exactly those bars (indicators warm from `start`).
    assert_same_trades(result.trades, ema_crossover_reference(btc_bars.slice(lo, hi)),
                       btc_bars.slice(lo, hi))


# --------------------------------------------------------------------------- errors and output

FAILING = """
name = "fragile"
function detect_opportunity(md, ctx, ind)
  if md.timestamp >= {fail_from} then error("feed me") end
  return {{reason = "go"}}
end
function filter_commitment(md, ctx, ind) return {{action = "enter_long", quantity = 1}} end
function manage_position(md, ctx, ind)
  if md.timestamp >= {fail_from} then error("feed me") end
  return nil
end
"""


def test_failed_runner_is_in_the_ledger_and_its_curve_stops(tmp_path):
    t0 = 1_750_000_020_000 - 1_750_000_020_000 % MIN
    stamps = t0 + np.arange(40) * MIN
    close = 100.0 + np.arange(40.0)
    path = write_csv(tmp_path / "FRGUSDT-1m.csv", stamps, close, close + 0.5, close - 0.5, close,
                     np.ones(40))
    script = tmp_path / "fragile.lua"
    script.write_text(FAILING.format(fail_from=int(stamps[10])))
    progress = []
    result = Backtest(script, path, max_consecutive_errors=3,
                      progress=lambda done, total: progress.append((done, total))).run()
    ledger = result.ledger
    # Entered at bar 1's open (101); errors on bars 10, 11, 12; stopped after bar 12.
    assert ledger["strategy_errors"] == 3 and ledger["bars_processed"] == 13
    assert len(ledger["runners_failed"]) == 1
    assert ledger["runners_failed"][0].startswith("FRGUSDT/fragile: 3 consecutive strategy errors")
    assert "feed me" in ledger["runners_failed"][0]
    assert result.runs[0].status == "failed"
    # The position is closed at the last bar the runner saw (close_at_end), and the curve
    # stays flat after it stopped.
    (t,) = result.trades
    assert (t.entry_bar, t.exit_bar, t.exit_reason, t.exit_price) == (1, 12, "end_of_data", 112.0)
    assert (result.equity[12:] == 10_000.0 + 112.0 - 101.0).all()
    assert progress[-1] == (13, 40)



def test_unknown_parameter_is_an_error_naming_it(btc_bars):
    with pytest.raises(StrategyLoadError, match="'fastt'") as err:
        Backtest(EMA, btc_bars, params={"fastt": 5})
    assert "fast" in str(err.value) and "slow" in str(err.value)  # lists the declared ones


def test_parameter_applies_only_to_strategies_declaring_it(btc_bars):
    bars = btc_bars.slice(None, int(btc_bars.timestamp[3_000]))
    result = Backtest([EMA, RSI], bars, params={"fast": 5, "oversold": 25}).run()
    assert result.runs[0].params["fast"] == 5 and "oversold" not in result.runs[0].params
    assert result.runs[1].params["oversold"] == 25 and "fast" not in result.runs[1].params


def test_bad_execution_field_is_an_error(btc_bars):
    with pytest.raises(ValueError, match="fill"):
        Backtest(EMA, btc_bars, fill="tomorrow")
    with pytest.raises(TypeError):
        Backtest(EMA, btc_bars, execution=None, bogus=1)


def test_to_dict_is_json_serializable(btc_bars):
    bars = btc_bars.slice(None, int(btc_bars.timestamp[10_000]))
    result = Backtest([EMA, MACD], bars, commission_bps=1.0).run()
    text = json.dumps(result.to_dict(), allow_nan=False)
    back = json.loads(text)
    assert back["metrics"]["n_trades"] == len(result.trades)
    assert len(back["trades"]) == len(result.trades) and back["ledger"]["bars_processed"] == 20_000
    assert back["trades"][0]["entry_price"] == result.trades[0].entry_price
    assert {r["strategy"] for r in back["runs"]} == {"ema_crossover", "macd_trend"}


def test_to_dict_without_trades_is_strict_json(btc_bars):
    bars = btc_bars.slice(None, int(btc_bars.timestamp[15]))  # too short for EMA20
    result = Backtest(EMA, bars).run()
    assert result.trades == []
    data = json.loads(json.dumps(result.to_dict(), allow_nan=False))
    assert data["metrics"]["win_rate"] is None  # undefined without trades
