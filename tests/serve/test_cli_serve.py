"""``tradesim serve`` as a process: prints the link and tokens, serves, stops cleanly on SIGTERM and
SIGINT (positions closed, recording finished); refuses unsafe options."""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading

import httpx
import pytest
from click.testing import CliRunner

from tradesim.cli import main

from .conftest import wait_for


def start(tmp_path, *args: str) -> tuple[subprocess.Popen, list[str]]:
    env = {**os.environ, "TRADESIM_TOKEN": ""}
    proc = subprocess.Popen([sys.executable, "-m", "tradesim.cli", "serve", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env, cwd=tmp_path)
    lines: list[str] = []

    def read() -> None:
        for line in proc.stdout:
            lines.append(line.rstrip("\n"))
    threading.Thread(target=read, daemon=True).start()
    wait_for(lambda: any("Ctrl-C" in x for x in lines) or proc.poll() is not None, 120, "the start banner")
    return proc, lines


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_serve_demo_then_signal_stops_cleanly(tmp_path, sig):
    proc, lines = start(tmp_path, "--speed", "50", "--record", "sessions")
    try:
        text = "\n".join(lines)
        port = int(re.search(r"listening on 127\.0\.0\.1:(\d+)", text).group(1))
        token = re.search(r"control token: (\S+)", text).group(1)
        link = re.search(r"dashboard \(one-time link\): (\S+)", text).group(1)
        assert token not in link   # the link carries a one-time code, never the token
        with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {token}"}) as c:
            assert c.get("/health").json() == {"status": "ok"}
            runners = c.get("/api/runners").json()
            assert {r["strategy"] for r in runners} >= {"ema_crossover", "macd_trend"}
            wait_for(lambda: c.get("/api/engine/health").json()["feeds"]["sim"]["bars"] > 20, what="bars")
            assert c.post("/api/runners/BTCUSDT:ema_crossover/pause").status_code == 202
        proc.send_signal(sig)
        assert proc.wait(120) == 0, "\n".join(lines)
    finally:
        if proc.poll() is None:
            proc.kill()
    out = "\n".join(lines)
    assert "session recorded" in out
    (session,) = (tmp_path / "sessions").iterdir()
    manifest = json.loads((session / "manifest.json").read_text())
    assert manifest["status"] == "completed"
    assert manifest["result"]["bars"] > 0


def test_serve_refuses_remote_without_flag_and_short_tokens():
    runner = CliRunner()
    res = runner.invoke(main, ["serve", "--host", "0.0.0.0"])
    assert res.exit_code == 2 and "--allow-remote" in res.output
    res = runner.invoke(main, ["serve", "--token", "short"])
    assert res.exit_code == 2 and "16 characters" in res.output
    res = runner.invoke(main, ["serve", "--config", "/nonexistent/runners.toml"])
    assert res.exit_code == 1 and "cannot read" in res.output
