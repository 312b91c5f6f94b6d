"""Every example strategy driven through a `SymbolRunner` over 30k real BTCUSDT 1m bars.

Generic checks (all examples): trades do not overlap, exits come after entries, market
fills are at the open of the bar after the decision, stop-losses are respected, the books
balance. Strategy-specific checks recompute each signal independently with TA-Lib.

TA-Lib and tradesim agree to ~1e-9 relative (on these bars ~1e-13), not necessarily bit
for bit, so comparisons against a threshold allow a small tolerance `tol`, far above that
difference and far below the indicator's scale. Where a check must decide on its own which
bars qualify (every MACD cross taken), bars within `tol` of the threshold are skipped, and
counted to make sure they stay few.
"""

from collections import Counter
from pathlib import Path

import numpy as np
import pytest

from tradesim.runner import SymbolRunner

talib = pytest.importorskip("talib")

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "lua-strategies" / "examples"
TEST_STRATEGY = REPO / "lua-strategies" / "test_strategy.lua"
N_BARS = 30_000
MARKET_EXITS = {"ema_cross_down", "rsi_recovered", "time_stop", "reached_middle", "opposite_cross",
                "held"}


@pytest.fixture(scope="module")
def bars(btc_bars):
    """The first 30k bars as contiguous columns."""
    return {k: np.ascontiguousarray(getattr(btc_bars, k)[:N_BARS])
            for k in ("timestamp", "open", "high", "low", "close", "volume")}


_RUNS = {}


def drive(path, bars, **params):
    """Run `path` over `bars` (next-open fills, no costs) and close at the end; cached."""
    key = (str(path), tuple(sorted(params.items())))
    if key not in _RUNS:
        runner = SymbolRunner("BTCUSDT", path, params=params)
        n = len(bars["close"])
        nan = np.full(n, np.nan)
        equity, in_pos = np.empty(n), np.zeros(n, dtype=np.uint8)
        b = bars
        done = runner.core.run(b["timestamp"], b["open"], b["high"], b["low"], b["close"],
                               b["volume"], nan, nan, equity, in_pos)
        assert done == n
        runner.close_position()
        _RUNS[key] = runner
    return _RUNS[key]


def example(name):
    return TEST_STRATEGY if name == "test_strategy" else EXAMPLES / f"{name}.lua"


def signal_bars(runner):
    """Bar on which each entry was decided (fills at the next bar's open)."""
    return np.array([t.entry_bar - 1 for t in runner.trades])


def flat_at_decision(runner, n):
    """True where the runner was flat when the strategy decided on that bar.

    A position entered at bar e's open and left at bar x (at x's open, or a stop inside x)
    is held while deciding on bars e .. x-1; on bar x the strategy looks for setups again.
    """
    flat = np.ones(n, dtype=bool)
    for t in runner.trades:
        flat[t.entry_bar:t.exit_bar] = False
    return flat


ALL = ["ema_crossover", "rsi_mean_reversion", "range_breakout", "bollinger_reversion",
       "macd_trend", "test_strategy"]


# --------------------------------------------------------------------------- generic

@pytest.mark.parametrize("name", ALL)
def test_example_trades_are_sensible(bars, name):
    r = drive(example(name), bars)
    o, c, ts = bars["open"], bars["close"], bars["timestamp"]
    n = len(c)
    assert len(r.trades) >= 50, "30k minutes should give each example plenty of trades"
    assert r.errors == [] and r.rejections == []
    prev_exit = -1
    for t in r.trades:
        # One position at a time; a new entry is decided at the earliest on the exit bar.
        assert t.entry_bar > prev_exit
        prev_exit = t.exit_bar
        assert 0 < t.entry_bar <= t.exit_bar < n
        assert (t.entry_time, t.exit_time) == (ts[t.entry_bar], ts[t.exit_bar])
        assert t.entry_price == o[t.entry_bar]          # filled at the next bar's open
        assert t.fees == 0.0
        sign = 1.0 if t.side == "long" else -1.0
        assert t.pnl == pytest.approx(sign * (t.exit_price - t.entry_price) * t.quantity, abs=1e-9)
        if t.exit_reason in MARKET_EXITS:
            # Decided on the entry bar at the earliest, filled at a later open.
            assert t.exit_bar > t.entry_bar and t.exit_price == o[t.exit_bar]
        elif t.exit_reason == "end_of_data":
            assert t.exit_bar == n - 1 and t.exit_price == c[-1]
        else:
            assert t.exit_reason in ("stop_loss", "take_profit")
    # The books balance: flat at the end, equity is the starting cash plus the P&L.
    assert r.core.quantity == 0.0
    assert r.equity == pytest.approx(10_000.0 + sum(t.pnl for t in r.trades), abs=1e-6)


@pytest.mark.parametrize("name", ["rsi_mean_reversion", "bollinger_reversion"])
def test_fixed_stops_and_targets_are_respected(bars, name):
    r = drive(example(name), bars)
    o, h, l = bars["open"], bars["high"], bars["low"]
    positions = r.machine.closed_positions
    assert len(positions) == len(r.trades)
    checked = Counter()
    for t, p in zip(r.trades, positions):
        assert (p.entry_time, p.exit_time, p.exit_price) == (t.entry_time, t.exit_time, t.exit_price)
        e, x = t.entry_bar, t.exit_bar
        stop, target = p.stop_loss, p.take_profit
        assert stop < t.entry_price  # long only
        # Not triggered while held: from the entry bar's open to the bar before the exit.
        assert (l[e:x] > stop).all()
        if not np.isnan(target):
            assert target > t.entry_price and (h[e:x] < target).all()
        if t.exit_reason == "stop_loss":
            assert l[x] <= stop and t.exit_price == min(o[x], stop)
        elif t.exit_reason == "take_profit":
            assert h[x] >= target and t.exit_price == max(o[x], target)
            assert l[x] > stop or t.ambiguous or o[x] >= target   # a gap: the open decides
        checked[t.exit_reason] += 1
    assert checked["stop_loss"] > 0


# --------------------------------------------------------------------------- EMA crossover

def test_ema_crossover_enters_on_every_cross_up_while_flat(bars):
    r = drive(example("ema_crossover"), bars)
    c = bars["close"]
    f, s = talib.EMA(c, 10), talib.EMA(c, 20)
    d = f - s
    prev = np.r_[np.nan, d[:-1]]
    up = (prev <= 0) & (d > 0)          # NaN compares False: both must be defined
    down = (prev >= 0) & (d < 0)
    flat = flat_at_decision(r, len(c))
    np.testing.assert_array_equal(signal_bars(r), np.flatnonzero(up & flat & (np.arange(len(c)) < len(c) - 1)))
    for t in r.trades:
        if t.exit_reason == "ema_cross_down":
            # Exit decided on the first cross down after the entry.
            downs = np.flatnonzero(down[t.entry_bar:t.exit_bar])
            assert downs.size == 1 and downs[0] == t.exit_bar - 1 - t.entry_bar


# --------------------------------------------------------------------------- RSI

def test_rsi_entries_follow_an_oversold_reading_turning_up(bars):
    r = drive(example("rsi_mean_reversion"), bars)
    c = bars["close"]
    rsi = talib.RSI(c, 14)
    tol = 1e-7  # RSI units (0..100)
    for t, p in zip(r.trades, r.machine.closed_positions):
        s = t.entry_bar - 1
        # Analysis starts on an RSI < 30 reading and keeps the lowest reading while the RSI
        # does not rise (and stays below 50); it commits on bar s, the first rise. So the
        # reading before s is that minimum, below 30, and bar s is higher but under 50.
        assert rsi[s - 1] < 30 + tol
        assert rsi[s] > rsi[s - 1] - tol and rsi[s] < 50 + tol
        # Levels from the decision bar's close.
        assert p.stop_loss == pytest.approx(c[s] * 0.99, rel=1e-14)
        assert p.take_profit == pytest.approx(c[s] * 1.02, rel=1e-14)
        if t.exit_reason == "rsi_recovered":
            assert rsi[t.exit_bar - 1] > 50 - tol


# --------------------------------------------------------------------------- MACD

def test_macd_entries_follow_a_histogram_sign_change(bars):
    r = drive(example("macd_trend"), bars)
    c = bars["close"]
    macd, _, hist = talib.MACD(c, 12, 26, 9)
    tol = 1e-6  # quote currency; MACD values here are O(1..100) USDT
    sides = Counter()
    for t in r.trades:
        s = t.entry_bar - 1
        sides[t.side] += 1
        if t.side == "long":
            assert hist[s - 1] <= tol and hist[s] > -tol and macd[s] > -tol
        else:
            assert hist[s - 1] >= -tol and hist[s] < tol and macd[s] < tol
        if t.exit_reason == "opposite_cross":
            x = t.exit_bar - 1
            if t.side == "long":
                assert hist[x - 1] >= -tol and hist[x] < tol
            else:
                assert hist[x - 1] <= tol and hist[x] > -tol
    assert sides["long"] > 20 and sides["short"] > 20
    # And every clear qualifying cross while flat was taken.
    prev = np.r_[np.nan, hist[:-1]]
    clear = (np.abs(hist) > tol) & (np.abs(prev) > tol) & (np.abs(macd) > tol)
    assert (~clear[40:]).sum() <= 5  # near-ties skipped (none on these bars)
    cross = clear & (((prev < 0) & (hist > 0) & (macd > 0)) | ((prev > 0) & (hist < 0) & (macd < 0)))
    flat = flat_at_decision(r, len(c))
    taken = set(signal_bars(r))
    missed = [i for i in np.flatnonzero(cross & flat) if i < len(c) - 1 and i not in taken]
    assert missed == []


# --------------------------------------------------------------------------- Bollinger

def test_bollinger_entries_follow_a_close_below_the_lower_band(bars):
    r = drive(example("bollinger_reversion"), bars)
    c = bars["close"]
    upper, middle, lower = talib.BBANDS(c, 20, 2.0, 2.0, 0)
    sd = (upper - middle) / 2.0
    for t, p in zip(r.trades, r.machine.closed_positions):
        s = t.entry_bar - 1
        assert c[s] < lower[s] * (1 + 1e-12)
        assert p.stop_loss < c[s]   # otherwise the setup is cancelled
        # Stop 3 sd below the middle, target the middle, both as seen on bar s.
        assert p.stop_loss == pytest.approx(middle[s] - 3 * sd[s], rel=1e-9)
        assert p.take_profit == pytest.approx(middle[s], rel=1e-9)
        if t.exit_reason == "reached_middle":
            assert c[t.exit_bar - 1] >= middle[t.exit_bar - 1] * (1 - 1e-12)
    # And every clear setup while flat was taken: a close below the lower band with the
    # stop (3 sd below the middle) still under the close.
    stop = middle - 3 * sd
    clear = (np.abs(c / lower - 1) > 1e-12) & (np.abs(c / stop - 1) > 1e-12)
    setup = clear & (c < lower) & (stop < c) & flat_at_decision(r, len(c))
    taken = signal_bars(r)
    wanted = np.flatnonzero(setup)
    np.testing.assert_array_equal(np.setdiff1d(wanted[wanted < len(c) - 1], taken), [])
    assert len(taken) > 500


# --------------------------------------------------------------------------- range breakout

def test_range_breakout_entries_and_trailing_stop(bars):
    r = drive(example("range_breakout"), bars)
    o, l, c, v = bars["open"], bars["low"], bars["close"], bars["volume"]
    high20, low20 = talib.MAX(bars["high"], 20), talib.MIN(l, 20)
    avg_volume = talib.SMA(v, 20)   # the last 20 bars, the breakout bar included
    reasons = Counter()
    for t, p in zip(r.trades, r.machine.closed_positions):
        s = t.entry_bar - 1
        # Close above the previous bar's 20-bar high, on volume above 1.5x the average.
        assert c[s] > high20[s - 1]
        assert v[s] > 1.5 * avg_volume[s] * (1 - 1e-9)
        # Replay the stop: starts at the range low, trails to the previous bar's 20-bar low
        # when that is above it and below the close; 120 bars at most.
        stop = low20[s - 1]
        for b in range(t.entry_bar, len(c)):
            if l[b] <= stop:
                expected = (b, "stop_loss", min(o[b], stop))
                break
            if b - t.entry_bar + 1 >= 120:   # manage_position's 120th call
                expected = (b + 1, "time_stop", o[b + 1])
                break
            if stop < low20[b - 1] < c[b]:
                stop = low20[b - 1]
        assert (t.exit_bar, t.exit_reason, t.exit_price) == expected
        assert p.stop_loss == stop
        reasons[t.exit_reason] += 1
    assert reasons["stop_loss"] > 100 and reasons["time_stop"] > 0
    # And every clear breakout while flat was taken.
    prev_high = np.r_[np.nan, high20[:-1]]
    ratio = v / (1.5 * avg_volume)
    near = np.abs(ratio - 1) < 1e-9
    assert near.sum() <= 5
    breakout = (c > prev_high) & (ratio > 1) & ~near
    flat = flat_at_decision(r, len(c))
    wanted = np.flatnonzero(breakout & flat)
    np.testing.assert_array_equal(np.setdiff1d(wanted[wanted < len(c) - 1], signal_bars(r)), [])


# --------------------------------------------------------------------------- test_strategy

def test_test_strategy_cycle_is_periodic(bars):
    # every=10, hold=3, sma(5): the 10th idle bar (bar 9, SMA defined from bar 4) enters at
    # bar 10's open; manage_position on bars 10, 11, 12 exits at bar 13's open; bar 13 is
    # idle bar 11, so the next entry is decided on idle bar 20 = bar 22: a 13-bar cycle.
    r = drive(TEST_STRATEGY, bars)
    o = bars["open"]
    entries = np.array([t.entry_bar for t in r.trades])
    np.testing.assert_array_equal(entries, 10 + 13 * np.arange(len(entries)))
    assert all(t.exit_bar == t.entry_bar + 3 and t.exit_reason == "held" for t in r.trades)
    assert len(r.trades) == (N_BARS - 1 - 10) // 13 + 1
    assert r.trades[0].exit_price == o[13]
