"""MarketData validation: every bad-bar case names the field and value."""

import math
import pickle

import pytest

from tradesim import InvalidMarketData, MarketData

NAN, INF = float("nan"), float("inf")
GOOD = dict(open=100.0, high=101.0, low=99.0, close=100.5, volume=3.0, bid=100.4, ask=100.6)


def bar(**changes):
    fields = {**GOOD, **changes}
    return MarketData("BTCUSDT", 1_700_000_000_000, fields["open"], fields["high"], fields["low"],
                      fields["close"], fields["volume"], fields["bid"], fields["ask"])


def test_valid_bar_keeps_fields_and_mid_price():
    b = bar()
    assert (b.symbol, b.timestamp, b.open, b.high, b.low, b.close, b.volume) == (
        "BTCUSDT", 1_700_000_000_000, 100.0, 101.0, 99.0, 100.5, 3.0)
    assert b.mid_price == pytest.approx(100.5)


def test_mid_price_falls_back_to_close_when_quote_unknown():
    b = bar(bid=NAN, ask=NAN)
    assert b.mid_price == 100.5 and math.isnan(b.bid)


def test_zero_volume_is_valid():
    assert bar(volume=0.0).volume == 0.0


@pytest.mark.parametrize("field, value", [
    ("open", NAN), ("high", INF), ("low", -INF), ("close", NAN), ("volume", NAN), ("volume", INF),
    ("open", 0.0), ("low", -1.0), ("close", -5.0),
    ("volume", -0.1),
    ("bid", INF), ("ask", -1.0), ("bid", 0.0),
])
def test_bad_field_raises_naming_field_and_value(field, value):
    changes = {field: value}
    if field == "low" and value < 0:
        changes["open"] = changes["close"] = 100.0
    with pytest.raises(InvalidMarketData) as err:
        bar(**changes)
    assert err.value.field == field
    assert field in str(err.value) and repr(value) in str(err.value)


def test_high_below_low_is_rejected():
    with pytest.raises(InvalidMarketData, match=r"high = 98.0 is below low \(99.0\)"):
        bar(high=98.0, open=98.5, close=98.5)


@pytest.mark.parametrize("field, value", [("open", 102.0), ("open", 98.0), ("close", 101.5), ("close", 98.9)])
def test_open_or_close_outside_range_is_rejected(field, value):
    with pytest.raises(InvalidMarketData) as err:
        bar(**{field: value})
    assert err.value.field == field and "outside [low, high]" in str(err.value)


def test_crossed_quote_is_rejected():
    with pytest.raises(InvalidMarketData) as err:
        bar(bid=100.7, ask=100.6)
    assert err.value.field == "bid" and "crossed" in str(err.value)


def test_validate_false_defers_to_validate():
    b = MarketData("X", 1, 1.0, 0.5, 2.0, 1.0, 1.0, validate=False)  # high < low
    with pytest.raises(InvalidMarketData, match="high"):
        b.validate()


def test_bar_pickles_and_compares_equal():
    b = bar(bid=NAN, ask=NAN)
    assert pickle.loads(pickle.dumps(b)) == b
    assert b.as_dict()["close"] == 100.5
