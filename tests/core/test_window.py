"""MarketDataWindow against a collections.deque model, views, ordering, bulk loads."""

import math
from collections import deque

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradesim import InvalidMarketData, MarketData, MarketDataWindow, OutOfOrderBar


def mk(ts, close, spread=1.0, volume=2.0):
    return MarketData("BTCUSDT", ts, close, close + spread, close - spread, close, volume,
                      close - 0.1, close + 0.1)


@settings(max_examples=80, deadline=None)
@given(st.integers(1, 12), st.lists(st.tuples(st.floats(10, 1000), st.floats(0, 5), st.floats(0, 50)),
                                    max_size=60))
def test_window_behaves_like_a_bounded_deque(capacity, rows):
    w = MarketDataWindow(capacity)
    model = deque(maxlen=capacity)
    for i, (close, spread, vol) in enumerate(rows):
        b = mk(1000 + 60_000 * i, close, spread, vol)
        w.push(b)
        model.append(b)
        assert len(w) == len(model)
        assert list(w) == list(model)
        assert w.latest() == model[-1] and w.oldest() == model[0]
        assert w.get(-1) == model[-1] and w[0] == model[0]
        for n in range(1, capacity + 1):
            expect = list(model)[-n:]
            np.testing.assert_array_equal(w.closes(n), [x.close for x in expect])
            np.testing.assert_array_equal(w.timestamps(n), [x.timestamp for x in expect])
            if n <= len(model):
                assert w.high(n) == max(x.high for x in expect)
                assert w.low(n) == min(x.low for x in expect)
                assert w.range(n) == pytest.approx(w.high(n) - w.low(n))
                assert w.avg_volume(n) == pytest.approx(np.mean([x.volume for x in expect]))
            else:
                assert math.isnan(w.high(n)) and math.isnan(w.avg_volume(n))


def test_push_past_capacity_drops_oldest():
    w = MarketDataWindow(3)
    for i in range(5):
        w.push(mk(i + 1, 100.0 + i))
    assert [b.timestamp for b in w] == [3, 4, 5]
    assert w.capacity == 3 and len(w) == 3


def test_closes_is_a_zero_copy_read_only_view():
    w = MarketDataWindow(100)
    for i in range(60):
        w.push(mk(i + 1, 100.0 + i))
    view = w.closes(50)
    assert view.dtype == np.float64 and view.flags.c_contiguous and not view.flags.owndata
    assert not view.flags.writeable
    assert view.base is not None
    # The documented lifetime: a view of n bars stays correct for capacity - n pushes.
    snapshot = view.copy()
    for i in range(60, 60 + 50):
        w.push(mk(i + 1, 100.0 + i))
    np.testing.assert_array_equal(view, snapshot)


def test_push_rejects_timestamp_not_increasing_and_keeps_window():
    w = MarketDataWindow(5)
    w.push(mk(10, 100.0))
    w.push(mk(20, 101.0))
    for ts in (20, 15):
        with pytest.raises(OutOfOrderBar, match=f"{ts} rejected") as err:
            w.push(mk(ts, 999.0))
        assert err.value.field == "timestamp"
    assert [b.close for b in w] == [100.0, 101.0] and w.last_timestamp == 20


def test_push_values_validates_like_market_data():
    w = MarketDataWindow(5, symbol="ETHUSDT")
    w.push_values(1, 10.0, 11.0, 9.0, 10.5, 1.0)
    with pytest.raises(InvalidMarketData) as err:
        w.push_values(2, 10.0, 11.0, 9.0, float("nan"), 1.0)
    assert err.value.field == "close"
    assert len(w) == 1 and w.latest().close == 10.5 and math.isnan(w.latest().bid)


def test_push_rejects_other_symbol():
    w = MarketDataWindow(5)
    w.push(mk(1, 100.0))
    with pytest.raises(InvalidMarketData, match="ETHUSDT"):
        w.push(MarketData("ETHUSDT", 2, 10, 11, 9, 10, 1))


def test_push_columns_loads_tail_and_matches_row_pushes():
    n, cap = 1000, 64
    ts = np.arange(1, n + 1, dtype=np.int64) * 60_000
    c = 100 + np.sin(np.arange(n))
    bulk = MarketDataWindow(cap)
    bulk.push_columns(ts, c, c + 1, c - 1, c, np.ones(n))
    rows = MarketDataWindow(cap)
    for i in range(n):
        rows.push_values(int(ts[i]), c[i], c[i] + 1, c[i] - 1, c[i], 1.0)
    assert list(bulk) == list(rows)
    np.testing.assert_array_equal(bulk.closes(), c[-cap:])


def test_push_columns_bad_row_changes_nothing():
    w = MarketDataWindow(10)
    w.push(mk(1, 100.0))
    ts = np.array([2, 3, 4])
    c = np.array([100.0, 101.0, 102.0])
    h = c + 1
    h[1] = c[1] - 5  # high < low on row 1
    with pytest.raises(InvalidMarketData, match="row 1") as err:
        w.push_columns(ts, c, h, c - 1, c, np.ones(3))
    assert err.value.field == "high"
    with pytest.raises(OutOfOrderBar, match="row 2"):
        w.push_columns(np.array([2, 3, 3]), c, c + 1, c - 1, c, np.ones(3))
    with pytest.raises(OutOfOrderBar, match="row 0"):
        w.push_columns(np.array([1, 5, 6]), c, c + 1, c - 1, c, np.ones(3))
    assert len(w) == 1 and w.latest().timestamp == 1


def test_get_out_of_range_and_empty_window():
    w = MarketDataWindow(4)
    with pytest.raises(IndexError):
        w.latest()
    w.push(mk(1, 100.0))
    with pytest.raises(IndexError):
        w.get(1)
    with pytest.raises(IndexError):
        w.get(-2)
    assert w.closes(10).shape == (1,)


def test_clear_keeps_capacity_and_accepts_any_timestamp():
    w = MarketDataWindow(4)
    w.push(mk(100, 10.0))
    w.clear()
    assert len(w) == 0 and w.last_timestamp is None
    w.push(mk(5, 20.0))
    assert w.latest().timestamp == 5


def test_invalid_capacity_and_period():
    with pytest.raises(ValueError, match="capacity = 0"):
        MarketDataWindow(0)
    w = MarketDataWindow(3)
    w.push(mk(1, 10.0))
    with pytest.raises(ValueError, match="period = 0"):
        w.high(0)
