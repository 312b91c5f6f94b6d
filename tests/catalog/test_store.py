"""The catalog store: round trips against hand-made bars and the real CSV, gaps, merges, atomicity, verify."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from tradesim.catalog import Catalog, CatalogError, SourceChoiceError, default_root, resolve_bars
from tradesim.catalog.store import month_bounds, months_between
from tradesim.cli import main
from tradesim.data import load_bars
from tradesim.timeframes import parse_time

REPO = Path(__file__).resolve().parents[2]
BTC_FILE = REPO.parent / "shared" / "data" / "binance" / "klines" / "1m" / "BTCUSDT-1m-2025-05-20_2025-08-18.csv.gz"
H = 3_600_000
JAN31 = parse_time("2024-01-31T22:00")  # 1h bars across the January/February boundary


def _bars(n, t0=JAN31, step=H, skip=()):
    ts = np.array([t0 + i * step for i in range(n) if i not in skip], dtype=np.int64)
    close = 100.0 + np.arange(len(ts), dtype=np.float64)
    return ts, close, close + 1.0, close - 1.0, close, np.full(len(ts), 2.5)


def test_months_are_utc_calendar_months():
    assert month_bounds("2024-02") == (parse_time("2024-02-01"), parse_time("2024-03-01"))
    assert month_bounds("2024-12") == (parse_time("2024-12-01"), parse_time("2025-01-01"))
    assert months_between(parse_time("2024-01-31T23:59"), parse_time("2024-03-01")) == ["2024-01", "2024-02"]


def test_write_and_load_round_trip_with_a_gap(tmp_path):
    cat = Catalog(tmp_path)
    ts, o, h, l, c, v = _bars(6, skip={3})  # 22:00, 23:00, 00:00, [01:00 missing], 02:00, 03:00
    cat.write("btcusdt", "1h", ts, o, h, l, c, v, JAN31, JAN31 + 6 * H)
    assert sorted(p.name for p in (tmp_path / "binance" / "BTCUSDT" / "1h").glob("*.parquet")) == \
        ["2024-01.parquet", "2024-02.parquet"]
    got = cat.load("BTCUSDT", "1h")
    assert got.timestamp.tolist() == ts.tolist() and got.close.tolist() == c.tolist()
    assert got.interval_ms == H and got.symbol == "BTCUSDT"
    [gap] = cat.gaps()
    assert (gap.start, gap.end, gap.bars) == (JAN31 + 3 * H, JAN31 + 4 * H, 1)
    assert [(m.month, m.rows, m.missing) for m in cat.coverage()] == [("2024-01", 2, 0), ("2024-02", 3, 1)]
    assert cat.load("BTCUSDT", "1h", JAN31 + 2 * H, JAN31 + 5 * H).timestamp.tolist() == \
        [JAN31 + 2 * H, JAN31 + 4 * H]
    with pytest.raises(CatalogError, match="no BTCUSDT 1h bars"):
        cat.load("BTCUSDT", "1h", JAN31 + 10 * H)
    assert cat.verify() == []


def test_overlapping_write_merges_and_conflicts_are_refused(tmp_path):
    cat = Catalog(tmp_path)
    ts, o, h, l, c, v = _bars(6)
    cat.write("BTCUSDT", "1h", ts[:4], o[:4], h[:4], l[:4], c[:4], v[:4], JAN31, JAN31 + 4 * H)
    cat.write("BTCUSDT", "1h", ts[2:], o[2:], h[2:], l[2:], c[2:], v[2:], JAN31 + 2 * H, JAN31 + 6 * H)
    assert cat.load("BTCUSDT", "1h").timestamp.tolist() == ts.tolist()
    before = (tmp_path / "binance" / "BTCUSDT" / "1h" / "index.json").read_text()
    bad = c.copy()
    bad[3] += 0.5
    with pytest.raises(CatalogError, match=rf"open_time {ts[3]}: close 103.0 stored, 103.5 new"):
        cat.write("BTCUSDT", "1h", ts[3:4], o[3:4], h[3:4], l[3:4], bad[3:4], v[3:4], ts[3], ts[3] + H)
    assert (tmp_path / "binance" / "BTCUSDT" / "1h" / "index.json").read_text() == before
    with pytest.raises(CatalogError, match="does not touch"):
        far = JAN31 + 20 * H
        cat.write("BTCUSDT", "1h", [far], [1.0], [1.0], [1.0], [1.0], [1.0], far, far + H)


def test_a_crash_while_writing_leaves_the_catalog_as_it_was(tmp_path, monkeypatch):
    cat = Catalog(tmp_path)
    ts, o, h, l, c, v = _bars(2)
    cat.write("BTCUSDT", "1h", ts, o, h, l, c, v, JAN31, JAN31 + 2 * H)

    def crash(*a):
        raise OSError("disk gone")

    monkeypatch.setattr(os, "replace", crash)
    ts2, *cols2 = _bars(2, t0=JAN31 + 2 * H)
    with pytest.raises(OSError, match="disk gone"):
        cat.write("BTCUSDT", "1h", ts2, *cols2, JAN31 + 2 * H, JAN31 + 4 * H)
    monkeypatch.undo()
    assert cat.load("BTCUSDT", "1h").timestamp.tolist() == ts.tolist()
    assert list(cat.covered("BTCUSDT", "1h")) == ["2024-01"]
    assert cat.verify() == []  # the temporary file was removed


def test_verify_finds_corruption_and_leftovers(tmp_path):
    cat = Catalog(tmp_path)
    ts, o, h, l, c, v = _bars(6)
    cat.write("BTCUSDT", "1h", ts, o, h, l, c, v, JAN31, JAN31 + 6 * H)
    folder = tmp_path / "binance" / "BTCUSDT" / "1h"
    data = bytearray((folder / "2024-02.parquet").read_bytes())
    data[len(data) // 2] ^= 0xFF
    (folder / "2024-02.parquet").write_bytes(bytes(data))
    (folder / ".tmp-abc.parquet").write_bytes(b"half")
    (folder / "2023-12.parquet").write_bytes(b"x")
    where = {(p.where.split("/")[-1], p.message.split(" ")[0]) for p in cat.verify()}
    assert ("BTCUSDT 1h 2024-02", "2024-02.parquet") in where   # checksum mismatch
    assert (".tmp-abc.parquet", "temporary") in where
    assert ("2023-12.parquet", "month") in where
    r = CliRunner().invoke(main, ["catalog", "verify", "--catalog", str(tmp_path)])
    assert r.exit_code == 1 and "PROBLEM" in r.output


def test_index_is_json_naming_ranges_rows_and_gaps(tmp_path):
    cat = Catalog(tmp_path)
    ts, o, h, l, c, v = _bars(3, skip={1})  # 22:00 and 00:00: January ends at 00:00
    cat.write("BTCUSDT", "1h", ts, o, h, l, c, v, JAN31, JAN31 + 3 * H)
    index = json.loads((tmp_path / "binance" / "BTCUSDT" / "1h" / "index.json").read_text())
    month = index["months"]["2024-01"]
    assert (month["start"], month["end"], month["rows"]) == (JAN31, JAN31 + 2 * H, 1)
    assert month["gaps"] == [[JAN31 + H, JAN31 + 2 * H, 1]]
    assert index["interval_ms"] == H


def test_bad_names_are_refused(tmp_path):
    cat = Catalog(tmp_path)
    with pytest.raises(CatalogError, match="symbol '../x'"):
        cat.series_dir("../x", "1m")
    with pytest.raises(CatalogError, match="interval '7m'"):
        cat.series_dir("BTCUSDT", "7m")


def test_default_root_follows_the_environment(monkeypatch, tmp_path):
    monkeypatch.setenv("TRADESIM_CATALOG", str(tmp_path / "x"))
    assert default_root() == tmp_path / "x"
    monkeypatch.delenv("TRADESIM_CATALOG")
    assert default_root() == Path.home() / ".local" / "share" / "tradesim"


def test_resolve_bars_wants_exactly_one_source(tmp_path):
    with pytest.raises(SourceChoiceError, match="not both"):
        resolve_bars(["a.csv"], ["BTCUSDT"], "1m")
    with pytest.raises(SourceChoiceError, match="give --data FILE, or --symbol"):
        resolve_bars([], [], None)
    assert resolve_bars(["a.csv"], [], None) == ["a.csv"]
    with pytest.raises(CatalogError, match="run `tradesim download --symbol BTCUSDT"):
        resolve_bars([], ["BTCUSDT"], "1m", "2024-01-01", "2024-02-01", tmp_path)
    with pytest.raises(CatalogError, match="--from/--to"):
        resolve_bars([], ["BTCUSDT"], "1m", "yesterday", None, tmp_path)


def test_cli_usage_errors_exit_2(tmp_path):
    runner = CliRunner()
    strategy = str(REPO / "lua-strategies" / "examples" / "ema_crossover.lua")
    r = runner.invoke(main, ["backtest", "--strategy", strategy])
    assert r.exit_code == 2 and "--symbol" in r.output
    r = runner.invoke(main, ["backtest", "--strategy", strategy, "--data", "x.csv", "--symbol", "BTCUSDT"])
    assert r.exit_code == 2 and "not both" in r.output
    r = runner.invoke(main, ["backtest", "--strategy", strategy, "--symbol", "BTCUSDT", "--catalog", str(tmp_path)])
    assert r.exit_code == 1 and "tradesim download" in r.output
    r = runner.invoke(main, ["verify", "--catalog", str(tmp_path)])
    assert r.exit_code == 2 and "--data" in r.output
    r = runner.invoke(main, ["run", "--strategy", strategy, "--feed", "replay"])
    assert r.exit_code == 2 and "--symbol" in r.output
    r = runner.invoke(main, ["download", "--symbol", "BTCUSDT", "--start", "2024-02-01", "--end", "2024-01-01"])
    assert r.exit_code == 2 and "--end" in r.output


@pytest.fixture(scope="module")
def imported(tmp_path_factory):
    if not BTC_FILE.exists():
        pytest.skip(f"real market data not found at {BTC_FILE}")
    root = tmp_path_factory.mktemp("cat")
    r = CliRunner().invoke(main, ["catalog", "import", str(BTC_FILE), "--catalog", str(root)])
    assert r.exit_code == 0, r.output
    return root


def test_import_equals_the_csv_and_is_idempotent(imported):
    src = load_bars(BTC_FILE)
    cat = Catalog(imported)
    got = cat.load("BTCUSDT", "1m")
    for name in ("timestamp", "open", "high", "low", "close", "volume"):
        assert np.array_equal(getattr(got, name), getattr(src, name)), name
    assert [m.month for m in cat.coverage()] == ["2025-05", "2025-06", "2025-07", "2025-08"]
    assert cat.coverage()[0].start == int(src.timestamp[0])
    assert cat.coverage()[-1].end == int(src.timestamp[-1]) + 60_000
    steps = np.diff(src.timestamp)
    want = [(int(src.timestamp[i]) + 60_000, int(src.timestamp[i + 1])) for i in np.flatnonzero(steps > 60_000)]
    assert [(g.start, g.end) for g in cat.gaps()] == want
    cat.import_file(BTC_FILE)  # again: same bars, nothing changes
    assert len(cat.load("BTCUSDT", "1m")) == len(src)
    assert cat.verify() == []


def test_catalog_list_gaps_verify_commands(imported):
    runner = CliRunner()
    r = runner.invoke(main, ["catalog", "list", "--catalog", str(imported), "--json"])
    assert r.exit_code == 0
    months = json.loads(r.output)["months"]
    assert [(m["month"], m["complete"]) for m in months] == \
        [("2025-05", False), ("2025-06", True), ("2025-07", True), ("2025-08", False)]
    assert sum(m["rows"] for m in months) == len(load_bars(BTC_FILE))
    r = runner.invoke(main, ["catalog", "list", "--catalog", str(imported)])
    assert r.exit_code == 0 and "binance/BTCUSDT/1m" in r.output
    r = runner.invoke(main, ["catalog", "gaps", "--catalog", str(imported), "--json"])
    assert r.exit_code == 0 and isinstance(json.loads(r.output)["gaps"], list)
    r = runner.invoke(main, ["catalog", "verify", "--catalog", str(imported)])
    assert r.exit_code == 0 and "all OK" in r.output


def test_run_replay_from_catalog_sees_exactly_the_source_bars(imported, tmp_path):
    strategy = str(REPO / "lua-strategies" / "examples" / "ema_crossover.lua")
    events = tmp_path / "events.jsonl"
    r = CliRunner().invoke(main, ["run", "--strategy", strategy, "--feed", "replay", "--symbol", "BTCUSDT",
                                  "--from", "2025-05-20", "--to", "2025-05-22", "--catalog", str(imported),
                                  "--events", str(events)])
    assert r.exit_code == 0, r.output
    seen = [e for e in map(json.loads, events.read_text().splitlines()) if e["type"] == "bar_received"]
    want = load_bars(BTC_FILE).slice(parse_time("2025-05-20"), parse_time("2025-05-22"))
    assert len(seen) == len(want) == 2 * 1440
    assert [e["timestamp"] for e in seen] == want.timestamp.tolist()
    assert [e["close"] for e in seen] == want.close.tolist()
    assert [e["volume"] for e in seen] == want.volume.tolist()


def test_verify_command_takes_bars_from_the_catalog(imported, monkeypatch):
    from tradesim import verify as verify_module

    seen = []
    monkeypatch.setattr(verify_module, "compare", lambda bars, specs: seen.append(bars) or [])
    r = CliRunner().invoke(main, ["verify", "--symbol", "BTCUSDT", "--from", "2025-06-01", "--to", "2025-06-02",
                                  "--catalog", str(imported), "--json"])
    assert r.exit_code == 0, r.output
    want = load_bars(BTC_FILE).slice(parse_time("2025-06-01"), parse_time("2025-06-02"))
    [bars] = seen
    assert np.array_equal(bars.timestamp, want.timestamp) and np.array_equal(bars.close, want.close)
    assert json.loads(r.output)["data"].startswith("catalog:")


def test_weekly_bars_open_on_mondays_and_gaps_follow_that_grid(tmp_path):
    cat = Catalog(tmp_path)
    monday = parse_time("2024-01-01")  # a Monday
    week = 7 * 86_400_000
    ts = np.array([monday, monday + 2 * week], dtype=np.int64)  # the week of 2024-01-08 is missing
    ones = np.ones(2)
    cat.write("BTCUSDT", "1w", ts, ones, ones, ones, ones, ones, monday, monday + 3 * week)
    [gap] = cat.gaps()
    assert (gap.start, gap.end, gap.bars) == (monday + week, monday + 2 * week, 1)
    assert cat.verify() == []
