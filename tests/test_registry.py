"""Indicator registry and spec parsing."""

import numpy as np
import pytest

from tradesim import indicators


def test_available_lists_parameters_and_outputs():
    infos = {i.name: i for i in indicators.available()}
    assert set(infos) == {"sma", "ema", "rsi", "macd", "bollinger", "atr", "stochastic", "vwap"}
    assert [p.name for p in infos["macd"].params] == ["fast", "slow", "signal"]
    assert infos["bollinger"].outputs == ("upper", "middle", "lower")
    assert infos["vwap"].inputs == ("high", "low", "close", "volume")


def test_parse_spec_fills_defaults_and_coerces():
    info, params = indicators.parse_spec("bollinger:10")
    assert info.name == "bollinger" and params == (10, 2.0)
    assert indicators.parse_spec("MACD")[1] == (12, 26, 9)


@pytest.mark.parametrize("spec, message", [
    ("foo", "unknown indicator"), ("rsi:1", "must be >= 2"), ("sma:2.5", "not a valid int"),
    ("sma:1,2", "at most 1"), ("bollinger:20,x", "not a valid float"),
])
def test_bad_specs_raise_clear_errors(spec, message):
    with pytest.raises((KeyError, ValueError), match=message):
        indicators.parse_spec(spec)


def test_create_and_compute_agree():
    x = np.linspace(10, 20, 100)
    ind = indicators.create("ema:7")
    incremental = [ind.update(v) for v in x]
    batch = indicators.compute("ema:7", {"close": x})["ema:7"]
    np.testing.assert_array_equal(incremental, batch)
