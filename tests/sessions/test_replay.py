"""Replay, compare and diff-live on recorded sessions.

- A recorded backtest and a recorded live run (the loopback fake Binance with
  drops and a gap, and the simulated feed with pause/resume) replay to
  identical decisions and trades, and the backtest engine agrees (diff-live).
- `compare` finds the first divergent bar of two parameter sets, checked
  against EMA crosses computed with TA-Lib (an independent reference).
- A strategy that reads the wall clock is caught by diff-live at the bar
  where the live run first acted on it.
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import numpy as np
import pytest

from tradesim.backtest import Backtest
from tradesim.engine import TradingEngine
from tradesim.feeds import SimulatedFeed
from tradesim.recording import SessionRecorder
from tradesim.sessions import backtest_session, compare_sessions, open_session, replay

REPO = Path(__file__).resolve().parents[2]
EMA = REPO / "lua-strategies" / "examples" / "ema_crossover.lua"
RSI = REPO / "lua-strategies" / "examples" / "rsi_mean_reversion.lua"
START, END = "2025-06-01", "2025-06-04"   # 4,320 real 1m bars

sys.path.insert(0, str(REPO / "tests" / "feeds"))
import fake_binance  # noqa: E402


def _backtest_session(tmp_path, name, params=None, strategies=(EMA, RSI), path=None):
    bt = Backtest(list(strategies), path, start=START, end=END, params=params)
    result = bt.run(SessionRecorder(tmp_path, kind="backtest", name=name))
    return open_session(tmp_path / name), result


def test_a_backtest_replays_to_identical_decisions_and_trades(btc_path, tmp_path):
    session, result = _backtest_session(tmp_path, "bt", path=btc_path)
    rep = replay(session)
    assert rep.identical, rep.comparison.to_dict()["first"]
    assert rep.comparison.decisions > 50
    for run in result.runs:
        replayed = rep.runners[f"{run.symbol}:{run.strategy}"].trades
        done = [t for t in run.trades if t.exit_reason != "end_of_data"]
        assert [(t.entry_time, t.exit_time, t.pnl) for t in replayed] == \
            [(t.entry_time, t.exit_time, t.pnl) for t in done]
    assert backtest_session(session).identical


def _ema_decision_times(close: np.ndarray, ts: np.ndarray, fast: int, slow: int) -> list[int]:
    """The EMA crossover example's decisions, from TA-Lib's EMA: enter on a cross up while flat,
    exit on a cross down while holding (an order fills at the next open, so a position is held
    from the bar after the entry decision)."""
    talib = pytest.importorskip("talib")
    f, s = talib.EMA(close, fast), talib.EMA(close, slow)
    out, holding = [], False
    for i in range(1, len(close)):
        up = f[i - 1] <= s[i - 1] and f[i] > s[i]
        down = f[i - 1] >= s[i - 1] and f[i] < s[i]
        if not holding and up:
            out.append(int(ts[i]))
            holding = True
        elif holding and down and int(ts[i]) > out[-1]:
            out.append(int(ts[i]))
            holding = False
    return out


def test_compare_finds_the_hand_checked_first_divergent_bar(btc_bars, btc_path, tmp_path):
    a, _ = _backtest_session(tmp_path, "fast10", {"fast": 10}, strategies=(EMA,), path=btc_path)
    b, _ = _backtest_session(tmp_path, "fast12", {"fast": 12}, strategies=(EMA,), path=btc_path)
    bars = btc_bars.slice(a.manifest["data"][0]["first"], a.manifest["data"][0]["last"] + 1)
    da = _ema_decision_times(bars.close, bars.timestamp, 10, 20)
    db = _ema_decision_times(bars.close, bars.timestamp, 12, 20)
    k = next(i for i, (x, y) in enumerate(zip(da, db)) if x != y)
    expected = min(da[k], db[k])
    cmp = compare_sessions(a, b)
    first = cmp.first
    assert first is not None and first.timestamp == expected
    assert cmp.decisions == k                    # the decisions before it agreed
    assert first.bar_a["timestamp"] == expected and first.bar_a["close"] == float(
        bars.close[np.searchsorted(bars.timestamp, expected)])
    assert compare_sessions(a, a).first is None


WALL_CLOCK = """
name = "wall_clock"
params = {}
local started
function detect_opportunity(md, ctx, ind)
  started = started or os.time()
  if os.time() - started >= 2 then return {reason = "two seconds passed"} end
  return nil
end
function filter_commitment(md, ctx, ind) return {action = "enter_long", reason = ctx.reason} end
function manage_position(md, ctx, ind) return nil end
"""


def _run_engine(engine: TradingEngine, until, deadline: float = 60.0) -> None:
    async def main():
        task = asyncio.create_task(engine.run())
        loop = asyncio.get_running_loop()
        end = loop.time() + deadline
        while not until() and loop.time() < end and not task.done():
            await asyncio.sleep(0.01)
        engine.stop()
        await task
        engine.close("end of run")
    asyncio.run(main())


def test_diff_live_catches_a_strategy_that_reads_the_wall_clock_at_the_right_bar(tmp_path):
    script = tmp_path / "wall_clock.lua"
    script.write_text(WALL_CLOCK)
    engine = TradingEngine()
    engine.add_feed(SimulatedFeed(["BTCUSDT"], bars=160, speed=60 * 40, seed=3), "sim")   # 40 bars/s
    rid = engine.add_runner("BTCUSDT", script, feed="sim")
    rec = SessionRecorder(tmp_path, kind="run", name="live")
    engine.record(rec)
    _run_engine(engine, lambda: engine.runner(rid).core.bars >= 160)
    rec.finish()
    session = open_session(rec.path)
    live_decisions = [e for e in session.outcomes()[rid] if e["type"] == "decision"]
    assert live_decisions, "the live run lasted long enough for the wall clock to move on 2 s"
    result = backtest_session(session)
    first = result.comparison.first
    assert first is not None and first.timestamp == live_decisions[0]["timestamp"]
    assert first.a["type"] == "decision" and (first.b is None or first.b["timestamp"] > first.timestamp)


def test_a_live_session_with_pause_resume_and_a_late_runner_replays_identically(tmp_path):
    engine = TradingEngine()
    engine.add_feed(SimulatedFeed(["BTCUSDT", "ETHUSDT"], bars=3000, speed=0, seed=11), "sim")
    ids = [engine.add_runner(sym, EMA, feed="sim", analysis_timeout_bars=7) for sym in ("BTCUSDT", "ETHUSDT")]
    rec = SessionRecorder(tmp_path, kind="run", name="paused")
    engine.record(rec)
    late: list[str] = []

    def on_bar(handle, _t):   # on the worker, at exact bars: pause, resume, and a runner joins
        if handle.bars == 800:
            engine.pause(ids[0])
        elif handle.bars == 1600:
            engine.resume(ids[0])
        elif handle.bars == 1000 and not late:
            late.append("pending")
    engine._runners[ids[0]].on_processed = on_bar

    async def main():
        task = asyncio.create_task(engine.run())
        loop = asyncio.get_running_loop()
        end = loop.time() + 60
        while not late and loop.time() < end:
            await asyncio.sleep(0.001)
        late[:] = [engine.add_runner("BTCUSDT", RSI, feed="sim")]   # joins mid-run, on the loop
        await task
        engine.close("end of run")
    asyncio.run(main())
    rec.finish()
    session = open_session(rec.path)
    assert session.manifest["runners"][0]["options"]["analysis_timeout_bars"] == 7
    controls = [e for e in session.log.events(types={"control"})]
    assert [(c["command"], c["bars"]) for c in controls] == [("pause", 800), ("resume", 1600)]
    late_info = session.runner(late[0])
    assert late_info.added_during_run
    assert len(session.bars_for(late[0])) == engine.runner(late[0]).core.bars < 3000
    snapshots = {e["runner"] for e in session.log.events(types={"snapshot"})}
    assert set(ids) <= snapshots                                   # every symbol's runners get them
    rep = replay(session)
    assert rep.identical, rep.comparison.to_dict()["first"]
    assert rep.comparison.decisions > 20
    assert int(rep.runners[late[0]].core.bars) == engine.runner(late[0]).core.bars
    # the backtest engine cannot pause: diff-live says so, and finds only the paused runner differs
    live_vs_bt = backtest_session(session)
    assert any("pause" in n for n in live_vs_bt.notes)
    assert live_vs_bt.comparison.divergences
    assert {d.runner for d in live_vs_bt.comparison.divergences} == {ids[0]}


@pytest.mark.skipif(not fake_binance.data_available(), reason="real market data not found")
def test_a_session_through_the_fake_binance_with_drops_and_a_gap_replays_and_diffs_clean(tmp_path):
    from tradesim.feeds.binance import BinanceFeed

    fast = {"backoff_initial": 0.05, "backoff_max": 0.5, "rest_backoff_initial": 0.05, "rest_backoff_max": 0.5,
            "rest_timeout": 1.0, "open_timeout": 5.0, "max_clock_skew": None, "proxy": None}

    async def main():
        async with fake_binance.FakeBinance(symbols=("BTCUSDT",), n_bars=2500, bar_period=0.0005) as srv:
            srv.at(700, "drop")
            srv.at(1500, "gap", 25)
            engine = TradingEngine()
            engine.add_feed(BinanceFeed(srv.symbols, base_url=srv.ws_url, rest_url=srv.rest_url,
                                        wall_ms=srv.sim_now_ms, backfill_from=srv.t0, ping_interval=None,
                                        **fast), "binance")
            rid = engine.add_runner("BTCUSDT", EMA)
            rec = SessionRecorder(tmp_path, kind="run", name="binance")
            engine.record(rec)
            task = asyncio.create_task(engine.run())
            loop = asyncio.get_running_loop()
            end = loop.time() + 60
            while engine.runner(rid).core.bars < srv.n and loop.time() < end:
                await asyncio.sleep(0.02)
            engine.stop()
            await task
            engine.close("end of run")
            rec.finish()
            return rec.path, srv.n
    path, n = asyncio.run(main())
    session = open_session(path)
    statuses = {e["status"] for e in session.log.events(types={"feed_status"})}
    assert {"gap_detected", "backfilled"} <= statuses, statuses
    assert len(session.bars_for("BTCUSDT:ema_crossover")) == n
    rep = replay(session)
    assert rep.identical and rep.comparison.decisions > 20, rep.comparison.to_dict()["first"]
    diff = backtest_session(session)
    assert diff.identical, diff.comparison.to_dict()["first"]


def test_a_scaled_in_strategy_replays_identically_and_its_trades_all_count(scaled):
    # Scale-ins, a partial exit and a full close of several lots: every booked trade is in the
    # recorded events (position_reduced's trades, a position_closed per lot), the replay reproduces
    # them (compare aligns those event types too), and compare's summary counts them all.
    from tradesim.sessions.compare import _after
    from tradesim.sessions.replay import replay

    session, result = scaled.session, scaled.result
    (events,) = session.outcomes().values()
    assert {e["type"] for e in events} >= {"position_reduced", "position_closed"}
    summary = _after(events)
    assert summary["trades"] == len(result.trades) > 20
    assert summary["net_profit"] == pytest.approx(sum(t.pnl for t in result.trades), rel=1e-9)
    again = replay(session)
    assert again.identical and again.comparison.compared == len(events)
