"""Speed budgets: the targets the issues set, in one place.

`benches/` (pytest-benchmark) and `tradesim bench` both read these, so a
target changes here or nowhere. Times are per operation on the reference
machine class (2 cores, Python 3.11, gcc -O3); see ../shared/perf-notes.md.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Budget:
    """One target. `unit` "ops/s" is higher-is-better; "ns", "%" (of one core) and "KB" are lower."""

    name: str
    limit: float
    unit: str
    description: str

    def passes(self, measured: float) -> bool:
        higher_is_better = self.unit in ("ops/s", "bars/s")
        return measured >= self.limit if higher_is_better else measured <= self.limit


BUDGETS: dict[str, Budget] = {b.name: b for b in (
    Budget("window_push", 40.0, "ns", "MarketDataWindow.push of one bar"),
    Budget("indicator_update", 25.0, "ns", "one indicator update per Python call"),
    Budget("indicator_set_update", 30.0, "ns", "SMA20+EMA20+RSI14+MACD+BB20 in one call per tick"),
    Budget("batch_all_five", 12.0, "ns", "all five indicators over 1M values, per element"),
    Budget("bar_to_decision", 1000.0, "ns", "window push -> indicators -> state machine -> Lua call (p50)"),
    Budget("kline_frame_to_bar", 5000.0, "ns", "one closed Binance kline frame into a bar, as the live feed does"),
    Budget("backtest_throughput", 1_000_000.0, "ops/s", "backtest bars per second, EMA crossover"),
    Budget("recording_cost", 20.0, "%",
           "throughput a recorded backtest loses (EMA crossover, real BTCUSDT, interleaved with plain runs)"),
    Budget("orders_cost", 30.0, "%",
           "throughput a strategy with a trailing stop and a working limit order loses against the EMA "
           "crossover (real BTCUSDT, interleaved)"),
    Budget("session_log_read", 2_000_000.0, "ops/s", "recorded session events read back per second"),
    Budget("inspect_seq", 50_000_000.0, "ns", "tradesim inspect --seq on a 10-million-event session"),
    Budget("live_latency_p50", 20_000.0, "ns",
           "Binance kline frame at the client -> runner decision (p50, busy-poll mode)"),
    Budget("live_latency_p99", 100_000.0, "ns",
           "Binance kline frame at the client -> runner decision (p99, busy-poll mode)"),
    Budget("engine_1000_runners_cpu", 10.0, "%", "1,000 runners, one bar per second each: share of one core"),
    Budget("runner_memory", 200.0, "KB", "one runner: 500-bar window, Lua runtime, 5 indicators"),
)}
