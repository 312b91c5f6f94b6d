"""Output a trader can read: UTC dates, durations, percentages, full names when piped."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
EMA = REPO / "lua-strategies" / "examples" / "ema_crossover.lua"


def _bars(tmp_path, n=3000):
    import math

    path = tmp_path / "bars.csv"
    t0 = 1_704_067_200_000   # 2024-01-01 00:00 UTC
    rows = []
    for i in range(n):
        price = 100 + 10 * math.sin(i / 40)
        rows.append(f"{t0 + i * 60_000},{price},{price + 0.5},{price - 0.5},{price + 0.1},1")
    path.write_text("timestamp,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    return path


def test_backtest_summary_piped_is_readable_and_not_truncated(tmp_path):
    long_name = tmp_path / "an_ema_crossover_with_a_rather_long_descriptive_file_name.lua"
    long_name.write_text(EMA.read_text().replace('name = "ema_crossover"', f'name = "{long_name.stem}"'))
    proc = subprocess.run([sys.executable, "-m", "tradesim.cli", "backtest", "--strategy", str(long_name),
                           "--data", str(_bars(tmp_path)), "--commission-bps", "10"],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "\x1b[" not in out                          # no terminal colour codes in a pipe
    assert long_name.stem in out                      # names are not cut to fit 80 columns
    assert re.search(r"Start \(UTC\)\s+│\s+2024-01-01 00:00:00", out)
    assert re.search(r"Bar interval\s+│\s+1m\b", out)
    assert re.search(r"Volatility \(annualized\)\s+│\s+[\d,.]+ %", out)
    assert re.search(r"Max drawdown duration\s+│\s+[\d,]+ bars \(\d+[dhms]", out)
    assert "finished" in out and "running" not in out
    assert re.search(r"Fees paid\s+│\s+[\d,]+\.\d\d", out)


def test_main_job_summary_reads_like_a_real_market(tmp_path):
    # The README's main job: a BTCUSDT-like simulated feed, orders sized from the cash, and a
    # summary with return, fees and win rate per runner.
    proc = subprocess.run([sys.executable, "-m", "tradesim.cli", "run", "--strategy", str(EMA),
                           "--symbol", "BTCUSDT", "--symbol", "ETHUSDT", "--commission-bps", "10",
                           "--events", str(tmp_path / "ev.jsonl")],
                          capture_output=True, text=True, timeout=300, stdin=subprocess.DEVNULL)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    for col in ("trades", "win rate", "fees", "P&L", "return", "equity"):
        assert col in out
    assert "BTCUSDT:ema_crossover" in out and "ETHUSDT:ema_crossover" in out
    import json

    events = [json.loads(line) for line in (tmp_path / "ev.jsonl").read_text().splitlines()]
    first_bar = {e["symbol"]: e["close"] for e in events if e["type"] == "bar_received"}
    assert 50_000 < first_bar["BTCUSDT"] < 200_000 and 1_000 < first_bar["ETHUSDT"] < 10_000
    opened = [e for e in events if e["type"] == "position_opened"]
    # sized from the cash (10,000 each), not a fixed 0.01 BTC: the notional is near the cash
    assert opened and all(5_000 < e["quantity"] * e["price"] <= 10_000 for e in opened)
