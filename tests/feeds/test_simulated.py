"""SimulatedFeed: valid GBM bars, seeded and per-symbol reproducible, sync == async, paced."""

import asyncio
import math

import numpy as np
import pytest

from tradesim import MarketData
from tradesim.feeds import MarketDataSource, SimulatedFeed, parse_interval, parse_time
from tradesim.feeds import simulated as simulated_module
from tradesim.feeds.simulated import ASYNC_BLOCK, DEFAULT_START_MS, MS_PER_YEAR

COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")


class FakeTime:
    """Injectable clock and sleep: time only moves when the feed sleeps."""

    def __init__(self, oversleep=0.0):
        self.now = 1000.0
        self.sleeps = []
        self.oversleep = oversleep

    def clock(self):
        return self.now

    async def sleep(self, seconds):
        self.sleeps.append(seconds)
        if seconds > 0:
            self.now += seconds + self.oversleep


def collect(feed, limit=None):
    async def run():
        out = []
        async for bar in feed:
            out.append(bar)
            if limit is not None and len(out) >= limit:
                break
        return out
    return asyncio.run(run())


def assert_same_bars(a, b):
    assert a.symbol == b.symbol and len(a) == len(b)
    for name in COLUMNS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_simulated_bars_are_valid_ohlcv():
    feed = SimulatedFeed(["BTCUSDT", "ETHUSDT"], start_price={"BTCUSDT": 60_000.0, "ETHUSDT": 3_000.0},
                         volatility=3.0, interval="1h", bars=3000, seed=7)
    for symbol, start in (("BTCUSDT", 60_000.0), ("ETHUSDT", 3_000.0)):
        b = feed.bars(symbol)
        assert len(b) == 3000 and b.interval_ms == 3_600_000
        assert b.open[0] == start
        np.testing.assert_array_equal(b.open[1:], b.close[:-1])  # open = previous close
        assert (b.high >= np.maximum(b.open, b.close)).all()
        assert (b.low <= np.minimum(b.open, b.close)).all()
        assert (b.low > 0).all() and (b.volume > 0).all()
        assert (b.high > b.low).all()  # sub-steps give every bar a range
        np.testing.assert_array_equal(b.timestamp, DEFAULT_START_MS + 3_600_000 * np.arange(3000))
    bars = collect(feed)
    assert len(bars) == 6000
    for bar in bars:
        bar.validate()  # raises InvalidMarketData on any broken rule
        assert bar.bid < bar.close < bar.ask
        assert (bar.ask - bar.bid) / bar.close == pytest.approx(2.0e-4, rel=1e-9)  # spread_bps=2


def test_zero_volatility_gives_flat_valid_bars():
    b = SimulatedFeed(volatility=0.0, bars=100, start_price=5.0).bars("BTCUSDT")
    np.testing.assert_allclose(b.close, 5.0, rtol=1e-14)  # exp(log(5)) may be 1 ulp off
    np.testing.assert_allclose(b.high, b.low, rtol=1e-14)
    for i in range(100):
        MarketData("X", int(b.timestamp[i]), b.open[i], b.high[i], b.low[i], b.close[i], b.volume[i])


def test_same_seed_same_bars_other_seed_other_bars():
    a = SimulatedFeed(seed=42, bars=1000).bars("BTCUSDT")
    b = SimulatedFeed(seed=42, bars=1000).bars("BTCUSDT")
    c = SimulatedFeed(seed=43, bars=1000).bars("BTCUSDT")
    assert_same_bars(a, b)
    assert not np.array_equal(a.close, c.close)
    assert not np.array_equal(a.volume, c.volume)


def test_adding_a_symbol_does_not_change_another_symbols_path():
    alone = SimulatedFeed(["BTCUSDT"], seed=3, bars=2000)
    crowd = SimulatedFeed(["ETHUSDT", "SOLUSDT", "BTCUSDT"], seed=3, bars=2000)
    assert_same_bars(alone.bars("BTCUSDT"), crowd.bars("BTCUSDT"))
    # ...and the symbols are not copies of each other.
    assert not np.array_equal(crowd.bars("ETHUSDT").close, crowd.bars("SOLUSDT").close)


def test_async_path_yields_the_same_bars_as_the_sync_path():
    n = ASYNC_BLOCK * 2 + 123  # crosses block boundaries
    feed = SimulatedFeed(["BTCUSDT", "ETHUSDT", "SOLUSDT"], seed=11, bars=n, spread_bps=5.0)
    bars = collect(feed)
    assert len(bars) == 3 * n
    for symbol in feed.symbols:
        got = [b for b in bars if b.symbol == symbol]
        want = feed.bars(symbol)
        for name in COLUMNS:
            np.testing.assert_array_equal([getattr(b, name) for b in got], getattr(want, name),
                                          err_msg=f"{symbol} {name}")
        bid, ask = feed.bid_ask(want.close)
        np.testing.assert_array_equal([b.bid for b in got], bid)
        np.testing.assert_array_equal([b.ask for b in got], ask)


def test_infinite_feed_async_prefix_equals_sync_limit():
    feed = SimulatedFeed(seed=5)  # bars=None: infinite
    got = collect(feed, limit=ASYNC_BLOCK + 17)
    want = feed.bars("BTCUSDT", limit=ASYNC_BLOCK + 17)
    np.testing.assert_array_equal([b.close for b in got], want.close)
    np.testing.assert_array_equal([b.high for b in got], want.high)


def test_sync_generation_does_not_depend_on_block_size(monkeypatch):
    whole = SimulatedFeed(seed=9).bars("BTCUSDT", limit=5000)
    monkeypatch.setattr(simulated_module, "SYNC_BLOCK", 999)
    blocked = SimulatedFeed(seed=9).bars("BTCUSDT", limit=5000)
    assert_same_bars(whole, blocked)
    assert_same_bars(SimulatedFeed(seed=9).bars("BTCUSDT", limit=10), whole.slice(None, whole.timestamp[10]))


def test_gbm_log_return_std_matches_configured_volatility():
    feed = SimulatedFeed(volatility=0.8, interval="1m", seed=1)
    assert feed.bar_volatility == pytest.approx(0.8 * math.sqrt(60_000 / MS_PER_YEAR))
    close = feed.bars("BTCUSDT", limit=100_001).close
    r = np.diff(np.log(close))
    assert r.std() == pytest.approx(feed.bar_volatility, rel=0.02)  # std error ~0.2 %
    assert abs(r.mean()) < 5 * feed.bar_volatility / math.sqrt(len(r))


def test_gbm_mean_log_return_follows_drift():
    feed = SimulatedFeed(volatility=0.5, drift=2.0, interval="1d", seed=2)
    r = np.diff(np.log(feed.bars("BTCUSDT", limit=40_001).close))
    assert feed.bar_drift == pytest.approx((2.0 - 0.125) / 365)
    assert abs(r.mean() - feed.bar_drift) < 5 * feed.bar_volatility / math.sqrt(len(r))
    assert r.std() == pytest.approx(0.5 / math.sqrt(365), rel=0.03)


def test_volume_is_positive_with_the_configured_mean():
    v = SimulatedFeed(mean_volume=25.0, seed=4).bars("BTCUSDT", limit=100_000).volume
    assert (v > 0).all()
    assert v.mean() == pytest.approx(25.0, rel=0.02)


def test_merged_async_order_is_by_timestamp_then_symbol_order():
    feed = SimulatedFeed(["ZZZ", "AAA", "MMM"], bars=50)
    bars = collect(feed)
    assert [b.symbol for b in bars[:6]] == ["ZZZ", "AAA", "MMM"] * 2
    keys = [(b.timestamp, feed.symbols.index(b.symbol)) for b in bars]
    assert keys == sorted(keys) and len(set(keys)) == len(keys)
    assert feed.health.bars_emitted == {"ZZZ": 50, "AAA": 50, "MMM": 50}


def test_interval_and_start_time_parsing():
    assert [parse_interval(s) for s in ("1s", "1m", "15m", "1h", "4h", "1d", "1w", "250ms")] == \
        [1_000, 60_000, 900_000, 3_600_000, 14_400_000, 86_400_000, 604_800_000, 250]
    assert parse_interval(5_000) == 5_000
    for bad in ("1M", "0m", "m", "1 year", 0, -60_000, 1.5, None):
        with pytest.raises(ValueError, match="interval"):
            parse_interval(bad)
    assert parse_time("2024-01-01") == DEFAULT_START_MS
    assert parse_time("2024-01-01T01:00:00+01:00") == DEFAULT_START_MS
    assert parse_time("2024-01-01T00:01Z") == DEFAULT_START_MS + 60_000
    feed = SimulatedFeed(interval="1s", start_time="2025-05-20", bars=3)
    assert feed.bars("BTCUSDT").timestamp.tolist() == [1747699200000, 1747699201000, 1747699202000]


@pytest.mark.parametrize("kwargs, name", [
    ({"start_price": 0.0}, "start_price"),
    ({"start_price": {"ETHUSDT": 5.0}}, "start_price"),
    ({"volatility": -0.1}, "volatility"),
    ({"volatility": float("nan")}, "volatility"),
    ({"spread_bps": -1.0}, "spread_bps"),
    ({"seed": -1}, "seed"),
    ({"bars": -5}, "bars"),
    ({"speed": -1.0}, "speed"),
    ({"interval": "1M"}, "interval"),
    ({"symbols": ["A", "A"]}, "symbols"),
    ({"steps_per_bar": 0}, "steps_per_bar"),
])
def test_bad_parameters_raise_naming_the_parameter(kwargs, name):
    with pytest.raises(ValueError, match=name):
        SimulatedFeed(**kwargs)


def test_infinite_feed_needs_a_limit_and_finite_feed_caps_it():
    with pytest.raises(ValueError, match="limit"):
        SimulatedFeed().bars("BTCUSDT")
    assert len(SimulatedFeed(bars=10).bars("BTCUSDT", limit=50)) == 10
    assert len(SimulatedFeed(bars=0).bars("BTCUSDT")) == 0
    with pytest.raises(KeyError, match="ETHUSDT"):
        SimulatedFeed().bars("ETHUSDT", limit=1)


def test_feed_follows_the_market_data_source_protocol():
    feed = SimulatedFeed(bars=1)
    assert isinstance(feed, MarketDataSource)
    assert isinstance(collect(feed)[0], MarketData)


def test_pacing_sleeps_one_scaled_interval_per_timestamp():
    fake = FakeTime()
    feed = SimulatedFeed(["BTCUSDT", "ETHUSDT"], interval="1s", speed=100, bars=6,
                         clock=fake.clock, sleep=fake.sleep)
    bars = collect(feed)
    assert len(bars) == 12
    # One wait per new timestamp (5 after the first), 1 s / 100 each; none between symbols.
    assert fake.sleeps == pytest.approx([0.01] * 5)
    assert fake.now - 1000.0 == pytest.approx(0.05)


def test_pacing_does_not_accumulate_oversleep_drift():
    fake = FakeTime(oversleep=0.004)  # every sleep wakes 4 ms late
    feed = SimulatedFeed(interval="1s", speed=100, bars=11, clock=fake.clock, sleep=fake.sleep)
    collect(feed)
    # An absolute schedule shortens the next sleep: bar 10 goes out at 100 ms (+ the last
    # oversleep), not at 10 * 14 ms.
    assert fake.now - 1000.0 == pytest.approx(0.104)
    assert fake.sleeps[0] == pytest.approx(0.01) and fake.sleeps[1] == pytest.approx(0.006)


def test_real_time_speed_waits_a_full_interval():
    fake = FakeTime()
    feed = SimulatedFeed(interval="1m", speed=1, bars=3, clock=fake.clock, sleep=fake.sleep)
    collect(feed)
    assert fake.sleeps == pytest.approx([60.0, 60.0])


def test_unpaced_feed_never_sleeps_but_yields_to_the_loop():
    fake = FakeTime()
    feed = SimulatedFeed(speed=0, clock=fake.clock, sleep=fake.sleep)
    collect(feed, limit=3000)
    assert fake.sleeps == [0, 0]  # one sleep(0) per 1024 bars, no waiting
    assert fake.now == 1000.0


def test_real_asyncio_sleep_paces_short_interval():
    import time

    feed = SimulatedFeed(interval="1s", speed=100, bars=5)
    t0 = time.monotonic()
    bars = collect(feed)
    elapsed = time.monotonic() - t0
    assert [b.timestamp for b in bars] == sorted(b.timestamp for b in bars)
    assert elapsed >= 0.03  # 4 waits of ~10 ms; only a lower bound, never an upper one


def test_close_ends_iteration_and_closed_feed_refuses_to_iterate():
    feed = SimulatedFeed()

    async def run():
        n = 0
        async for _ in feed:
            n += 1
            if n == 10:
                feed.close()
            if n > 1000:  # guard: a feed that ignores close() fails instead of hanging
                break
        return n
    assert asyncio.run(run()) == 10
    with pytest.raises(RuntimeError, match="closed"):
        collect(feed)
