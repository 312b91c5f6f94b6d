"""Core hot paths: window push, per-indicator updates, fused set, batch; peers when installed.

Run: pytest benches --benchmark-only   (ns per op in the extra_info column / --benchmark-json)
"""

import numpy as np
import pytest

import tradesim._core as core

N_STREAM = 200_000


@pytest.fixture(scope="module")
def ticks(walk):
    return walk[:N_STREAM].tolist()


def _loop(update, xs):
    def fn():
        for x in xs:
            update(x)
    return fn


@pytest.mark.parametrize("name, make", [
    ("sma20", lambda: core.SMA(20)), ("ema20", lambda: core.EMA(20)), ("rsi14", lambda: core.RSI(14)),
    ("macd", lambda: core.MACD(12, 26, 9)), ("bb20", lambda: core.BollingerBands(20, 2.0)),
])
def test_indicator_update(per_op, ticks, name, make):
    per_op(_loop(make().update, ticks), len(ticks), "indicator_update", indicator=name)


def test_indicator_set_update(per_op, ticks):
    per_op(_loop(core.IndicatorSet().update, ticks), len(ticks), "indicator_set_update")


def test_loop_overhead_reference(per_op, ticks):
    """An empty Python loop over the same ticks: the floor under every streaming figure."""
    per_op(_loop(lambda x: None, ticks), len(ticks))


def test_batch_all_five_fresh_output(per_op, walk):
    per_op(lambda: core.compute_all(walk), len(walk), "batch_all_five", output="allocated")


def test_batch_all_five_into_out(per_op, walk):
    out = {k: np.empty(len(walk)) for k in core.indicator_set.OUTPUT_NAMES}
    per_op(lambda: core.IndicatorSet().update_many(walk, out), len(walk), "batch_all_five",
           output="caller-supplied")


@pytest.mark.parametrize("name", ["sma", "ema", "rsi", "macd", "bollinger"])
def test_batch_single(per_op, walk, name):
    fn = {"sma": lambda: core.sma(walk, 20), "ema": lambda: core.ema(walk, 20),
          "rsi": lambda: core.rsi(walk, 14), "macd": lambda: core.macd(walk),
          "bollinger": lambda: core.bollinger(walk, 20, 2.0)}[name]
    per_op(fn, len(walk), indicator=name)


def test_window_push(per_op, walk):
    n = 100_000
    bars = [core.MarketData("BTCUSDT", i + 1, x, x, x, x, 1.0, validate=False)
            for i, x in enumerate(walk[:n].tolist())]
    w = core.MarketDataWindow(500)

    def fn():
        w.clear()
        push = w.push
        for b in bars:
            push(b)
    per_op(fn, n, "window_push")


def test_window_closes_view(per_op, walk):
    w = core.MarketDataWindow(500)
    c = walk[:500]
    w.push_columns(np.arange(1, 501), c, c, c, c, np.ones(500))
    n = 100_000

    def fn():
        closes = w.closes
        for _ in range(n):
            closes(50)
    per_op(fn, n, view=True)


# -- peers, timed on the same data in the same run -----------------------------

def test_peer_talib_stream_all_five(per_op, ticks):
    talib = pytest.importorskip("talib")
    from talib import stream
    # talib.stream recomputes over the trailing array on every call; feed it the
    # history it needs (as users of the streaming API do) for 20k ticks.
    arr = np.asarray(ticks)
    n = 20_000

    def fn():
        for i in range(100, 100 + n):
            window = arr[i - 100:i]
            stream.SMA(window, 20)
            stream.EMA(window, 20)
            stream.RSI(window, 14)
            stream.MACD(window, 12, 26, 9)
            stream.BBANDS(window, 20, 2.0, 2.0, 0)
    per_op(fn, n, peer="talib.stream", version=talib.__version__)


def test_peer_talipp_all_five(per_op, ticks):
    pytest.importorskip("talipp")
    from talipp.indicators import BB, EMA, MACD, RSI, SMA
    n = 20_000
    inds = [SMA(20), EMA(20), RSI(14), MACD(12, 26, 9), BB(20, 2.0)]

    def fn():
        for x in ticks[:n]:
            for ind in inds:
                ind.add(x)
    per_op(fn, n, rounds=2, peer="talipp")


def test_peer_talib_batch_five_calls(per_op, walk):
    talib = pytest.importorskip("talib")
    per_op(lambda: (talib.SMA(walk, 20), talib.EMA(walk, 20), talib.RSI(walk, 14),
                    talib.MACD(walk, 12, 26, 9), talib.BBANDS(walk, 20, 2.0, 2.0, 0)),
           len(walk), peer="talib batch")
