"""The dashboard in a real browser: Playwright driving Debian's Chromium (/usr/bin/chromium, no
browser download; skipped when either is missing). Asserts on the page, not on pixels; screenshots
go to the test's tmp folder. Every wait is on a condition with a generous timeout."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from tradesim.engine.config import parse_config
from tradesim.serve.security import Tokens
from tradesim.serve.server import Server, build
from tradesim.serve.strategies import StrategyCatalog

from .conftest import TOKEN, LiveServer, make_server, strategies_folder, wait_for

CHROMIUM = next((p for p in map(shutil.which, ("chromium", "chromium-browser")) if p), None)
pytestmark = pytest.mark.skipif(CHROMIUM is None, reason="chromium not installed (apt-get install -y chromium)")
sync_api = pytest.importorskip("playwright.sync_api")

WAIT_MS = 60_000
LAUNCH_ARGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
               "--disable-background-networking", "--disable-component-update", "--disable-sync",
               "--no-first-run", "--disable-default-apps", "--disable-extensions"]


@pytest.fixture(scope="module")
def browser_server(tmp_path_factory):
    srv = make_server(tmp_path_factory.mktemp("browser"), bars_per_s=10)
    yield srv
    srv.stop()


@pytest.fixture()
def page(tmp_path):
    with sync_api.sync_playwright() as p:
        context = p.chromium.launch_persistent_context(str(tmp_path / "profile"), executable_path=CHROMIUM,
                                                       headless=True, args=LAUNCH_ARGS,
                                                       viewport={"width": 1280, "height": 900})
        context.set_default_timeout(WAIT_MS)
        pg = context.pages[0] if context.pages else context.new_page()
        problems: list[str] = []
        pg.on("console", lambda m: problems.append(f"console {m.type}: {m.text}") if m.type == "error" else None)
        pg.on("pageerror", lambda e: problems.append(f"page error: {e}"))
        pg.problems = problems
        try:
            yield pg
        finally:
            context.close()


def number_at(page, selector: str, attr: str, above: float) -> float:
    """Wait until `attr` of `selector` is a number above `above`, polled from Python (the page's CSP
    forbids the eval that ``wait_for_function`` uses); returns it."""
    found = wait_for(lambda: (v := page.get_attribute(selector, attr)) is not None and float(v) > above
                     and float(v), WAIT_MS / 1000, f"{selector}[{attr}] > {above}")
    return float(found)


def shot(page, tmp_path: Path, name: str) -> None:
    page.screenshot(path=str(tmp_path / f"{name}.png"), full_page=True)


def login(page, srv) -> None:
    code = srv.server.tokens.one_time_code()
    page.goto(f"{srv.url}/login?code={code}")
    page.wait_for_selector("body[data-ready='overview']")


def test_dashboard_flow(page, browser_server, tmp_path):
    srv = browser_server
    login(page, srv)
    # the runners are listed; the event stream is live
    page.wait_for_selector("tr[data-runner-id='BTCUSDT:ema_crossover']")
    page.wait_for_selector("#conn[data-state='live']")
    assert page.locator("#runners tbody tr").count() == 2
    assert "BTCUSDT" in page.locator("#summary").inner_text()
    shot(page, tmp_path, "overview")

    # add a runner from the form: strategy params are pre-filled from the script
    page.select_option("#add-runner select[name=strategy]", "macd_trend")
    assert page.input_value("#add-runner input[name='params.fast']") == "12"
    page.select_option("#add-runner select[name=symbol]", "ETHUSDT")
    page.fill("#add-runner input[name='params.fast']", "")
    page.click("#add-runner button[type=submit]")   # an empty number: field-level error
    page.wait_for_selector("#add-runner [data-error='params.fast']:not(:empty)")
    assert page.locator("#add-runner input[name='params.fast'].bad").count() == 1
    page.fill("#add-runner input[name='params.fast']", "8")
    page.click("#add-runner button[type=submit]")
    row = "tr[data-runner-id='ETHUSDT:macd_trend']"
    page.wait_for_selector(row)
    shot(page, tmp_path, "added")

    # pause and resume it from the table
    page.click(f"{row} button[data-action=pause]")
    page.wait_for_selector(f"{row}[data-status=paused]")
    page.click(f"{row} button[data-action=resume]")
    page.wait_for_selector(f"{row}[data-status=running]")

    # the runner page: the chart gains a candle from the WebSocket
    page.click("a[href='#/runner/BTCUSDT%3Aema_crossover']")
    page.wait_for_selector("#chart canvas")
    number_at(page, "#chart", "data-indicators", 1)   # ema:2 and ema:4 drawn over the candles
    before = number_at(page, "#chart", "data-candles", 0)
    number_at(page, "#chart", "data-candles", before)
    assert page.locator("#runner-status").inner_text() in ("running", "paused")
    shot(page, tmp_path, "runner")

    # force-exit a position: wait until one is open and pause (so none opens after the exit); the
    # strategy may have closed it itself before the pause took effect: then resume and try again
    with srv.client() as api:
        for _ in range(20):
            page.wait_for_selector("#position[data-open=yes]", timeout=180_000)
            page.click("#runner-actions button[data-action=pause]")
            page.wait_for_selector("#runner-status:text('paused')")
            snap = api.get("/api/runners/BTCUSDT:ema_crossover/snapshot").json()
            if snap["position"] and not snap["pending_order"]:   # (a pending exit fills at the next bar)
                break
            page.click("#runner-actions button[data-action=resume]")
            page.wait_for_selector("#runner-status:text('running')")
        else:
            pytest.fail("never paused with an open position")
    page.click("#runner-actions button[data-action=exit]")
    page.wait_for_selector("#position[data-open=no]")
    page.wait_for_selector("#trade-rows tr td:text('forced exit (API)')")
    page.wait_for_selector("#event-log div[data-type=control]")
    shot(page, tmp_path, "exited")

    # sessions page: the live recording is listed and can be scrubbed
    page.goto(f"{srv.url}/#/sessions")
    page.wait_for_selector("#sessions tr[data-session] a")
    page.click("#sessions tr[data-session] a")
    page.wait_for_selector("#session-chart canvas")
    number_at(page, "#session-chart", "data-shown", 0)
    page.fill("#scrub", "1")
    page.dispatch_event("#scrub", "input")
    page.wait_for_selector("#session-chart[data-shown='1']")
    shot(page, tmp_path, "session")
    # the one failed request was the form's purposely invalid submission (Chromium logs any 4xx)
    expected = "console error: Failed to load resource: the server responded with a status of 422"
    assert [p for p in page.problems if not p.startswith(expected)] == [], page.problems


def test_login_form_and_phone_width(page, browser_server, tmp_path):
    srv = browser_server
    page.set_viewport_size({"width": 375, "height": 740})
    page.goto(srv.url + "/")
    page.wait_for_selector("#login")
    page.fill("#token", "wrong-token-0123456789")
    page.click("#login button")
    page.wait_for_selector("#login-error:text('wrong token')")
    page.fill("#token", srv.server.tokens.view)
    page.click("#login button")
    page.wait_for_selector("body[data-ready='overview']")
    assert page.get_attribute("body", "data-scope") == "view"
    assert page.locator("#add-runner").count() == 0          # no control for a view token
    assert page.locator("button[data-action]").count() == 0
    # the table scrolls inside its box; the page itself does not scroll sideways
    width = page.evaluate("document.documentElement.scrollWidth")
    assert width <= 375 + 1, width
    shot(page, tmp_path, "phone")
    # the 401s (not signed in yet, then a wrong token) are logged by Chromium; nothing else may be
    expected = "console error: Failed to load resource: the server responded with a status of 401"
    assert [p for p in page.problems if not p.startswith(expected)] == [], page.problems


def test_strategy_error_text_is_shown_escaped(page, browser_server, tmp_path):
    """D9: an error message holding markup appears as text; no element is created from it."""
    srv = browser_server
    with srv.client() as api:
        resp = api.post("/api/runners", json={"symbol": "ETHUSDT", "strategy": "hostile_error", "id": "hostile"})
        assert resp.status_code == 201, resp.text
    login(page, srv)
    page.goto(f"{srv.url}/#/runner/hostile")
    page.wait_for_selector("#event-log div[data-type=runner_error]")
    text = page.inner_text("#event-log div[data-type=runner_error]")
    assert "<img src=x id=pwned" in text
    assert page.locator("#pwned").count() == 0 and page.locator("#event-log img").count() == 0
    page.goto(f"{srv.url}/#/")
    page.wait_for_selector("tr[data-runner-id=hostile]")
    assert page.locator("#pwned").count() == 0
    shot(page, tmp_path, "hostile")
    assert page.problems == [], page.problems


def test_reconnect_is_shown(page, browser_server, tmp_path):
    srv = browser_server
    login(page, srv)
    page.wait_for_selector("#conn[data-state='live']")
    # drop every WebSocket client from the server side: the page shows it and reconnects
    broadcaster = srv.server.state.broadcaster
    for client in list(broadcaster.clients):
        srv.loop.call_soon_threadsafe(_drop, client)
    page.wait_for_selector("#conn[data-state='dropped'], #conn[data-state='reconnecting']")
    page.wait_for_selector("#conn[data-state='live']")
    assert page.problems == [], page.problems


def _drop(client) -> None:
    client.dropped = "dropped by the test"
    client.wake.set()


def test_docs_page_draws_with_no_external_host(page, tmp_path):
    """``--docs``: Swagger UI draws the API from the package's files under the strict CSP; the
    browser asks no other host for anything, and the page logs no error (no CSP violation)."""
    folder = strategies_folder(tmp_path)
    config = parse_config({"feeds": {"sim": {"type": "simulated", "symbols": ["BTCUSDT"], "bars": 0, "speed": 60}},
                           "runners": [{"symbol": "BTCUSDT", "strategy": str(folder / "ema_crossover.lua"),
                                        "feed": "sim"}]}, "test")
    engine, _, _ = build(config)
    srv = LiveServer(Server(engine, port=0, tokens=Tokens(TOKEN), catalog=StrategyCatalog([folder]),
                            sessions_folder=tmp_path / "sessions", docs=True, say=lambda text: None))
    try:
        hosts = []
        page.on("request", lambda r: hosts.append(r.url.split("/")[2]))
        code = srv.server.tokens.one_time_code()
        page.goto(f"{srv.url}/login?code={code}")
        page.goto(f"{srv.url}/docs")
        page.wait_for_selector("body[data-ready='docs']")
        page.wait_for_selector(".opblock-summary-path[data-path='/api/runners']")
        assert page.locator(".opblock").count() >= 20
        shot(page, tmp_path, "docs")
        assert set(hosts) == {f"127.0.0.1:{srv.server.port}"}, set(hosts)
        assert page.problems == []
    finally:
        srv.stop()
