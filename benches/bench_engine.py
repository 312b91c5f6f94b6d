"""Live engine: frame -> decision latency over loopback, 1,000 runners' CPU share, memory per runner.

Run: pytest benches/bench_engine.py --benchmark-only   (figures in extra_info; targets in tradesim.bench.budgets)
With --benchmark-disable (CI) each measurement runs once, shortened.
"""

import pytest

from tradesim.bench.budgets import BUDGETS


@pytest.fixture
def quick(request):
    return request.config.getoption("benchmark_disable", False)


@pytest.mark.parametrize("mode", ["busy_poll", "parked"])
def test_frame_to_decision_latency(benchmark, quick, mode):
    """The budget applies to busy-poll mode; the default (parked) mode is reported alongside."""
    from tradesim.bench.live import BUSY_POLL_US, live_latency

    busy_poll_us = BUSY_POLL_US if mode == "busy_poll" else 0.0
    res = benchmark.pedantic(live_latency, args=(500 if quick else 5000,),
                             kwargs={"busy_poll_us": busy_poll_us}, rounds=1, iterations=1)
    assert res["bars"] > 0
    benchmark.extra_info.update(
        mode=mode, p50_us=round(res["p50_ns"] / 1e3, 1), p99_us=round(res["p99_ns"] / 1e3, 1),
        from_server_send_p50_us=round(res["sent_p50_ns"] / 1e3, 1),
        from_server_send_p99_us=round(res["sent_p99_ns"] / 1e3, 1), bars=res["bars"],
        host_loop_ms_before=round(res["host_ms_before"], 2), host_loop_ms_after=round(res["host_ms_after"], 2),
        budget_p50_us=BUDGETS["live_latency_p50"].limit / 1e3,
        budget_p99_us=BUDGETS["live_latency_p99"].limit / 1e3,
        within_budget=BUDGETS["live_latency_p50"].passes(res["p50_ns"])
        and BUDGETS["live_latency_p99"].passes(res["p99_ns"]))


def test_1000_runners_one_bar_per_second(benchmark, quick):
    from tradesim.bench.live import engine_scale

    res = benchmark.pedantic(engine_scale, args=(1000, 2 if quick else 10), rounds=1, iterations=1)
    assert res["failed"] == 0 and res["bars"] > 0
    benchmark.extra_info.update(cpu_percent_of_one_core=round(res["cpu_percent"], 2), bars=res["bars"],
                                budget_percent=BUDGETS["engine_1000_runners_cpu"].limit,
                                within_budget=BUDGETS["engine_1000_runners_cpu"].passes(res["cpu_percent"]))


def test_memory_per_runner(benchmark, quick):
    from tradesim.bench.live import runner_memory

    res = benchmark.pedantic(runner_memory, args=(200 if quick else 1000,), rounds=1, iterations=1)
    benchmark.extra_info.update(kb_per_runner=round(res["kb_per_runner"], 1),
                                lua_kb_per_runner=round(res["lua_kb_per_runner"], 1),
                                budget_kb=BUDGETS["runner_memory"].limit,
                                within_budget=BUDGETS["runner_memory"].passes(res["kb_per_runner"]))
