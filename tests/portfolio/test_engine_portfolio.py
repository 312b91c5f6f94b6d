"""The engine's portfolio on the simulated feed: the entry gate across runners on different worker
threads, a drawdown halt applied between bars, risk_limit events on the event stream, and resume."""

from __future__ import annotations

import asyncio

import pytest

from tradesim.engine import TradingEngine
from tradesim.feeds.simulated import SimulatedFeed
from tradesim.portfolio import PortfolioConfig
from tradesim.runner import RunnerStatus

ALWAYS_LONG = """
name = "always_long"
function detect_opportunity(md, ctx, ind) return {reason = "go"} end
function filter_commitment(md, ctx, ind) return {action = "enter_long", quantity = 10, reason = "go"} end
function manage_position(md, ctx, ind) return nil end
"""


def _engine(tmp_path, config, bars=300):
    script = tmp_path / "always_long.lua"
    script.write_text(ALWAYS_LONG)
    engine = TradingEngine(workers=2, portfolio=config)
    engine.add_feed(SimulatedFeed(("AAAUSDT", "BBBUSDT"), bars=bars, seed=7, start_price=100.0), "sim")
    ids = [engine.add_runner(s, script) for s in ("AAAUSDT", "BBBUSDT")]
    return engine, ids


def _run(engine):
    async def main():
        sub = engine.subscribe(types=["risk_limit", "control", "runner_status"])
        await engine.run()
        events = []
        while (e := sub.get_nowait()) is not None:
            events.append(e)
        return events
    return asyncio.run(main())


def test_max_open_positions_holds_across_worker_threads(tmp_path):
    engine, ids = _engine(tmp_path, PortfolioConfig(max_open_positions=1))
    events = _run(engine)
    runners = [engine.runner(i) for i in ids]
    # both want a position from the first bar and never exit: exactly one gets it
    holding = [r for r in runners if r.machine.position is not None]
    (other,) = [r for r in runners if r.machine.position is None]
    assert len(holding) == 1 and not other.trades
    assert other.rejections and all("max_open_positions" in r.reason for r in other.rejections)
    risk = [e for e in events if e.type == "risk_limit"]
    assert risk and {(e.scope, e.limit, e.action, e.symbol) for e in risk} == {
        ("portfolio", "max_open_positions", "rejected", other.symbol)}
    assert all(e.runner_id == ids[runners.index(other)] for e in risk)
    assert len(risk) == len(other.rejections)   # one event per rejected entry
    # the portfolio's curve: one point per bar time, the last one the final mark
    state = engine.portfolio_state(curve=1000)
    curve = state["curve"]
    assert len(curve["timestamp"]) == 300 and curve["timestamp"] == sorted(set(curve["timestamp"]))
    assert curve["equity"][-1] == pytest.approx(state["equity"], abs=1e-9)
    held = holding[0]
    assert state["equity"] == pytest.approx(20_000 + held.core.quantity * (held.window.latest().close
                                                                          - held.machine.position.entry_price))
    for e, r, u in zip(curve["equity"], curve["realised"], curve["unrealised"]):
        assert r + u + 20_000 == pytest.approx(e, abs=1e-9)


def test_drawdown_halt_applies_between_bars_and_resume_lifts_it(tmp_path):
    engine, ids = _engine(tmp_path, PortfolioConfig(max_drawdown_pct=0.001, on_breach="halt"))
    events = _run(engine)
    runners = [engine.runner(i) for i in ids]
    (breach,) = [e for e in events if e.type == "risk_limit"]
    assert (breach.scope, breach.limit, breach.action, breach.runner_id) == ("portfolio", "max_drawdown_pct",
                                                                            "halt", "")
    assert breach.value > breach.threshold == 0.001
    halts = [e for e in events if e.type == "control" and e.command == "halt"]
    assert sorted(e.runner_id for e in halts) == sorted(ids) and {e.scope for e in halts} == {"portfolio"}
    assert all(r.status == RunnerStatus.HALTED and r.machine.position is None for r in runners)
    # the positions open at the breach were closed by the halt (each runner applies it between two
    # of its own bars; runners are not synchronised, so not necessarily at the breach's bar time);
    # a runner that had not entered yet has no trade
    closed = [r.trades[-1] for r in runners if r.trades]
    assert closed and all(t.exit_reason == "risk_halt" for t in closed)
    state = engine.portfolio_state()
    assert state["halted"] is True and state["open_positions"] == 0
    engine.resume_portfolio(scope="control", origin="test")
    assert all(r.status == RunnerStatus.RUNNING for r in runners)
    assert engine.portfolio_state()["halted"] is False


def test_runner_risk_limit_events_reach_the_event_stream(tmp_path):
    from tradesim.runner.risk import RiskConfig

    script = tmp_path / "always_long.lua"
    script.write_text(ALWAYS_LONG)
    engine = TradingEngine(workers=1)
    engine.add_feed(SimulatedFeed(("AAAUSDT",), bars=20, seed=7, start_price=100.0), "sim")
    rid = engine.add_runner("AAAUSDT", script, risk=RiskConfig(max_position_notional=500))
    events = [e for e in _run(engine) if e.type == "risk_limit"]
    # 10 units at ~100 = ~1,000 > 500: every entry rejected, one event each
    runner = engine.runner(rid)
    assert events and len(events) == len(runner.rejections) and not runner.trades
    assert {(e.scope, e.limit, e.runner_id, e.threshold) for e in events} == {
        ("runner", "max_position_notional", rid, 500.0)}
    assert all(e.value > 500 for e in events)
