"""`tradesim bench`: measure the hot paths against the budgets in `tradesim.bench.budgets`.

Each operation is warmed up, then timed in repeated samples. Operations too
fast to time one by one (tens of ns) are timed in batches and reported per
operation; the bar -> decision path is timed per bar. Budgets are the issues'
targets; a run fails (exit 1) when any budget is missed.
"""

from __future__ import annotations

import math
import platform
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from importlib import metadata
from pathlib import Path

import numpy as np

from tradesim.bench.budgets import BUDGETS, Budget
from tradesim.strategy.examples import example_path

__all__ = ["BenchResult", "OPERATIONS", "example_path", "run_benchmarks", "environment"]


@dataclass
class BenchResult:
    """One operation: per-op time percentiles in ns (or throughput), its budget and verdict."""

    name: str
    p50: float
    p99: float
    max: float
    ops_per_s: float
    unit: str
    budget: float | None
    passed: bool | None
    samples: int

    def as_dict(self) -> dict:
        return asdict(self)


def _walk(n: int, seed: int = 42) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))


def _batched(fn: Callable[[], None], per_call: int, samples: int, warmup: int = 2) -> np.ndarray:
    for _ in range(warmup):
        fn()
    out = np.empty(samples)
    clock = time.perf_counter_ns
    for i in range(samples):
        t0 = clock()
        fn()
        out[i] = (clock() - t0) / per_call
    return out


def _result(name: str, ns: np.ndarray, budget_key: str | None) -> BenchResult:
    budget = BUDGETS.get(budget_key) if budget_key else None
    p50 = float(np.median(ns))
    return BenchResult(name, p50, float(np.percentile(ns, 99)), float(ns.max()),
                       1e9 / p50 if p50 > 0 else math.inf, "ns",
                       budget.limit if budget else None, budget.passes(p50) if budget else None, len(ns))


# -- operations ------------------------------------------------------------------

def _bench_window_push(quick: bool) -> list[BenchResult]:
    from tradesim._core import MarketData, MarketDataWindow

    x = _walk(10_000).tolist()
    bars = [MarketData("BTCUSDT", i + 1, v, v, v, v, 1.0, validate=False) for i, v in enumerate(x)]
    w = MarketDataWindow(500)

    def fn():
        w.clear()
        push = w.push
        for b in bars:
            push(b)
    return [_result("window.push", _batched(fn, len(bars), 20 if quick else 100), "window_push")]


def _bench_indicators(quick: bool) -> list[BenchResult]:
    from tradesim._core import EMA, MACD, RSI, SMA, BollingerBands, IndicatorSet

    xs = _walk(10_000).tolist()
    samples = 20 if quick else 100
    out = []
    for name, ind in (("sma20", SMA(20)), ("ema20", EMA(20)), ("rsi14", RSI(14)),
                      ("macd12_26_9", MACD(12, 26, 9)), ("bb20", BollingerBands(20, 2.0))):
        update = ind.update

        def fn(update=update):
            for v in xs:
                update(v)
        out.append(_result(f"indicator.{name}.update", _batched(fn, len(xs), samples), "indicator_update"))
    update = IndicatorSet().update

    def all_five():
        for v in xs:
            update(v)
    out.append(_result("indicators.all_five.update", _batched(all_five, len(xs), samples),
                       "indicator_set_update"))
    return out


def _bench_batch(quick: bool) -> list[BenchResult]:
    from tradesim._core import IndicatorSet, compute_all
    from tradesim._core.indicator_set import OUTPUT_NAMES

    x = _walk(100_000 if quick else 1_000_000)
    samples = 3 if quick else 7
    out = {k: np.empty(len(x)) for k in OUTPUT_NAMES}
    # Fresh output arrays pay the kernel's first-touch page faults (72 MB per
    # 1M values); reusing buffers through out= measures the computation.
    return [_result("indicators.all_five.batch", _batched(lambda: compute_all(x), len(x), samples, 1),
                    "batch_all_five"),
            _result("indicators.all_five.batch_into_out",
                    _batched(lambda: IndicatorSet().update_many(x, out), len(x), samples, 1), "batch_all_five")]


def _bench_state_machine(quick: bool) -> list[BenchResult]:
    from tradesim._core import MarketData, StateMachine

    x = _walk(10_000).tolist()
    bars = [MarketData("BTCUSDT", i + 1, v, v * 1.001, v * 0.999, v, 1.0) for i, v in enumerate(x)]
    sm = StateMachine()
    update = sm.update

    def fn():
        for b in bars:
            update(b)
    return [_result("state_machine.update", _batched(fn, len(bars), 20 if quick else 100), None)]


def _runner(quick: bool):
    from tradesim.runner import SymbolRunner

    return SymbolRunner("BTCUSDT", example_path())


def _bench_lua_call(quick: bool) -> list[BenchResult]:
    runner = _runner(quick)
    x = _walk(2_000)
    for i, v in enumerate(x):  # warm the window and register the strategy's indicators
        runner.core.process_values(60_000 * (i + 1), v, v * 1.001, v * 0.999, v, 1.0)
    # The C-API call RunnerCore makes (`LuaDirect.call`), where lupa allows it.
    dispatch = getattr(runner.strategy.dispatch, "call", runner.strategy.dispatch)
    values = tuple(runner.bank.values_view())
    args = (0, 60_000 * 5000, 100.0, 100.1, 99.9, 100.0, 1.0, math.nan, math.nan, *values)
    n = 1000

    def fn():
        for _ in range(n):
            dispatch(*args)
    return [_result("lua.ema_crossover.call", _batched(fn, n, 20 if quick else 100), None)]


def _bench_bar_to_decision(quick: bool) -> list[BenchResult]:
    runner = _runner(quick)
    x = _walk(20_000 if quick else 100_000)
    rows = [(60_000 * (i + 1), v, v * 1.001, v * 0.999, v, 1.0) for i, v in enumerate(x.tolist())]
    step = runner.core.process_values
    clock = time.perf_counter_ns
    ns = np.empty(len(rows))
    for i, r in enumerate(rows):
        t0 = clock()
        step(*r)
        ns[i] = clock() - t0
    return [_result("bar_to_decision", ns[1000:], "bar_to_decision")]


def _bench_kline_frame(quick: bool) -> list[BenchResult]:
    """A closed kline frame through what `BinanceFeed` does with each one: bytes -> `MarketData`.

    The payload as the socket hands it over (UTF-8 bytes of a text frame) goes
    to the feed's `BarAssembler`: strict decode, `parse_kline` (its C path),
    the clock-skew check on the event time, the ordering rule, the bar and its
    delivery. Consecutive open times, so every frame gives a bar.
    """
    from tradesim.feeds.base import DataHealth
    from tradesim.feeds.binance.assembler import BarAssembler, new_stats

    n = 1000
    t0, step = 1751897340000, 60_000
    now_ms = time.time_ns() // 1_000_000  # event times ("E") within the feed's default 5 s skew allowance
    frames = [('{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":' f'{now_ms}' ',"s":"BTCUSDT","k":'
               '{"t":' f'{t},"T":{t + step - 1}' ',"s":"BTCUSDT","i":"1m","f":5067431062,"L":5067432892,'
               '"o":"108521.04000000","c":"108473.03000000","h":"108521.04000000","l":"108473.02000000",'
               '"v":"5.21006000","n":1831,"x":true,"q":"565334.99194810","V":"3.03940000",'
               '"Q":"329823.87289940","B":"0"}}}').encode()
              for t in range(t0, t0 + n * step, step)]
    bars: list = []

    def fn():
        # A fresh assembler per batch: the open times start over.
        asm = BarAssembler(("BTCUSDT",), "1m", bars.append, new_stats(), DataHealth(),
                           lambda kind, **fields: None)
        asm.skew_ms = 5_000  # BinanceFeed's default max_clock_skew
        feed = asm.feed
        for frame in frames:
            feed(frame, "c1", False)
        if len(bars) != n:
            raise RuntimeError(f"{len(bars)} bars from {n} closed kline frames")
        bars.clear()
    return [_result("binance.kline_frame_to_bar", _batched(fn, n, 20 if quick else 100), "kline_frame_to_bar")]


def _bench_backtest(quick: bool) -> list[BenchResult]:
    from tradesim.backtest import Backtest
    from tradesim.feeds.simulated import SimulatedFeed

    n = 100_000 if quick else 1_000_000
    bars = SimulatedFeed(("SIMUSDT",), seed=1).bars("SIMUSDT", n)
    rates = []
    for _ in range(1 if quick else 3):
        result = Backtest(str(example_path()), bars).run()
        rates.append(result.ledger["bars_per_second"])
    rates = np.array(rates, dtype=float)
    budget = BUDGETS["backtest_throughput"]
    p50 = float(np.median(rates))
    return [BenchResult(f"backtest.ema_crossover.{n // 1000}k_bars", p50, float(rates.min()),
                        float(rates.min()), p50, "bars/s", budget.limit, budget.passes(p50), len(rates))]


def _real_btc():
    """The real BTCUSDT 1m klines beside the repository (../shared/data), else None."""
    from pathlib import Path

    from tradesim.data import load_bars

    here = Path(__file__).resolve()
    for root in here.parents:
        path = (root.parent / "shared" / "data" / "binance" / "klines" / "1m"
                / "BTCUSDT-1m-2025-05-20_2025-08-18.csv.gz")
        if path.is_file():
            return load_bars(path)
    return None


def _btc_bench_bars(quick: bool):
    """The real BTCUSDT klines (or as many simulated bars), cut to 40,000 bars when `quick`."""
    from tradesim.feeds.simulated import SimulatedFeed

    bars = _real_btc()
    if bars is None:   # no real data here: the same size of simulated bars
        bars = SimulatedFeed(("BTCUSDT",), seed=1).bars("BTCUSDT", 130_000)
    if quick:
        bars = bars.slice(None, int(bars.timestamp[min(len(bars) - 1, 40_000)]))
    return bars


def _cost_against_ema(name: str, budget_key: str, bars, quick: bool,
                      other: Callable[[int], None]) -> list[BenchResult]:
    """The EMA crossover example's backtest and ``other(round)``, interleaved on the same bars:
    the share of the example's throughput `other` loses (median over the rounds; max per round)."""
    from tradesim.backtest import Backtest

    plain, timed = [], []
    for i in range(2 if quick else 5):
        t0 = time.perf_counter()
        Backtest(str(example_path()), bars).run()
        plain.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        other(i)
        timed.append(time.perf_counter() - t0)
    cost = (1.0 - float(np.median(plain)) / float(np.median(timed))) * 100.0
    ratios = [(1.0 - p / o) * 100.0 for p, o in zip(plain, timed)]
    budget = BUDGETS[budget_key]
    return [BenchResult(f"{name}.{len(bars) // 1000}k_bars", cost, max(ratios), max(ratios),
                        len(bars) / float(np.median(timed)), "%", budget.limit, budget.passes(cost),
                        len(ratios))]


def _bench_recording(quick: bool) -> list[BenchResult]:
    """Recorded vs plain backtests, interleaved (the same bars, strategy and process): the share
    of throughput recording costs."""
    import tempfile

    from tradesim.backtest import Backtest
    from tradesim.recording import SessionRecorder

    bars = _btc_bench_bars(quick)
    with tempfile.TemporaryDirectory(prefix="tradesim-bench-") as tmp:
        return _cost_against_ema("session.recording_cost", "recording_cost", bars, quick, lambda i: Backtest(
            str(example_path()), bars).run(SessionRecorder(tmp, kind="backtest", name=f"r{i}")))


#: The EMA crossover's signals, entered by a limit order below the signal close (working up to 5
#: bars) and managed by a 1 % trailing stop: the orders benchmark's strategy.
ORDERS_BENCH_STRATEGY = """
name = "ema_limit_trailing"
params = {fast = 10, slow = 20}
local last_ts, pf, ps, cf, cs
local function observe(md, ind)
  if md.timestamp ~= last_ts then
    last_ts = md.timestamp
    pf, ps = cf, cs
    cf, cs = ind.ema(params.fast), ind.ema(params.slow)
  end
  local ready = pf and ps and cf and cs
  return ready and pf <= ps and cf > cs, ready and pf >= ps and cf < cs
end
function detect_opportunity(md, ctx, ind)
  local up = observe(md, ind)
  if up then return {reason = "ema_cross_up"} end
  return nil
end
function filter_commitment(md, ctx, ind)
  local _, down = observe(md, ind)
  if down then return {action = "cancel_analysis"} end
  if ind.order then return nil end
  return {action = "enter_long", limit_price = md.close * 0.999, expiry_bars = 5,
          trailing_percent = 1.0}
end
function manage_position(md, ctx, ind)
  local _, down = observe(md, ind)
  if down then return {action = "exit", reason = "ema_cross_down"} end
  return nil
end
"""


def _bench_orders(quick: bool) -> list[BenchResult]:
    """The EMA crossover example against the same signals entered by limit orders and managed
    by a trailing stop (`ORDERS_BENCH_STRATEGY`), interleaved on the same bars: the share of
    throughput the order machinery costs."""
    import tempfile
    from pathlib import Path

    from tradesim.backtest import Backtest

    bars = _btc_bench_bars(quick)

    def orders(_round: int) -> None:
        if not Backtest(str(script), bars).run().trades:
            raise RuntimeError("the orders benchmark strategy made no trade")

    with tempfile.TemporaryDirectory(prefix="tradesim-bench-") as tmp:
        script = Path(tmp) / "ema_limit_trailing.lua"
        script.write_text(ORDERS_BENCH_STRATEGY)
        return _cost_against_ema("backtest.orders_cost", "orders_cost", bars, quick, orders)


_SYNTHETIC_RUNNER = {"key": "BTCUSDT:ema_crossover", "symbol": "BTCUSDT", "strategy": "ema_crossover",
                     "script": "ema_crossover.lua", "sha256": "", "params": {}, "execution": {},
                     "window_size": 500, "feed": None, "options": {}}
#: The synthetic decisions' indicator layout (docs/sessions.md, ``outcomes``).
_SYNTHETIC_LAYOUT = [["ema:10", 0, 1, ["value"]], ["ema:20", 1, 1, ["value"]]]


def _synthetic_rows(ts: np.ndarray, bars_done: int, per_row: int = 11) -> list[tuple]:
    """Outcome rows for bars with open times `ts`: decision, opportunity, fill, decision, close, one
    row per `per_row` bars, as the EMA crossover on BTCUSDT 1m makes."""
    import struct

    nan = math.nan
    rows: list[tuple] = []
    for k in range(len(ts) // per_row):
        t = int(ts[k * per_row])
        values = struct.pack("<2d", 100.0 + k, 100.5)
        step = k % 5
        if step == 0:
            rows.append((0, t, 0, True, "ema_cross_up", 0, nan, nan, nan, nan, "", None, values))
        elif step == 1:
            rows.append((3, t, "ema_cross_up", {"setup": "cross"}))
        elif step == 2:
            rows.append((1, t, "long", 0.1, 100.0 + k, 0.0, "ema_cross_up"))
        elif step == 3:
            rows.append((0, t, 2, False, "", 2, nan, nan, nan, nan, "ema_cross_down", None, values))
        else:
            rows.append((2, t, "long", 0.1, t - 60_000, 100.0, t, 101.0, 0.1, 0.0, "ema_cross_down", False,
                         bars_done, bars_done + 1))
    return rows


def _synthetic_bars(rng, bars_done: int, n: int) -> dict[str, np.ndarray]:
    ts = 1_700_000_000_000 + 60_000 * (bars_done + np.arange(n, dtype=np.int64))
    close = 100.0 + np.cumsum(rng.normal(0, 0.1, n))
    return {"timestamp": ts, "open": close, "high": close + 0.05, "low": close - 0.05, "close": close,
            "volume": rng.random(n) * 10}


def synthetic_session(folder, n_events: int, runner: str = "BTCUSDT:ema_crossover"):
    """A session folder with about `n_events` events shaped like a recorded backtest's (session format
    2), written through `SessionRecorder`: per 16,384-bar chunk a ``bars`` event, an ``outcomes``
    event (`_synthetic_rows`) and a ``snapshot``. Every bar and every outcome counts as an event."""
    from tradesim.recording import SessionRecorder
    from tradesim.recording.recorder import BAR_COLUMNS, _shuffle

    rec = SessionRecorder(folder, kind="backtest", name="synthetic", fsync="never")
    rec.manifest["runners"] = [{**_SYNTHETIC_RUNNER, "key": runner}]
    rec.start()
    chunk = 16_384
    rng = np.random.default_rng(3)
    done, bars_done = 0, 0
    while done < n_events:
        cols = _synthetic_bars(rng, bars_done, chunk)
        ts = cols["timestamp"]
        event = {"type": "bars", "runner": runner, "symbol": "BTCUSDT", "start": bars_done, "count": chunk,
                 "time": int(ts[0]), "shuffled": True}
        for name, dtype in BAR_COLUMNS:
            event[name] = _shuffle(np.ascontiguousarray(cols[name], dtype=dtype))
        rec.append(event)
        rows = _synthetic_rows(ts, bars_done)
        rec.append({"type": "outcomes", "runner": runner, "symbol": "BTCUSDT", "strategy": "ema_crossover",
                    "time": rows[0][1], "count": len(rows), "indicators": _SYNTHETIC_LAYOUT, "rows": rows})
        rec.append({"type": "snapshot", "runner": runner, "timestamp": int(ts[-1]), "status": "running",
                    "state": "IDLE", "position": None, "pending_order": False, "context": {},
                    "indicators": {"ema:10": 100.0, "ema:20": 100.5}, "bars": bars_done + chunk,
                    "decisions": bars_done // 5, "trades": bars_done // 10, "cash": 10_000.0, "equity": 10_000.0})
        bars_done += chunk
        done += chunk + len(rows) + 1
    rec.finish()
    return rec.path


def synthetic_live_session(folder, n_events: int, runner: str = "BTCUSDT:ema_crossover"):
    """A session folder with about `n_events` events shaped like a recorded live run's: an event per
    ``bar`` (with its receive time), and the same outcomes as `synthetic_session`, each its own event
    (the events a live runner writes). Every event is one record of the log."""
    from tradesim.recording import SessionRecorder
    from tradesim.recording.outcomes import expand_outcomes

    class _Bar:   # what `SessionRecorder.bar` reads of a feed's bar
        __slots__ = ("symbol", "timestamp", "open", "high", "low", "close", "volume", "bid", "ask")

    rec = SessionRecorder(folder, kind="run", name="synthetic-live", fsync="never")
    rec.manifest["runners"] = [{**_SYNTHETIC_RUNNER, "key": runner, "feed": "binance"}]
    rec.start()
    rng = np.random.default_rng(3)
    chunk, done, bars_done = 16_384, 0, 0
    bar = _Bar()
    bar.symbol, bar.bid, bar.ask = "BTCUSDT", math.nan, math.nan   # a kline has no quote
    while done < n_events:
        cols = _synthetic_bars(rng, bars_done, chunk)
        rows = _synthetic_rows(cols["timestamp"], bars_done)
        batch = {"runner": runner, "symbol": "BTCUSDT", "strategy": "ema_crossover", "seq": 0,
                 "indicators": _SYNTHETIC_LAYOUT, "rows": rows}
        outcomes = {}
        for e in expand_outcomes(batch):
            for key in ("seq", "sub", "time"):
                e.pop(key, None)
            outcomes.setdefault(e["timestamp"], []).append(e)
        values = {name: cols[name].tolist() for name in cols}
        for i in range(chunk):
            for name in values:
                setattr(bar, name, values[name][i])
            rec.bar("binance", bar, recv_ms=bar.timestamp + 60_250)
            for e in outcomes.get(bar.timestamp, ()):
                rec.append(dict(e))
        bars_done += chunk
        done += chunk + len(rows)
    rec.finish()
    return rec.path


def read_session(path) -> int:
    """Read a session back as its readers do (`Session.events`: outcomes expanded to dicts, every
    ``bars`` event's columns decoded to arrays); returns the events read (a bar counts as one)."""
    from tradesim.recording.recorder import bar_columns
    from tradesim.sessions import open_session

    count = 0
    for event in open_session(path).events():
        if event["type"] == "bars":
            count += len(bar_columns(event)["timestamp"])
        else:
            count += 1
    return count


def _bench_session_log(quick: bool) -> list[BenchResult]:
    """Reading a session's log back (a backtest's and a live run's), and `inspect --seq` (open, seek,
    state) on a long one."""
    import tempfile

    from tradesim.sessions import open_session
    from tradesim.sessions.inspect import state_at
    from tradesim.sessions.session import OUTCOME_TYPES

    n = 1_000_000 if quick else 10_000_000
    n_live = 1_000_000 if quick else 3_000_000
    rounds = 2 if quick else 3
    with tempfile.TemporaryDirectory(prefix="tradesim-bench-") as tmp:
        path = synthetic_session(Path(tmp) / "backtest", n)
        live = synthetic_live_session(Path(tmp) / "live", n_live)
        rates, outcome_rates, live_rates = [], [], []
        for _ in range(rounds):
            t0 = time.perf_counter()
            count = read_session(path)
            rates.append(count / (time.perf_counter() - t0))
            t0 = time.perf_counter()   # the outcomes alone, as dicts (compare and replay read these)
            count = sum(1 for _ in open_session(path).events(types=OUTCOME_TYPES))
            outcome_rates.append(count / (time.perf_counter() - t0))
            t0 = time.perf_counter()   # a live run's log: every event a record, read as a dict
            count = sum(1 for _ in open_session(live).events())
            live_rates.append(count / (time.perf_counter() - t0))
        rng = np.random.default_rng(7)
        times = []
        last = open_session(path).log.last_seq   # (log records: a chunk of bars or outcomes is one)
        for seq in rng.integers(1, last + 1, 10 if quick else 30):
            t0 = time.perf_counter_ns()
            state_at(open_session(path), int(seq))   # a fresh open each time, as the command does
            times.append(time.perf_counter_ns() - t0)
    read, inspect = BUDGETS["session_log_read"], BUDGETS["inspect_seq"]
    ns = np.array(times, dtype=float)

    def rate(name: str, values: list[float], budget: bool) -> BenchResult:
        p50 = float(np.median(values))
        return BenchResult(name, 1e9 / p50, 1e9 / min(values), 1e9 / min(values), p50, "ns",
                           1e9 / read.limit if budget else None,   # (2 M events/s: <= 500 ns an event)
                           read.passes(p50) if budget else None, len(values))

    return [rate(f"session.read_events.{n // 1_000_000}M", rates, True),
            rate(f"session.read_live_events.{n_live // 1_000_000}M", live_rates, True),
            rate(f"session.read_outcome_events.{n // 1_000_000}M", outcome_rates, False),
            BenchResult(f"session.inspect_seq.{n // 1_000_000}M_events", float(np.median(ns)),
                        float(np.percentile(ns, 99)), float(ns.max()), 1e9 / float(np.median(ns)), "ns",
                        inspect.limit, inspect.passes(float(np.percentile(ns, 99))), len(ns))]


def _bench_engine_scale(quick: bool) -> list[BenchResult]:
    from tradesim.bench.live import engine_scale

    res = engine_scale(1000, 3 if quick else 10)
    budget = BUDGETS["engine_1000_runners_cpu"]
    cpu = res["cpu_percent"]
    return [BenchResult("engine.1000_runners_1_bar_per_s", cpu, cpu, cpu, res["bars"], "% core",
                        budget.limit, budget.passes(cpu) and res["failed"] == 0, 1)]


def _bench_runner_memory(quick: bool) -> list[BenchResult]:
    from tradesim.bench.live import runner_memory

    res = runner_memory(200 if quick else 1000)
    budget = BUDGETS["runner_memory"]
    kb = res["kb_per_runner"]
    return [BenchResult("engine.memory_per_runner", kb, kb, kb, 0.0, "KB", budget.limit,
                        budget.passes(kb), int(res["runners"]))]


def _bench_live_latency(quick: bool) -> list[BenchResult]:
    """Frame -> decision over loopback: busy-poll mode (the budget) and the default, parking mode."""
    from tradesim.bench.live import BUSY_POLL_US, live_latency

    out = []
    for mode, busy_poll_us in (("busy_poll", BUSY_POLL_US), ("parked", 0.0)):
        res = live_latency(1000 if quick else 5000, busy_poll_us=busy_poll_us)
        ns = res["ns"]
        if not len(ns):
            raise RuntimeError("live latency: no bar reached a decision (is the loopback server up?)")
        for key, q in (("live_latency_p50", 50), ("live_latency_p99", 99)):
            budget = BUDGETS[key] if mode == "busy_poll" else None
            value = float(np.percentile(ns, q))
            out.append(BenchResult(f"live.frame_to_decision_p{q}.{mode}", value, float(np.percentile(ns, 99)),
                                   float(ns.max()), 1e9 / float(np.median(ns)), "ns",
                                   budget.limit if budget else None,
                                   budget.passes(value) if budget else None, len(ns)))
        # The host's speed around the run (a fixed Python loop; lower is faster): on a shared
        # VM it can halve for a while, and the latencies with it.
        speeds = sorted((res["host_ms_before"], res["host_ms_after"]))
        out.append(BenchResult(f"live.host_loop_ms.{mode}", speeds[0], speeds[1], speeds[1],
                               1e3 / speeds[0], "ms", None, None, 2))
    return out


#: name -> benchmark function, in the order they run.
OPERATIONS: dict[str, Callable[[bool], list[BenchResult]]] = {
    "window": _bench_window_push,
    "indicators": _bench_indicators,
    "batch": _bench_batch,
    "state_machine": _bench_state_machine,
    "lua": _bench_lua_call,
    "bar_to_decision": _bench_bar_to_decision,
    "kline": _bench_kline_frame,
    "backtest": _bench_backtest,
    "orders": _bench_orders,
    "recording": _bench_recording,
    "session_log": _bench_session_log,
    "live_latency": _bench_live_latency,
    "engine_scale": _bench_engine_scale,
    "runner_memory": _bench_runner_memory,
}


def environment() -> dict:
    """Machine and library versions recorded with every run."""
    def version(dist: str) -> str:
        try:
            return metadata.version(dist)
        except metadata.PackageNotFoundError:
            return "not installed"

    import os

    try:
        from tradesim._core import _build_info

        cython, compiler = _build_info.CYTHON_VERSION, _build_info.C_COMPILER
    except ImportError:  # a source tree without a CMake build
        cython, compiler = version("cython"), "unknown"
    return {"machine": platform.machine(), "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(), "platform": platform.platform(), "python": platform.python_version(),
            "tradesim": version("tradesim"), "cython": cython, "c_compiler": compiler,
            "numpy": version("numpy"),
            "lupa": version("lupa")}


def run_benchmarks(names: list[str] | None = None, quick: bool = False,
                   progress: Callable[[str], None] | None = None) -> list[BenchResult]:
    """Run the selected operation groups (all by default)."""
    results: list[BenchResult] = []
    for name, fn in OPERATIONS.items():
        if names and name not in names:
            continue
        if progress:
            progress(name)
        results.extend(fn(quick))
    return results


def budget_table() -> list[Budget]:
    return list(BUDGETS.values())
