"""The runner page's 10,000-candle chart draw, two versions of the dashboard interleaved in one run.

    python benches/serve_chart_ab.py [--before main] [--rounds 12]

Serves one runner with a 10,000-bar window (as ``serve_load.py`` does) and loads its page in
headless Chromium, alternating the dashboard's ``app.js`` / ``app.css`` of git ref `--before`
with the working tree's (the browser gets them by request interception; everything else is the
same server). Each load reports ``#chart[data-draw-ms]`` (``setData`` to two animation frames
later). On a shared, noisy machine compare the per-round ratios, not single figures.
Prints one JSON document.
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).parent))
import serve_load  # noqa: E402

STATIC = "src/tradesim/serve/static"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--before", default="main", help="git ref of the 'before' dashboard")
    ap.add_argument("--rounds", type=int, default=12)
    a = ap.parse_args()
    root = Path(__file__).resolve().parent.parent
    versions = {
        "before": {name: subprocess.run(["git", "show", f"{a.before}:{STATIC}/{name}"], cwd=root, check=True,
                                        capture_output=True, text=True).stdout for name in ("app.js", "app.css")},
        "after": {name: (root / STATIC / name).read_text() for name in ("app.js", "app.css")},
    }
    chromium = shutil.which("chromium")
    import httpx
    from playwright.sync_api import sync_playwright

    server, stop = serve_load._server(1, 0, feed_bars=10_500, window=10_000)
    draws: dict[str, list[float]] = {name: [] for name in versions}
    try:
        while server.engine.health()["feeds"]["sim"]["status"] != "ended":
            time.sleep(0.2)
        url = f"http://127.0.0.1:{server.port}"
        with httpx.Client(base_url=url) as c:
            cookies = c.get(f"/login?code={server.tokens.one_time_code()}").cookies
        page_url = f"{url}/#/runner/{quote(server.engine.runner_ids[0], safe='')}"
        args = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--no-first-run"]
        with sync_playwright() as p:
            browser = p.chromium.launch(executable_path=chromium, args=args)
            ctx = browser.new_context(viewport={"width": 1280, "height": 900})
            ctx.add_cookies([{"name": k, "value": v, "url": url} for k, v in cookies.items()])
            page = ctx.new_page()
            current: dict[str, str] = {}
            def serve(name: str, ctype: str):
                return lambda route: route.fulfill(status=200, content_type=ctype, body=current[name])
            for name, ctype in (("app.js", "text/javascript"), ("app.css", "text/css")):
                page.route(f"**/static/{name}", serve(name, ctype))
            for files in versions.values():   # warm-up (caches, JIT), not counted
                current.update(files)
                page.goto(page_url)
                page.wait_for_selector("#chart[data-draw-ms]", timeout=60_000)
                page.goto("about:blank")
            for _ in range(a.rounds):
                for name, files in versions.items():
                    current.update(files)
                    page.goto("about:blank")
                    page.goto(page_url)
                    page.wait_for_selector("#chart[data-draw-ms]", timeout=60_000)
                    draws[name].append(float(page.get_attribute("#chart", "data-draw-ms")))
            browser.close()
    finally:
        stop()
    ratios = [b / a for a, b in zip(draws["before"], draws["after"])]
    print(json.dumps({
        "before": a.before, "rounds": a.rounds,
        "draw_ms": {name: {"median": statistics.median(xs), "min": min(xs), "max": max(xs), "all": xs}
                    for name, xs in draws.items()},
        "after_over_before": {"median": statistics.median(ratios), "min": min(ratios), "max": max(ratios),
                              "all": [round(r, 3) for r in ratios]},
    }, indent=1))


if __name__ == "__main__":
    main()
