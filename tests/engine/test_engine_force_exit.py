"""`TradingEngine.force_exit` and the ``control`` events every command publishes (with scope and origin)."""

from __future__ import annotations

import asyncio

from tradesim.engine import TradingEngine
from tradesim.feeds.simulated import SimulatedFeed

ALWAYS_LONG = """
name = "always_long"
function detect_opportunity(md, ctx, ind) return {reason = "go"} end
function filter_commitment(md, ctx, ind) return {action = "enter_long", reason = "go"} end
function manage_position(md, ctx, ind) return nil end
"""


def test_force_exit_closes_at_the_last_close_and_is_published(tmp_path):
    script = tmp_path / "always_long.lua"
    script.write_text(ALWAYS_LONG)
    engine = TradingEngine()
    engine.add_feed(SimulatedFeed("BTCUSDT", bars=50, seed=3), "sim")
    rid = engine.add_runner("BTCUSDT", script)

    async def main():
        sub = engine.subscribe(types=["control", "position_closed"])
        await engine.run()
        runner = engine.runner(rid)
        assert runner.machine.position is not None   # entered and never exits by itself
        last_close = runner.window.latest().close
        engine.pause(rid, scope="control", origin="test")
        engine.force_exit(rid, scope="control", origin="test")
        assert runner.machine.position is None
        trade = runner.trades[-1]
        assert trade.exit_reason == "forced exit"
        assert trade.exit_price == last_close   # no slippage configured: the newest close exactly
        events = []
        while (e := sub.get_nowait()) is not None:
            events.append(e)
        return events

    events = asyncio.run(main())
    controls = [e for e in events if e.type == "control"]
    assert [(e.command, e.runner_id, e.scope, e.origin) for e in controls] == [
        ("pause", rid, "control", "test"), ("exit", rid, "control", "test")]
    assert controls[1].detail == {"reason": "forced exit"}
    closed = [e for e in events if e.type == "position_closed"]
    assert closed[-1].trade["exit_reason"] == "forced exit"
    assert closed[-1].seq > controls[1].seq   # the control event comes before what it caused
