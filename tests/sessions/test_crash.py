"""A recording killed with SIGKILL at random moments: every log opens, verifies up to its last
complete block, and holds a prefix of the uninterrupted run's events (docs/sessions.md)."""

from __future__ import annotations

import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import msgpack

from tradesim.eventlog import LogReader, verify_log

REPO = Path(__file__).resolve().parents[2]
EMA = REPO / "lua-strategies" / "examples" / "ema_crossover.lua"
RSI = REPO / "lua-strategies" / "examples" / "rsi_mean_reversion.lua"

# One long recorded backtest: both strategies over the whole real file, the log's writer set to
# fsync nothing (a process crash keeps what reached the kernel) and flush often.
RECORD = """
import sys
from tradesim.backtest import Backtest
from tradesim.recording import SessionRecorder
bt = Backtest([sys.argv[1], sys.argv[2]], sys.argv[3])      # the data loads before the clock starts
rec = SessionRecorder(sys.argv[4], kind="backtest", name=sys.argv[5], fsync="never", flush_interval=0.01)
print("started", flush=True)
bt.run(rec)
"""


def _start(btc_path, folder: Path, name: str) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", RECORD, str(EMA), str(RSI), str(btc_path), str(folder), name],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _log_bytes(log: Path) -> int:
    return sum(p.stat().st_size for p in log.glob("*.seg")) if log.is_dir() else 0


def test_sigkill_at_random_moments_leaves_a_verifiable_prefix(btc_path, tmp_path):
    full = _start(btc_path, tmp_path, "full")
    out, err = full.communicate(timeout=300)
    assert full.returncode == 0, err
    reference = list(LogReader(tmp_path / "full" / "log").events())
    total = _log_bytes(tmp_path / "full" / "log")
    # (outcomes are logged once per 16,384-bar chunk: few events, many blocks of bars)
    assert len(reference) > 40 and total > 200_000

    # Kill points spread over the recording by how much it has written (not by time, which a
    # loaded machine stretches): each run is killed once its log reaches a random share of it.
    rng = random.Random(20261204)
    lengths = []
    for k in range(20):
        name = f"killed{k}"
        target = int(total * rng.uniform(0.02, 0.95))
        proc = _start(btc_path, tmp_path, name)
        proc.stdout.readline()
        log = tmp_path / name / "log"
        while proc.poll() is None and _log_bytes(log) < target:
            time.sleep(0.0005)
        try:
            os.kill(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass
        proc.wait(timeout=60)
        report = verify_log(log)
        assert report.ok, (name, report.problems)
        events = list(LogReader(log).events())
        assert report.events == len(events)
        # a prefix, event for event (compared encoded: NaN != NaN as floats)
        assert [msgpack.packb(e) for e in events] == [msgpack.packb(e) for e in reference[:len(events)]], name
        lengths.append(len(events))
    assert len(set(lengths)) >= 5, lengths        # the kills landed at different points
    assert any(0 < n < len(reference) for n in lengths), lengths


def _limit_file_size():
    import resource

    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)      # write() then fails with EFBIG instead
    resource.setrlimit(resource.RLIMIT_FSIZE, (256 * 1024, 256 * 1024))


def test_a_full_disk_fails_the_recording_cleanly_and_the_backtest_goes_on(btc_path, tmp_path):
    cmd = [sys.executable, "-m", "tradesim.cli", "backtest", "--strategy", str(EMA), "--data", str(btc_path),
           "--record", str(tmp_path), "--session-name", "full", "--json"]
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=300, preexec_fn=_limit_file_size)
    assert done.returncode == 0, done.stderr
    import json

    result = json.loads(done.stdout)
    session = result["ledger"]["session"]
    assert session["error"] and "recording stopped" in session["error"], session
    assert "File too large" in session["error"] or "EFBIG" in session["error"] or "27" in session["error"]
    assert result["metrics"]["n_trades"] > 100                # the backtest itself completed
    # what was written before the failure is still readable and verifies
    report = verify_log(tmp_path / "full" / "log")
    assert report.ok, report.problems
    from tradesim.recording import load_manifest

    assert "recording stopped" in load_manifest(tmp_path / "full")["error"]
