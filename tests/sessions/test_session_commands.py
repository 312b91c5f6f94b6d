"""`tradesim inspect`, `sessions list|show|verify`, `replay`, `compare`, `diff-live` on real sessions.

Inspect's state is checked against the backtest's own trade list (not the
log); verify against a log with a flipped byte; exit codes as documented.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from tradesim.backtest import Backtest
from tradesim.cli import main
from tradesim.recording import SessionRecorder
from tradesim.sessions import open_session
from tradesim.sessions.inspect import resolve_point, state_at

REPO = Path(__file__).resolve().parents[2]
EMA = REPO / "lua-strategies" / "examples" / "ema_crossover.lua"
START, END = "2025-06-01", "2025-06-15"   # 20,160 real 1m bars: 2 chunks of 16,384


@pytest.fixture(scope="module")
def recorded(btc_path, tmp_path_factory):
    folder = tmp_path_factory.mktemp("sessions")
    result = Backtest(EMA, btc_path, start=START, end=END, commission_bps=10).run(
        SessionRecorder(folder, kind="backtest", name="ema"))
    return folder, result


def _cli(*args):
    return CliRunner().invoke(main, [str(a) for a in args], catch_exceptions=False)


def test_inspect_at_each_fill_shows_the_backtests_position(recorded):
    folder, result = recorded
    session = open_session(folder / "ema")
    key = "BTCUSDT:ema_crossover"
    opened = [e for e in session.events(types={"position_opened"})]
    closed = [e for e in session.events(types={"position_closed"})]
    trades = result.trades
    assert len(opened) == len(trades) > 10
    for k in (0, 1, len(trades) // 2, len(trades) - 2):
        st = state_at(session, opened[k]["seq"], opened[k]["sub"])["runners"][key]
        assert st["state"] == "IN_POSITION"
        assert st["position"]["entry_price"] == trades[k].entry_price
        assert st["position"]["entry_time"] == trades[k].entry_time
        assert st["position"]["quantity"] == pytest.approx(trades[k].quantity, rel=1e-12)
        after = state_at(session, closed[k]["seq"], closed[k]["sub"])["runners"][key]
        assert after["state"] == "IDLE" and after["position"] is None
        assert after["last_trade"]["exit_time"] == trades[k].exit_time
    # --time names the last event at or before that time
    decision = next(iter(session.events(types={"decision"})))
    point = resolve_point(session, time_ms=decision["timestamp"])
    assert point >= decision["seq"] and session.log.event(point)["time"] <= decision["timestamp"]
    later = session.log.event(point + 1)
    assert later["time"] > decision["timestamp"]              # the last event at or before the time
    with pytest.raises(ValueError, match="seq"):
        resolve_point(session, seq=10**9)
    # --time inside a chunk of outcomes: the state at that bar, not after the whole chunk
    for k in (1, len(trades) // 2):
        t = trades[k].entry_time
        st = state_at(session, resolve_point(session, time_ms=t), until_time=t)["runners"][key]
        assert st["state"] == "IN_POSITION" and st["position"]["entry_time"] == t
        before = state_at(session, resolve_point(session, time_ms=t - 1), until_time=t - 1)["runners"][key]
        assert before["position"] is None or before["position"]["entry_time"] < t


def test_inspect_command_formats(recorded):
    folder, result = recorded
    session = open_session(folder / "ema")
    opened = next(iter(session.events(types={"position_opened"})))
    seq = opened["seq"]
    out = _cli("inspect", "ema", "--sessions", folder, "--seq", seq, "--sub", opened["sub"], "--format", "json",
               "--events", "decision,position_opened")
    assert out.exit_code == 0, out.output
    data = json.loads(out.output)
    assert data["seq"] == seq and data["runners"]["BTCUSDT:ema_crossover"]["state"] == "IN_POSITION"
    assert data["events"] and {e["type"] for e in data["events"]} <= {"decision", "position_opened"}
    out = _cli("inspect", "ema", "--sessions", folder, "--seq", seq, "--format", "csv")
    assert out.exit_code == 0 and out.output.splitlines()[0] == "runner,field,value"
    assert _cli("inspect", "ema", "--sessions", folder).exit_code == 2            # neither --seq nor --time
    bad = _cli("inspect", "nope", "--sessions", folder, "--seq", 1)
    assert bad.exit_code == 1 and "no session 'nope'" in bad.output and "ema" in bad.output


def test_list_show_verify_replay(recorded):
    folder, result = recorded
    out = _cli("sessions", "list", "--sessions", folder, "--json")
    rows = json.loads(out.output)
    assert [r["id"] for r in rows] == ["ema"] and rows[0]["trades"] == len(result.trades)
    out = _cli("sessions", "show", "ema", "--sessions", folder, "--json")
    shown = json.loads(out.output)
    assert shown["event_counts"]["position_closed"] == len(result.trades)
    assert shown["event_counts"]["bars"] == 2
    out = _cli("sessions", "verify", "ema", "--sessions", folder)
    assert out.exit_code == 0 and "ok" in out.output
    out = _cli("replay", "ema", "--sessions", folder)
    assert out.exit_code == 0 and "identical" in out.output
    out = _cli("replay", "ema", "--sessions", folder, "--param", "fast=12", "--json")
    data = json.loads(out.output)
    assert out.exit_code == 0 and data["what_if"] and not data["identical"]
    out = _cli("diff-live", "ema", "--sessions", folder)
    assert out.exit_code == 0 and "identical" in out.output


def test_verify_and_readers_refuse_a_flipped_byte(btc_path, tmp_path):
    Backtest(EMA, btc_path, start=START, end=END).run(SessionRecorder(tmp_path, kind="backtest", name="bad"))
    segments = sorted(p for p in (tmp_path / "bad" / "log").rglob("*") if p.is_file() and p.stat().st_size > 10_000)
    data = bytearray(segments[0].read_bytes())
    data[len(data) // 2] ^= 0x10
    segments[0].write_bytes(bytes(data))
    out = _cli("sessions", "verify", "bad", "--sessions", tmp_path)
    assert out.exit_code == 1 and "CORRUPT" in out.output
    out = _cli("replay", "bad", "--sessions", tmp_path)
    assert out.exit_code == 1 and "corrupt session log" in out.output


def test_compare_exit_codes(btc_path, tmp_path):
    for name, fast in (("a", 10), ("b", 10), ("c", 14)):
        Backtest(EMA, btc_path, start=START, end="2025-06-03", params={"fast": fast}).run(
            SessionRecorder(tmp_path, kind="backtest", name=name))
    same = _cli("compare", "a", "b", "--sessions", tmp_path)
    assert same.exit_code == 0 and "identical" in same.output
    differ = _cli("compare", "a", "c", "--sessions", tmp_path, "--json")
    assert differ.exit_code == 1
    data = json.loads(differ.output)
    assert data["first"]["runner"] == "BTCUSDT:ema_crossover" and data["first"]["timestamp"] > 0


def test_backtest_and_run_commands_record(btc_path, tmp_path):
    out = _cli("backtest", "--strategy", EMA, "--data", btc_path, "--from", START, "--to", "2025-06-02",
               "--record", tmp_path, "--session-name", "cli-bt")
    assert out.exit_code == 0 and "session recorded" in out.output
    out = _cli("run", "--strategy", EMA, "--bars", 600, "--record", tmp_path, "--session-name", "cli-run")
    assert out.exit_code == 0 and "session recorded" in out.output
    run = open_session(tmp_path / "cli-run")
    assert run.kind == "run" and run.manifest["seeds"] == {"main": 0}
    assert len(run.bars_for("BTCUSDT:ema_crossover")) == 600
    out = _cli("diff-live", "cli-run", "--sessions", tmp_path)
    assert out.exit_code == 0 and "identical" in out.output


def test_runners_toml_sessions_section_records_every_run(tmp_path):
    (tmp_path / "runners.toml").write_text(f"""
[sessions]
record = true
folder = "recorded"
flush_interval = 0.05

[feeds.sim]
type = "simulated"
bars = 400
seed = 5

[[runners]]
symbol = "ETHUSDT"
strategy = "{EMA}"
feed = "sim"
params = {{ fast = 8 }}
""")
    out = _cli("run", "--config", tmp_path / "runners.toml")
    assert out.exit_code == 0, out.output
    sessions = list((tmp_path / "recorded").iterdir())
    assert len(sessions) == 1
    session = open_session(sessions[0])
    assert session.manifest["seeds"] == {"sim": 5}
    assert session.manifest["runners"][0]["params"]["fast"] == 8
    assert len(session.bars_for("ETHUSDT:ema_crossover")) == 400
    bad = _cli("run", "--config", tmp_path / "runners.toml", "--record", tmp_path / "recorded",
               "--session-name", sessions[0].name)
    assert bad.exit_code == 1 and "exists already" in bad.output


def test_inspect_after_scale_ins_and_a_partial_exit_shows_the_state_machines_position(scaled):
    # The reference is a SymbolRunner stepped bar by bar over the same bars: its state machine's
    # position (total quantity, quantity-weighted average entry, the lots left after a partial exit)
    # after each bar that added to or reduced a position, against inspect's state at that bar's
    # last event, rebuilt from the log.
    from tradesim import MarketData
    from tradesim.runner import SymbolRunner

    session, bars = scaled.session, scaled.bars
    n, ts = len(bars), bars.timestamp
    (events,) = session.outcomes().values()
    last_of_bar = {e["timestamp"]: e for e in events}   # the last outcome event of each bar
    moved = {e["timestamp"] for e in events if e["type"] in ("position_opened", "position_reduced")}

    runner = SymbolRunner("BTCUSDT", scaled.script)
    checked = 0
    for i in range(n):
        runner.process(MarketData("BTCUSDT", int(ts[i]), bars.open[i], bars.high[i], bars.low[i], bars.close[i],
                                  bars.volume[i]))
        if int(ts[i]) not in moved:
            continue
        pos = runner.machine.position
        event = last_of_bar[int(ts[i])]
        got = state_at(session, event["seq"], event.get("sub"))["runners"]["BTCUSDT:scale"]["position"]
        if pos is None or not pos.is_open:
            assert got is None
            continue
        assert got["quantity"] == pytest.approx(pos.quantity, rel=1e-12)
        assert got["entry_price"] == pytest.approx(pos.entry_price, rel=1e-12)
        checked += 1
    scale_ins = sum(e["type"] == "position_opened" and e["reason"] == "add" for e in events)
    partials = sum(e["type"] == "position_reduced" for e in events)
    assert scale_ins > 10 and partials > 5 and checked > 15
