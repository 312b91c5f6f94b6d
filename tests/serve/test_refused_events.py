"""Refused requests (401, 403, 413, 415, 421, failed logins) appear in the event stream as ``request_refused``,
with route, reason and client address, never with the token; in a recorded session they are in
the session log too."""

from __future__ import annotations

import json

import websockets.sync.client as wsc

from tradesim.serve.security import view_token_for

from .conftest import TOKEN, make_server, wait_for

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def _refusals(ws, n: int) -> list[dict]:
    out: list[dict] = []
    while len(out) < n:
        out += [e for e in json.loads(ws.recv(timeout=60)) if e["type"] == "request_refused"]
    return out


def _refuse_some(srv) -> None:
    with srv.client(token=None) as anon, srv.client() as c, srv.client(token=view_token_for(TOKEN)) as view:
        assert anon.get(f"/api/runners?token={TOKEN}").status_code == 401          # a token in the URL
        assert view.post("/api/runners/BTCUSDT:ema_crossover/pause").status_code == 403
        assert c.get("/api/runners", headers={"Host": "evil.example:80"}).status_code == 421
        assert c.post("/api/runners", json={"symbol": "BTCUSDT", "strategy": "ema_crossover",
                                            "params": {"x": "a" * 100_000}}).status_code == 413
        assert c.post("/api/runners", content=b"a=1", headers={"Content-Type": "text/plain"}).status_code == 415
        assert anon.get("/login?code=not-a-code-0123").status_code == 401                  # a wrong link
        assert anon.post("/login", json={"token": "wrong-token-0123456789"}).status_code == 401


def _check(refused: list[dict]) -> None:
    assert [(e["status"], e["code"], e["route"]) for e in refused] == [
        (401, "unauthorized", "GET /api/runners"),
        (403, "forbidden", "POST /api/runners/BTCUSDT:ema_crossover/pause"),
        (421, "bad_host", "GET /api/runners"),
        (413, "too_large", "POST /api/runners"),
        (415, "unsupported_media_type", "POST /api/runners"),
        (401, "unauthorized", "GET /login"),
        (401, "unauthorized", "POST /login"),
    ]
    for e in refused:
        assert e["client"] == "127.0.0.1" and e["reason"].startswith(e["code"] + ":")
        assert isinstance(e["time"], int) and e["time"] > 1_700_000_000_000 and e["seq"] > 0
    text = json.dumps(refused)
    for secret in (TOKEN, view_token_for(TOKEN), "not-a-code-0123", "wrong-token-0123456789"):
        assert secret not in text


def test_refused_requests_are_in_the_recorded_stream_and_log(tmp_path):
    srv = make_server(tmp_path)
    try:
        with wsc.connect(f"ws://127.0.0.1:{srv.server.port}/api/events?types=request_refused",
                         additional_headers=AUTH) as ws:
            json.loads(ws.recv(timeout=30))
            _refuse_some(srv)
            refused = _refusals(ws, 7)
        _check(refused)
        with srv.client() as c:
            health = c.get("/api/engine/health").json()
        assert health["refused_requests"] == 7 and health["websocket"]["numbering"] == "session"
        rec = srv.server.recorder
        rec.flush()
        from tradesim.sessions import open_session

        logged = list(open_session(rec.path).log.events(types={"request_refused"}))
        assert [e["seq"] for e in logged] == [e["seq"] for e in refused]
        assert TOKEN.encode() not in b"".join(p.read_bytes() for p in (rec.path / "log").iterdir())
    finally:
        srv.stop()


def test_refused_requests_are_on_the_engine_stream_without_a_recording(tmp_path):
    srv = make_server(tmp_path, record=False)
    try:
        with wsc.connect(f"ws://127.0.0.1:{srv.server.port}/api/events?types=request_refused",
                         additional_headers=AUTH) as ws:
            json.loads(ws.recv(timeout=30))
            wait_for(lambda: srv.server.engine.bus.active, what="the bus to be listened to")
            _refuse_some(srv)
            _check(_refusals(ws, 7))
    finally:
        srv.stop()


def test_a_flood_of_refusals_is_counted_not_streamed_one_by_one():
    from tradesim.engine import TradingEngine
    from tradesim.serve.app import Refusals

    engine = TradingEngine()
    sub = engine.subscribe()
    refusals = Refusals(engine, rate=1.0, burst=3.0)
    for _ in range(10):   # far faster than 1 per second: 3 reported at once, 7 counted
        refusals({"status": 401, "code": "unauthorized", "route": "GET /x", "reason": "r", "client": "1.2.3.4"})
    got = []
    while (e := sub.get_nowait()) is not None:
        got.append(e)
    assert [e.suppressed for e in got] == [0, 0, 0] and refusals.suppressed == 7
    refusals.at -= 5.0   # as if 5 s went by: the next one is reported with the count
    refusals({"status": 403, "code": "bad_origin", "route": "POST /y", "reason": "r", "client": "1.2.3.4"})
    last = sub.get_nowait()
    assert last.code == "bad_origin" and last.suppressed == 7 and refusals.suppressed == 0
