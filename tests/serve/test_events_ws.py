"""``WS /api/events``: events in ``seq`` order, types filter, reconnect with ``from_seq``, auth and
Origin checks, and a slow client dropped (with a notice) while the engine goes on."""

from __future__ import annotations

import asyncio
import base64
import json
import os
import socket

import pytest
import websockets.sync.client as wsc
from websockets.exceptions import InvalidStatus

from tradesim.engine.events import EventBus
from tradesim.serve.broadcast import Broadcaster

from .conftest import TOKEN, make_server, wait_for

AUTH = {"Authorization": f"Bearer {TOKEN}"}


def events_url(live, query: str = "") -> str:
    return f"ws://127.0.0.1:{live.server.port}/api/events{query}"


def receive(ws, n: int, timeout: float = 60.0) -> list[dict]:
    out: list[dict] = []
    while len(out) < n:
        out += json.loads(ws.recv(timeout=timeout))
    return out


def test_events_arrive_in_seq_order_with_types(live):
    with wsc.connect(events_url(live, "?types=bar_received,state_transition"), additional_headers=AUTH) as ws:
        hello = json.loads(ws.recv(timeout=30))[0]
        assert hello["type"] == "hello" and hello["seq"] >= 0
        events = receive(ws, 30)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)
    assert {e["type"] for e in events} <= {"bar_received", "state_transition"}
    bars = [e for e in events if e["type"] == "bar_received"]
    assert all(b["low"] <= min(b["open"], b["close"]) <= max(b["open"], b["close"]) <= b["high"] for b in bars)


def test_reconnect_with_from_seq_gets_what_was_missed(live):
    with wsc.connect(events_url(live, "?types=bar_received"), additional_headers=AUTH) as ws:
        json.loads(ws.recv(timeout=30))
        first = receive(ws, 5)
    last = first[4]["seq"]
    # some more events happen while disconnected
    wait_for(lambda: live.server.engine.bus.seq > last + 20, what="more events")
    with wsc.connect(events_url(live, f"?types=bar_received&from_seq={last + 1}"), additional_headers=AUTH) as ws:
        hello = json.loads(ws.recv(timeout=30))[0]
        assert hello["gap_from"] is None
        again = receive(ws, 10)
    seqs = [e["seq"] for e in again]
    assert seqs[0] > last and seqs == sorted(seqs)
    # nothing between `last` and the first replayed event was a bar (none skipped)
    kept = [s for s, kind, _ in live.server.state.broadcaster.recent if kind == "bar_received" and s > last]
    assert seqs == kept[:len(seqs)]


def test_ws_needs_token_and_same_origin(live):
    with pytest.raises(InvalidStatus) as no_token:
        wsc.connect(events_url(live))
    assert no_token.value.response.status_code == 403
    with pytest.raises(InvalidStatus) as foreign:
        wsc.connect(events_url(live), additional_headers=AUTH, origin="http://evil.example")
    assert foreign.value.response.status_code == 403
    with wsc.connect(events_url(live), additional_headers=AUTH,
                     origin=f"http://127.0.0.1:{live.server.port}") as ws:
        assert json.loads(ws.recv(timeout=30))[0]["type"] == "hello"


def test_unknown_type_is_an_error_message(live):
    with wsc.connect(events_url(live, "?types=nope"), additional_headers=AUTH) as ws:
        msg = json.loads(ws.recv(timeout=30))[0]
    assert msg["type"] == "error" and "nope" in msg["message"]


def _stalled_client(port: int) -> socket.socket:
    """A WebSocket client that completes the handshake and then never reads (tiny receive buffer)."""
    sock = socket.socket()
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.connect(("127.0.0.1", port))
    key = base64.b64encode(os.urandom(16)).decode()
    sock.sendall((f"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nUpgrade: websocket\r\n"
                  f"Connection: Upgrade\r\nSec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n"
                  f"Authorization: Bearer {TOKEN}\r\n\r\n").encode())
    head = b""
    while b"\r\n\r\n" not in head:
        head += sock.recv(1)
    assert b" 101 " in head.split(b"\r\n")[0]
    return sock


def test_slow_client_is_dropped_and_the_engine_goes_on(tmp_path):
    srv = make_server(tmp_path, bars_per_s=400, record=False, client_queue=20)
    try:
        engine = srv.server.engine
        stalled = _stalled_client(srv.server.port)
        with srv.client() as c, wsc.connect(events_url(srv, "?types=control"), additional_headers=AUTH) as quick:
            json.loads(quick.recv(timeout=30))
            wait_for(lambda: c.get("/api/engine/health").json()["websocket"]["dropped"] >= 1, 120,
                     "the stalled client to be dropped")
            # the engine kept going: bars still arrive and every runner keeps up
            before = engine.health()["feeds"]["sim"]["bars"]
            wait_for(lambda: engine.health()["feeds"]["sim"]["bars"] > before + 100, what="more bars")
            assert all(engine.runner_health(r)["status"] == "running" for r in engine.runner_ids)
            # a well-behaved client on the same server is still served
            assert c.post("/api/runners/BTCUSDT:ema_crossover/pause").status_code == 202
            assert receive(quick, 1)[0]["command"] == "pause"
        stalled.close()
    finally:
        srv.stop()


def test_broadcaster_drops_a_full_client_with_a_notice():
    async def main():
        from tradesim.engine import TradingEngine

        engine = TradingEngine(events=EventBus())
        b = Broadcaster(engine, replay=100)
        fast, _ = b.add(None, 1000, None)
        slow, _ = b.add(frozenset({"bar_received"}), 3, None)
        for seq in range(1, 11):
            b.publish(seq, "bar_received", b'{"seq":%d}' % seq)
        assert slow.dropped and "3 events behind" in slow.dropped and slow not in b.clients
        assert [json.loads(x)["seq"] for x in fast.queue] == list(range(1, 11))
        assert b.dropped_clients == 1
        # a reconnecting client gets the kept events from its from_seq, in order
        again, gap = b.add(None, 1000, 4)
        assert gap is None and [json.loads(x)["seq"] for x in again.queue] == list(range(4, 11))
        late, gap = b.add(None, 1000, 0)
        assert gap == 1
    asyncio.run(main())
