"""Indicator registry: names, parameters and outputs of every indicator.

The CLI (``tradesim indicators``) and the Lua strategy layer look indicators up
here, so adding one means one `IndicatorInfo` entry.

Specs are strings ``name[:p1,p2,...]`` with positional parameters, e.g.
``rsi:14``, ``macd:12,26,9``, ``bollinger:20,2``; omitted parameters take
their defaults.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from tradesim._core import (
    ATR,
    EMA,
    MACD,
    RSI,
    SMA,
    VWAP,
    BollingerBands,
    Indicator,
    IndicatorSet,
    Stochastic,
    atr,
    bollinger,
    compute_all,
    ema,
    macd,
    rsi,
    sma,
    stochastic,
    vwap,
)

__all__ = [
    "IndicatorInfo", "Param", "available", "get", "parse_spec", "create", "compute",
    "SMA", "EMA", "RSI", "MACD", "BollingerBands", "ATR", "Stochastic", "VWAP", "IndicatorSet",
    "sma", "ema", "rsi", "macd", "bollinger", "atr", "stochastic", "vwap", "compute_all",
]


@dataclass(frozen=True)
class Param:
    """One indicator parameter: name, type (int or float), default and minimum."""

    name: str
    type: type
    default: int | float
    minimum: int | float


@dataclass(frozen=True)
class IndicatorInfo:
    """What the registry knows about one indicator.

    Attributes
    ----------
    name : str
        Registry name used in specs (``"rsi"``).
    cls : type
        The incremental class (`RSI`).
    params : tuple of Param
        Constructor parameters in positional order.
    inputs : tuple of str
        Bar fields consumed, from ``open, high, low, close, volume``.
    outputs : tuple of str
        Output names in order.
    batch : callable
        Batch function taking the input arrays then the parameters.
    summary : str
        One line for listings.
    """

    name: str
    cls: type
    params: tuple[Param, ...]
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]
    batch: Callable[..., Any]
    summary: str

    @property
    def defaults(self) -> tuple:
        return tuple(p.default for p in self.params)


_REGISTRY: dict[str, IndicatorInfo] = {
    info.name: info
    for info in (
        IndicatorInfo("sma", SMA, (Param("period", int, 20, 1),), ("close",), ("sma",), sma,
                      "Simple moving average"),
        IndicatorInfo("ema", EMA, (Param("period", int, 20, 1),), ("close",), ("ema",), ema,
                      "Exponential moving average (TA-Lib seeding)"),
        IndicatorInfo("rsi", RSI, (Param("period", int, 14, 2),), ("close",), ("rsi",), rsi,
                      "Relative strength index, Wilder smoothing"),
        IndicatorInfo("macd", MACD,
                      (Param("fast", int, 12, 1), Param("slow", int, 26, 1), Param("signal", int, 9, 1)),
                      ("close",), ("macd", "signal", "histogram"), macd,
                      "MACD line, signal and histogram (TA-Lib alignment)"),
        IndicatorInfo("bollinger", BollingerBands,
                      (Param("period", int, 20, 1), Param("k", float, 2.0, 0.0)),
                      ("close",), ("upper", "middle", "lower"), bollinger,
                      "Bollinger Bands, population standard deviation"),
        IndicatorInfo("atr", ATR, (Param("period", int, 14, 1),), ("high", "low", "close"),
                      ("atr",), atr, "Average true range, Wilder smoothing"),
        IndicatorInfo("stochastic", Stochastic,
                      (Param("k_period", int, 14, 1), Param("k_slowing", int, 3, 1),
                       Param("d_period", int, 3, 1)),
                      ("high", "low", "close"), ("k", "d"), stochastic,
                      "Stochastic oscillator slow %K / %D (SMA smoothing)"),
        IndicatorInfo("vwap", VWAP, (Param("period", int, 20, 1),),
                      ("high", "low", "close", "volume"), ("vwap",), vwap,
                      "Rolling volume-weighted average price"),
    )
}


def available() -> list[IndicatorInfo]:
    """All registered indicators, in a stable order."""
    return list(_REGISTRY.values())


def get(name: str) -> IndicatorInfo:
    """Look up an indicator by name. Raises KeyError naming the known ones."""
    try:
        return _REGISTRY[name.lower()]
    except KeyError:
        raise KeyError(f"unknown indicator {name!r}; available: {', '.join(_REGISTRY)}") from None


def _coerce(param: Param, raw: Any, spec: str) -> int | float:
    try:
        if param.type is int:
            if isinstance(raw, float) and not raw.is_integer():
                raise ValueError
            value: int | float = int(str(raw).strip()) if isinstance(raw, str) else int(raw)
        else:
            value = float(raw)
    except (TypeError, ValueError):
        raise ValueError(f"{spec}: parameter {param.name} = {raw!r} is not a valid "
                         f"{param.type.__name__}") from None
    if not np.isfinite(value) or value < param.minimum:
        raise ValueError(f"{spec}: parameter {param.name} = {raw!r} must be >= {param.minimum}")
    return value


def parse_spec(spec: str) -> tuple[IndicatorInfo, tuple]:
    """Parse ``"macd:12,26,9"`` into (info, params); missing params take defaults.

    Raises
    ------
    KeyError
        Unknown indicator name.
    ValueError
        Too many parameters, or a parameter of the wrong type or below its minimum.
    """
    name, _, args = spec.strip().partition(":")
    info = get(name)
    raw = [a for a in args.split(",")] if args.strip() else []
    if len(raw) > len(info.params):
        raise ValueError(f"{spec}: {info.name} takes at most {len(info.params)} parameters "
                         f"({', '.join(p.name for p in info.params)}), got {len(raw)}")
    values = tuple(_coerce(p, r, spec) for p, r in zip(info.params, raw))
    return info, values + info.defaults[len(values):]


def create(spec: str) -> Indicator:
    """A fresh incremental indicator from a spec string, e.g. ``create("rsi:14")``."""
    info, params = parse_spec(spec)
    return info.cls(*params)


def format_param(value: int | float) -> str:
    """A parameter as written in a spec: ``20``, ``2`` for 2.0, ``2.5`` (floats exactly, by repr)."""
    if isinstance(value, float):
        return str(int(value)) if value.is_integer() else repr(value)
    return str(value)


def spec_name(info: IndicatorInfo, params: tuple) -> str:
    """Canonical spec string, e.g. ``macd:12,26,9`` (used for column names and cache keys)."""
    return f"{info.name}:{','.join(format_param(p) for p in params)}"


def compute(spec: str, columns: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """Batch-compute one indicator spec over bar columns.

    Parameters
    ----------
    spec : str
        Indicator spec such as ``"rsi:14"``.
    columns : dict of str to ndarray
        1-D float64 arrays keyed by ``open, high, low, close, volume``.

    Returns
    -------
    dict of str to ndarray
        ``"<spec>[.<output>]"`` -> float64 array of len(close), NaN during warm-up.
    """
    info, params = parse_spec(spec)
    missing = [c for c in info.inputs if c not in columns]
    if missing:
        raise KeyError(f"{spec}: missing input column(s) {', '.join(missing)}")
    result = info.batch(*(columns[c] for c in info.inputs), *params)
    if len(info.outputs) == 1:
        result = (result,)
    label = spec_name(info, params)
    if len(info.outputs) == 1:
        return {label: result[0]}
    return {f"{label}.{name}": arr for name, arr in zip(info.outputs, result)}
