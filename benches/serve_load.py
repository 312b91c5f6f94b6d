"""Load benchmark of ``tradesim serve`` (docs/serve.md, "Speed").

    python benches/serve_load.py [--runners 100] [--bars-per-s 10] [--seconds 10] [--rounds 2]

One process runs the server (engine + uvicorn on one loop) with `--runners` runners, one per
simulated symbol, each fed `--bars-per-s` bars/s; with `--record DIR` the run is recorded (the
WebSocket stream is then the session log, docs/serve.md). Client load runs in separate processes (so it
does not share the server's GIL):

* REST: p50/p99 of ``GET /api/runners/{id}/snapshot`` and ``GET /api/engine/summary``
  (sequential requests, client-side wall time, HTTP included).
* WebSocket fan-out: 10 clients on ``/api/events`` for `--seconds`; events/s received.
* bar -> decision latency (feed arrival -> the runner's call done, the engine's own ``lag_ms``
  per processed bar): p50/p99 in windows without clients and with the 10 clients, alternated
  `--rounds` times in the same run.
* Dashboard (headless Chromium via Playwright, when available): time to the runner table drawn
  with all runners, first contentful paint, and the time to draw a 10,000-candle chart
  (``setData`` to two animation frames later).

Prints one JSON document.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import subprocess
import sys
import threading
import time

import numpy as np

TOKEN = "bench-token-0123456789abcdef"


def _client_rest(port: int, n: int, ids: list[str]) -> None:
    import httpx

    out = {}
    with httpx.Client(base_url=f"http://127.0.0.1:{port}", headers={"Authorization": f"Bearer {TOKEN}"}) as c:
        for name, path in (("snapshot", None), ("summary", "/api/engine/summary"), ("runners", "/api/runners")):
            times = []
            for i in range(n + 20):
                url = path or f"/api/runners/{ids[i % len(ids)]}/snapshot"
                t0 = time.perf_counter()
                resp = c.get(url)
                dt = (time.perf_counter() - t0) * 1000
                assert resp.status_code == 200, resp.text
                if i >= 20:
                    times.append(dt)
            out[name] = {"p50_ms": float(np.percentile(times, 50)), "p99_ms": float(np.percentile(times, 99)),
                         "n": len(times)}
    print(json.dumps(out))


def _client_ws(port: int, clients: int, seconds: float) -> None:
    import websockets

    counts = [0] * clients

    async def one(i: int) -> None:
        async with websockets.connect(f"ws://127.0.0.1:{port}/api/events",
                                      additional_headers={"Authorization": f"Bearer {TOKEN}"},
                                      max_size=None) as ws:
            await ws.recv()
            end = time.monotonic() + seconds
            while time.monotonic() < end:
                try:
                    msg = await asyncio.wait_for(ws.recv(), max(0.01, end - time.monotonic()))
                except TimeoutError:
                    break
                batch = json.loads(msg)
                counts[i] += sum(1 for e in batch if e.get("type") != "subscriber_dropped")

    async def main() -> None:
        await asyncio.gather(*(one(i) for i in range(clients)))
    t0 = time.monotonic()
    asyncio.run(main())
    took = time.monotonic() - t0
    print(json.dumps({"clients": clients, "seconds": took, "events": counts,
                      "per_client_per_s": [c / seconds for c in counts], "total_per_s": sum(counts) / seconds}))


def _server(runners: int, bars_per_s: float, feed_bars: int | None = None, window: int = 500,
            record: str | None = None):
    from tradesim.engine.config import parse_config
    from tradesim.serve.security import Tokens
    from tradesim.serve.server import Server, build
    from tradesim.strategy.examples import example_path

    symbols = [f"S{i:03d}USDT" for i in range(runners)]
    config = parse_config({"engine": {"workers": 2},
                           "feeds": {"sim": {"type": "simulated", "symbols": symbols, "bars": feed_bars or 0,
                                             "speed": 60.0 * bars_per_s}},
                           "runners": [{"symbol": s, "strategy": str(example_path("ema_crossover")), "feed": "sim",
                                        "window_size": window} for s in symbols]}, "bench")
    engine, recorder, _ = build(config, record_dir=record)
    server = Server(engine, port=0, tokens=Tokens(TOKEN), say=lambda t: None, recorder=recorder)
    holder: dict = {}

    def run() -> None:
        async def main() -> None:
            holder["loop"] = asyncio.get_running_loop()
            await server.run(install_signals=False)
        asyncio.run(main())
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    while not server.started.is_set():
        time.sleep(0.05)

    def stop() -> None:
        holder["loop"].call_soon_threadsafe(server.stop)
        thread.join(30)
    return server, stop


def _lags(engine, seconds: float) -> list[float]:
    samples: list[float] = []
    handles = [engine._handle(r) for r in engine.runner_ids]   # (bench only: the engine's inbox hook)
    for h in handles:
        h.on_processed = lambda handle, done_ns: samples.append(handle.last_lag_ms)
    time.sleep(seconds)
    for h in handles:
        h.on_processed = None
    return samples


def _pct(xs: list[float]) -> dict:
    if not xs:
        return {"n": 0}
    return {"n": len(xs), "p50_ms": float(np.percentile(xs, 50)), "p99_ms": float(np.percentile(xs, 99)),
            "max_ms": float(np.max(xs))}


def _browser(url_login: str, port: int, code_for, chart_url: str | None) -> dict:
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "playwright not installed"}
    if chromium is None:
        return {"skipped": "chromium not installed"}
    out: dict = {}
    args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
            "--disable-background-networking", "--disable-component-update", "--disable-sync", "--no-first-run"]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=args)
        ctx = browser.new_context(bypass_csp=True, viewport={"width": 1280, "height": 900})
        page = ctx.new_page()
        firsts = []
        for _ in range(3):
            page.goto(url_login(code_for()))
            page.wait_for_selector("body[data-ready='overview']", timeout=60_000)
            rendered = page.evaluate("performance.getEntriesByName('runners-rendered')[0].startTime")
            fcp = page.evaluate("(performance.getEntriesByName('first-contentful-paint')[0] || {}).startTime")
            rows = page.locator("#runners tbody tr").count()
            firsts.append({"table_ms": rendered, "fcp_ms": fcp, "rows": rows})
        out["overview"] = firsts
        if chart_url:
            draws = []
            for _ in range(3):
                page.goto(chart_url)
                page.wait_for_selector("#chart[data-draw-ms]", timeout=60_000)
                draws.append({"candles": int(page.get_attribute("#chart", "data-candles")),
                              "draw_ms": float(page.get_attribute("#chart", "data-draw-ms"))})
            out["chart"] = draws
        browser.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runners", type=int, default=100)
    ap.add_argument("--bars-per-s", type=float, default=10.0)
    ap.add_argument("--seconds", type=float, default=10.0)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--clients", type=int, default=10)
    ap.add_argument("--record", metavar="DIR", help="record the run as a session in DIR (the stream is then the log)")
    ap.add_argument("--no-browser", action="store_true", help="skip the dashboard measures")
    ap.add_argument("--client", choices=["rest", "ws"], help=argparse.SUPPRESS)
    ap.add_argument("--port", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--ids", help=argparse.SUPPRESS)
    a = ap.parse_args()
    if a.client == "rest":
        return _client_rest(a.port, 500, a.ids.split(","))
    if a.client == "ws":
        return _client_ws(a.port, a.clients, a.seconds)

    server, stop = _server(a.runners, a.bars_per_s, record=a.record)
    engine = server.engine
    result: dict = {"runners": a.runners, "bars_per_s_each": a.bars_per_s, "clients": a.clients}
    try:
        time.sleep(3)   # warm-up: windows fill, workers settle
        me = [sys.executable, __file__, "--port", str(server.port)]
        rest = subprocess.run(me + ["--client", "rest", "--ids", ",".join(engine.runner_ids)],
                              capture_output=True, text=True, check=True)
        result["rest"] = json.loads(rest.stdout)
        without, with_clients, fanout = [], [], []
        for _ in range(a.rounds):
            without += _lags(engine, a.seconds)
            proc = subprocess.Popen(me + ["--client", "ws", "--clients", str(a.clients), "--seconds", str(a.seconds)],
                                    stdout=subprocess.PIPE, text=True)
            time.sleep(1.0)   # clients connected
            with_clients += _lags(engine, a.seconds - 2)
            fanout.append(json.loads(proc.communicate()[0]))
        result["lag_without_clients"] = _pct(without)
        result["lag_with_clients"] = _pct(with_clients)
        result["ws"] = [{"total_per_s": f["total_per_s"], "min_client_per_s": min(f["per_client_per_s"])}
                        for f in fanout]
        result["ws_dropped_clients"] = server.state.broadcaster.dropped_clients
        result["bus_events_published"] = engine.bus.seq
        result["stream_numbering"] = server.state.broadcaster.numbering
        if not a.no_browser:
            url = f"http://127.0.0.1:{server.port}"
            chart_server, chart_stop = _server(1, 0, feed_bars=10_500, window=10_000)
            try:
                while chart_server.engine.health()["feeds"]["sim"]["status"] != "ended":
                    time.sleep(0.2)
                curl = f"http://127.0.0.1:{chart_server.port}"
                code = chart_server.tokens.one_time_code()
                import httpx
                with httpx.Client(base_url=curl, follow_redirects=False) as c:
                    cookie = c.get(f"/login?code={code}").cookies
                result["browser"] = _browser(lambda code: f"{url}/login?code={code}", server.port,
                                             server.tokens.one_time_code, None)
                result["browser"]["chart"] = _browser_chart(curl, cookie, chart_server.engine.runner_ids[0])
            finally:
                chart_stop()
    finally:
        stop()
    print(json.dumps(result, indent=1))


def _browser_chart(url: str, cookies, runner_id: str) -> list[dict] | dict:
    chromium = shutil.which("chromium")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        return {"skipped": "playwright not installed"}
    if chromium is None:
        return {"skipped": "chromium not installed"}
    from urllib.parse import quote

    args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
    draws = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=chromium, args=args)
        ctx = browser.new_context(viewport={"width": 1280, "height": 900})
        ctx.add_cookies([{"name": k, "value": v, "url": url} for k, v in cookies.items()])
        page = ctx.new_page()
        for _ in range(3):
            page.goto(f"{url}/#/runner/{quote(runner_id, safe='')}")
            page.wait_for_selector("#chart[data-draw-ms]", timeout=60_000)
            draws.append({"candles": int(page.get_attribute("#chart", "data-candles")),
                          "draw_ms": float(page.get_attribute("#chart", "data-draw-ms"))})
            page.goto("about:blank")
        browser.close()
    return draws


if __name__ == "__main__":
    main()
