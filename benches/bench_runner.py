"""Runner hot path: bar -> decision latency and backtest throughput, with backtesting.py as a peer.

Run: pytest benches/bench_runner.py --benchmark-only
"""

import time
from pathlib import Path

import numpy as np
import pytest

from tradesim.bench.budgets import BUDGETS

REPO = Path(__file__).resolve().parents[1]
EMA_CROSSOVER = REPO / "lua-strategies" / "examples" / "ema_crossover.lua"
BTC = REPO.parent / "shared" / "data" / "binance" / "klines" / "1m" / "BTCUSDT-1m-2025-05-20_2025-08-18.csv.gz"


@pytest.fixture(scope="module")
def btc():
    if not BTC.exists():
        pytest.skip(f"real data not found at {BTC}")
    from tradesim.data import load_bars

    return load_bars(BTC)


def _runner():
    from tradesim.runner import SymbolRunner

    return SymbolRunner("BTCUSDT", EMA_CROSSOVER)


def test_bar_to_decision_p50(benchmark, btc):
    """One bar through the whole step (push, indicators, state machine, sandboxed Lua call)."""
    n = 50_000
    cols = [btc.timestamp[:n].tolist()] + [getattr(btc, k)[:n].tolist()
                                           for k in ("open", "high", "low", "close", "volume")]
    rows = list(zip(*cols))
    samples = np.empty(n)

    def run():
        r = _runner()
        step = r.core.process_values
        clock = time.perf_counter_ns
        for i, (ts, o, h, l, c, v) in enumerate(rows):
            t0 = clock()
            step(ts, o, h, l, c, v)
            samples[i] = clock() - t0
        return r

    benchmark.pedantic(run, rounds=3, iterations=1)
    warm = samples[100:]
    p50, p99 = float(np.median(warm)), float(np.percentile(warm, 99))
    benchmark.extra_info.update(p50_ns=round(p50), p99_ns=round(p99), max_ns=round(float(warm.max())),
                                budget_ns=BUDGETS["bar_to_decision"].limit,
                                within_budget=BUDGETS["bar_to_decision"].passes(p50),
                                note="includes ~60 ns of perf_counter_ns timer overhead per sample")


def test_backtest_throughput_real_btcusdt(benchmark, btc):
    """EMA crossover over the 130k-bar file, sandbox on, load excluded."""
    from tradesim.backtest import Backtest

    def run():
        return Backtest(str(EMA_CROSSOVER), btc).run()

    result = benchmark.pedantic(run, rounds=3, iterations=1)
    bars_per_s = result.ledger["bars_per_second"]
    benchmark.extra_info.update(bars_per_second=bars_per_s, trades=len(result.trades),
                                budget=BUDGETS["backtest_throughput"].limit,
                                within_budget=BUDGETS["backtest_throughput"].passes(bars_per_s))


def test_peer_backtesting_py_same_strategy(benchmark, btc):
    """backtesting.py running the same EMA(10)/EMA(20) long-only crossover, fills at next open."""
    bt_mod = pytest.importorskip("backtesting")
    talib = pytest.importorskip("talib")
    import pandas as pd
    from backtesting import Backtest as PyBacktest
    from backtesting import Strategy

    df = pd.DataFrame({"Open": btc.open, "High": btc.high, "Low": btc.low, "Close": btc.close,
                       "Volume": btc.volume}, index=pd.to_datetime(btc.timestamp, unit="ms"))

    class EmaCross(Strategy):
        def init(self):
            self.fast = self.I(talib.EMA, self.data.Close, 10)
            self.slow = self.I(talib.EMA, self.data.Close, 20)

        def next(self):
            f, s = self.fast, self.slow
            if np.isnan(s[-2]):
                return
            if not self.position and f[-2] <= s[-2] and f[-1] > s[-1]:
                self.buy(size=1)  # one whole unit: sizes < 1 mean a fraction of equity here
            elif self.position and f[-2] >= s[-2] and f[-1] < s[-1]:
                self.position.close()

    def run():
        t0 = time.perf_counter()
        stats = PyBacktest(df, EmaCross, cash=10_000_000, commission=0.0, finalize_trades=True).run()
        return stats, time.perf_counter() - t0

    stats, seconds = benchmark.pedantic(run, rounds=1, iterations=1)
    benchmark.extra_info.update(peer="backtesting.py", version=bt_mod.__version__,
                                bars_per_second=round(len(btc) / seconds), trades=int(stats["# Trades"]))
