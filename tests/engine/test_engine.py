"""TradingEngine: runners on worker threads, isolation, control, introspection, events."""

from __future__ import annotations

import asyncio
import json
import threading
import time
from pathlib import Path

import pytest

from tradesim.backtest import Backtest
from tradesim.engine import TradingEngine, UnknownRunner
from tradesim.feeds import HistoricalFeed, SimulatedFeed
from tradesim.runner.execution import ExecutionConfig

REPO = Path(__file__).resolve().parents[2]
EMA = REPO / "lua-strategies" / "examples" / "ema_crossover.lua"
RSI = REPO / "lua-strategies" / "examples" / "rsi_mean_reversion.lua"

START, END = "2025-06-01", "2025-06-04"   # 4,320 real 1m bars


def _script(tmp_path: Path, name: str, body: str) -> Path:
    path = tmp_path / f"{name}.lua"
    path.write_text(body)
    return path


STUBS = """
function filter_commitment(bar, ctx) return nil end
function manage_position(bar, pos, ctx) return nil end
"""

RAISES = STUBS + """
function detect_opportunity(bar) error("boom at " .. bar.timestamp) end
"""

SLOW = STUBS + """
-- burns about 20 ms of CPU per bar, inside the sandbox's budget
function detect_opportunity(bar)
  local t = os.clock()
  while os.clock() - t < 0.02 do end
  return nil
end
"""


def _comparable(trades):
    return [(t.side, t.entry_time, t.entry_price, t.exit_time, t.exit_price, round(t.pnl, 9))
            for t in trades if not t.exit_reason.startswith("end_of")]


def test_runners_see_every_bar_in_order_and_trade_like_a_backtest(btc_path, tmp_path):
    engine = TradingEngine()
    engine.add_feed(HistoricalFeed(btc_path, "BTCUSDT", start=START, end=END), "hist")
    # The backtest below splits its 10,000 of cash between its two runners; the examples
    # size orders by cash, so each engine runner gets the same 5,000.
    half = ExecutionConfig(starting_cash=5_000.0)
    ema = engine.add_runner("BTCUSDT", EMA, execution=half)
    rsi = engine.add_runner("BTCUSDT", RSI, execution=half)
    seen: dict[str, list[int]] = {ema: [], rsi: []}
    for rid in seen:
        engine._runners[rid].on_processed = lambda h, _t: seen[h.id].append(h.last_bar_time)
    asyncio.run(engine.run())

    reference = Backtest([EMA, RSI], btc_path, start=START, end=END).run()
    expected_ts = HistoricalFeed(btc_path, "BTCUSDT", start=START, end=END).bars("BTCUSDT").timestamp
    for rid in (ema, rsi):
        assert seen[rid] == expected_ts.tolist()          # none missing, none duplicated, in order
    by_strategy = {r.strategy: r for r in reference.runs}
    for rid, name in ((ema, "ema_crossover"), (rsi, "rsi_mean_reversion")):
        got = _comparable(engine.runner(rid).trades)
        want = _comparable(by_strategy[name].trades)
        assert got and got == want


def test_history_limit_bounds_what_live_runners_keep_and_counts_stay_exact(btc_path):
    engine = TradingEngine(history_limit=2)
    engine.add_feed(HistoricalFeed(btc_path, "BTCUSDT", start=START, end=END), "hist")
    rid = engine.add_runner("BTCUSDT", EMA)
    asyncio.run(engine.run())

    want = [t for t in Backtest([EMA], btc_path, start=START, end=END).run().runs[0].trades
            if not t.exit_reason.startswith("end_of")]
    runner = engine.runner(rid)
    assert len(want) > 2
    # the engine trims after the bars that change state, without anyone reading `trades`
    assert len(runner.core.closed) <= 1 and len(runner.machine.closed_positions) <= 2
    assert runner.trade_count == len(want) == engine.runner_health(rid)["trades"]
    assert runner.winning_trades == sum(t.pnl > 0 for t in want)
    assert _comparable(runner.trades) == _comparable(want[-2:])


def test_strategies_never_run_on_the_event_loop_thread():
    engine = TradingEngine()
    engine.add_feed(SimulatedFeed(("BTCUSDT",), bars=300, seed=3), "sim")
    rid = engine.add_runner("BTCUSDT", EMA)
    threads: set[int] = set()
    engine._runners[rid].on_processed = lambda h, _t: threads.add(threading.get_ident())
    loop_thread: list[int] = []

    async def main():
        loop_thread.append(threading.get_ident())
        await engine.run()

    asyncio.run(main())
    assert threads and loop_thread[0] not in threads
    assert engine.runner_health(rid)["bars"] == 300


def test_a_failing_and_a_slow_runner_do_not_affect_the_others(tmp_path):
    engine = TradingEngine(workers=2)
    # paced feed: 400 bars at 2 ms each, like a (fast) live stream
    feed = SimulatedFeed(("BTCUSDT", "ETHUSDT"), bars=400, seed=5, interval="1s", speed=500)
    engine.add_feed(feed, "sim")
    healthy = [engine.add_runner(s, EMA) for s in ("BTCUSDT", "ETHUSDT")]
    engine.add_runner("BTCUSDT", _script(tmp_path, "raises", RAISES), runner_id="bad",
                      max_consecutive_errors=5)
    engine.add_runner("ETHUSDT", _script(tmp_path, "slow", SLOW), runner_id="slow", queue_size=50)
    lags = []
    for rid in healthy:
        engine._runners[rid].on_processed = lambda h, _t: lags.append(h.last_lag_ms)
    asyncio.run(engine.run())

    for rid in healthy:
        h = engine.runner_health(rid)
        assert h["status"] == "running" and h["bars"] == 400 and h["errors"] == 0
    bad_h = engine.runner_health("bad")
    assert bad_h["status"] == "failed" and "consecutive strategy errors" in bad_h["reason"]
    assert bad_h["errors"] == 5
    slow_h = engine.runner_health("slow")
    # 20 ms per bar against a bar every 2 ms: it falls behind and is disabled, alone
    assert slow_h["status"] == "failed" and "queue overflow" in slow_h["reason"]
    lags.sort()
    assert lags[len(lags) // 2] < 20.0   # healthy runners' median lag stays far below one slow call


def test_pause_resume_stop_keep_state_and_indicators_warm():
    async def main():
        engine = TradingEngine()
        feed = SimulatedFeed(("BTCUSDT",), bars=600, seed=7, interval="1s", speed=2000)
        engine.add_feed(feed, "sim")
        rid = engine.add_runner("BTCUSDT", EMA)
        handle = engine._runners[rid]
        marks = {}

        def on_bar(h, _t):
            if h.bars == 100:
                engine.pause(rid)
                marks["paused_decisions"] = h.runner.decisions
            elif h.bars == 400:
                marks["decisions_at_resume"] = h.runner.decisions
                engine.resume(rid)
        handle.on_processed = on_bar
        await engine.run()
        return engine, rid, marks

    engine, rid, marks = asyncio.run(main())
    runner = engine.runner(rid)
    assert marks["paused_decisions"] == marks["decisions_at_resume"]   # no decision while paused
    assert runner.decisions > marks["decisions_at_resume"]             # deciding again after resume
    assert engine.runner_health(rid)["bars"] == 600                    # window kept updating
    assert len(runner.window) == 500
    engine.stop_runner(rid)
    assert engine.runner_health(rid)["status"] == "stopped"


def test_add_and_remove_runners_while_running():
    async def main():
        engine = TradingEngine()
        engine.add_feed(SimulatedFeed(("BTCUSDT",), bars=500, seed=2, interval="1s", speed=2000), "sim")
        first = engine.add_runner("BTCUSDT", EMA)
        task = asyncio.create_task(engine.run())
        while engine.runner_health(first)["bars"] < 100:
            await asyncio.sleep(0.005)
        late = engine.add_runner("BTCUSDT", RSI)
        while engine.runner_health(late)["bars"] < 50:
            await asyncio.sleep(0.005)
        engine.remove_runner(first)
        await task
        return engine, first, late

    engine, first, late = asyncio.run(main())
    assert first not in engine.runner_ids
    with pytest.raises(UnknownRunner):
        engine.runner_health(first)
    late_bars = engine.runner_health(late)["bars"]
    assert 50 <= late_bars < 500


def test_snapshot_and_price_history_are_json_while_running():
    async def main():
        engine = TradingEngine()
        engine.add_feed(SimulatedFeed(("BTCUSDT",), bars=400, seed=4, interval="1s", speed=1000), "sim")
        rid = engine.add_runner("BTCUSDT", EMA)
        task = asyncio.create_task(engine.run())
        while engine.runner_health(rid)["bars"] < 100:
            await asyncio.sleep(0.005)
        snap = await engine.get_runner_snapshot(rid)
        hist = await engine.get_price_history(rid, 20)
        await task
        return engine, rid, snap, hist

    engine, rid, snap, hist = asyncio.run(main())
    json.dumps(snap, allow_nan=False)
    json.dumps(hist, allow_nan=False)
    assert snap["state"] in ("IDLE", "ANALYZING", "IN_POSITION")
    assert set(snap["indicators"]) == {"ema:10", "ema:20"}
    assert 100 <= snap["stats"]["bars"] < 400
    assert hist["bars"] == 20 and len(hist["close"]) == 20
    assert hist["timestamp"] == sorted(hist["timestamp"])
    # the history matches the feed's bars at those times
    bars = SimulatedFeed(("BTCUSDT",), bars=400, seed=4, interval="1s").bars("BTCUSDT")
    idx = {t: i for i, t in enumerate(bars.timestamp.tolist())}
    assert [bars.close[idx[t]] for t in hist["timestamp"]] == hist["close"]


def test_health_summary_and_unknown_names():
    engine = TradingEngine()
    engine.add_feed(SimulatedFeed(("BTCUSDT", "ETHUSDT"), bars=50, seed=1), "sim")
    with pytest.raises(ValueError, match="does not serve 'SOLUSDT'"):
        engine.add_runner("SOLUSDT", EMA)
    with pytest.raises(ValueError, match="unknown feed 'live'"):
        engine.add_runner("BTCUSDT", EMA, feed="live")
    a = engine.add_runner("btcusdt", EMA)
    b = engine.add_runner("BTCUSDT", EMA)
    assert (a, b) == ("BTCUSDT:ema_crossover", "BTCUSDT:ema_crossover#2")
    with pytest.raises(ValueError, match="already used"):
        engine.add_runner("BTCUSDT", EMA, runner_id=a)
    asyncio.run(engine.run())
    summary = engine.health()
    assert summary["runners"] == 2 and summary["by_status"]["running"] == 2
    assert summary["feeds"]["sim"]["status"] == "ended" and summary["feeds"]["sim"]["bars"] == 100
    engine.close()
    assert engine.health()["by_status"]["stopped"] == 2


def test_stop_ends_run_promptly_on_an_endless_feed():
    async def main():
        engine = TradingEngine()
        engine.add_feed(SimulatedFeed(("BTCUSDT",), interval="1s", speed=100), "sim")  # endless
        rid = engine.add_runner("BTCUSDT", EMA)
        asyncio.get_running_loop().call_later(0.3, engine.stop)
        t0 = time.monotonic()
        await engine.run()
        return engine, rid, time.monotonic() - t0

    engine, rid, elapsed = asyncio.run(main())
    assert elapsed < 5.0
    assert engine.runner_health(rid)["bars"] > 0


def test_events_describe_what_runners_did():
    async def main():
        engine = TradingEngine()
        engine.add_feed(SimulatedFeed(("BTCUSDT",), bars=1500, seed=11), "sim")
        rid = engine.add_runner("BTCUSDT", EMA)
        sub = engine.subscribe(types=["position_opened", "position_closed", "state_transition",
                                      "feed_status", "bar_received"])
        got = []

        async def listen():
            async for ev in sub:
                got.append(ev)
        listener = asyncio.create_task(listen())
        await engine.run()
        sub.close()
        await listener
        return engine, rid, got

    engine, rid, got = asyncio.run(main())
    runner = engine.runner(rid)
    seqs = [e.seq for e in got]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    bars = [e for e in got if e.type == "bar_received"]
    assert len(bars) == 1500
    closed = [e for e in got if e.type == "position_closed"]
    assert [e.trade["exit_time"] for e in closed] == [t.exit_time for t in runner.trades]
    opened = [e for e in got if e.type == "position_opened"]
    assert len(opened) in (len(closed), len(closed) + 1)
    # every transition event chains: to_state of one is from_state of the next
    states = [(e.from_state, e.to_state) for e in got if e.type == "state_transition"]
    assert all(a[1] == b[0] for a, b in zip(states, states[1:]))
    ended = [e for e in got if e.type == "feed_status" and e.status == "ended"]
    assert len(ended) == 1 and ended[0].seq > bars[-1].seq and ended[0].detail == {"bars": 1500}
    json.loads(closed[0].to_json())
