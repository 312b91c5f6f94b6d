"""`parse_rest_klines` (the C accept path for a whole REST klines page) agrees with the Python rules row by row."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as hst

from tradesim.feeds.binance.messages import FrameError, _checked_kline, parse_rest_kline, parse_rest_klines

_TRICKY = [None, True, False, -1, 0, 59_999, 60_000, 119_999, 2**63, 1.5, "", " 1", "1e3", "NaN", "inf", "-1",
           "0", "0.0", "1..2", ".", "5.", ".5", "1_000", "１２", "0" * 42, "12.5", "107990.00", "108010.00", [], {},
           "+1", "0x1p3", "9" * 41, "1" * 20 + "." + "1" * 20, float("nan"), 2**70, -60_000, 119_998]


def _row(t=60_000, o="108000.00", h="108010.00", l="107990.00", c="108001.00", v="5.21006000"):
    return [t, o, h, l, c, v, t + 59_999, "0", 0, "0", "0", "0"]


def _python_rules(row):
    """The reference: the Python kline rules (no C path) on the row mapped as parse_rest_kline maps it."""
    if type(row) is not list or len(row) < 7:
        return None
    k = {"s": "BTCUSDT", "i": "1m", "t": row[0], "T": row[6], "o": row[1], "h": row[2], "l": row[3],
         "c": row[4], "v": row[5], "x": True}
    try:
        kl = _checked_kline({"e": "kline", "k": k}, "1m")
    except FrameError:
        return None
    return [float(kl.open_time), kl.open, kl.high, kl.low, kl.close, kl.volume]


@settings(max_examples=3000, deadline=None)
@given(changes=hst.dictionaries(hst.integers(0, 7), hst.sampled_from(_TRICKY), max_size=3),
       prices=hst.lists(hst.decimals(min_value=0, max_value=10**9, places=8, allow_nan=False), min_size=5,
                        max_size=5), use_prices=hst.booleans(), truncate=hst.sampled_from([None, 0, 6, 7]))
def test_page_path_accepts_exactly_what_the_python_rules_accept(changes, prices, use_prices, truncate):
    row = _row()
    if use_prices:
        row[1:6] = [format(p, "f") for p in prices]
    for i, value in changes.items():
        row[i] = value
    if truncate is not None:
        row = row[:truncate]
    good = _row(t=0)
    want = _python_rules(row)
    if want is None:
        with pytest.raises(FrameError):
            parse_rest_klines([good, row], "BTCUSDT", "1m")
    else:
        got = parse_rest_klines([good, row], "BTCUSDT", "1m")
        assert got.shape == (2, 6)
        assert got[1].tolist() == want  # bit for bit: float(text)
        assert not any(math.isnan(x) for x in got[1])


def test_the_error_names_the_field_as_parse_rest_kline_does():
    bad = _row(h="NaN")
    with pytest.raises(FrameError, match="high = 'NaN'") as batch:
        parse_rest_klines([_row(t=0), bad], "BTCUSDT", "1m")
    with pytest.raises(FrameError) as single:
        parse_rest_kline(bad, "BTCUSDT", "1m")
    assert str(batch.value) == str(single.value)
    with pytest.raises(FrameError, match="expected an array"):
        parse_rest_klines({"code": -1}, "BTCUSDT", "1m")
    with pytest.raises(FrameError, match="no fixed length"):
        parse_rest_klines([], "BTCUSDT", "1M")


def test_columns_of_a_valid_page():
    got = parse_rest_klines([_row(t=0), _row(t=60_000, c="108005.5")], "BTCUSDT", "1m")
    assert got.dtype == np.float64
    assert got.tolist() == [[0.0, 108000.0, 108010.0, 107990.0, 108001.0, 5.21006],
                            [60000.0, 108000.0, 108010.0, 107990.0, 108005.5, 5.21006]]
