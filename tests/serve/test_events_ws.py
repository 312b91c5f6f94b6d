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
    wait_for(lambda: live.server.state.broadcaster.seq > last + 20, what="more events")
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


# -- reconnecting past what is kept ---------------------------------------------------------------

def _collect_until(ws, seq: int, timeout: float = 60.0) -> list[dict]:
    """Events from `ws` until one with seq >= `seq` (hello and notices left out)."""
    out: list[dict] = []
    while not out or out[-1]["seq"] < seq:
        out += [e for e in json.loads(ws.recv(timeout=timeout)) if e["type"] not in ("hello",)]
    return out


def test_reconnect_older_than_kept_gets_every_event_from_the_session_log(tmp_path):
    # Only 40 events are kept in memory: a client away for longer reads the rest from the log.
    srv = make_server(tmp_path, bars_per_s=40, replay=40)
    try:
        b = srv.server.state.broadcaster
        assert b.numbering == "session"
        url = events_url(srv)
        with wsc.connect(url, additional_headers=AUTH) as watcher, srv.client() as c:
            start = json.loads(watcher.recv(timeout=30))[0]["seq"]
            with wsc.connect(url, additional_headers=AUTH) as away:
                json.loads(away.recv(timeout=30))
                seen = _collect_until(away, start + 5)
            last = seen[-1]["seq"]
            # a control action while it is away: it must get that too, with its scope
            assert c.post("/api/runners/BTCUSDT:ema_crossover/pause").status_code == 202
            assert c.post("/api/runners/BTCUSDT:ema_crossover/resume").status_code == 202
            wait_for(lambda: b.kept_from() > last + 100, what="the away client's events to leave memory")
            with wsc.connect(events_url(srv, f"?from_seq={last + 1}"), additional_headers=AUTH) as back:
                hello = json.loads(back.recv(timeout=30))[0]
                assert hello["type"] == "hello" and hello["from_log"] is True and hello["gap_from"] is None
                end = b.seq + 60   # past what is kept now: the replay must hand over to live events
                again = _collect_until(back, end)
            live_view = _collect_until(watcher, end)
        srv.server.recorder.flush()
        from tradesim.sessions import open_session

        logged = [e for e in open_session(srv.server.recorder.path).log.events(from_seq=last + 1, to_seq=end)
                  if e["type"] in {"bar", "feed_status", "control", "runner_added", "state_transition",
                                   "position_opened", "position_closed", "position_updated", "opportunity_detected",
                                   "action_rejected", "runner_error", "runner_status", "strategy_reloaded",
                                   "analysis_timeout"}]
    finally:
        srv.stop()
    again = [e for e in again if e["seq"] <= end]
    seqs = [e["seq"] for e in again]
    # every event the log holds for the stream, once, in order
    assert seqs == [e["seq"] for e in logged]
    assert len(seqs) > 100
    # and the same bytes a client connected all along received (log read back == live)
    assert again == [e for e in live_view if last < e["seq"] <= end]
    bars = [e for e in again if e["type"] == "bar_received"]
    assert [(e["symbol"], e["timestamp"], e["close"]) for e in bars] == \
        [(e["symbol"], e["timestamp"], e["close"]) for e in logged if e["type"] == "bar"]
    controls = [(e["command"], e["runner_id"], e["scope"]) for e in again if e["type"] == "control"]
    assert ("pause", "BTCUSDT:ema_crossover", "control") in controls
    assert ("resume", "BTCUSDT:ema_crossover", "control") in controls


def test_without_a_recording_an_old_from_seq_gets_a_gap_notice(tmp_path):
    srv = make_server(tmp_path, bars_per_s=40, replay=30, record=False)
    try:
        b = srv.server.state.broadcaster
        assert b.numbering == "engine"
        url = events_url(srv)
        with wsc.connect(url, additional_headers=AUTH) as watcher:
            start = json.loads(watcher.recv(timeout=30))[0]["seq"]
            with wsc.connect(url, additional_headers=AUTH) as away:
                json.loads(away.recv(timeout=30))
                last = _collect_until(away, start + 3)[-1]["seq"]
            wait_for(lambda: b.kept_from() > last + 50, what="events to leave memory")
            with wsc.connect(events_url(srv, f"?from_seq={last + 1}"), additional_headers=AUTH) as back:
                hello = json.loads(back.recv(timeout=30))[0]
                first = _collect_until(back, 0)[0]
        assert hello["from_log"] is False and hello["gap_from"] is not None and hello["gap_from"] > last + 1
        assert first["seq"] >= hello["gap_from"]
    finally:
        srv.stop()


def test_the_bus_is_idle_while_no_client_listens(tmp_path):
    srv = make_server(tmp_path, bars_per_s=40, record=False)
    try:
        engine = srv.server.engine
        feed_bars = lambda: engine.health()["feeds"]["sim"]["bars"]  # noqa: E731
        wait_for(lambda: feed_bars() > 10, what="bars")
        assert engine.bus.active is False
        before_seq, before_bars = engine.bus.seq, feed_bars()
        wait_for(lambda: feed_bars() > before_bars + 20, what="more bars")
        assert engine.bus.seq == before_seq   # no event was built for nobody
        with wsc.connect(events_url(srv), additional_headers=AUTH) as ws:
            json.loads(ws.recv(timeout=30))
            assert engine.bus.active is True
            assert receive(ws, 3)[0]["seq"] > before_seq
        wait_for(lambda: engine.bus.active is False, what="the bus to go idle after the last client left")
    finally:
        srv.stop()


def test_a_recorded_session_streams_the_log_and_leaves_the_bus_idle(live):
    with wsc.connect(events_url(live, "?types=bar_received"), additional_headers=AUTH) as ws:
        json.loads(ws.recv(timeout=30))
        assert receive(ws, 3)
        assert live.server.engine.bus.active is False


def test_logged_events_convert_to_the_engine_events():
    """The recorded stream carries what the bus would have: the same events, field for field."""
    import tempfile

    from tradesim.engine.config import parse_config
    from tradesim.engine.run import build_engine
    from tradesim.recording import SessionRecorder
    from tradesim.serve.broadcast import LogPages, LogStream
    from tradesim.sessions import open_session
    from tradesim.strategy.examples import example_path

    config = parse_config({"feeds": {"sim": {"type": "simulated", "symbols": ["BTCUSDT"], "bars": 400}},
                           "runners": [{"symbol": "BTCUSDT", "strategy": str(example_path("ema_crossover")),
                                        "feed": "sim", "params": {"fast": 2, "slow": 4}}]}, "test")
    engine = build_engine(config)
    with tempfile.TemporaryDirectory() as tmp:
        recorder = SessionRecorder(tmp, kind="run")
        engine.record(recorder)

        async def main():
            sub = engine.subscribe(maxsize=100_000)
            await engine.run()
            engine.close("end")
            sub.close()
            return [e async for e in sub]
        bus_events = asyncio.run(main())
        recorder.finish()
        stream = LogStream()
        logged = [c for e in open_session(recorder.path).log.events() if (c := stream.convert(e))]
        # read back page by page from anywhere: the same bytes as one pass from the start
        # (``time`` of a runner's event comes from the bar before it, found across pages)
        log_dir = recorder.path / "log"
        last = open_session(recorder.path).log.last_seq
        for start in (1, 123, last - 40):
            pages = LogPages(log_dir, start, None)
            got = []
            while pages.next <= last:
                got += pages.read(last, limit=7)
            pages.close()
            assert got == [data for _, data in logged if json.loads(data)["seq"] >= start]
    strip = lambda d: {k: v for k, v in d.items() if k not in ("seq", "time")}  # noqa: E731
    from_log = [strip(json.loads(data)) for _, data in logged]
    from_bus = [strip(json.loads(e.to_json())) for e in bus_events]
    for kind in ("bar_received", "state_transition", "position_opened", "position_closed", "runner_status"):
        mine = [e for e in from_log if e["type"] == kind]
        theirs = [e for e in from_bus if e["type"] == kind]
        assert mine == theirs and mine, kind


def test_a_failed_recording_hands_the_stream_to_the_engine(tmp_path):
    srv = make_server(tmp_path, bars_per_s=40)
    try:
        rec = srv.server.recorder
        with wsc.connect(events_url(srv), additional_headers=AUTH) as ws:
            assert json.loads(ws.recv(timeout=30))[0]["numbering"] == "session"
            last = receive(ws, 5)[-1]["seq"]
            rec._failed(OSError(28, "No space left on device"))   # what a full disk does to the recorder
            notices = []
            while not notices:
                notices = [e for e in json.loads(ws.recv(timeout=30)) if e["type"] == "subscriber_dropped"]
            assert "No space left on device" in notices[0]["reason"]
        # it reconnects with its (session-numbered) from_seq: ignored, the engine's stream follows
        with wsc.connect(events_url(srv, f"?from_seq={last + 1}&types=bar_received"),
                         additional_headers=AUTH) as ws:
            hello = json.loads(ws.recv(timeout=30))[0]
            assert hello["numbering"] == "engine" and hello["from_seq_ignored"] is True
            bars = receive(ws, 3)
        assert [e["type"] for e in bars] == ["bar_received"] * len(bars)
        wait_for(lambda: srv.server.engine.bus.active is False, what="the bus to go idle once the client left")
    finally:
        srv.stop()
