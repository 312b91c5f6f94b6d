"""CLI: exit codes, indicator listing and computation (checked against TA-Lib)."""

import csv
import json

import numpy as np
import pytest
from click.testing import CliRunner

import tradesim
from tradesim.cli import main


def run(*args):
    return CliRunner().invoke(main, list(args), catch_exceptions=False)


def test_version_and_help():
    r = run("--version")
    assert r.exit_code == 0 and tradesim.__version__ in r.output
    assert run("--help").exit_code == 0


def test_indicators_list_json_names_all_eight():
    r = run("indicators", "list", "--json")
    assert r.exit_code == 0
    names = [i["name"] for i in json.loads(r.output)]
    assert names == ["sma", "ema", "rsi", "macd", "bollinger", "atr", "stochastic", "vwap"]


def test_indicators_list_table():
    r = run("indicators", "list")
    assert r.exit_code == 0 and "bollinger" in r.output


def test_compute_writes_csv_matching_talib(tmp_path, btc_path):
    talib = pytest.importorskip("talib")
    data = btc_path
    out = tmp_path / "out.csv"
    r = run("indicators", "compute", "--data", str(data), "--indicator", "rsi:14",
            "--indicator", "macd:12,26,9", "--out", str(out))
    assert r.exit_code == 0, r.output
    with open(out) as fh:
        rows = list(csv.reader(fh))
    header, body = rows[0], rows[1:]
    assert header == ["timestamp", "close", "rsi:14", "macd:12,26,9.macd", "macd:12,26,9.signal",
                      "macd:12,26,9.histogram"]
    assert len(body) == 130_708
    close = np.array([float(r[1]) for r in body])
    rsi = np.array([float(r[2]) if r[2] else np.nan for r in body])
    ref = talib.RSI(close, 14)
    assert np.array_equal(np.isnan(rsi), np.isnan(ref))
    np.testing.assert_allclose(rsi[14:], ref[14:], rtol=1e-9)


def test_compute_prints_table_without_out(tmp_path):
    p = tmp_path / "t.csv"
    p.write_text("timestamp,open,high,low,close,volume\n" +
                 "\n".join(f"{i * 60_000},10,11,9,{10 + (i % 3) * 0.1},1" for i in range(30)) + "\n")
    r = run("indicators", "compute", "--data", str(p), "--indicator", "sma:3", "--tail", "2")
    assert r.exit_code == 0
    assert "sma:3" in r.output and "last 2 of 30 bars" in r.output


def test_compute_unknown_indicator_is_usage_error(tmp_path):
    r = run("indicators", "compute", "--data", "x.csv", "--indicator", "nope:3")
    assert r.exit_code == 2 and "unknown indicator 'nope'" in r.output
    r = run("indicators", "compute", "--data", "x.csv", "--indicator", "rsi:1")
    assert r.exit_code == 2 and "period" in r.output


def test_compute_bad_row_exits_1_with_file_line_field(tmp_path):
    p = tmp_path / "bad.csv"
    p.write_text("timestamp,open,high,low,close,volume\n0,10,11,9,10,1\n60000,10,11,9,oops,1\n")
    r = run("indicators", "compute", "--data", str(p), "--indicator", "sma:2")
    assert r.exit_code == 1
    assert f"{p}:3: close" in r.output and "'oops'" in r.output
