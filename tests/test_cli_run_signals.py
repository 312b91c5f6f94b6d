"""`tradesim run` stops gracefully on SIGINT / SIGTERM: runners stop, the summary is printed."""

from __future__ import annotations

import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
EMA = REPO / "lua-strategies" / "examples" / "ema_crossover.lua"


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_signal_stops_the_run_with_a_summary(tmp_path, sig):
    events = tmp_path / "events.jsonl"
    proc = subprocess.Popen(
        [sys.executable, "-m", "tradesim.cli", "run", "--strategy", str(EMA), "--bars", "0",
         "--interval", "1s", "--speed", "200", "--events", str(events)],
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=tmp_path)
    # wait until bars flow (the events file grows), then signal
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (not events.exists() or events.stat().st_size < 2000):
        time.sleep(0.05)
    proc.send_signal(sig)
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, out
    assert f"{sig.name}: stopping runners" in out
    assert "tradesim run:" in out and "BTCUSDT" in out and "stopped" in out
