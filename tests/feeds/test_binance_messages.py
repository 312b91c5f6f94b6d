"""Strict kline/bookTicker message parsing (docs/hostile-inputs.md, M1-M3, M9) on real frames."""

import json
import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from tradesim.feeds.base import DataHealth
from tradesim.feeds.binance.assembler import BarAssembler, new_stats
from tradesim.feeds.binance.kline_fast import kline_or_none
from tradesim.feeds.binance.messages import (
    INTERVAL_MS,
    FrameError,
    Kline,
    _checked_kline,
    decode,
    message_kind,
    parse_kline,
)


@pytest.fixture(scope="module")
def frame(shared_data):
    # A real btcusdt@kline_1m message recorded from Binance (ws-samples/examples).
    return json.loads((shared_data / "binance" / "ws-samples" / "examples" /
                       "combined-btcusdt-kline_1m-2025-07-07.json").read_text())


def closed(frame, **k_changes):
    msg = json.loads(json.dumps(frame))
    msg["data"]["k"].update({"x": True, **k_changes})
    return json.dumps(msg)


def live_bar(text, bid=math.nan, ask=math.nan):
    """The live feed's path for one frame (text as UTF-8 bytes, as the socket hands it over): its bar or None.

    The quote comes first in a bookTicker frame, as on the wire.
    """
    out = []
    asm = BarAssembler(["BTCUSDT"], "1m", out.append, new_stats(), DataHealth(), lambda kind, **f: None)
    if not math.isnan(bid):
        asm.feed(json.dumps({"stream": "btcusdt@bookTicker", "data": {"u": 1, "s": "BTCUSDT", "b": repr(bid),
                                                                        "B": "1", "a": repr(ask), "A": "1"}}))
    asm.feed(text.encode(), "c1", False)
    return out[0] if out else None


def parsed(text):
    """The parsing the live feed does on a frame of the kline stream: strict decode, then `parse_kline`."""
    msg = decode(text)
    if not isinstance(msg.get("data"), dict):
        raise FrameError("not a combined-stream message", "stream", msg.get("stream"))
    return parse_kline(msg["data"], msg["stream"].partition("@kline_")[2] or None)


def test_open_kline_gives_no_bar_closed_kline_gives_the_bar(frame):
    assert live_bar(json.dumps(frame)) is None  # the recording is "x": false
    bar = live_bar(closed(frame), bid=108473.0, ask=108473.1)
    # Values from the frame text (PROVENANCE.md cross-checks this bar against the kline file).
    assert (bar.symbol, bar.timestamp) == ("BTCUSDT", 1751897340000)
    assert (bar.open, bar.high, bar.low, bar.close, bar.volume) == (108521.04, 108521.04, 108473.02, 108473.03, 5.21006)
    assert (bar.bid, bar.ask) == (108473.0, 108473.1)


def test_crossed_quote_is_not_attached(frame):
    bar = live_bar(closed(frame), bid=2.0, ask=1.0)
    assert math.isnan(bar.bid) and math.isnan(bar.ask)


@pytest.mark.parametrize("field, text", [
    ("o", "NaN"), ("c", "nan"), ("h", "inf"), ("l", "-Infinity"), ("o", "1e999"), ("v", "1_000"),
    ("c", " 12 "), ("o", "-1"), ("o", "0"), ("o", "0.00000000"), ("v", "-0.5"), ("c", 108473.03),
    ("o", "1" * 45), ("h", "１２"),
])
def test_bad_number_strings_are_rejected(frame, field, text):
    with pytest.raises(FrameError) as err:
        parsed(closed(frame, **{field: text}))
    assert err.value.value == text
    assert live_bar(closed(frame, **{field: text})) is None


def test_zero_volume_is_valid(frame):
    assert live_bar(closed(frame, v="0.00000000")).volume == 0.0


@pytest.mark.parametrize("changes, field", [
    ({"h": "108400.00"}, "high"),                     # high < low
    ({"o": "108600.00"}, "open"),                     # open above high
    ({"c": "100.00"}, "close"),                       # close below low
    ({"T": 1751897399998}, "close_time"),             # T != t + 60000 - 1
    ({"i": "5m"}, "i"),                               # interval differs from the stream name
    ({"i": "7m"}, "i"),
    ({"x": "true"}, "x"),
])
def test_inconsistent_klines_are_rejected(frame, changes, field):
    with pytest.raises(FrameError) as err:
        parsed(closed(frame, **changes))
    assert err.value.field == field
    assert live_bar(closed(frame, **changes)) is None


@pytest.mark.parametrize("text", ["", "{", "[1, 2]", '{"stream": "x", "data": NaN}', "NaN",
                                  '{"a": Infinity}', b"\x00\x01binary"])
def test_malformed_frames_are_rejected(text):
    with pytest.raises(FrameError):
        parsed(text)


def test_message_kinds(frame):
    assert message_kind(frame) == "kline"
    assert message_kind(decode('{"result": null, "id": 1}')) == "ack"
    assert message_kind(decode('{"code": 2, "msg": "Invalid request"}')) == "error"
    assert message_kind(decode('{"stream": "!serverShutdown", "data": {"e": "serverShutdown", "E": 1}}')) \
        == "serverShutdown"
    assert message_kind(decode('{"stream": "btcusdt@bookTicker", "data": {"u": 1, "s": "BTCUSDT", '
                               '"b": "1.0", "B": "2", "a": "1.1", "A": "3"}}')) == "bookTicker"
    assert message_kind(decode('{"stream": "btcusdt@trade", "data": {"e": "trade"}}')) == "unknown"
    assert message_kind(decode('{"stream": "x", "data": 5}')) == "unknown"


def test_parse_kline_checks_monthly_interval_by_order_only(frame):
    data = json.loads(closed(frame, i="1M", T=1751897340000 + 30 * 86_400_000 - 1))["data"]
    assert parse_kline(data).interval == "1M"


# -- the C accept path agrees with the Python rules -------------------------------------------

_TRICKY = ["NaN", "nan", "inf", "-inf", "1e5", "1E-3", "1_000", " 12", "12 ", "", ".", "5.", ".5", "0", "0.0",
           "00012.5000", "-1", "+1", "１２", "1.2.3", "9" * 41, "9" * 42, "1" * 20 + "." + "1" * 20, "0x1p3",
           "108000.00", "107990.00", "108010.00", "5.21006000", 0, 1, -1, 1.5, float("nan"), None, True, False,
           [], {}, "1m", "1M", "3d", "kline", "BTCUSDT", 60_000, 119_999, 2**70, -60_000]


def _valid_kline():
    return {"e": "kline", "E": 1, "s": "BTCUSDT",
            "k": {"t": 60_000, "T": 119_999, "s": "BTCUSDT", "i": "1m", "o": "108000.00", "c": "108001.00",
                  "h": "108010.00", "l": "107990.00", "v": "5.21006000", "x": True}}


def _python_rules(data, stream_interval):
    try:
        return _checked_kline(data, stream_interval)
    except FrameError:
        return None


@settings(max_examples=3000, deadline=None)
@given(changes=hst.dictionaries(hst.sampled_from(["t", "T", "s", "i", "o", "h", "l", "c", "v", "x", "e", "k"]),
                                hst.sampled_from(_TRICKY), max_size=4),
       prices=hst.lists(hst.decimals(min_value=0, max_value=10**9, places=8, allow_nan=False), min_size=5,
                        max_size=5),
       use_prices=hst.booleans(), stream_interval=hst.sampled_from([None, "1m", "1M", "5m"]))
def test_c_kline_path_accepts_exactly_what_the_python_rules_accept(changes, prices, use_prices, stream_interval):
    data = _valid_kline()
    k = data["k"]
    if use_prices:
        for key, value in zip("ohlcv", prices):
            k[key] = format(value, "f")
    for key, value in changes.items():
        if key == "e":
            data["e"] = value
        elif key == "k":
            data["k"] = value
        else:
            k[key] = value
    fast = kline_or_none(data, stream_interval, INTERVAL_MS, Kline)
    slow = _python_rules(data, stream_interval)
    assert fast == slow
    if fast is not None:   # and every value is float(text) bit for bit
        assert [fast.open, fast.high, fast.low, fast.close, fast.volume] == [float(k[c]) for c in "ohlcv"]


def test_c_kline_path_takes_a_real_kline_and_leaves_errors_to_python():
    data = _valid_kline()
    assert kline_or_none(data, "1m", INTERVAL_MS, Kline) == Kline("BTCUSDT", "1m", 60_000, 119_999, 108000.0,
                                                                  108010.0, 107990.0, 108001.0, 5.21006, True)
    data["k"]["h"] = "NaN"
    assert kline_or_none(data, "1m", INTERVAL_MS, Kline) is None
    with pytest.raises(FrameError, match="high = 'NaN'"):
        parse_kline(data, "1m")
