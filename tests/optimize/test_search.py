"""`tradesim.optimize.optimize` on real bars: every trial equals a standalone Backtest, the results do not depend
on the workers, failing and dying trials are marked, walk-forward and Ctrl-C (docs/optimize.md)."""

from __future__ import annotations

import json
import math
import multiprocessing
import os
import signal
from pathlib import Path

import pytest

from tradesim.backtest import Backtest
from tradesim.optimize import OptimizeInputError, optimize
from tradesim.optimize.backends import CRASH_ENV, DIED

ROOT = Path(__file__).resolve().parents[2]
EMA = ROOT / "lua-strategies" / "examples" / "ema_crossover.lua"
COSTS = {"commission_bps": 10.0, "slippage_bps": 2.0}


@pytest.fixture(scope="module")
def bars(btc_bars):
    """Two days of real BTCUSDT 1m klines (2,880 bars)."""
    return btc_bars.slice(None, int(btc_bars.timestamp[2880]))


def same(a: dict, b: dict) -> bool:
    """Metrics dicts equal, NaN equal to NaN."""
    return a.keys() == b.keys() and all(x == y or (isinstance(x, float) and math.isnan(x) and math.isnan(y))
                                        for x, y in ((a[k], b[k]) for k in a))


def summary(result):
    return [(t.number, t.params, t.status, t.metrics) for t in result.trials]


def assert_same_trials(r1, r2):
    assert [(t.number, t.params, t.status) for t in r1.trials] == [(t.number, t.params, t.status) for t in r2.trials]
    assert all(same(a.metrics, b.metrics) for a, b in zip(r1.trials, r2.trials))


def test_every_grid_trial_equals_a_standalone_backtest(bars):
    result = optimize(EMA, bars, ["fast=5:15:5", "slow=20,30"], constraints=["fast < slow"], jobs=2, **COSTS)
    assert [t.params for t in result.trials] == [{"fast": f, "slow": s} for f in (5, 10, 15) for s in (20, 30)]
    assert all(t.status == "ok" for t in result.trials)
    for t in result.trials:
        reference = Backtest(str(EMA), bars, params=t.params, **COSTS).run().metrics.to_dict()
        assert same(t.metrics, reference), t.params
        assert t.objective == reference["sharpe"] or math.isnan(reference["sharpe"])
    ranked = [t for t in result.trials if math.isfinite(t.objective)]
    assert result.best.objective == max(t.objective for t in ranked)
    # The best trial's curve is a standalone run of its parameters.
    ref = Backtest(str(EMA), bars, params=result.best.params, **COSTS).run()
    assert result.best_curve["equity"].tolist() == ref.equity.tolist()


@pytest.mark.parametrize("method, trials", [("random", 5), ("optuna", 10)])
def test_same_seed_same_results_whatever_the_jobs(bars, method, trials):
    args = (EMA, bars, ["fast=3:30:1", "slow=20:60:5"])
    kw = dict(constraints=["fast < slow"], method=method, trials=trials, seed=7, **COSTS)
    one, two = optimize(*args, jobs=1, **kw), optimize(*args, jobs=2, **kw)
    assert len(one.trials) == trials
    assert_same_trials(one, two)
    other = optimize(*args, jobs=1, **{**kw, "seed": 8})
    assert [t.params for t in other.trials] != [t.params for t in one.trials]


def test_optuna_resumes_from_its_journal(bars, tmp_path):
    kw = dict(method="optuna", seed=3, out=tmp_path, **COSTS)
    first = optimize(EMA, bars, ["fast=3:30:1", "slow=20:60:5"], trials=5, **kw)
    assert (tmp_path / "optuna.journal").is_file()
    resumed = optimize(EMA, bars, ["fast=3:30:1", "slow=20:60:5"], trials=9, **kw)
    assert len(resumed.trials) == 9
    # The first five come back from the journal as they were; four new ones run.
    assert [(t.params, t.status) for t in resumed.trials[:5]] == [(t.params, t.status) for t in first.trials]
    assert all(same(a.metrics, b.metrics) for a, b in zip(first.trials, resumed.trials))


def test_min_trades_excludes_trials(bars):
    few = Backtest(str(EMA), bars, params={"fast": 5, "slow": 200}, **COSTS).run().metrics.n_trades
    many = Backtest(str(EMA), bars, params={"fast": 5, "slow": 20}, **COSTS).run().metrics.n_trades
    assert many > few
    result = optimize(EMA, bars, ["fast=5", "slow=20,200"], min_trades=few + 1, **COSTS)
    by_slow = {t.params["slow"]: t for t in result.trials}
    assert by_slow[200].status == "excluded" and f"{few} trades < min_trades {few + 1}" == by_slow[200].reason
    assert by_slow[20].status == "ok"
    assert result.best.params["slow"] == 20


def test_bad_input_names_the_field(bars):
    with pytest.raises(OptimizeInputError, match="fats") as err:
        optimize(EMA, bars, ["fats=1,2"])
    assert err.value.field == "--param fats"
    with pytest.raises(OptimizeInputError, match="empty range"):
        optimize(EMA, bars, ["fast=10:5"])
    with pytest.raises(OptimizeInputError, match="exclude every"):
        optimize(EMA, bars, ["fast=30,40", "slow=10,20"], constraints=["fast < slow"])
    with pytest.raises(OptimizeInputError, match="--method"):
        optimize(EMA, bars, ["fast=5"], method="annealing")


FAILING = """
name = "fails_on_7"
params = {fast = 5, slow = 20}
function detect_opportunity(md, ctx, ind)
  if params.fast == 7 then error("fast 7 is broken") end
  return nil
end
function filter_commitment(md, ctx, ind) return nil end
function manage_position(md, ctx, ind) return nil end
"""


def test_a_strategy_failing_on_some_combinations(bars, tmp_path):
    script = tmp_path / "fails_on_7.lua"
    script.write_text(FAILING)
    result = optimize(script, bars, ["fast=6:8"], jobs=2)
    status = {t.params["fast"]: t for t in result.trials}
    assert status[7].status == "failed" and "fast 7 is broken" in status[7].reason
    assert status[6].status == status[8].status == "ok"


def test_a_worker_that_dies_on_a_trial_marks_it_failed(bars, monkeypatch):
    monkeypatch.setenv(CRASH_ENV, "fast=7")  # test hook: the worker os._exit()s on fast=7
    result = optimize(EMA, bars, ["fast=4:10", "slow=30"], jobs=2, **COSTS)
    monkeypatch.delenv(CRASH_ENV)
    reference = optimize(EMA, bars, ["fast=4:10", "slow=30"], jobs=1, **COSTS)
    assert len(result.trials) == 7 and result.worker_restarts >= 2
    for got, want in zip(result.trials, reference.trials):
        if got.params["fast"] == 7:
            assert got.status == "failed" and got.reason == DIED
        else:
            assert got.status == "ok" and same(got.metrics, want.metrics)


def test_a_worker_killed_mid_sweep_loses_no_trial(bars):
    killed = []

    def kill_one(done, total, trial, best):
        if not killed:
            workers = [p for p in multiprocessing.active_children() if p.is_alive()]
            os.kill(workers[0].pid, signal.SIGKILL)
            killed.append(workers[0].pid)

    # 20 trials: after the first result at most 4 are in flight, so the pool is still working when it breaks.
    result = optimize(EMA, bars, ["fast=4:23", "slow=30"], jobs=2, progress=kill_one, **COSTS)
    reference = optimize(EMA, bars, ["fast=4:23", "slow=30"], jobs=1, **COSTS)
    assert killed and result.worker_restarts >= 1
    assert_same_trials(result, reference)
    assert all(t.status == "ok" for t in result.trials)


@pytest.mark.parametrize("jobs", [1, 2])
def test_ctrl_c_keeps_finished_trials(bars, jobs):
    def interrupt(done, total, trial, best):
        if done == 3:
            raise KeyboardInterrupt

    result = optimize(EMA, bars, ["fast=4:12", "slow=30"], jobs=jobs, progress=interrupt)
    assert result.interrupted
    assert len(result.trials) >= 3 and all(t.status == "ok" for t in result.trials)


def test_walk_forward_folds_and_out_of_sample(btc_bars):
    bars = btc_bars.slice(None, int(btc_bars.timestamp[0]) + 4 * 86_400_000)
    result = optimize(EMA, bars, ["fast=5,10", "slow=30,60"], walk_forward="train=1d,test=1d", monte_carlo=200,
                      **COSTS)
    wf = result.walk_forward
    folds = wf["folds"]
    first = int(bars.timestamp[0])
    end = int(bars.timestamp[-1]) + 60_000
    assert [f["test_start"] for f in folds] == [first + k * 86_400_000 for k in range(1, 4)]
    # Test windows follow each other without overlap and cover the data after the first train window.
    assert all(a["test_end"] == b["test_start"] for a, b in zip(folds, folds[1:]))
    assert folds[-1]["test_end"] == end
    assert all(f["train_end"] - f["train_start"] == 86_400_000 for f in folds)
    # Each fold's choice is the best of the 4 trials on its train window; OOS = a standalone run on the test window.
    for f in folds:
        fold_trials = [t for t in result.trials if t.fold == f["index"]]
        assert len(fold_trials) == 4
        best = max(fold_trials, key=lambda t: (t.objective, -t.number))
        assert f["params"] == best.params
        test_bars = bars.slice(f["test_start"], f["test_end"])
        ref = Backtest(str(EMA), test_bars, params=best.params, **COSTS).run().metrics
        assert f["oos"]["total_return"] == ref.total_return
        train_ref = Backtest(str(EMA), bars.slice(f["train_start"], f["train_end"]), params=best.params,
                             **COSTS).run().metrics
        assert f["is_objective"] == train_ref.sharpe
    stitched = wf["oos_curve"]
    assert len(stitched["equity"]) == sum(len(bars.slice(f["test_start"], f["test_end"])) for f in folds)
    growth = math.prod(1 + f["oos"]["total_return"] for f in folds)
    assert wf["oos_metrics"]["total_return"] == pytest.approx(growth - 1, rel=1e-9, abs=1e-12)
    assert result.monte_carlo["simulations"] == 200


def test_cli_optimize_writes_results_and_report(btc_path, tmp_path):
    from click.testing import CliRunner

    from tradesim.cli import main

    out = tmp_path / "out"
    args = ["optimize", "--strategy", str(EMA), "--data", str(btc_path), "--to", "2025-05-22", "--param",
            "fast=5:10:5", "--param", "slow=20,30", "--jobs", "1", "--out", str(out),
            "--report", str(tmp_path / "r.html"), "--json"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    doc = json.loads(res.output)
    assert len(doc["trials"]) == 4 and doc["best"]["params"] in [t["params"] for t in doc["trials"]]
    rows = (out / "trials.csv").read_text().splitlines()
    assert rows[0].startswith("number,fold,status,objective,fast,slow,") and len(rows) == 5
    assert json.loads((out / "results.json").read_text())["best"] == doc["best"]
    page = (tmp_path / "r.html").read_text()
    assert "Objective by fast and slow" in page and "http-equiv=\"Content-Security-Policy\"" in page
    assert "<script src" not in page
    bad = CliRunner().invoke(main, [*args[:9], "fats=1,2"])
    assert bad.exit_code == 2 and "fats" in bad.output


def test_python_api_takes_a_mapping_of_values(bars):
    by_text = optimize(EMA, bars, ["fast=5:15:5", "slow=30"], **COSTS)
    by_map = optimize(EMA, bars, {"fast": range(5, 16, 5), "slow": 30}, **COSTS)
    assert_same_trials(by_text, by_map)
    with pytest.raises(OptimizeInputError, match="empty range"):
        optimize(EMA, bars, {"fast": range(5, 5)})


def test_cli_optimize_reads_the_catalog(btc_path, tmp_path):
    from click.testing import CliRunner

    from tradesim.catalog import Catalog
    from tradesim.cli import main

    Catalog(tmp_path / "cat").import_file(btc_path)
    common = ["optimize", "--strategy", str(EMA), "--param", "fast=5:10:5", "--param", "slow=30", "--jobs", "1",
              "--from", "2025-05-20", "--to", "2025-05-22", "--json"]
    from_catalog = CliRunner().invoke(main, [*common, "--symbol", "BTCUSDT", "--catalog", str(tmp_path / "cat")])
    from_file = CliRunner().invoke(main, [*common, "--data", str(btc_path)])
    assert from_catalog.exit_code == 0, from_catalog.output
    a, b = json.loads(from_catalog.output), json.loads(from_file.output)
    assert [t["metrics"] for t in a["trials"]] == [t["metrics"] for t in b["trials"]]
    assert a["data"][0]["bars"] == 2 * 1440
