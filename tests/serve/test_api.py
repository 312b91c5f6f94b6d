"""`tradesim serve` API: every endpoint, status codes, validation errors, auth and the guards
(docs/serve.md, docs/dashboard-security.md), against a real server (engine + uvicorn) in a thread."""

from __future__ import annotations

import json
import re

import pytest

from tradesim.serve.security import CSP, Tokens, view_token_for

from .conftest import TOKEN, wait_for

VIEW = view_token_for(TOKEN)
BTC = "BTCUSDT:ema_crossover"


def error_of(resp) -> dict:
    body = resp.json()
    assert set(body) == {"error"}, body
    assert {"code", "message", "field"} <= set(body["error"])
    return body["error"]


# -- reading ---------------------------------------------------------------------------------------

def test_health_needs_no_token(live):
    with live.client(token=None) as c:
        resp = c.get("/health")
    assert resp.status_code == 200 and resp.json() == {"status": "ok"}
    assert "script-src 'self'" in resp.headers["content-security-policy"]
    assert resp.headers["x-content-type-options"] == "nosniff"
    assert "access-control-allow-origin" not in resp.headers


def test_engine_health_and_summary(live):
    with live.client() as c:
        wait_for(lambda: c.get("/api/engine/health").json()["feeds"]["sim"]["bars"] > 0, what="bars")
        health = c.get("/api/engine/health").json()
        summary = c.get("/api/engine/summary").json()
        runners = c.get("/api/runners").json()
    assert health["feeds"]["sim"]["status"] == "running"
    assert set(health["symbols"]) == {"BTCUSDT", "ETHUSDT"}
    assert summary["runners"] == len(runners) >= 2
    # totals are the sums of the rows (each row computed independently by the runner's worker)
    assert summary["totals"]["trades"] >= 0
    assert sum(summary["by_status"].values()) == summary["runners"]


def test_runner_rows_snapshot_history_trades(live):
    with live.client() as c:
        wait_for(lambda: c.get(f"/api/runners/{BTC}/history?n=5").json()["bars"] == 5, what="5 bars")
        rows = {r["id"]: r for r in c.get("/api/runners").json()}
        snap = c.get(f"/api/runners/{BTC}/snapshot").json()
        hist = c.get(f"/api/runners/{BTC}/history", params={"n": 5}).json()
        trades = c.get(f"/api/runners/{BTC}/trades").json()
    row = rows[BTC]
    assert row["symbol"] == "BTCUSDT" and row["strategy"] == "ema_crossover"
    for key in ("status", "state", "position", "unrealized_pnl", "realized_pnl", "trades", "win_rate",
                "errors", "last_bar_time", "last_bar_wall"):
        assert key in row
    assert snap["id"] == BTC and snap["params"]["fast"] == 2 and "indicators" in snap
    assert len(hist["timestamp"]) == 5 and all(b > a for a, b in zip(hist["timestamp"], hist["timestamp"][1:]))
    assert all(lo <= hi for lo, hi in zip(hist["low"], hist["high"]))
    assert isinstance(trades, list)
    # realised + unrealised = equity - starting cash
    assert snap["realized_pnl"] + snap["unrealized_pnl"] == pytest.approx(snap["equity"] - snap["starting_cash"])


def test_indicator_series_match_a_batch_computation(live):
    import numpy as np

    from tradesim.indicators import compute

    with live.client() as c:
        wait_for(lambda: c.get(f"/api/runners/{BTC}/history?n=30").json()["bars"] == 30, what="30 bars")
        body = c.get(f"/api/runners/{BTC}/indicators", params={"n": 30}).json()
    assert body["overlay"] == {"ema:2": True, "ema:4": True}
    # the same window's closes through the registry's batch EMA (hand-checked against TA-Lib in
    # tests/test_registry.py) give the same series; the first bars are the warm-up (null)
    closes = np.array(_closes(live, body["timestamp"]))
    want = compute("ema:4", {"close": closes})["ema:4"]
    got = np.array([np.nan if v is None else v for v in body["series"]["ema:4"]])
    np.testing.assert_allclose(got, want, equal_nan=True)
    assert np.isnan(got[:3]).all() and np.isfinite(got[3:]).all()


def _closes(live, timestamps):
    """The closes of these bars, from the recorded session's bar events (an independent source)."""
    wanted = set(timestamps)

    def read():
        out = {}
        with live.client() as c:
            sid = c.get("/api/engine/health").json()["session"]
            seq = 1
            while seq is not None:
                page = c.get(f"/api/sessions/{sid}/events", params={"types": "bar", "from_seq": seq,
                                                                  "limit": 10_000}).json()
                out.update({e["timestamp"]: e["close"] for e in page["events"]
                            if e["symbol"] == "BTCUSDT" and e["timestamp"] in wanted})
                seq = page["next_seq"]
        return out if len(out) == len(wanted) else None
    out = wait_for(read, what="the bars in the session log")   # (the log writer flushes every 0.2 s)
    return [out[t] for t in timestamps]


def test_trades_appear_with_their_fields(live):
    with live.client() as c:
        trades = wait_for(lambda: c.get(f"/api/runners/{BTC}/trades").json(), 120, "a closed trade")
    t = trades[0]
    assert t["symbol"] == "BTCUSDT" and t["side"] in ("long", "short")
    assert t["exit_time"] >= t["entry_time"]


def test_strategies_list_params_and_docs(live):
    with live.client() as c:
        strategies = {s["id"]: s for s in c.get("/api/strategies").json()}
    ema = strategies["ema_crossover"]
    assert ema["params"]["fast"] == 10 and ema["params"]["slow"] == 20   # the script's defaults
    assert ema["doc"].startswith("EMA crossover")
    assert "escape" not in strategies   # the symlink out of the folder is not listed


def test_symbols(live):
    with live.client() as c:
        body = c.get("/api/symbols").json()
    assert body["symbols"] == ["BTCUSDT", "ETHUSDT"]
    assert body["feeds"]["sim"]["symbols"] == ["BTCUSDT", "ETHUSDT"]


def test_unknown_runner_is_404_json(live):
    with live.client() as c:
        for resp in (c.get("/api/runners/NOPE/snapshot"), c.post("/api/runners/NOPE/pause"),
                     c.delete("/api/runners/NOPE"), c.get("/api/runners/NOPE/trades")):
            assert resp.status_code == 404
            assert error_of(resp)["code"] == "not_found"


def test_query_validation(live):
    with live.client() as c:
        resp = c.get(f"/api/runners/{BTC}/history", params={"n": 0})
        assert resp.status_code == 422
        assert error_of(resp)["field"] == "n"
        assert c.get(f"/api/runners/{BTC}/history", params={"n": "x"}).status_code == 422
        assert c.get("/api/no/such/route").status_code == 404
        assert c.put("/api/runners").status_code == 405


# -- control -----------------------------------------------------------------------------------------

def add(c, **body):
    payload = {"symbol": "ETHUSDT", "strategy": "ema_crossover", **body}
    return c.post("/api/runners", json=payload)


def test_add_pause_resume_stop_remove(live):
    with live.client() as c:
        resp = add(c, id="ETH-test", params={"fast": 3, "slow": 7}, window_size=200,
                   execution={"commission_bps": 5})
        assert resp.status_code == 201, resp.text
        assert resp.json()["id"] == "ETH-test"
        wait_for(lambda: c.get("/api/runners/ETH-test/snapshot").json()["stats"]["bars"] > 0, what="bars")
        assert c.get("/api/runners/ETH-test/snapshot").json()["params"] == {"fast": 3, "slow": 7, "quantity": 0.0}
        assert add(c, id="ETH-test").status_code == 409

        resp = c.post("/api/runners/ETH-test/pause")
        assert resp.status_code == 202 and resp.json()["accepted"] is True
        wait_for(lambda: c.get("/api/runners/ETH-test/snapshot").json()["status"] == "paused", what="paused")
        assert c.post("/api/runners/ETH-test/resume").status_code == 202
        wait_for(lambda: c.get("/api/runners/ETH-test/snapshot").json()["status"] == "running", what="running")
        assert c.post("/api/runners/ETH-test/reload").status_code == 202
        assert c.post("/api/runners/ETH-test/exit").status_code == 202
        assert c.post("/api/runners/ETH-test/stop").status_code == 202
        wait_for(lambda: c.get("/api/runners/ETH-test/snapshot").json()["status"] == "stopped", what="stopped")
        assert c.delete("/api/runners/ETH-test").status_code == 200
        assert "ETH-test" not in {r["id"] for r in c.get("/api/runners").json()}


def test_force_exit_closes_the_open_position(live):
    with live.client() as c:
        assert add(c, symbol="BTCUSDT", id="BTC-exit", strategy="hold").status_code == 201
        # "hold" never exits by itself: pause once its entry has filled, then force the exit
        wait_for(lambda: c.get("/api/runners/BTC-exit/snapshot").json()["position"], 120, "an open position")
        assert c.post("/api/runners/BTC-exit/pause").status_code == 202
        snap = wait_for(lambda: (s := c.get("/api/runners/BTC-exit/snapshot").json())["status"] == "paused"
                        and s, what="paused")
        assert snap["position"] and not snap["pending_order"]
        assert c.post("/api/runners/BTC-exit/exit").status_code == 202
        snap = wait_for(lambda: (s := c.get("/api/runners/BTC-exit/snapshot").json())["position"] is None and s,
                        what="position closed")
        trades = c.get("/api/runners/BTC-exit/trades").json()
    assert snap["status"] == "paused"
    assert trades[-1]["exit_reason"] == "forced exit (API)"


def test_add_runner_validation_names_the_field(live):
    with live.client() as c:
        cases = {
            "symbol": {"symbol": "btc/usdt"},
            "strategy": {"strategy": "../../etc/passwd"},
            "window_size": {"window_size": 0},
            "execution.commission_bps": {"execution": {"commission_bps": -1}},
            "params.fast": {"params": {"fast": "abc"}},
        }
        for field_name, body in cases.items():
            resp = add(c, **body)
            assert resp.status_code == 422, (field_name, resp.text)
            assert error_of(resp)["field"] == field_name, resp.json()
        resp = add(c, params={"nope": 1})
        assert resp.status_code == 422 and error_of(resp)["field"] == "params.nope"
        resp = add(c, symbol="SOLUSDT")   # valid symbol, not served by the feed
        assert resp.status_code == 422 and error_of(resp)["field"] == "symbol"
        resp = add(c, unexpected=1)
        assert resp.status_code == 422 and error_of(resp)["field"] == "unexpected"


@pytest.mark.parametrize("name", ["..", "../ema_crossover", "/etc/passwd", "a/b", "a\\b", "%2e%2e", "x\x00y",
                                  "escape", "nonexistent"])
def test_strategy_ids_outside_the_folders_are_refused(live, name):
    with live.client() as c:
        resp = add(c, strategy=name)
    assert resp.status_code == 422
    assert error_of(resp)["field"] == "strategy"


def test_control_actions_are_published_with_scope_and_recorded(live):
    import websockets.sync.client as wsc

    with live.client() as c, wsc.connect(f"ws://127.0.0.1:{live.server.port}/api/events?types=control",
                                         additional_headers={"Authorization": f"Bearer {TOKEN}"}) as ws:
        hello = json.loads(ws.recv(timeout=30))
        assert hello[0]["type"] == "hello"
        assert c.post(f"/api/runners/{BTC}/pause").status_code == 202
        assert c.post(f"/api/runners/{BTC}/resume").status_code == 202
        seen = []
        while len(seen) < 2:
            seen += json.loads(ws.recv(timeout=60))
    assert [e["command"] for e in seen] == ["pause", "resume"]
    assert all(e["scope"] == "control" and e["origin"].startswith("api ") and e["time"] > 0 for e in seen)
    assert seen[0]["seq"] < seen[1]["seq"]
    with live.client() as c:
        sid = c.get("/api/engine/health").json()["session"]
        controls = wait_for(lambda: [e for e in c.get(f"/api/sessions/{sid}/events",
                                                      params={"types": "control"}).json()["events"]
                                     if e["runner"] == BTC and e["command"] in ("pause", "resume")],
                            what="recorded controls")
    assert controls[0]["scope"] == "control"


# -- sessions ------------------------------------------------------------------------------------------

def test_sessions_endpoints(live):
    with live.client() as c:
        sessions = c.get("/api/sessions").json()
        assert len(sessions) == 1 and "path" not in sessions[0]
        sid = sessions[0]["id"]
        one = c.get(f"/api/sessions/{sid}").json()
        assert one["live"] is True and {r["key"] for r in one["runners"]} >= {BTC}
        page = wait_for(lambda: (p := c.get(f"/api/sessions/{sid}/events",
                                            params={"types": "bar", "limit": 3}).json())["next_seq"] and p,
                        what="logged bars")
        assert [e["type"] for e in page["events"]] == ["bar"] * 3
        seqs = [e["seq"] for e in page["events"]]
        assert seqs == sorted(seqs) and page["next_seq"] > seqs[-1]
        nxt = c.get(f"/api/sessions/{sid}/events", params={"types": "bar", "limit": 1,
                                                             "from_seq": page["next_seq"]}).json()
        assert nxt["events"][0]["seq"] == page["next_seq"]
        bars = c.get(f"/api/sessions/{sid}/bars", params={"runner": BTC}).json()
        assert bars["symbol"] == "BTCUSDT" and len(bars["close"]) >= 1
        for bad in ("..", "nope", "..%2f..", "a:b"):
            assert c.get(f"/api/sessions/{bad}").status_code == 404
        assert c.get(f"/api/sessions/{sid}/bars", params={"runner": "nope"}).status_code == 404


# -- auth and guards -------------------------------------------------------------------------------------

def test_no_token_is_401(live):
    with live.client(token=None) as c:
        for resp in (c.get("/api/runners"), c.get("/api/engine/summary"), c.get("/openapi.json"),
                     c.post(f"/api/runners/{BTC}/pause")):
            assert resp.status_code == 401
            assert error_of(resp)["code"] == "unauthorized"
    with live.client(token="wrong-token-0123456789") as c:
        assert c.get("/api/runners").status_code == 401


def test_view_token_reads_but_cannot_control(live):
    with live.client(token=VIEW) as c:
        assert c.get("/api/runners").status_code == 200
        assert c.get("/api/me").json()["scope"] == "view"
        for resp in (c.post(f"/api/runners/{BTC}/pause"), c.delete(f"/api/runners/{BTC}"),
                     c.post("/api/runners", json={"symbol": "BTCUSDT", "strategy": "ema_crossover"})):
            assert resp.status_code == 403
            assert error_of(resp)["code"] == "forbidden"


def test_token_in_url_is_not_accepted(live):
    with live.client(token=None) as c:
        assert c.get("/api/runners", params={"token": TOKEN}).status_code == 401
        assert c.get("/api/runners", params={"access_token": TOKEN}).status_code == 401


@pytest.mark.parametrize("host", ["evil.example:80", "attacker.test", "127.0.0.1:1", "localhost"])
def test_wrong_host_is_refused(live, host):
    with live.client() as c:
        resp = c.get("/api/runners", headers={"Host": host})
    assert resp.status_code == 421
    assert error_of(resp)["field"] == "Host"


def test_loopback_host_names_are_accepted(live):
    port = live.server.port
    with live.client() as c:
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"[::1]:{port}"):
            assert c.get("/api/runners", headers={"Host": host}).status_code == 200


def test_foreign_origin_on_state_change_is_403(live):
    with live.client() as c:
        resp = c.post(f"/api/runners/{BTC}/resume", headers={"Origin": "http://evil.example"})
        assert resp.status_code == 403 and error_of(resp)["field"] == "Origin"
        ok = c.post(f"/api/runners/{BTC}/resume", headers={"Origin": f"http://127.0.0.1:{live.server.port}"})
        assert ok.status_code == 202
        # reads are not state-changing: a foreign Origin there changes nothing (no CORS headers either)
        read = c.get("/api/runners", headers={"Origin": "http://evil.example"})
        assert read.status_code == 200 and "access-control-allow-origin" not in read.headers


def test_oversized_body_is_413(live):
    with live.client() as c:
        big = {"symbol": "BTCUSDT", "strategy": "ema_crossover", "params": {"x": "a" * 100_000}}
        resp = c.post("/api/runners", json=big)
        assert resp.status_code == 413 and error_of(resp)["code"] == "too_large"

        def chunks():   # no Content-Length: the streamed body is counted
            for _ in range(100):
                yield b"x" * 1024
        resp = c.post("/api/runners", content=chunks(), headers={"Content-Type": "application/json"})
        assert resp.status_code == 413


def test_non_json_body_is_415(live):
    with live.client() as c:
        resp = c.post("/api/runners", content=b"symbol=BTCUSDT", headers={"Content-Type": "text/plain"})
        assert resp.status_code == 415
        resp = c.post("/api/runners", data={"symbol": "BTCUSDT"})
        assert resp.status_code == 415


def test_one_time_link_sets_a_strict_httponly_cookie(live):
    code = live.server.tokens.one_time_code()
    with live.client(token=None, follow_redirects=False) as c:
        resp = c.get("/login", params={"code": code})
        assert resp.status_code == 303
        cookie = resp.headers["set-cookie"].lower()
        assert "httponly" in cookie and "samesite=strict" in cookie
        assert c.get("/api/me").json()["scope"] == "control"   # the cookie now authenticates
        again = c.get("/login", params={"code": code})
        assert again.status_code == 401   # used once
    with live.client(token=None) as c:
        assert c.post("/login", json={"token": "wrong-token-0123456789"}).status_code == 401
        assert c.post("/login", json={"token": VIEW}).json()["scope"] == "view"
        assert c.post(f"/api/runners/{BTC}/pause").status_code == 403


def test_openapi_served_docs_off_by_default(live):
    with live.client() as c:
        schema = c.get("/openapi.json").json()
        assert "/api/runners/{runner_id}/exit" in schema["paths"]
        assert c.get("/docs").status_code == 404


def test_dashboard_files_and_vendored_chart(live):
    with live.client(token=None) as c:
        page = c.get("/")
        assert page.status_code == 200 and "<script src=\"/static/app.js\" type=\"module\">" in page.text
        assert "<script>" not in page.text   # no inline script (the CSP forbids it)
        js = c.get("/static/vendor/lightweight-charts.js")
        assert js.status_code == 200 and "LightweightCharts" in js.text[:2000] + js.text[-2000:]
        assert "Apache" in c.get("/static/vendor/LICENSE").text
        for path in ("/static/../app.py", "/static/%2e%2e/app.py", "/static/..%2fapp.py"):
            resp = c.get(path)
            assert resp.status_code in (401, 404) and "create_app" not in resp.text


def test_tokens_compare_and_derive():
    t = Tokens(TOKEN)
    assert t.scope_of_token(TOKEN) == "control"
    assert t.scope_of_token(view_token_for(TOKEN)) == "view"
    assert t.scope_of_token(TOKEN + "x") is None
    assert view_token_for(TOKEN) != view_token_for(TOKEN + "x")
    with pytest.raises(ValueError, match="16"):
        Tokens("short")


def test_listening_socket_disables_nagle():
    """Responses go out in two writes (headers, body): without TCP_NODELAY every keep-alive request
    would wait for a delayed ACK. asyncio sets it on accepted sockets only when the socket says TCP."""
    import socket

    from tradesim.serve.server import _bind

    sock = _bind("127.0.0.1", 0)
    try:
        assert sock.proto == socket.IPPROTO_TCP
        assert sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY) == 1
    finally:
        sock.close()


def test_state_changing_requests_are_rate_limited():
    import asyncio

    import httpx

    from tradesim.serve.security import Guard, allowed_hosts

    async def app(scope, receive, send):
        await send({"type": "http.response.start", "status": 204, "headers": []})
        await send({"type": "http.response.body", "body": b""})

    guard = Guard(app, Tokens(TOKEN), allowed_hosts("127.0.0.1", 8000), rate=0.001, burst=3)

    async def main():
        transport = httpx.ASGITransport(app=guard, client=("10.0.0.1", 1234))
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000",
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            posts = [(await c.post("/api/x")).status_code for _ in range(5)]
            reads = [(await c.get("/api/x")).status_code for _ in range(5)]
        return posts, reads
    posts, reads = asyncio.run(main())
    assert posts == [204, 204, 204, 429, 429]   # burst of 3, then (at 0.001/s) nothing refills
    assert reads == [204] * 5                   # reads are not limited


def test_cross_origin_preflight_gets_no_cors_headers(live):
    """D5: a preflight from a foreign page is not answered with any Access-Control-* header."""
    with live.client(token=None) as c:
        resp = c.options("/api/runners", headers={"Origin": "https://evil.example",
                                                  "Access-Control-Request-Method": "POST",
                                                  "Access-Control-Request-Headers": "authorization,content-type"})
    assert resp.status_code in (401, 405)
    assert not [h for h in resp.headers if h.lower().startswith("access-control-")]


def test_docs_only_when_enabled_and_an_idle_engine_answers():
    """``--docs`` serves Swagger UI from the package (no external host, the dashboard's strict CSP);
    the app also works over an engine that is not running (snapshots then come straight from the runner)."""
    import asyncio

    import httpx

    from tradesim.engine import TradingEngine
    from tradesim.feeds.simulated import SimulatedFeed
    from tradesim.serve.app import ServeState, create_app
    from tradesim.serve.security import allowed_hosts
    from tradesim.serve.strategies import StrategyCatalog
    from tradesim.strategy.examples import example_path

    engine = TradingEngine()
    engine.add_feed(SimulatedFeed("BTCUSDT", bars=10), "sim")
    rid = engine.add_runner("BTCUSDT", example_path("ema_crossover"))
    app = create_app(ServeState(engine, Tokens(TOKEN), StrategyCatalog()), hosts=allowed_hosts("127.0.0.1", 8000),
                     docs=True)

    async def main():
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://127.0.0.1:8000",
                                     headers={"Authorization": f"Bearer {TOKEN}"}) as c:
            docs = await c.get("/docs")
            refs = re.findall(r'(?:src|href)="([^"]*)"', docs.text)
            assets = {ref: await c.get(ref) for ref in refs}
            snap = await c.get(f"/api/runners/{rid}/snapshot")
            rows = await c.get("/api/runners")
        return docs, assets, snap, rows
    docs, assets, snap, rows = asyncio.run(main())
    assert docs.status_code == 200 and "swagger" in docs.text.lower()
    # every script, style sheet and link is a path on this server: no external host, no inline script
    assert "/static/swagger-ui/swagger-ui-bundle.js" in assets and "/static/docs.js" in assets
    assert all(ref.startswith("/") and not ref.startswith("//") for ref in assets), list(assets)
    assert all(resp.status_code == 200 for resp in assets.values()), {k: v.status_code for k, v in assets.items()}
    assert re.findall(r"<script(?![^>]*\ssrc=)[^>]*>", docs.text) == []
    assert "SwaggerUIBundle" in assets["/static/swagger-ui/swagger-ui-bundle.js"].text
    # the same strict policy as every other page: scripts and styles only from this server
    assert docs.headers["content-security-policy"] == snap.headers["content-security-policy"] == CSP
    assert "script-src 'self';" in CSP and "unsafe-eval" not in CSP and "http" not in CSP
    assert snap.status_code == 200 and snap.json()["stats"]["bars"] == 0 and snap.json()["position"] is None
    assert [r["id"] for r in rows.json()] == [rid]
