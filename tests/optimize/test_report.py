"""The optimize HTML report: offline page, heatmap values from the trials, and a headless Chromium render."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path

import pytest

from tradesim.optimize import optimize
from tradesim.optimize.output import heatmap_grid, write_optimize_report, write_results
from tradesim.optimize.search import Trial

EMA = Path(__file__).resolve().parents[2] / "lua-strategies" / "examples" / "ema_crossover.lua"


def test_heatmap_keeps_the_best_objective_per_pair():
    trials = [Trial(0, {"a": 1, "b": 10, "c": 0}, "ok", objective=0.5),
              Trial(1, {"a": 1, "b": 10, "c": 1}, "ok", objective=0.9),
              Trial(2, {"a": 2, "b": 10, "c": 0}, "failed"),
              Trial(3, {"a": 2, "b": 20, "c": 0}, "ok", objective=-1.0),
              Trial(4, {"a": 1, "b": 20, "c": 0}, "excluded", objective=5.0)]
    xs, ys, grid = heatmap_grid(trials, "a", "b")
    assert xs == [1, 2] and ys == [10, 20]
    assert grid[0, 0] == 0.9 and math.isnan(grid[0, 1]) and math.isnan(grid[1, 0]) and grid[1, 1] == -1.0


@pytest.fixture(scope="module")
def result(btc_bars):
    bars = btc_bars.slice(None, int(btc_bars.timestamp[0]) + 3 * 86_400_000)
    return optimize(EMA, bars, ["fast=5,10", "slow=30,60"], walk_forward="train=1d,test=1d", commission_bps=10)


@pytest.fixture(scope="module")
def grid_result(btc_bars):
    bars = btc_bars.slice(None, int(btc_bars.timestamp[2000]))
    return optimize(EMA, bars, ["fast=5:15:5", "slow=30,60"], commission_bps=10)


def test_report_is_offline_and_holds_the_results(grid_result, result, tmp_path):
    for name, res in (("grid", grid_result), ("wf", result)):
        page = write_optimize_report(tmp_path / f"{name}.html", res).read_text()
        assert "default-src 'none'" in page and not re.search(r"<script[^>]+src=", page)
        assert "https://cdn" not in page
        data = json.loads(re.search(r'id="report-data">(.*?)</script>', page, re.S).group(1))
        ranked = [t for t in res.trials if t.ranked]
        assert data["objective"]["value"] == pytest.approx([t.objective for t in ranked])
    assert "Walk-forward (train=1d,test=1d)" in (tmp_path / "wf.html").read_text()
    files = write_results(grid_result, tmp_path / "out")
    doc = json.loads(files["json"].read_text())
    assert [t["params"] for t in doc["trials"]] == [t.params for t in grid_result.trials]
    assert len(doc["best_curve"]["equity"]) == 2000


def test_chromium_draws_every_chart(result, tmp_path, render_page):
    path = write_optimize_report(tmp_path / "wf.html", result)
    attrs = render_page(path)
    assert "data-error" not in attrs, attrs.get("data-error")
    assert attrs.get("data-rendered") == "ok"
    assert attrs.get("data-charts") == "2"  # objective per trial, stitched OOS equity (no best curve in a WF)
    # Negative control: a broken script is noticed.
    broken = tmp_path / "broken.html"
    broken.write_text(path.read_text().replace("LWC.AreaSeries", "LWC.NoSuchSeries"))
    attrs = render_page(broken)
    assert "data-error" in attrs and attrs.get("data-rendered") != "ok"
