"""The Ray backend gives exactly the local backend's results (a local Ray with 2 CPUs, started once here)."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from tradesim.optimize import optimize

ray = pytest.importorskip("ray")

EMA = Path(__file__).resolve().parents[2] / "lua-strategies" / "examples" / "ema_crossover.lua"
COSTS = {"commission_bps": 10.0, "slippage_bps": 2.0}


@pytest.fixture(scope="module")
def local_ray():
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield
    ray.shutdown()


@pytest.fixture(scope="module")
def bars(btc_bars):
    return btc_bars.slice(None, int(btc_bars.timestamp[2880]))


def same(a: dict, b: dict) -> bool:
    return a.keys() == b.keys() and all(x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
                                        for x, y in ((a[k], b[k]) for k in a))


@pytest.mark.parametrize("method, trials", [("grid", None), ("random", 6), ("optuna", 10)])
def test_ray_equals_local(local_ray, bars, method, trials):
    args = (EMA, bars, ["fast=3:30:3", "slow=20:60:10"])
    kw = dict(constraints=["fast < slow"], method=method, trials=trials, seed=11, **COSTS)
    local = optimize(*args, jobs=1, **kw)
    remote = optimize(*args, backend="ray", jobs=2, **kw)
    assert remote.backend == "ray"
    assert [(t.number, t.params, t.status) for t in remote.trials] == [(t.number, t.params, t.status)
                                                                       for t in local.trials]
    assert all(same(a.metrics, b.metrics) for a, b in zip(local.trials, remote.trials))
