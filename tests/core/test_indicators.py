"""Incremental indicator behaviour: warm-up, reset, validation, properties, memory."""

import math
import resource

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tradesim._core as core

talib = pytest.importorskip("talib", reason="ta-lib is a test dependency: pip install '.[test]'")

# Cent-quantized prices keep every price change >= 0.01, away from TA-Lib's
# 1e-8 zero thresholds (RSI total, Bollinger variance), which we do not copy.
cents = st.integers(min_value=100, max_value=10_000_000).map(lambda c: c / 100.0)
prices = st.lists(cents, min_size=0, max_size=160)


def _bars(closes, spreads):
    c = np.array(closes, dtype=float)
    s = np.array(spreads[: len(c)] + [0.0] * max(0, len(c) - len(spreads)), dtype=float)
    return c + s, np.maximum(c - s, 0.01), c


def _same(a, b, rtol=1e-9, atol=1e-9):
    a, b = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    assert (np.isnan(a) == np.isnan(b)).all(), (a, b)
    m = ~np.isnan(a)
    np.testing.assert_allclose(a[m], b[m], rtol=rtol, atol=atol)


@settings(max_examples=60, deadline=None)
@given(prices, st.integers(2, 30))
def test_sma_ema_rsi_incremental_equals_batch_equals_talib(xs, period):
    x = np.array(xs, dtype=float)
    for cls, batch, ref in ((core.SMA, core.sma, talib.SMA), (core.EMA, core.ema, talib.EMA),
                            (core.RSI, core.rsi, talib.RSI)):
        ind = cls(period)
        incremental = [ind.update(v) for v in xs]
        _same(incremental, batch(x, period))
        if len(x):
            _same(batch(x, period), ref(x, period), atol=1e-9 * max(1.0, x.max()))


@settings(max_examples=60, deadline=None)
@given(prices, st.integers(2, 12), st.integers(2, 30), st.integers(1, 12))
def test_macd_incremental_equals_batch_equals_talib(xs, fast, slow, signal):
    x = np.array(xs, dtype=float)
    ind = core.MACD(fast, slow, signal)
    rows = []
    for v in xs:
        ind.update(v)
        rows.append(ind.values)
    batch = core.macd(x, fast, slow, signal)
    for j in range(3):
        _same([r[j] for r in rows], batch[j])
    if len(x):
        for ours, ref in zip(batch, talib.MACD(x, fast, slow, signal)):
            _same(ours, ref, atol=1e-9 * max(1.0, x.max()))


@settings(max_examples=60, deadline=None)
@given(prices, st.integers(2, 30), st.sampled_from([0.5, 1.0, 2.0, 2.5]))
def test_bollinger_incremental_equals_batch_equals_talib(xs, period, k):
    x = np.array(xs, dtype=float)
    ind = core.BollingerBands(period, k)
    rows = []
    for v in xs:
        ind.update(v)
        rows.append(ind.values)
    batch = core.bollinger(x, period, k)
    for j in range(3):
        _same([r[j] for r in rows], batch[j])
    if len(x):
        for ours, ref in zip(batch, talib.BBANDS(x, period, k, k, 0)):
            _same(ours, ref, atol=1e-9 * max(1.0, x.max()))


@settings(max_examples=60, deadline=None)
@given(prices, st.lists(st.integers(0, 500).map(lambda c: c / 100.0), max_size=160),
       st.integers(1, 20), st.integers(1, 5), st.integers(1, 5))
def test_atr_stochastic_incremental_equals_batch_equals_talib(xs, spreads, period, slowing, d):
    h, l, c = _bars(xs, spreads)
    atr = core.ATR(period)
    _same([atr.update(*bar) for bar in zip(h, l, c)], core.atr(h, l, c, period))
    stoch = core.Stochastic(period, slowing, d)
    rows = []
    for bar in zip(h, l, c):
        stoch.update(*bar)
        rows.append(stoch.values)
    batch = core.stochastic(h, l, c, period, slowing, d)
    _same([r[0] for r in rows], batch[0])
    _same([r[1] for r in rows], batch[1])
    if len(c):
        scale = max(1.0, c.max())
        _same(core.atr(h, l, c, period), talib.ATR(h, l, c, period), atol=1e-9 * scale)
        for ours, ref in zip(batch, talib.STOCH(h, l, c, period, slowing, 0, d, 0)):
            _same(ours, ref, atol=1e-7)


@pytest.mark.parametrize("make, feed", [
    (lambda: core.SMA(5), lambda ind, r: ind.update(r[3])),
    (lambda: core.EMA(5), lambda ind, r: ind.update(r[3])),
    (lambda: core.RSI(5), lambda ind, r: ind.update(r[3])),
    (lambda: core.MACD(3, 6, 3), lambda ind, r: ind.update(r[3])),
    (lambda: core.BollingerBands(5, 2.0), lambda ind, r: ind.update(r[3])),
    (lambda: core.ATR(5), lambda ind, r: ind.update(r[1], r[2], r[3])),
    (lambda: core.Stochastic(5, 3, 3), lambda ind, r: ind.update(r[1], r[2], r[3])),
    (lambda: core.VWAP(5), lambda ind, r: ind.update(r[1], r[2], r[3], r[4])),
])
def test_reset_then_replay_gives_identical_output(make, feed, random_walk):
    rows = list(zip(*(random_walk[k][:500] for k in ("open", "high", "low", "close", "volume"))))
    ind = make()
    first = []
    for r in rows:
        feed(ind, r)
        first.append(ind.values)
    assert ind.initialized and ind.count == 500
    ind.reset()
    assert not ind.initialized and ind.count == 0 and all(math.isnan(v) for v in ind.values)
    second = []
    for r in rows:
        feed(ind, r)
        second.append(ind.values)
    assert np.array_equal(np.array(first), np.array(second), equal_nan=True)


def test_sma_before_period_is_nan_then_mean():
    s = core.SMA(3)
    assert math.isnan(s.update(1.0)) and math.isnan(s.update(2.0))
    assert s.update(3.0) == pytest.approx(2.0)
    assert s.update(7.0) == pytest.approx(4.0)  # (2 + 3 + 7) / 3
    assert s.warmup_period == 3 and s.initialized


def test_ema_seeded_with_sma_hand_computed():
    e = core.EMA(3)  # k = 0.5
    e.update(2.0)
    e.update(4.0)
    assert e.update(6.0) == pytest.approx(4.0)   # seed: mean(2, 4, 6)
    assert e.update(8.0) == pytest.approx(6.0)   # 4 + 0.5 * (8 - 4)
    assert e.update(2.0) == pytest.approx(4.0)   # 6 + 0.5 * (2 - 6)


def test_rsi_hand_computed_wilder():
    r = core.RSI(2)
    r.update(10.0)
    r.update(11.0)                         # +1
    assert r.update(10.5) == pytest.approx(100 * 0.5 / (0.5 + 0.25))  # gains 1/2, losses 0.5/2
    # Wilder: gain = (0.5*1 + 1)/2 = 0.75, loss = (0.25*1 + 0)/2 = 0.125
    assert r.update(11.5) == pytest.approx(100 * 0.75 / 0.875)


def test_rsi_flat_prices_give_zero_like_talib():
    x = np.full(30, 5.0)
    assert core.rsi(x, 14)[-1] == 0.0 == talib.RSI(x, 14)[-1]


@pytest.mark.parametrize("bad", [float("nan"), float("inf"), float("-inf")])
def test_update_rejects_non_finite_and_keeps_state(bad):
    s = core.SMA(3)
    for v in (1.0, 2.0, 3.0):
        s.update(v)
    with pytest.raises(ValueError, match="must be finite"):
        s.update(bad)
    assert s.value == pytest.approx(2.0) and s.count == 3
    with pytest.raises(ValueError, match=r"x\[1\]"):
        s.update_many(np.array([4.0, bad, 5.0]))
    assert s.value == pytest.approx(2.0) and s.count == 3  # nothing from the batch was taken


def test_vwap_rejects_negative_volume():
    v = core.VWAP(3)
    with pytest.raises(ValueError, match="volume"):
        v.update(10, 9, 9.5, -1)
    assert v.count == 0


@pytest.mark.parametrize("factory", [
    lambda: core.SMA(0), lambda: core.EMA(-1), lambda: core.RSI(1), lambda: core.MACD(0, 26, 9),
    lambda: core.BollingerBands(20, -1.0), lambda: core.BollingerBands(20, float("nan")),
    lambda: core.ATR(0), lambda: core.Stochastic(14, 0, 3), lambda: core.VWAP(0),
])
def test_invalid_parameters_raise_value_error_naming_them(factory):
    with pytest.raises(ValueError, match=r"(period|fast|k|k_slowing) = "):
        factory()


def test_update_many_fills_caller_out_arrays():
    x = np.linspace(1, 2, 50)
    out = np.empty(50)
    assert core.SMA(5).update_many(x, out=out) is out
    np.testing.assert_array_equal(out, core.sma(x, 5))
    trip = (np.empty(50), np.empty(50), np.empty(50))
    core.MACD(3, 6, 2).update_many(x, out=trip)
    for got, ref in zip(trip, core.macd(x, 3, 6, 2)):
        np.testing.assert_array_equal(got, ref)
    with pytest.raises(ValueError, match="length"):
        core.SMA(5).update_many(x, out=np.empty(10))


def test_long_run_sma_and_bollinger_stay_exact():
    # 2M inputs at BTC-like scale: a plain running sum would drift; the
    # periodic exact recompute keeps the tail equal to a fresh computation.
    rng = np.random.default_rng(7)
    x = 1e5 + np.cumsum(rng.normal(0, 5, 2_000_000))
    tail = x[-20:]
    mid = core.sma(x, 20)[-1]
    assert mid == pytest.approx(tail.mean(), rel=1e-13)
    upper = core.bollinger(x, 20, 2.0)[0][-1]
    assert upper == pytest.approx(tail.mean() + 2 * tail.std(), rel=1e-13)


def _rss_kib():
    with open("/proc/self/statm") as fh:
        return int(fh.read().split()[1]) * resource.getpagesize() // 1024


def test_memory_bounded_after_a_million_updates():
    inds = [core.SMA(20), core.EMA(20), core.RSI(14), core.MACD(), core.BollingerBands(), core.IndicatorSet()]
    x = [100.0 + (i % 97) * 0.01 for i in range(1_000_000)]
    for ind in inds:  # warm every code path once
        for v in x[:5000]:
            ind.update(v)
    before = _rss_kib()
    for ind in inds:
        update = ind.update
        for v in x:
            update(v)
    grown = _rss_kib() - before
    assert grown < 1024, f"RSS grew by {grown} KiB over 6M updates"
