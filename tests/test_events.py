"""EventBus: sequence numbers, bounded subscribers, thread-safe publishing, JSON."""

from __future__ import annotations

import asyncio
import json
import threading

import pytest

from tradesim.engine.events import (
    EVENT_TYPES,
    BarReceived,
    EventBus,
    FeedStatus,
    PositionClosed,
    RunnerStatusChanged,
    SubscriberDropped,
)


def test_every_subscriber_gets_every_event_in_seq_order_from_many_threads():
    bus = EventBus()

    async def main():
        subs = [bus.subscribe(maxsize=100_000) for _ in range(3)]

        def publisher(k):
            for i in range(2000):
                bus.publish(FeedStatus, feed=f"t{k}", status="tick", detail={"i": i})

        threads = [threading.Thread(target=publisher, args=(k,)) for k in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        for s in subs:
            s.close()
        return [[e async for e in s] for s in subs]

    results = asyncio.run(main())
    for events in results:
        assert [e.seq for e in events] == list(range(1, 8001))
        for k in range(4):   # each publisher's own order is kept
            mine = [e.detail["i"] for e in events if e.feed == f"t{k}"]
            assert mine == list(range(2000))


def test_a_slow_subscriber_is_dropped_with_a_notice_and_others_keep_everything():
    bus = EventBus()
    slow = bus.subscribe(maxsize=10)
    fast = bus.subscribe(maxsize=1000)
    for i in range(50):
        bus.publish(RunnerStatusChanged, runner_id="r", status="running", reason=str(i))
    assert slow.dropped and bus.dropped_subscribers == 1

    async def drain(sub):
        out = []
        async for e in sub:
            out.append(e)
            if sub is fast and len(out) == 50:
                break
        return out

    slow_events = asyncio.run(drain(slow))
    assert len(slow_events) == 1 and isinstance(slow_events[0], SubscriberDropped)
    assert "fell 10 events behind" in slow_events[0].reason
    fast_events = asyncio.run(drain(fast))
    assert [e.reason for e in fast_events] == [str(i) for i in range(50)]
    # sequence numbers stay unique: the notice took one too
    seqs = [e.seq for e in fast_events] + [slow_events[0].seq]
    assert len(set(seqs)) == 51


def test_type_filter_and_unknown_types():
    bus = EventBus()
    only = bus.subscribe(types=["position_closed"])
    bus.publish(FeedStatus, feed="f", status="connected")
    bus.publish(PositionClosed, runner_id="r", trade={"pnl": 1.5})
    assert len(only) == 1 and only.get_nowait().trade == {"pnl": 1.5}
    with pytest.raises(ValueError, match="unknown event types"):
        bus.subscribe(types=["nope"])
    with pytest.raises(ValueError, match="maxsize"):
        bus.subscribe(maxsize=0)


def test_json_form_names_the_type_and_maps_non_finite_to_null():
    bus = EventBus(history=5)
    ev = bus.publish(BarReceived, feed="binance", symbol="BTCUSDT", timestamp=1_700_000_000_000,
                     open=1.0, high=2.0, low=0.5, close=1.5, volume=float("nan"), bid=None, ask=1.6)
    data = json.loads(ev.to_json())
    assert data["type"] == "bar_received" and data["seq"] == 1 and data["volume"] is None
    assert data["ask"] == 1.6 and data["timestamp"] == 1_700_000_000_000
    assert bus.recent() == [ev]
    assert set(EVENT_TYPES) >= {"bar_received", "opportunity_detected", "state_transition",
                                "position_opened", "position_updated", "position_closed",
                                "action_rejected", "runner_error", "runner_status", "feed_status"}


def test_no_subscriber_means_inactive_bus():
    bus = EventBus()
    assert not bus.active
    sub = bus.subscribe()
    assert bus.active
    sub.close()
    assert not bus.active


def test_every_event_a_runner_emits_reaches_subscribers(tmp_path):
    # A runner's event dicts become typed events only if EVENT_TYPES knows their type.
    from tradesim._core import MarketData
    from tradesim.engine.events import event_from_runner_dict
    from tradesim.runner import SymbolRunner

    script = tmp_path / "waits.lua"
    script.write_text("""
function detect_opportunity(bar) return true end
function filter_commitment(bar, ctx) return nil end
function manage_position(bar, pos, ctx) return nil end
""")
    seen = []
    runner = SymbolRunner("BTCUSDT", script, analysis_timeout_bars=2, on_event=seen.append)
    runner.events_wanted = lambda: True
    for i in range(6):
        runner.process(MarketData("BTCUSDT", 60_000 * (i + 1), 100.0, 101.0, 99.0, 100.0, 1.0))
    runner.reload()
    kinds = {payload["type"] for payload in seen}
    assert {"analysis_timeout", "strategy_reloaded", "opportunity_detected"} <= kinds
    unmapped = sorted(k for k in kinds if event_from_runner_dict({"type": k}) is None)
    assert not unmapped


def test_events_file_keeps_the_shutdown_events(tmp_path):
    # The run's own close (positions closed at the last close, runners stopped) must be logged.
    import io

    from rich.console import Console

    from tradesim.engine.run import run_paper

    script = tmp_path / "holds.lua"
    script.write_text("""
function detect_opportunity(bar) return true end
function filter_commitment(bar, ctx) return {action = "enter_long", quantity = 0.5} end
function manage_position(bar, pos, ctx) return nil end
""")
    out = io.BytesIO()
    out.close = lambda: None   # keep the buffer readable after the run
    runners = run_paper(script, symbols=["BTCUSDT", "ETHUSDT"], bars=50, events_file=out,
                        console=Console(file=io.StringIO()))
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    statuses = [e for e in events if e["type"] == "runner_status" and e["status"] == "stopped"]
    assert len(statuses) == len(runners) == 2
    closed = [e for e in events if e["type"] == "position_closed"]
    assert len(closed) == len(runners)
    assert all(e["trade"]["exit_reason"] == "end_of_run" for e in closed)
