"""Walk-forward folds, the stitched out-of-sample curve, parameter stability and a trade bootstrap.

Walk-forward analysis (Pardo, *The Evaluation and Optimization of Trading Strategies*, 2008,
ch. 11): optimise on a train window, evaluate the chosen parameters on the test window that
follows, slide both forward by the test length and repeat. Rolling folds keep the train length;
anchored folds keep the first bar as the train start. Test windows follow each other without
overlap, from ``first + train`` to the end of the data. See docs/optimize.md.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from tradesim.optimize.space import OptimizeInputError
from tradesim.timeframes import format_duration, parse_interval

__all__ = ["WalkForwardSpec", "Fold", "parse_walk_forward", "make_folds", "stitch_equity",
           "parameter_stability", "bootstrap_trades"]


@dataclass(frozen=True)
class WalkForwardSpec:
    """Train and test window lengths (ms) and whether the train windows are anchored at the start."""

    train_ms: int
    test_ms: int
    anchored: bool = False

    def describe(self) -> str:
        return (f"train={format_duration(self.train_ms)},test={format_duration(self.test_ms)}"
                + (",anchored" if self.anchored else ""))


@dataclass(frozen=True)
class Fold:
    """One walk-forward fold: train ``[train_start, train_end)``, test ``[test_start, test_end)`` (ms UTC)."""

    index: int
    train_start: int
    train_end: int
    test_start: int
    test_end: int

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


def parse_walk_forward(text: str) -> WalkForwardSpec:
    """Parse ``train=30d,test=7d[,anchored]`` (durations like 12h, 30d, 2w; see `parse_interval`).

    Raises
    ------
    OptimizeInputError
        A missing train or test length, an unknown item or a bad duration (``field="--walk-forward"``).
    """
    items = [p.strip() for p in text.split(",") if p.strip()]
    values: dict[str, int] = {}
    anchored = False
    for item in items:
        key, sep, value = item.partition("=")
        key = key.strip().lower()
        if not sep and key in ("anchored", "rolling"):
            anchored = key == "anchored"
            continue
        if key not in ("train", "test") or not sep:
            raise OptimizeInputError(f"--walk-forward {text!r}: unknown item {item!r} "
                                     "(expected train=DURATION, test=DURATION and optionally anchored)",
                                     "--walk-forward")
        try:
            values[key] = parse_interval(value.strip())
        except ValueError:
            raise OptimizeInputError(f"--walk-forward {key}={value}: not a duration (e.g. 12h, 30d, 2w)",
                                     "--walk-forward") from None
    missing = [k for k in ("train", "test") if k not in values]
    if missing:
        raise OptimizeInputError(f"--walk-forward {text!r}: missing {missing[0]}=DURATION", "--walk-forward")
    return WalkForwardSpec(values["train"], values["test"], anchored)


def make_folds(first_ms: int, end_ms: int, spec: WalkForwardSpec) -> list[Fold]:
    """The folds over data from `first_ms` (first bar's open) to `end_ms` (last bar's close).

    Fold k tests ``[first + train + k * test, min(that + test, end))``; its train window ends
    where the test starts and begins at ``first`` (anchored) or ``test_start - train`` (rolling).
    The last test window may be shorter than `test_ms`.

    Raises
    ------
    OptimizeInputError
        The data is not longer than one train window (no fold fits).
    """
    first_test = first_ms + spec.train_ms
    if first_test >= end_ms:
        raise OptimizeInputError(
            f"--walk-forward {spec.describe()}: the data spans {format_duration(end_ms - first_ms)}, "
            "not longer than one train window; no fold fits", "--walk-forward")
    folds: list[Fold] = []
    start = first_test
    while start < end_ms:
        stop = min(start + spec.test_ms, end_ms)
        folds.append(Fold(len(folds), first_ms if spec.anchored else start - spec.train_ms, start, start, stop))
        start = stop
    return folds


def stitch_equity(curves: Sequence[tuple[np.ndarray, np.ndarray]], starting_cash: float) -> tuple[np.ndarray,
                                                                                                  np.ndarray]:
    """Chain per-fold equity curves that each start from `starting_cash` into one curve.

    Fold k's curve is rescaled by the growth of folds 0..k-1 (``final / starting_cash`` each), as
    if the capital were carried from one test window to the next.

    Parameters
    ----------
    curves : sequence of (timestamps int64, equity float64)
        Per fold in time order, non-overlapping.
    starting_cash : float
        Quote currency, > 0.

    Returns
    -------
    (ndarray of int64, ndarray of float64)
        The joined timestamps and equity.
    """
    times, values = [], []
    scale = 1.0
    for ts, eq in curves:
        if len(eq) == 0:
            continue
        times.append(np.asarray(ts, dtype=np.int64))
        values.append(np.asarray(eq, dtype=np.float64) * scale)
        scale *= float(eq[-1]) / starting_cash
    if not times:
        return np.empty(0, np.int64), np.empty(0)
    return np.concatenate(times), np.concatenate(values)


def parameter_stability(chosen: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
    """How much each parameter's chosen value moves across folds.

    Returns
    -------
    dict
        Per parameter: ``values`` (per fold), ``distinct`` (count), ``mode`` and ``mode_share``
        (fraction of folds choosing the most frequent value); for numbers also ``mean``, ``std``
        (population) and ``cv`` (std / |mean|, NaN when the mean is 0).
    """
    out: dict[str, dict[str, Any]] = {}
    names = list(dict.fromkeys(k for p in chosen for k in p))
    for name in names:
        vals = [p.get(name) for p in chosen]
        counts = Counter(vals)
        mode, count = max(counts.items(), key=lambda kv: (kv[1], -vals.index(kv[0])))
        entry: dict[str, Any] = {"values": vals, "distinct": len(counts), "mode": mode,
                                 "mode_share": count / len(vals)}
        if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in vals):
            arr = np.asarray(vals, dtype=np.float64)
            mean, std = float(arr.mean()), float(arr.std())
            entry.update(mean=mean, std=std, cv=std / abs(mean) if mean else math.nan)
        out[name] = entry
    return out


def bootstrap_trades(pnls: Sequence[float], starting_cash: float, n: int, seed: int,
                     levels: Sequence[float] = (5, 50, 95)) -> dict[str, Any]:
    """Monte Carlo of the trade sequence: resample trade returns with replacement (bootstrap).

    Each trade's return is its net P&L over the equity before it, ``r_i = pnl_i / E_{i-1}`` with
    ``E_0 = starting_cash`` and ``E_i = E_{i-1} + pnl_i`` (trades in exit order). A simulation
    draws len(pnls) returns with replacement (numpy PCG64 seeded with `seed`) and compounds
    them; its total return is ``prod(1 + r) - 1`` and its max drawdown the deepest fall of the
    compounded path below its running peak (starting at 1).

    Returns
    -------
    dict
        ``simulations``, ``trades``, ``seed``, ``levels`` and per level (percent) the percentile of
        ``total_return`` and ``max_drawdown`` (fractions; drawdown <= 0), plus
        ``prob_loss`` (share of simulations with a total return < 0). Empty percentiles
        when there are no trades.
    """
    pnl = np.asarray(list(pnls), dtype=np.float64)
    out: dict[str, Any] = {"simulations": int(n), "trades": int(pnl.size), "seed": int(seed),
                           "levels": list(levels), "total_return": {}, "max_drawdown": {}, "prob_loss": None}
    if pnl.size == 0 or n <= 0:
        return out
    equity_before = starting_cash + np.concatenate(([0.0], np.cumsum(pnl)[:-1]))
    with np.errstate(divide="ignore", invalid="ignore"):
        returns = np.where(equity_before > 0, pnl / equity_before, -1.0)
    rng = np.random.default_rng(seed)
    draws = returns[rng.integers(0, pnl.size, size=(int(n), pnl.size))]
    paths = np.cumprod(1.0 + np.maximum(draws, -1.0), axis=1)
    paths = np.concatenate((np.ones((int(n), 1)), paths), axis=1)
    peaks = np.maximum.accumulate(paths, axis=1)
    drawdowns = (paths / peaks - 1.0).min(axis=1)
    totals = paths[:, -1] - 1.0
    for q in levels:
        out["total_return"][str(q)] = float(np.percentile(totals, q))
        out["max_drawdown"][str(q)] = float(np.percentile(drawdowns, q))
    out["prob_loss"] = float((totals < 0).mean())
    return out
