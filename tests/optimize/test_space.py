"""Parameter specs, constraints, objectives and walk-forward folds: parsing and bad input (docs/optimize.md)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from tradesim.optimize import (
    Objective,
    OptimizeInputError,
    SearchSpace,
    bootstrap_trades,
    make_folds,
    parameter_stability,
    parse_param_spec,
    parse_walk_forward,
    stitch_equity,
)
from tradesim.optimize.walkforward import WalkForwardSpec

METRICS = ["sharpe", "sortino", "total_return", "max_drawdown", "n_trades", "calmar", "profit_factor"]


def test_range_is_inclusive_with_step():
    spec = parse_param_spec("fast=5:40:5")
    assert spec.values == (5, 10, 15, 20, 25, 30, 35, 40)
    assert spec.is_int


def test_decimal_range_has_no_float_drift():
    assert parse_param_spec("x=0.1:0.3:0.1").values == (0.1, 0.2, 0.3)
    assert parse_param_spec("x=1:2:0.25").values == (1.0, 1.25, 1.5, 1.75, 2.0)


def test_list_and_single_value():
    assert parse_param_spec("slow=20,30,50").values == (20, 30, 50)
    assert parse_param_spec("mode=a,b").values == ("a", "b")
    assert parse_param_spec("x=2.5").values == (2.5,)


@pytest.mark.parametrize("item, field, words", [
    ("fast=40:5:5", "--param fast", "empty range"),
    ("fast=", "--param fast", "no values"),
    ("fast=5:40:0", "--param fast", "step must be > 0"),
    ("fast=a:b", "--param fast", "must be numbers"),
    ("fast=1,,2", "--param fast", "empty item"),
    ("=5", "--param", "expected name=values"),
    ("fast", "--param", "expected name=values"),
])
def test_bad_specs_name_the_field_and_value(item, field, words):
    with pytest.raises(OptimizeInputError) as err:
        parse_param_spec(item)
    assert err.value.field == field
    assert words in str(err.value)


def test_grid_applies_constraints():
    space = SearchSpace([parse_param_spec("fast=5:15:5"), parse_param_spec("slow=10,20")], ["fast < slow"])
    assert list(space.grid()) == [{"fast": 5, "slow": 10}, {"fast": 5, "slow": 20}, {"fast": 10, "slow": 20},
                                  {"fast": 15, "slow": 20}]


def test_unknown_parameter_is_named():
    with pytest.raises(OptimizeInputError, match="declares no parameter 'fats'.*fast, slow") as err:
        SearchSpace([parse_param_spec("fats=1,2")], declared={"fast": 1, "slow": 2})
    assert err.value.field == "--param fats"


def test_constraint_excluding_everything_is_an_error():
    with pytest.raises(OptimizeInputError, match="exclude every one of the 4 combinations") as err:
        SearchSpace([parse_param_spec("fast=30,40"), parse_param_spec("slow=10,20")], ["fast < slow"])
    assert err.value.field == "--constraint"


@pytest.mark.parametrize("expr", ["fast < slwo", "__import__('os').system('true')", "fast.__class__", "fast <"])
def test_constraints_are_not_eval(expr):
    with pytest.raises(OptimizeInputError) as err:
        SearchSpace([parse_param_spec("fast=1,2"), parse_param_spec("slow=3")], [expr])
    assert err.value.field == "--constraint"


def test_random_sample_is_seeded_distinct_and_allowed():
    space = SearchSpace([parse_param_spec("a=1:100"), parse_param_spec("b=1:100")], ["a < b"])
    one, two = space.sample(50, seed=3), space.sample(50, seed=3)
    assert one == two and len(one) == 50
    assert len({(p["a"], p["b"]) for p in one}) == 50
    assert all(p["a"] < p["b"] for p in one)
    assert space.sample(50, seed=4) != one


def test_objectives_named_and_expressions():
    m = {"sharpe": 1.5, "sortino": 2.0, "total_return": 0.1, "max_drawdown": -0.2, "n_trades": 10, "calmar": 3.0,
         "profit_factor": 1.2}
    assert Objective("return", METRICS)(m) == 0.1
    assert Objective("sharpe * (1 + max_drawdown)", METRICS)(m) == pytest.approx(1.5 * 0.8)
    assert math.isnan(Objective("sharpe / (n_trades - 10)", METRICS)(m))
    with pytest.raises(OptimizeInputError, match="sharpie"):
        Objective("sharpie + 1", METRICS)


def test_walk_forward_spec_parsing():
    assert parse_walk_forward("train=30d,test=7d") == WalkForwardSpec(30 * 86_400_000, 7 * 86_400_000, False)
    assert parse_walk_forward("train=12h,test=1h,anchored").anchored
    for bad in ("train=30d", "train=30x,test=1d", "train=1d,test=1d,sideways"):
        with pytest.raises(OptimizeInputError) as err:
            parse_walk_forward(bad)
        assert err.value.field == "--walk-forward"


def test_rolling_and_anchored_folds_by_hand():
    # Data from 0 to 100 ms, train 30, test 20: tests [30,50) [50,70) [70,90) [90,100).
    folds = make_folds(0, 100, WalkForwardSpec(30, 20))
    rolling = [(f.train_start, f.train_end, f.test_start, f.test_end) for f in folds]
    assert rolling == [(0, 30, 30, 50), (20, 50, 50, 70), (40, 70, 70, 90), (60, 90, 90, 100)]
    anchored = [(f.train_start, f.train_end) for f in make_folds(0, 100, WalkForwardSpec(30, 20, True))]
    assert anchored == [(0, 30), (0, 50), (0, 70), (0, 90)]
    with pytest.raises(OptimizeInputError, match="no fold fits"):
        make_folds(0, 30, WalkForwardSpec(30, 20))


def test_stitched_equity_carries_capital_by_hand():
    ts, eq = stitch_equity([(np.array([1, 2]), np.array([105.0, 110.0])),
                            (np.array([3, 4]), np.array([95.0, 90.0]))], 100.0)
    assert ts.tolist() == [1, 2, 3, 4]
    assert eq.tolist() == pytest.approx([105.0, 110.0, 104.5, 99.0])


def test_parameter_stability_by_hand():
    s = parameter_stability([{"fast": 10}, {"fast": 10}, {"fast": 20}, {"fast": 10}])
    assert s["fast"]["mode"] == 10 and s["fast"]["mode_share"] == 0.75 and s["fast"]["distinct"] == 2
    assert s["fast"]["mean"] == 12.5 and s["fast"]["std"] == pytest.approx(math.sqrt(18.75))


def test_bootstrap_by_hand():
    # Cash 100: +10 (r = 0.1) then -11 (r = -11/110 = -0.1). Two draws per path: 1.21, 0.99 or 0.81.
    mc = bootstrap_trades([10.0, -11.0], 100.0, n=4000, seed=1)
    assert mc["total_return"]["5"] == pytest.approx(-0.19)
    assert mc["total_return"]["95"] == pytest.approx(0.21)
    assert mc["max_drawdown"]["5"] == pytest.approx(-0.19)
    assert mc["max_drawdown"]["95"] == pytest.approx(0.0)
    assert 0.7 < mc["prob_loss"] < 0.8  # P = 3/4
    assert bootstrap_trades([10.0, -11.0], 100.0, n=4000, seed=1) == mc
    assert bootstrap_trades([], 100.0, n=10, seed=1)["total_return"] == {}
