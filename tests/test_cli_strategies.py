"""CLI: validate, run (simulated feed), backtest (tables, JSON, report, trades CSV), exit codes."""

import csv
import json
from pathlib import Path

from click.testing import CliRunner

from tradesim.cli import main

REPO = Path(__file__).resolve().parents[1]
EMA = str(REPO / "lua-strategies" / "examples" / "ema_crossover.lua")


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_validate_ok_and_summary():
    r = run("validate", EMA)
    assert r.exit_code == 0
    assert r.output.startswith("OK  ema_crossover") and "ema:10" in r.output and "ema:20" in r.output


def test_validate_reports_error_with_file_and_line(tmp_path):
    bad = tmp_path / "bad.lua"
    bad.write_text("function detect_opportunity(md, ctx, ind)\n  return md.nothing.field\nend\n"
                   "function filter_commitment() end\nfunction manage_position() end\n")
    r = run("validate", str(bad))
    assert r.exit_code == 1 and "bad.lua:2:" in r.output
    missing = tmp_path / "missing.lua"
    missing.write_text("function detect_opportunity() end\n")
    r = run("validate", str(missing))
    assert r.exit_code == 1 and "filter_commitment" in r.output


def test_validate_bad_param_is_an_error():
    r = run("validate", EMA, "--param", "fats=3")
    assert r.exit_code == 1 and "unknown parameter 'fats'" in r.output
    r = run("validate", EMA, "--param", "fast")
    assert r.exit_code == 2 and "name=value" in r.output


def test_run_on_the_simulated_feed_prints_a_summary():
    r = run("run", "--strategy", EMA, "--bars", "1500", "--symbol", "BTCUSDT", "--symbol", "ETHUSDT")
    assert r.exit_code == 0, r.output
    assert "BTCUSDT" in r.output and "ETHUSDT" in r.output and "1,500" in r.output


def test_run_replay_needs_data():
    r = run("run", "--strategy", EMA, "--feed", "replay")
    assert r.exit_code == 2 and "--data" in r.output


def test_backtest_json_report_and_trades(tmp_path, btc_bars):
    # A 5,000-bar slice written as a generic CSV keeps the test quick.
    data = tmp_path / "BTCUSDT-1m.csv"
    with open(data, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["timestamp", "open", "high", "low", "close", "volume"])
        for i in range(5000):
            w.writerow([int(btc_bars.timestamp[i]), repr(float(btc_bars.open[i])), repr(float(btc_bars.high[i])),
                        repr(float(btc_bars.low[i])), repr(float(btc_bars.close[i])),
                        repr(float(btc_bars.volume[i]))])
    report, trades = tmp_path / "r.html", tmp_path / "t.csv"
    r = run("backtest", "--strategy", EMA, "--data", str(data), "--commission-bps", "10",
            "--report", str(report), "--trades", str(trades), "--json")
    assert r.exit_code == 0, r.output
    result = json.loads(r.output)
    assert result["ledger"]["bars_processed"] == 5000 and result["ledger"]["commission_bps"] == 10.0
    n = result["metrics"]["n_trades"]
    assert n == len(result["trades"]) > 0
    with open(trades) as fh:
        assert len(list(csv.DictReader(fh))) == n
    html = report.read_text()
    assert "<html" in html.lower() and "<canvas" not in html  # charts draw at load, not baked in
    assert "<script src=" not in html and "<link " not in html  # nothing fetched: opens offline
    r = run("backtest", "--strategy", EMA, "--data", str(data))
    assert r.exit_code == 0 and "Backtest metrics" in r.output and "bars/s" in r.output


def test_backtest_errors_exit_1_usage_errors_exit_2(tmp_path):
    bad = tmp_path / "bad.csv"
    bad.write_text("timestamp,open,high,low,close,volume\n1700000000000,1,1,1,x,1\n")
    r = run("backtest", "--strategy", EMA, "--data", str(bad))
    assert r.exit_code == 1 and "bad.csv:2: close" in r.output
    r = run("backtest", "--strategy", EMA, "--data", str(bad), "--fill", "later")
    assert r.exit_code == 2
