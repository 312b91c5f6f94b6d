"""Helpers for the pytest-benchmark suites.

Each benchmark times a loop of N operations and records ns per operation, the
package budget (tradesim.bench.budgets) and, where a peer is installed, our ratio to
it in `extra_info`. The suites never fail on time: `tradesim bench` gates;
CI only runs them once with --benchmark-disable to keep them runnable.
"""

import numpy as np
import pytest

from tradesim.bench.budgets import BUDGETS


@pytest.fixture(scope="session")
def walk():
    rng = np.random.default_rng(42)
    return 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, 1_000_000)))


@pytest.fixture
def per_op(benchmark):
    """Run fn() (which performs n operations) and record ns/op against a budget."""

    def run(fn, n, budget=None, rounds=5, **info):
        result = benchmark.pedantic(fn, rounds=rounds, iterations=1, warmup_rounds=1)
        stats = getattr(benchmark, "stats", None)
        if stats is not None and getattr(stats, "stats", None) is not None:
            ns = stats.stats.median / n * 1e9
            benchmark.extra_info["ns_per_op"] = round(ns, 2)
            if budget:
                b = BUDGETS[budget]
                benchmark.extra_info["budget_ns"] = b.limit
                benchmark.extra_info["within_budget"] = b.passes(ns)
        benchmark.extra_info.update(info)
        return result

    return run
