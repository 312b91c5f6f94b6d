"""Recording sessions: what a backtest and a live engine write, byte-identical logs, a failing disk.

References are independent of the log: the input `Bars`, the backtest's own
trades, hashlib over the files, and a second process.
"""

from __future__ import annotations

import hashlib
import math
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from tradesim.backtest import Backtest
from tradesim.eventlog import LogReader, LogWriteError
from tradesim.recording import SessionRecorder, load_manifest
from tradesim.recording.outcomes import expand
from tradesim.recording.recorder import BAR_COLUMNS, RecordingError, bar_columns

REPO = Path(__file__).resolve().parents[2]
EMA = REPO / "lua-strategies" / "examples" / "ema_crossover.lua"
RSI = REPO / "lua-strategies" / "examples" / "rsi_mean_reversion.lua"
START, END = "2025-06-01", "2025-06-08"   # 10,080 real 1m bars


def _events(path: Path) -> list[dict]:
    # as readers see them: a backtest's chunks of outcomes expanded
    return list(expand(LogReader(path / "log").events()))


def test_a_recorded_backtest_holds_every_bar_decision_and_fill(btc_path, tmp_path):
    bt = Backtest([EMA, RSI], btc_path, start=START, end=END, commission_bps=10)
    rec = SessionRecorder(tmp_path, kind="backtest", name="s1")
    result = bt.run(rec)
    assert rec.error is None and result.ledger["session"]["path"] == str(rec.path)

    manifest = load_manifest(rec.path)
    assert manifest["status"] == "completed" and manifest["kind"] == "backtest"
    scripts = {Path(r["script"]).name: r for r in manifest["runners"]}
    for path in (EMA, RSI):
        source = path.read_text()
        sha = hashlib.sha256(source.encode()).hexdigest()
        assert scripts[path.name]["sha256"] == sha and manifest["strategies"][sha] == source
    assert manifest["files"] == [{"path": str(btc_path), "sha256": hashlib.sha256(btc_path.read_bytes()).hexdigest()}]
    assert manifest["result"]["trades"] == len(result.trades)

    raw = list(LogReader(rec.path / "log").events())
    assert [e["seq"] for e in raw] == list(range(1, len(raw) + 1))
    events = _events(rec.path)
    bars = bt.bars[0]
    for run in result.runs:
        key = f"{run.symbol}:{run.strategy}"
        chunks = [e for e in events if e["type"] == "bars" and e["runner"] == key]
        for name, _ in BAR_COLUMNS:   # every input bar, in order, bit for bit
            got = np.concatenate([bar_columns(c)[name] for c in chunks])
            np.testing.assert_array_equal(got, getattr(bars, name))
        mine = [e for e in events if e.get("runner") == key]
        runner = next(r for r, _ in bt.runners if r.strategy.name == run.strategy)
        assert sum(e["type"] == "decision" for e in mine) == runner.decisions > 0
        closed = [e["trade"] for e in mine if e["type"] == "position_closed"]
        assert [(t["entry_time"], t["entry_price"], t["exit_time"], t["exit_price"], t["pnl"]) for t in closed] == \
            [(t.entry_time, t.entry_price, t.exit_time, t.exit_price, t.pnl) for t in run.trades]
        opened = [e for e in mine if e["type"] == "position_opened"]
        assert [(e["timestamp"], e["price"]) for e in opened] == [(t.entry_time, t.entry_price) for t in run.trades]
    assert events[-1]["type"] == "session_end"


RECORD = """
import sys
from tradesim.backtest import Backtest
from tradesim.recording import SessionRecorder
bt = Backtest([sys.argv[1], sys.argv[2]], sys.argv[3], start=sys.argv[4], end=sys.argv[5], commission_bps=10)
bt.run(SessionRecorder(sys.argv[6], kind="backtest", name=sys.argv[7]))
"""


def _log_bytes(session: Path) -> dict[str, bytes]:
    log = session / "log"
    return {str(p.relative_to(log)): p.read_bytes() for p in sorted(log.rglob("*")) if p.is_file()}


def test_two_runs_of_one_backtest_write_byte_identical_logs_across_processes(btc_path, tmp_path):
    logs = []
    for i, seed in enumerate(("0", "12345")):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        subprocess.run([sys.executable, "-c", RECORD, str(EMA), str(RSI), str(btc_path), START, END,
                        str(tmp_path), f"run{i}"], check=True, env=env, timeout=300)
        logs.append(_log_bytes(tmp_path / f"run{i}"))
    bt = Backtest([EMA, RSI], btc_path, start=START, end=END, commission_bps=10)
    bt.run(SessionRecorder(tmp_path, kind="backtest", name="here"))
    logs.append(_log_bytes(tmp_path / "here"))
    assert logs[0] and logs[0] == logs[1] == logs[2]
    # the manifests differ only in wall-clock fields
    m = [load_manifest(tmp_path / n) for n in ("run0", "run1")]
    for manifest in m:
        for key in ("created", "ended", "id", "command"):
            manifest.pop(key, None)
    assert m[0] == m[1]


def test_a_failing_log_stops_the_recording_not_the_backtest(btc_path, tmp_path, monkeypatch):
    from tradesim.eventlog import LogWriter

    real_append = LogWriter.append
    calls = {"n": 0}

    def failing_append(self, event):
        calls["n"] += 1
        if calls["n"] > 1:   # the first chunk's bars are logged, its outcomes fail
            raise LogWriteError("No space left on device (errno 28) writing the test log")
        return real_append(self, event)
    monkeypatch.setattr(LogWriter, "append", failing_append)
    reference = Backtest(EMA, btc_path, start=START, end=END).run()
    rec = SessionRecorder(tmp_path, kind="backtest", name="full")
    result = Backtest(EMA, btc_path, start=START, end=END).run(rec)
    assert [t.pnl for t in result.trades] == [t.pnl for t in reference.trades]   # the run went on
    assert "No space left" in rec.error and "No space left" in result.ledger["session"]["error"]
    manifest = load_manifest(rec.path)
    assert manifest["status"] == "completed" and "No space left" in manifest["error"]


def test_session_names_are_checked_and_never_reused(tmp_path):
    SessionRecorder(tmp_path, name="a").start()
    with pytest.raises(RecordingError, match="exists already"):
        SessionRecorder(tmp_path, name="a")
    with pytest.raises(RecordingError, match="plain folder name"):
        SessionRecorder(tmp_path, name="../escape")
    first = SessionRecorder(tmp_path, kind="run", wall_clock=lambda: 1_700_000_000.0).start()
    second = SessionRecorder(tmp_path, kind="run", wall_clock=lambda: 1_700_000_000.0).start()
    assert first.path != second.path and second.path.name == first.path.name + "-2"
    assert second.id == second.path.name and second.manifest["id"] == second.id
    unused = SessionRecorder(tmp_path, kind="backtest", name="never-started")
    assert not unused.path.exists()             # a run that fails to load leaves no folder behind


def _per_event(bt: Backtest) -> list[dict]:
    # The same backtest, each outcome sent to a sink as its own event (a live run's form).
    got: list[dict] = []
    runner = bt.runners[0][0]
    runner.record_to(got.append)
    bt.run()
    runner.record_to(None)
    return got


@pytest.mark.parametrize("strategy", ["ema", "orders"])
def test_a_backtests_chunked_outcomes_expand_to_the_per_event_recording(btc_path, tmp_path, strategy):
    import msgpack

    from tradesim.bench.suite import ORDERS_BENCH_STRATEGY

    if strategy == "orders":   # limit entries, trailing stops: order and update events too
        script = tmp_path / "orders.lua"
        script.write_text(ORDERS_BENCH_STRATEGY)
    else:
        script = EMA
    reference = _per_event(Backtest(script, btc_path, start=START, end="2025-06-20", commission_bps=10))
    rec = SessionRecorder(tmp_path, kind="backtest", name="batched")
    Backtest(script, btc_path, start=START, end="2025-06-20", commission_bps=10).run(rec)
    raw = list(LogReader(rec.path / "log").events())
    assert sum(e["type"] == "outcomes" for e in raw) >= 2          # 18,720 bars: two chunks
    got = [e for e in expand(raw) if e.get("runner") is not None and e["type"] not in ("bars", "snapshot", "shutdown")]
    kinds = {e["type"] for e in got}
    assert {"decision", "opportunity_detected", "position_opened", "position_closed"} <= kinds
    if strategy == "orders":
        assert any(e["type"] == "decision" and "fields" in e for e in got) and "position_updated" in kinds
    assert len(got) == len(reference) > 100

    def form(e):   # compared encoded (NaN == NaN); seq, sub, time and the runner key are the log's
        return msgpack.packb({k: v for k, v in e.items() if k not in ("seq", "sub", "time", "runner")})
    assert [form(e) for e in got] == [form(e) for e in reference]


# -- hostile outcome rows: an error naming the event, never a crash ----------------------------------

_GOOD = {"type": "outcomes", "runner": "BTCUSDT:x", "symbol": "BTCUSDT", "strategy": "x", "seq": 7,
         "indicators": [["ema:10", 0, 1, ["value"]]],
         "rows": [[1, 1_700_000_000_000, "long", 0.1, 100.0, 0.0, "why"]]}


@pytest.mark.parametrize("rows, layout, message", [
    ([[1, 1_700_000_000_000, "long"]], None, "row 0 of kind 1 has 3 items, not 7"),
    ([[0] + [0] * 11], None, "row 0 of kind 0 has 12 items, not 13"),
    ([[]], None, "row 0 is \\[\\], not a row"),
    ([[0]], None, "has 1 items, not 13"),
    ([[3, 5]], None, "has 2 items, not 4"),
    ([[9, 1, 2]], None, "unknown row kind 9"),
    ([[1.5, 1, 2]], None, "unknown row kind 1.5"),
    ([[0, 1, 0, True, "", -1, 1.0, 1.0, 1.0, 1.0, "", None, b"\0" * 16]], [["a", -3, 1, ["a"]]],
     "bad indicator layout entry"),
    ([[0, 1, 0, True, "", -1, 1.0, 1.0, 1.0, 1.0, "", None, b"\0" * 17]], None, "17 bytes: not float64s"),
])
def test_a_malformed_outcomes_row_is_an_error_naming_it(tmp_path, rows, layout, message):
    # Written through a real log and read back: every reader expands rows, so a bad one must be
    # a clear error (the expansion reads items without bounds checks: it checks lengths first).
    from tradesim.sessions import open_session

    assert [e["type"] for e in expand([dict(_GOOD)])] == ["position_opened"]   # the good shape expands
    rec = SessionRecorder(tmp_path, kind="backtest", name="hostile", fsync="never")
    rec.start()
    rec.append({**_GOOD, "rows": rows, **({"indicators": layout} if layout else {})})
    rec.finish()
    with pytest.raises(ValueError, match=message):
        list(open_session(rec.path).events())


def test_expand_stays_lazy():
    # `expand` over an endless stream yields as it reads (inspect and serve pass it iterators)
    import itertools

    def stream():
        for k in range(1, 100):
            yield {**_GOOD, "seq": k}
        raise AssertionError("expand read the whole stream before yielding")

    first = list(itertools.islice(expand(stream()), 3))
    assert [e["seq"] for e in first] == [1, 2, 3]


def test_an_unloggable_event_stops_the_recording_not_the_run(tmp_path):
    # a value nested in itself: the recording stops with a clear error; the caller goes on
    rec = SessionRecorder(tmp_path, kind="backtest", name="cyclic", fsync="never")
    rec.start()
    event: dict = {"type": "note"}
    event["self"] = event
    rec.append(event)   # does not raise
    assert rec.error is not None and "cannot log this event" in rec.error and not rec.recording


def test_a_live_bar_logs_its_bid_and_ask_only_when_the_feed_gave_them(tmp_path):
    from tradesim import MarketData
    from tradesim.recording.manifest import FORMAT, READABLE_FORMATS
    from tradesim.sessions import open_session
    from tradesim.sessions.replay import _bar

    quoted = MarketData("BTCUSDT", 1_700_000_000_000, 100.0, 101.0, 99.0, 100.5, 3.0, 100.25, 100.75)
    kline = MarketData("BTCUSDT", 1_700_000_060_000, 100.5, 102.0, 100.0, 101.5, 4.0)
    with SessionRecorder(tmp_path, kind="run", name="quotes") as rec:
        rec.bar("sim", quoted, recv_ms=1_700_000_060_100)
        rec.bar("binance", kline, recv_ms=1_700_000_120_100)
    session = open_session(rec.path)
    assert session.manifest["format"] == FORMAT == 3 and READABLE_FORMATS == (1, 2, 3)
    first, second = session.log.events(types={"bar"})
    assert (first["bid"], first["ask"], first["recv"]) == (100.25, 100.75, 1_700_000_060_100)
    assert "bid" not in second and "ask" not in second and second["close"] == 101.5
    again = [_bar(e) for e in (first, second)]   # what a replay feeds the runners
    assert (again[0].bid, again[0].ask) == (100.25, 100.75)
    assert math.isnan(again[1].bid) and math.isnan(again[1].ask)   # unknown, as the feed gave it
    assert (again[1].timestamp, again[1].close, again[1].volume) == (1_700_000_060_000, 101.5, 4.0)
