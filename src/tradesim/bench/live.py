"""Measurements of the live engine, shared by `tradesim bench` and ``benches/bench_engine.py``.

* `engine_scale`: N runners each fed one bar per second; CPU used, as % of one core.
* `runner_memory`: resident memory per runner (500-bar window full, Lua runtime, 5 indicators).
* `live_latency`: a kline frame sent by a loopback WebSocket server in another process ->
  the runner's decision, through `BinanceFeed` and the engine; per-bar latencies in ns.
  The server completes a websockets handshake, then a plain thread writes pre-framed
  messages on schedule (``server="websockets"`` sends them through websockets instead).
* `host_speed_ms`: a fixed Python loop, timed, to see how fast the host is right now.

The latency clock is CLOCK_MONOTONIC (``time.perf_counter_ns`` on Linux), which both
processes share. The main figure starts when the frame's bytes reach the client's
``data_received`` and ends at the runner's decision: frame recognition, parsing, the
hand-off to the worker thread and the strategy call. A second figure starts at the
server's send and adds the kernel's loopback and the event loop's wake-up.
"""

from __future__ import annotations

import asyncio
import functools
import gc
import math
import os
import resource
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["BUSY_POLL_US", "engine_scale", "host_speed_ms", "live_latency", "rss_kb", "runner_memory",
           "five_indicator_strategy"]

#: Spin per idle wait in the latency benchmark's busy-poll mode (µs): longer than the
#: 2 ms between frames, so the loop and the worker never park while frames flow.
BUSY_POLL_US = 1_000_000.0

_FIVE = """-- five indicators every bar (bench)
name = "five_indicators"
function detect_opportunity(md, ctx, ind)
  local sma, ema, rsi = ind.sma(50), ind.ema(20), ind.rsi(14)
  local macd, signal = ind.macd(12, 26, 9)
  local upper, middle, lower = ind.bollinger(20, 2)
  if sma and ema and rsi and macd and lower and ema > sma and rsi < 35 and md.close < lower then
    return {reason = "dip_in_uptrend"}
  end
  return nil
end
function filter_commitment(md, ctx, ind)
  return {action = "enter_long", quantity = 0.01, reason = ctx.reason}
end
function manage_position(md, ctx, ind)
  local upper, middle, lower = ind.bollinger(20, 2)
  if middle and md.close >= middle then return {action = "exit", reason = "middle_band"} end
  return nil
end
"""


def five_indicator_strategy(folder: Path) -> Path:
    """Write the benchmark strategy (SMA, EMA, RSI, MACD, Bollinger every bar) into `folder`."""
    path = Path(folder) / "five_indicators.lua"
    path.write_text(_FIVE)
    return path


def rss_kb() -> float:
    """Resident set size of this process, KB."""
    with open("/proc/self/statm") as fh:
        pages = int(fh.read().split()[1])
    return pages * os.sysconf("SC_PAGE_SIZE") / 1024


def _walk_bars(n: int, seed: int) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.002, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    spread = np.abs(rng.normal(0, 0.001, n))
    return {"timestamp": 60_000 * np.arange(1, n + 1, dtype=np.int64), "open": open_,
            "high": np.maximum(open_, close) * (1 + spread), "low": np.minimum(open_, close) * (1 - spread),
            "close": close, "volume": rng.gamma(2.0, 5.0, n)}


def runner_memory(n_runners: int = 1000, window: int = 500) -> dict[str, float]:
    """RSS growth per runner, KB, with every window full and all five indicators live.

    Measured in a fresh interpreter: memory this process freed earlier would
    otherwise be reused and hide the growth. Each runner gets its own strategy
    instance (Lua runtime) and processes `window` bars so its window and
    indicators hold real data.
    """
    import json

    code = (f"import json; from tradesim.bench.live import _runner_memory; "
            f"print(json.dumps(_runner_memory({int(n_runners)}, {int(window)})))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def _runner_memory(n_runners: int, window: int, folder: Path | None = None) -> dict[str, float]:
    import tempfile

    from tradesim.engine.trading_engine import DEFAULT_HISTORY_LIMIT
    from tradesim.runner import SymbolRunner

    # built as the engine builds its runners (their history bounded)
    make = functools.partial(SymbolRunner, window_size=window, history_limit=DEFAULT_HISTORY_LIMIT)
    with tempfile.TemporaryDirectory() as tmp:
        script = five_indicator_strategy(Path(folder or tmp))
        bars = _walk_bars(window, 7)
        rows = list(zip(bars["timestamp"].tolist(), bars["open"].tolist(), bars["high"].tolist(),
                        bars["low"].tolist(), bars["close"].tolist(), bars["volume"].tolist()))
        # one runner first: imports, the allocator's first arenas, code objects
        warm = make("WARMUSDT", script)
        for r in rows:
            warm.core.process_values(*r)
        gc.collect()
        before = rss_kb()
        runners = []
        for i in range(n_runners):
            runner = make(f"S{i:04d}USDT", script)
            for r in rows:
                runner.core.process_values(*r)
            runners.append(runner)
        gc.collect()
        after = rss_kb()
        lua_kb = sum(r.strategy.memory_used() for r in runners) / n_runners / 1024
        assert all(len(r.bank.keys()) >= 5 and len(r.window) == window for r in runners)
    return {"kb_per_runner": (after - before) / n_runners, "lua_kb_per_runner": lua_kb,
            "runners": n_runners}


class _TickFeed:
    """One bar per symbol every `period` s (a live-like feed for the scale test)."""

    live = True

    def __init__(self, symbols: list[str], ticks: int, period: float = 1.0) -> None:
        self.symbols = tuple(symbols)
        self.ticks = ticks
        self.period = period
        self.bars = _walk_bars(ticks + 1, 3)

    async def __aiter__(self):
        from tradesim._core import MarketData

        b = self.bars
        start = time.monotonic()
        for k in range(self.ticks):
            delay = start + k * self.period - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            args = (int(b["timestamp"][k]), float(b["open"][k]), float(b["high"][k]),
                    float(b["low"][k]), float(b["close"][k]), float(b["volume"][k]))
            for sym in self.symbols:
                yield MarketData(sym, *args)
                await asyncio.sleep(0)  # like a socket: other work runs between messages


def engine_scale(n_runners: int = 1000, seconds: int = 10, script: Path | None = None) -> dict[str, float]:
    """CPU share of one core while `n_runners` runners each get one bar per second.

    The first tick (strategies' first calls, indicator creation) is excluded.
    """
    from tradesim.engine import TradingEngine
    from tradesim.strategy.examples import example_path

    script = script or example_path()
    feed = _TickFeed([f"S{i:04d}USDT" for i in range(n_runners)], seconds + 2)
    engine = TradingEngine(workers=2)
    engine.add_feed(feed, "ticks")
    for sym in feed.symbols:
        engine.add_runner(sym, script)
    marks: dict[str, float] = {}

    async def main() -> None:
        async def sample() -> None:
            await asyncio.sleep(1.5)   # after the first tick
            marks["cpu0"], marks["t0"] = _cpu(), time.monotonic()
            await asyncio.sleep(seconds)
            marks["cpu1"], marks["t1"] = _cpu(), time.monotonic()
        task = asyncio.create_task(sample())
        await engine.run()
        await task

    asyncio.run(main())
    bars = sum(engine.runner_health(r)["bars"] for r in engine.runner_ids)
    cpu = (marks["cpu1"] - marks["cpu0"]) / (marks["t1"] - marks["t0"]) * 100
    failed = engine.health()["by_status"]["failed"]
    return {"cpu_percent": cpu, "runners": n_runners, "bars": bars, "failed": failed}


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


# -- latency -----------------------------------------------------------------------------

# The loopback server, run as `python -c _SERVER N PERIOD LINGER MODE`. MODE "framed": after
# the websockets handshake a plain thread writes pre-framed messages on schedule, so the
# stand-in for a remote Binance costs this machine a send() per frame. MODE "websockets":
# the same messages through websockets' send, a Python WebSocket stack whose CPU time per
# send lands on the two cores the client uses, at the moment the client handles the frame
# (the measurement before "framed"; kept for comparison).
_SERVER = r"""
import asyncio, json, struct, sys, threading, time
import websockets
N, PERIOD, LINGER, MODE = int(sys.argv[1]), float(sys.argv[2]), float(sys.argv[3]), sys.argv[4]
FRAME = ('{"stream":"btcusdt@kline_1m","data":{"e":"kline","E":%d,"s":"BTCUSDT","k":{"t":%d,'
         '"T":%d,"s":"BTCUSDT","i":"1m","f":1,"L":2,"o":"%s","c":"%s","h":"%s","l":"%s",'
         '"v":"5.21006000","n":1831,"x":true,"q":"565334.99","V":"3.03","Q":"329823.87","B":"0"}}}')

def messages():
    # (open time, kline message): a zigzag price, so the strategy trades every 14 bars
    out, t0, price = [], 1_751_897_340_000, 108_000.0
    for i in range(N):
        t = t0 + 60_000 * i
        o = price; c = price * (1.0005 if (i // 7) % 2 else 0.9995); price = c
        h, l = max(o, c) * 1.0002, min(o, c) * 0.9998
        out.append((t, FRAME % (t + 60_000, t, t + 59_999, f"{o:.2f}", f"{c:.2f}", f"{h:.2f}", f"{l:.2f}")))
    return out

def framed(text):
    # an unmasked FIN text frame, as Binance sends them
    body = text.encode()
    head = bytes([0x81, len(body)]) if len(body) < 126 else struct.pack("!BBH", 0x81, 126, len(body))
    return head + body

def pace(sock, out, sent):
    clock, start = time.perf_counter, time.perf_counter() + PERIOD
    for i, (t, data) in enumerate(out):
        delay = start + i * PERIOD - clock()
        if delay > 0:
            time.sleep(delay)
        sent.append((t, time.perf_counter_ns()))
        sock.sendall(data)

async def handler(ws):
    sent = []
    if MODE == "framed":
        out = [(t, framed(text)) for t, text in messages()]
        sock = ws.transport.get_extra_info("socket").dup()
        sock.setblocking(True)
        thread = threading.Thread(target=pace, args=(sock, out, sent))
        thread.start()
        await asyncio.to_thread(thread.join)
    else:
        for t, text in messages():
            await asyncio.sleep(PERIOD)
            sent.append((t, time.perf_counter_ns()))
            await ws.send(text)
    print(json.dumps(sent), flush=True)
    await asyncio.sleep(LINGER)

async def main():
    options = dict(ping_interval=None, compression=None) if MODE == "framed" else dict(ping_interval=20)
    async with websockets.serve(handler, "127.0.0.1", 0, **options) as server:
        print(server.sockets[0].getsockname()[1], flush=True)
        await asyncio.sleep(LINGER)
asyncio.run(main())
"""


def _arrival_stamping(arrived: dict[int, int]):
    """A websockets client connection class that stamps when each kline's bytes reach the socket.

    Measurement only: ``data_received`` is where the client first sees a frame's bytes
    (before websockets' framing, the feed's parsing and everything after). The kline's
    open time is read from the bytes to key the stamp.
    """
    from tradesim.feeds.binance import FrameConnection

    clock = time.perf_counter_ns

    class Stamping(FrameConnection):
        def data_received(self, data: bytes) -> None:
            now = clock()
            super().data_received(data)
            # keyed after the hand-off, so the bookkeeping isn't counted in the latency
            at = data.find(b'"t":')
            while at >= 0:
                end = data.find(b",", at)
                arrived.setdefault(int(data[at + 4:end]), now)
                at = data.find(b'"t":', end)

    return Stamping


def host_speed_ms(loops: int = 3) -> float:
    """Time of a fixed pure-Python loop (300k additions), best of `loops`, in ms.

    A yardstick for the host's speed at the moment: on a shared VM it changes by
    up to 2x from minute to minute, and latencies measured then move with it.
    """
    best = math.inf
    for _ in range(loops):
        t0 = time.perf_counter()
        x = 0
        for j in range(300_000):
            x += j
        best = min(best, time.perf_counter() - t0)
    return best * 1e3


def live_latency(frames: int = 3000, period: float = 0.002, script: Path | None = None,
                 busy_poll_us: float = 0.0, server: str = "framed") -> dict[str, Any]:
    """Kline frame -> runner decision through `BinanceFeed` and the engine, per bar, in ns.

    ``busy_poll_us`` > 0 measures the engine's low-latency mode (event loop and
    worker spin instead of parking; see `TradingEngine`).

    Two figures: from the frame's bytes reaching the client socket (``p50_ns``,
    ``p99_ns``: the issue's "frame arriving at the client") and from the server
    process's send (``sent_p50_ns``, ``sent_p99_ns``: adds the server's and the
    kernel's share). Returns the arrival-based latencies as ``"ns"``, and
    `host_speed_ms` before and after the run (``host_ms_before``, ``host_ms_after``).

    ``server="framed"`` (default): the server thread writes pre-framed
    messages on schedule, costing this machine a ``send()`` per frame, as a
    remote Binance would cost it nothing. ``server="websockets"``: the same
    frames through a websockets server, whose Python send path competes with
    the client for the same two cores (the figure before, for comparison).

    Raises
    ------
    ValueError
        `server` is neither "framed" nor "websockets".
    """
    if server not in ("framed", "websockets"):
        raise ValueError(f"server = {server!r}: expected 'framed' or 'websockets'")
    from tradesim.engine import TradingEngine
    from tradesim.feeds.binance import BinanceFeed
    from tradesim.strategy.examples import example_path

    script = script or example_path()
    budget_s = frames * period * 3 + 20
    arrived: dict[int, int] = {}
    host_before = host_speed_ms()
    proc = subprocess.Popen([sys.executable, "-c", _SERVER, str(frames), str(period), str(budget_s), server],
                            stdout=subprocess.PIPE, text=True)
    try:
        port = int(proc.stdout.readline())
        url = f"ws://127.0.0.1:{port}"
        # max_clock_skew=None: the frames carry 2025 event times, not a skewed clock
        feed = BinanceFeed(["BTCUSDT"], "1m", base_url=url, rest_url=f"http://127.0.0.1:{port}",
                           max_clock_skew=None)
        feed.connection_class = _arrival_stamping(arrived)
        engine = TradingEngine(workers=1, busy_poll_us=busy_poll_us)
        engine.add_feed(feed, "binance")
        rid = engine.add_runner("BTCUSDT", script)
        decided: dict[int, int] = {}
        engine._runners[rid].on_processed = lambda h, done: decided.__setitem__(h.last_bar_time, done)

        async def main() -> None:
            task = asyncio.create_task(engine.run())
            deadline = time.monotonic() + budget_s
            while len(decided) < frames and time.monotonic() < deadline and not task.done():
                await asyncio.sleep(0.05)
            engine.stop()
            await task

        with asyncio.Runner(loop_factory=engine.new_event_loop) as runner:
            runner.run(main())
        out = proc.stdout.readline()   # the server's send times, printed after its last frame
    finally:
        proc.kill()
        proc.wait()
    import json

    host_after = host_speed_ms()
    sent = dict(json.loads(out)) if out.strip() else {}
    both = sorted(t for t in sent if t in decided and t in arrived)
    lat = np.array([decided[t] - arrived[t] for t in both], dtype=float)[100:]
    from_send = np.array([decided[t] - sent[t] for t in both], dtype=float)[100:]
    host = {"host_ms_before": host_before, "host_ms_after": host_after}
    if not len(lat):
        return {"p50_ns": math.nan, "p99_ns": math.nan, "bars": 0, "ns": lat, **host}
    return {"p50_ns": float(np.median(lat)), "p99_ns": float(np.percentile(lat, 99)),
            "max_ns": float(lat.max()), "sent_p50_ns": float(np.median(from_send)),
            "sent_p99_ns": float(np.percentile(from_send, 99)), "bars": len(both), "ns": lat, **host}
