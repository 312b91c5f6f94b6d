"""Every indicator against TA-Lib (VWAP against numpy) on real and random data."""

import numpy as np
import pytest

import tradesim._core as core

talib = pytest.importorskip("talib", reason="ta-lib is a test dependency: pip install '.[test]'")

# Relative tolerance from the issue. The absolute floor is 1e-12 of the input
# price level (1e-10 for 0-100 oscillators): near a zero crossing (MACD,
# histogram) a relative error is undefined, and 1e-12 of the price is far below
# any meaningful difference.
RTOL = 1e-9


def assert_matches(ours, ref, scale, what):
    ours = np.asarray(ours)
    ref = np.asarray(ref)
    nan_ours, nan_ref = np.isnan(ours), np.isnan(ref)
    assert (nan_ours == nan_ref).all(), (
        f"{what}: warm-up differs: first value at {np.argmin(nan_ours)} vs TA-Lib {np.argmin(nan_ref)}")
    assert (~nan_ref).any(), f"{what}: nothing to compare"
    a, b = ours[~nan_ref], ref[~nan_ref]
    tol = RTOL * np.maximum(np.abs(a), np.abs(b)) + 1e-12 * scale
    worst = int(np.argmax(np.abs(a - b) - tol))
    assert (np.abs(a - b) <= tol).all(), (
        f"{what}: {a[worst]!r} vs TA-Lib {b[worst]!r} (|diff| {abs(a[worst] - b[worst]):.3g})")


def check_all(o, h, l, c, v, label):
    price = float(np.median(c))
    assert_matches(core.sma(c, 20), talib.SMA(c, 20), price, f"{label} SMA20")
    assert_matches(core.sma(c, 200), talib.SMA(c, 200), price, f"{label} SMA200")
    assert_matches(core.ema(c, 20), talib.EMA(c, 20), price, f"{label} EMA20")
    assert_matches(core.ema(c, 3), talib.EMA(c, 3), price, f"{label} EMA3")
    assert_matches(core.rsi(c, 14), talib.RSI(c, 14), 100, f"{label} RSI14")
    assert_matches(core.rsi(c, 2), talib.RSI(c, 2), 100, f"{label} RSI2")
    for ours, ref, name in zip(core.macd(c, 12, 26, 9), talib.MACD(c, 12, 26, 9),
                               ("macd", "signal", "hist")):
        assert_matches(ours, ref, price, f"{label} MACD {name}")
    for ours, ref, name in zip(core.macd(c, 5, 35, 5), talib.MACD(c, 5, 35, 5),
                               ("macd", "signal", "hist")):
        assert_matches(ours, ref, price, f"{label} MACD(5,35,5) {name}")
    for ours, ref, name in zip(core.bollinger(c, 20, 2.0), talib.BBANDS(c, 20, 2.0, 2.0, 0),
                               ("upper", "middle", "lower")):
        assert_matches(ours, ref, price, f"{label} BB {name}")
    assert_matches(core.atr(h, l, c, 14), talib.ATR(h, l, c, 14), price, f"{label} ATR14")
    for ours, ref, name in zip(core.stochastic(h, l, c, 14, 3, 3),
                               talib.STOCH(h, l, c, 14, 3, 0, 3, 0), ("k", "d")):
        assert_matches(ours, ref, 100, f"{label} STOCH {name}")
    for ours, ref, name in zip(core.stochastic(h, l, c, 5, 1, 1),
                               talib.STOCH(h, l, c, 5, 1, 0, 1, 0), ("k", "d")):
        assert_matches(ours, ref, 100, f"{label} STOCH(5,1,1) {name}")


def numpy_vwap(h, l, c, v, period):
    tp_v = (h + l + c) / 3.0 * v
    out = np.full(len(c), np.nan)
    cs_pv = np.concatenate([[0.0], np.cumsum(tp_v)])
    cs_v = np.concatenate([[0.0], np.cumsum(v)])
    for i in range(period - 1, len(c)):
        sv = v[i - period + 1:i + 1].sum()
        if sv > 0:
            out[i] = tp_v[i - period + 1:i + 1].sum() / sv
    del cs_pv, cs_v
    return out


def test_all_indicators_match_talib_on_real_btcusdt(btc_bars):
    b = btc_bars
    check_all(b.open, b.high, b.low, b.close, b.volume, "BTCUSDT")


def test_all_indicators_match_talib_on_real_ethusdt(eth_bars):
    b = eth_bars
    check_all(b.open, b.high, b.low, b.close, b.volume, "ETHUSDT")


def test_all_indicators_match_talib_on_random_walk(random_walk):
    r = random_walk
    check_all(r["open"], r["high"], r["low"], r["close"], r["volume"], "random walk")


def test_vwap_matches_numpy_on_real_data(btc_bars):
    n = 20_000
    b = btc_bars
    h, l, c, v = b.high[:n], b.low[:n], b.close[:n], b.volume[:n]
    assert_matches(core.vwap(h, l, c, v, 20), numpy_vwap(h, l, c, v, 20), float(c[0]), "VWAP20")


def test_vwap_matches_numpy_with_zero_volume_stretches():
    rng = np.random.default_rng(3)
    c = 50 + rng.random(3000)
    v = rng.gamma(1.0, 10.0, 3000)
    v[100:140] = 0.0  # a quiet stretch longer than the window: VWAP undefined
    ours = core.vwap(c + 0.1, c - 0.1, c, v, 10)
    ref = numpy_vwap(c + 0.1, c - 0.1, c, v, 10)
    assert np.isnan(ours[140 - 1])
    assert_matches(ours, ref, 50.0, "VWAP10 with quiet stretch")


def test_indicator_set_outputs_equal_standalone_indicators(random_walk):
    c = random_walk["close"][:50_000]
    fused = core.compute_all(c, sma=20, ema=20, rsi=14, macd=(12, 26, 9), bollinger=(20, 2.0))
    np.testing.assert_array_equal(fused["sma"], core.sma(c, 20))
    np.testing.assert_array_equal(fused["ema"], core.ema(c, 20))
    np.testing.assert_array_equal(fused["rsi"], core.rsi(c, 14))
    for name, arr in zip(("macd", "macd_signal", "macd_histogram"), core.macd(c, 12, 26, 9)):
        np.testing.assert_array_equal(fused[name], arr)
    for name, arr in zip(("bb_upper", "bb_middle", "bb_lower"), core.bollinger(c, 20, 2.0)):
        np.testing.assert_array_equal(fused[name], arr)
    assert_matches(fused["rsi"], talib.RSI(c, 14), 100, "IndicatorSet RSI")


def test_indicator_set_update_per_tick_equals_batch(random_walk):
    c = random_walk["close"][:3000]
    batch = core.compute_all(c)
    s = core.IndicatorSet()
    for i, x in enumerate(c):
        s.update(float(x))
        for name, arr in batch.items():
            got = getattr(s, name)
            assert (np.isnan(got) and np.isnan(arr[i])) or got == arr[i], (name, i)
    assert s.initialized


def test_warmup_lengths_match_talib_lookback():
    x = 100 + np.arange(200, dtype=float) % 7
    h, l = x + 1, x - 1
    cases = [
        (core.SMA(20), talib.SMA(x, 20)), (core.EMA(20), talib.EMA(x, 20)),
        (core.RSI(14), talib.RSI(x, 14)), (core.MACD(12, 26, 9), talib.MACD(x, 12, 26, 9)[0]),
        (core.BollingerBands(20, 2.0), talib.BBANDS(x, 20)[0]), (core.ATR(14), talib.ATR(h, l, x, 14)),
        (core.Stochastic(14, 3, 3), talib.STOCH(h, l, x, 14, 3, 0, 3, 0)[0]),
    ]
    for ind, ref in cases:
        first_ref = int(np.argmax(~np.isnan(ref)))
        assert ind.warmup_period == first_ref + 1, type(ind).__name__
