"""tradesim bench: JSON shape, filters, budgets decide the exit status."""

import json

from click.testing import CliRunner

from tradesim.bench import suite as bench
from tradesim.bench.budgets import BUDGETS, Budget
from tradesim.cli import main


def run(*args):
    return CliRunner().invoke(main, list(args))


def test_bench_json_records_environment_and_results():
    r = run("bench", "--quick", "--filter", "kline", "--filter", "window", "--json")
    data = json.loads(r.output)
    names = [x["name"] for x in data["results"]]
    assert names == ["window.push", "binance.kline_frame_to_bar"]
    assert {"python", "cython", "numpy", "lupa", "machine"} <= set(data["environment"])
    for x in data["results"]:
        assert x["p50"] > 0 and x["p99"] >= x["p50"] and x["max"] >= x["p99"] and x["budget"] is not None
    assert r.exit_code == (0 if data["passed"] else 1)


def test_bench_exit_status_follows_budgets(monkeypatch):
    monkeypatch.setitem(BUDGETS, "window_push", Budget("window_push", 1e-6, "ns", "impossible"))
    r = run("bench", "--quick", "--filter", "window", "--json")
    assert r.exit_code == 1 and json.loads(r.output)["results"][0]["passed"] is False
    monkeypatch.setitem(BUDGETS, "window_push", Budget("window_push", 1e9, "ns", "generous"))
    assert run("bench", "--quick", "--filter", "window").exit_code == 0


def test_bench_unknown_filter_is_a_usage_error():
    r = run("bench", "--filter", "nope")
    assert r.exit_code == 2 and "unknown group" in r.output


def test_bench_example_strategy_is_found():
    assert bench.example_path().read_text().startswith("-- EMA crossover")
