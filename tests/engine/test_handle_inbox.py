"""RunnerHandle's inbox (`tradesim.engine.inbox.RunnerInbox`): order, control, rejects, overflow.

Driven by hand on one thread: a stub pool records `schedule` calls, and the
test calls `drain` where a worker would.
"""

from __future__ import annotations

import time
from concurrent.futures import Future
from pathlib import Path

import pytest

from tradesim._core import MarketData
from tradesim.engine.events import EventBus
from tradesim.engine.handle import RunnerHandle
from tradesim.runner import RunnerStatus, SymbolRunner

REPO = Path(__file__).resolve().parents[2]
EMA = REPO / "lua-strategies" / "examples" / "ema_crossover.lua"
T0 = 1_751_897_340_000


class _Pool:
    def __init__(self) -> None:
        self.scheduled: list = []

    def schedule(self, item) -> None:
        self.scheduled.append(item)


def _bar(i: int, symbol: str = "BTCUSDT", close: float | None = None) -> MarketData:
    c = 100.0 + (i % 7) if close is None else close
    return MarketData(symbol, T0 + 60_000 * i, c, c + 1, c - 1, c, 1.0)


def _handle(queue_size: int = 8, history: int = 100):
    pool, bus = _Pool(), EventBus(history=history)
    runner = SymbolRunner("BTCUSDT", EMA)
    return RunnerHandle("r1", runner, "feed", pool, bus, queue_size=queue_size), pool, bus


def test_bars_are_processed_in_order_with_counters_and_one_schedule():
    handle, pool, _ = _handle()
    seen = []
    handle.on_processed = lambda h, done: seen.append((h.last_bar_time, done))
    before = time.perf_counter_ns()
    for i in range(5):
        assert handle.offer(_bar(i), time.perf_counter_ns())
    assert pool.scheduled == [handle]          # scheduled once while it has work
    assert handle.queued == 5
    assert handle.drain() is False             # all done, nothing left
    assert [t for t, _ in seen] == [T0 + 60_000 * i for i in range(5)]
    assert all(before <= done <= time.perf_counter_ns() for _, done in seen)
    assert handle.bars == 5 and handle.runner.core.bars == 5
    assert handle.last_bar_time == T0 + 4 * 60_000
    assert 0 <= handle.last_lag_ms <= handle.max_lag_ms
    assert handle.in_call_since is None
    handle.offer(_bar(5), time.perf_counter_ns())
    assert pool.scheduled == [handle, handle]  # idle again -> scheduled again


def test_drain_stops_at_its_budget_and_says_more_wait():
    handle, pool, _ = _handle()
    for i in range(5):
        handle.offer(_bar(i), 0)
    assert handle.drain(budget=2) is True
    assert handle.bars == 2 and handle.queued == 3
    assert handle.drain(budget=10) is False
    assert handle.bars == 5


def test_control_requests_run_before_queued_bars_and_report_errors():
    handle, _, _ = _handle()
    handle.offer(_bar(0), 0)
    handle.offer(_bar(1), 0)
    bars_seen = handle.request(lambda runner: runner.core.bars)
    assert isinstance(bars_seen, Future)
    broken = handle.request(lambda runner: 1 / 0)
    cancelled = handle.request(lambda runner: "never")
    assert cancelled.cancel()
    handle.drain()
    assert bars_seen.result(timeout=0) == 0    # answered before either bar ran
    with pytest.raises(ZeroDivisionError):
        broken.result(timeout=0)
    assert handle.bars == 2


def test_out_of_order_and_wrong_symbol_bars_are_rejected_and_the_runner_goes_on():
    handle, _, bus = _handle()
    handle.offer(_bar(3), 0)
    handle.offer(_bar(2), 0)                   # older than the last one
    handle.offer(_bar(4, symbol="ETHUSDT"), 0)
    handle.offer(_bar(4), 0)
    handle.drain()
    assert handle.rejected_bars == 2 and handle.bars == 2
    assert handle.last_bar_time == T0 + 4 * 60_000
    assert handle.runner.status is RunnerStatus.RUNNING
    errors = [e for e in bus.recent() if e.type == "runner_error"]
    assert len(errors) == 2
    assert errors[0].timestamp == T0 + 2 * 60_000 and errors[0].error == "OutOfOrderBar"
    assert errors[1].error == "InvalidMarketData" and "ETHUSDT" in errors[1].message


def test_overflow_fails_the_runner_drops_its_queue_and_refuses_more():
    handle, _, bus = _handle(queue_size=3)
    assert all(handle.offer(_bar(i), 0) for i in range(3))
    assert handle.offer(_bar(3), 0) is False
    assert handle.runner.status is RunnerStatus.FAILED
    assert "queue overflow: 3 bars waiting" in handle.runner.status_reason
    assert handle.queued == 0 and not handle.accepting
    assert handle.offer(_bar(4), 0) is False
    handle.drain()
    assert handle.bars == 0
    statuses = [e for e in bus.recent() if e.type == "runner_status"]
    assert statuses and statuses[-1].status == "failed"


def test_bars_queued_before_a_stop_are_not_processed():
    handle, _, _ = _handle()
    handle.offer(_bar(0), 0)
    handle.runner.stop("by hand")
    handle.drain()
    assert handle.bars == 0 and handle.runner.core.bars == 0


def test_an_internal_error_fails_only_this_runner():
    handle, _, _ = _handle()
    other, _, _ = _handle()

    def bug(bar):
        raise RuntimeError("not a strategy error")

    handle.runner.process = bug                 # the path a bar for another symbol takes
    handle.offer(_bar(0), 0)
    handle.offer(_bar(1, symbol="ETHUSDT"), 0)
    handle.offer(_bar(2), 0)
    other.offer(_bar(0), 0)
    handle.drain()
    other.drain()
    assert handle.runner.status is RunnerStatus.FAILED
    assert handle.runner.status_reason == "internal error: RuntimeError: not a strategy error"
    assert handle.bars == 1 and handle.queued == 0 and handle.in_call_since is None
    assert other.runner.status is RunnerStatus.RUNNING and other.bars == 1


def test_only_market_data_is_queued():
    handle, _, _ = _handle()
    with pytest.raises(TypeError):
        handle.offer((T0, 1.0, 1.0, 1.0, 1.0, 1.0), 0)
    assert handle.queued == 0


def test_queue_size_must_be_positive():
    with pytest.raises(ValueError, match="queue_size = 0"):
        _handle(queue_size=0)
