"""A loopback fake of Binance spot market data for tests: WebSocket combined streams + REST klines.

One `websockets` server on 127.0.0.1 (port 0) serves both:

* ``/stream?streams=...`` combined streams (SUBSCRIBE messages accepted and acked),
  publishing real 1m klines from ``../shared/data/binance/klines/1m`` as kline
  events (two still-open updates, then the closed one) and real bookTicker
  messages from ``ws-samples/recordings`` re-targeted to the symbol, with
  prices scaled to the bar's close;
* ``GET /api/v3/klines`` (through ``process_request``), answering from the same
  bars: only the klines already closed ("published"), plus the bar still open
  (as Binance does; its close time is in the simulated future).

Time is simulated: bar i of the data is published ``bar_period`` seconds after
bar i-1, whether or not a client is connected (like the real exchange), and
``sim_now_ms()`` is the exchange clock (1 s into the bar being formed). Pass it
to the client as ``wall_ms`` so "still open" and clock-skew checks line up.

Faults are injected per test: `at(i, action, ...)` schedules an action when bar
i is published (drop, reconnect_within_bar, gap, garbage frames, duplicates, crossed quotes,
serverShutdown, stall, oversize frame); `handshake_faults`, `flap` and
`rest_faults` act on the next connections / REST requests.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import time
from collections import defaultdict
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

from websockets.asyncio.server import serve

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
KLINES_1M = SHARED_DATA / "binance" / "klines" / "1m"
RECORDING = SHARED_DATA / "binance" / "ws-samples" / "recordings" / "BTCUSDT-spot-ws-2024-08-08.txt.gz"
PERIOD = "2026-03-23_2026-04-22"
IV = 60_000

_cache: dict = {}


def data_available() -> bool:
    return (KLINES_1M / f"BTCUSDT-1m-{PERIOD}.csv.gz").exists() and RECORDING.exists()


def load_klines(symbol: str):
    """The real 1m bars of `symbol` (tradesim.data.Bars), cached."""
    if symbol not in _cache:
        from tradesim.data import load_bars

        _cache[symbol] = load_bars(KLINES_1M / f"{symbol}-1m-{PERIOD}.csv.gz")
    return _cache[symbol]


def load_book_tickers(limit: int = 4000) -> list[dict]:
    """Real bookTicker payloads from the BTCUSDT recording (first `limit`)."""
    if "book" not in _cache:
        out = []
        with gzip.open(RECORDING, "rt") as fh:
            for line in fh:
                if "@bookTicker" in line:
                    out.append(json.loads(line.split(" ", 1)[1])["data"])
                    if len(out) >= limit:
                        break
        _cache["book"] = out
    return _cache["book"]


@dataclass
class FakeConn:
    ws: object
    cid: int
    path: str
    streams: set[str]
    opened: float
    queue: asyncio.Queue = field(default_factory=asyncio.Queue)
    muted: bool = False
    subscribe_times: list[float] = field(default_factory=list)
    closed: bool = False
    error: Exception | None = None


class FakeBinance:
    """Fake Binance (see the module docstring).

    Parameters
    ----------
    symbols : tuple of str
        Symbols with data files for `PERIOD` (BTCUSDT, ETHUSDT, SOLUSDT, BNBUSDT).
    n_bars : int
        Bars to publish per symbol.
    offset : int
        First bar index in the data files.
    bar_period : float
        Seconds between published bars.
    ping_interval, ping_timeout : float
        Server keepalive (Binance: 20 s / 60 s; short in tests).
    rest_include_open : bool
        Also return the kline still forming from REST (as Binance does).
    start_on_connect : bool
        Begin publishing with the first WebSocket connection (else at once).
    """

    def __init__(self, symbols=("BTCUSDT", "ETHUSDT", "SOLUSDT"), n_bars=1000, offset=0, bar_period=0.001,
                 ping_interval=1.0, ping_timeout=5.0, rest_include_open=True, start_on_connect=True):
        self.symbols = tuple(symbols)
        self.n = n_bars
        self.bar_period = bar_period
        self.ping_interval, self.ping_timeout = ping_interval, ping_timeout
        self.rest_include_open = rest_include_open
        self.start_on_connect = start_on_connect
        self.bars = {}
        for s in self.symbols:
            b = load_klines(s)
            sl = slice(offset, offset + n_bars)
            self.bars[s] = (b.timestamp[sl].tolist(), b.open[sl].tolist(), b.high[sl].tolist(),
                            b.low[sl].tolist(), b.close[sl].tolist(), b.volume[sl].tolist())
        self.t0 = self.bars[self.symbols[0]][0][0]
        books = load_book_tickers()
        self.quote_text: dict[str, list[tuple[str, str, str, str]]] = {}
        for j, s in enumerate(self.symbols):
            qs = []
            for i, close in enumerate(self.bars[s][4]):
                rec = books[(i * 7 + j * 131) % len(books)]
                b, a = float(rec["b"]), float(rec["a"])
                f = close / ((b + a) / 2)
                qs.append((f"{b * f:.8f}", rec["B"], f"{a * f:.8f}", rec["A"]))
            self.quote_text[s] = qs
        self.cursor = 0                       # index of the bar being formed
        self.update_id = defaultdict(lambda: 1_000_000)
        self.conns: list[FakeConn] = []
        self.handshakes: list[tuple[float, str]] = []   # (time, path) of every WebSocket handshake
        self.rest_log: list[tuple[float, dict, int]] = []
        self.faults: dict[int, list[tuple]] = defaultdict(list)
        self.handshake_faults: list[tuple[int, int | None]] = []  # (status, retry_after) for the next handshakes
        self.flap = 0                        # close the next N connections right after accept
        self.rest_faults: list[object] = []  # "500", "timeout", ("429", s), "garbage" for the next requests
        self.rest_timeout_delay = 2.0
        self.finished = asyncio.Event()
        self._server = None
        self._publisher = None
        self._started = asyncio.Event()
        self._ids = 0

    # -- lifecycle ---------------------------------------------------------------------------------
    async def __aenter__(self):
        self._server = await serve(self._handler, "127.0.0.1", 0, process_request=self._process_request,
                                   ping_interval=self.ping_interval, ping_timeout=self.ping_timeout,
                                   compression=None, max_size=2**20)
        self.port = self._server.sockets[0].getsockname()[1]
        self._publisher = asyncio.create_task(self._publish())
        if not self.start_on_connect:
            self._started.set()
        return self

    async def __aexit__(self, *exc):
        if self._publisher.done() and not self._publisher.cancelled() and self._publisher.exception():
            raise RuntimeError("the fake's publisher crashed") from self._publisher.exception()
        self._publisher.cancel()
        for c in self.conns:
            _abort(c.ws)
        self._server.close()
        try:
            await asyncio.wait_for(self._server.wait_closed(), 5)
        except TimeoutError:
            pass

    @property
    def ws_url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    @property
    def rest_url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        """Start publishing now (else the first WebSocket connection does)."""
        self._started.set()

    def sim_now_ms(self) -> int:
        """Exchange clock: 1 s into the bar being formed (ms since epoch UTC)."""
        return self.t0 + self.cursor * IV + 1000

    def at(self, i: int, action: str, *args) -> None:
        """Schedule `action` for when bar `i` is published (see `_apply`); ``("wait_until",
        predicate)`` first holds the exchange clock until ``predicate()`` is true."""
        self.faults[i].append((action, *args))

    # -- expectations ------------------------------------------------------------------------------
    def expected(self, symbol: str, start: int = 0, stop: int | None = None) -> list[tuple]:
        """Source bars i in [start, stop) as (open time ms, open, high, low, close, volume)."""
        return list(zip(*(col[start:stop] for col in self.bars[symbol])))

    def expected_quote(self, symbol: str, i: int) -> tuple[float, float]:
        """(bid, ask) of the good bookTicker sent with bar i."""
        b, _, a, _ = self.quote_text[symbol][i]
        return float(b), float(a)

    def index_of(self, symbol: str, open_time: int) -> int:
        return (open_time - self.t0) // IV

    # -- messages ------------------------------------------------------------------------------------
    def kline(self, s: str, i: int, stage: str) -> str:
        t, o, h, l, c, v = (col[i] for col in self.bars[s])
        if stage == "first":
            h = l = c = o
            v = 0.0
        elif stage == "mid":
            h, l, v = max(o, c), min(o, c), v / 2
        low = s.lower()
        return (f'{{"stream":"{low}@kline_1m","data":{{"e":"kline","E":{self.sim_now_ms()},"s":"{s}",'
                f'"k":{{"t":{t},"T":{t + IV - 1},"s":"{s}","i":"1m","f":1,"L":2,"o":"{o:.8f}","c":"{c:.8f}",'
                f'"h":"{h:.8f}","l":"{l:.8f}","v":"{v:.8f}","n":2,"x":{"true" if stage == "closed" else "false"},'
                f'"q":"0","V":"0","Q":"0","B":"0"}}}}}}')

    def book(self, s: str, i: int, crossed=False, empty=False, stale=False) -> str:
        b, bq, a, aq = self.quote_text[s][i]
        if crossed:
            b, a = a, b
            b = f"{float(b) * 1.01:.8f}"
        if empty:
            bq = "0.00000000"
        if stale:
            u = self.update_id[s] - 5
        else:
            self.update_id[s] += 1
            u = self.update_id[s]
        return (f'{{"stream":"{s.lower()}@bookTicker","data":{{"u":{u},"s":"{s}","b":"{b}","B":"{bq}",'
                f'"a":"{a}","A":"{aq}"}}}}')

    def rest_row(self, s: str, i: int, open_: bool = False) -> list:
        t, o, h, l, c, v = (col[i] for col in self.bars[s])
        if open_:
            h, l, v = max(o, c), min(o, c), v / 2
        return [t, f"{o:.8f}", f"{h:.8f}", f"{l:.8f}", f"{c:.8f}", f"{v:.8f}", t + IV - 1, "0", 2, "0", "0", "0"]

    def _send(self, stream: str, text: str | bytes) -> None:
        for c in self.conns:
            if not c.closed and not c.muted and stream in c.streams:
                c.queue.put_nowait(text)

    def _send_all(self, item) -> None:
        for c in self.conns:
            if not c.closed and not c.muted:
                c.queue.put_nowait(item)

    # -- the exchange clock --------------------------------------------------------------------------
    async def _publish(self):
        await self._started.wait()
        start = time.monotonic()
        for i in range(self.n):
            due = start + i * self.bar_period
            delay = due - time.monotonic()
            await asyncio.sleep(max(0, delay))
            actions = self.faults.pop(i, [])
            for a in actions:
                if a[0] == "wait_until":   # hold the exchange clock until the client is in a state
                    waited = time.monotonic()
                    while not a[1]():
                        await asyncio.sleep(0.005)
                    start += time.monotonic() - waited
            actions = [a for a in actions if a[0] != "wait_until"]
            names = {a[0] for a in actions}
            skip = bool(names & {"gap", "gap_closed", "skip"})
            partials = not skip and "partials_off" not in names
            for a in actions:
                self._apply(a, i, "before")
            for s in self.symbols:
                ks, bs = f"{s.lower()}@kline_1m", f"{s.lower()}@bookTicker"
                if partials:
                    self._send(ks, self.kline(s, i, "first"))
                self._send(bs, self.book(s, i))
                for a in actions:
                    if a[0] in ("crossed", "empty_quote", "stale_quote"):
                        self._send(bs, self.book(s, i, crossed=a[0] == "crossed", empty=a[0] == "empty_quote",
                                                 stale=a[0] == "stale_quote"))
                if partials:
                    self._send(ks, self.kline(s, i, "mid"))
                if not skip:
                    self._send(ks, self.kline(s, i, "closed"))
            self.cursor = i + 1
            for a in actions:
                self._apply(a, i, "after")
            if "reconnect_within_bar" in names:
                # TCP gone after bar i closed; bar i+1 is published once the client is back
                # (a reconnect inside one bar: nothing was missed).
                await asyncio.sleep(0.2)   # the client has read bar i (an abort loses unread data)
                seen = len(self.handshakes)
                self._apply(("drop",), i, "before")
                waited = time.monotonic()
                while len(self.handshakes) == seen or all(c.closed for c in self.conns):
                    await asyncio.sleep(0.005)
                await asyncio.sleep(0.2)   # ... and has run its post-connect check, still in bar i+1
                start += time.monotonic() - waited
        self.finished.set()

    def _apply(self, action: tuple, i: int, when: str) -> None:
        kind = action[0]
        if when == "before":
            if kind == "drop":            # W1: TCP gone, no close frame
                live = [c for c in self.conns if not c.closed]
                if not live:              # the client is still reconnecting: drop it at the next bar
                    self.faults[i + 1].append(("drop",))
                for c in live:
                    c.closed = True
                    _abort(c.ws)
            elif kind == "gap":           # M7: bars i..i+k-1 never sent on WS (partials of i+k are)
                for j in range(i + 1, i + action[1]):
                    self.faults[j].append(("skip",))
            elif kind == "gap_closed":    # M7 via a closed kline: also skip i+k's still-open updates
                for j in range(i + 1, i + action[1]):
                    self.faults[j].append(("skip",))
                self.faults[i + action[1]].append(("partials_off",))
            elif kind == "stall":         # W8: connections stay open, pings answered, no data
                for c in self.conns:
                    c.muted = True
            elif kind == "garbage":       # W4/W5/M1/M3/M9
                for item in action[1]:
                    self._send_all(item)
            elif kind == "oversize":      # M8: > 1 MiB -> client closes 1009
                self._send_all('{"stream":"x","data":"' + "x" * (2 * 2**20) + '"}')
        else:
            if kind == "dup":             # M5: the closed kline of bar i again
                for s in self.symbols:
                    self._send(f"{s.lower()}@kline_1m", self.kline(s, i, "closed"))
            elif kind == "ooo":           # M6: an older closed kline
                for s in self.symbols:
                    self._send(f"{s.lower()}@kline_1m", self.kline(s, i - action[1], "closed"))
                    self._send(f"{s.lower()}@kline_1m", self.kline(s, i - action[1], "mid"))
            elif kind == "shutdown":      # serverShutdown, then the server closes those connections later
                victims = [c for c in self.conns if not c.closed]
                msg = f'{{"stream":"!serverShutdown","data":{{"e":"serverShutdown","E":{self.sim_now_ms()}}}}}'
                for c in victims:
                    c.queue.put_nowait(msg)
                self.faults[i + action[1]].append(("close_conns", victims))
            elif kind == "close_conns":
                # Like Binance after serverShutdown: the old connections go once the client's
                # replacement is open (a loaded test machine may take longer than the grace bars).
                if not any(not c.closed and c not in action[1] for c in self.conns):
                    self.faults[i + 1].append(action)
                    return
                for c in action[1]:
                    if not c.closed:
                        c.closed = True
                        c.queue.put_nowait(("close",))

    # -- WebSocket -------------------------------------------------------------------------------------
    async def _process_request(self, connection, request):
        if request.path.startswith("/api/"):
            return await self._rest(connection, request)
        self.handshakes.append((time.monotonic(), request.path))
        if self.handshake_faults:
            status, retry_after = self.handshake_faults.pop(0)
            r = connection.respond(status, "rate limited\n")
            if retry_after is not None:
                r.headers["Retry-After"] = str(retry_after)
            return r
        return None

    async def _handler(self, ws):
        path = ws.request.path
        query = parse_qs(urlsplit(path).query)
        streams = set("/".join(query.get("streams", [])).split("/")) - {""}
        self._ids += 1
        conn = FakeConn(ws, self._ids, path, streams, time.monotonic())
        if self.flap > 0:
            self.flap -= 1
            conn.closed = True
            self.conns.append(conn)
            _abort(ws)
            return
        self.conns.append(conn)
        self._started.set()
        sender = asyncio.create_task(self._sender(conn))
        try:
            async for message in ws:
                try:
                    req = json.loads(message)
                    method, params, rid = req["method"], req["params"], req["id"]
                except (ValueError, KeyError, TypeError):
                    conn.queue.put_nowait('{"code":2,"msg":"Invalid request"}')
                    continue
                if method == "SUBSCRIBE":
                    conn.subscribe_times.append(time.monotonic())
                    conn.streams.update(params)
                    conn.queue.put_nowait(json.dumps({"result": None, "id": rid}))
                else:
                    conn.queue.put_nowait(json.dumps({"code": 2, "msg": "Invalid request", "id": rid}))
        except Exception as exc:  # noqa: BLE001 - the client vanished
            conn.error = exc
        finally:
            conn.closed = True
            sender.cancel()

    async def _sender(self, conn: FakeConn):
        ws = conn.ws
        try:
            while True:
                item = await conn.queue.get()
                if type(item) is tuple:
                    await ws.close(1001, "server shutdown")
                    return
                await ws.send(item)
        except Exception as exc:  # noqa: BLE001 - the connection is gone
            conn.error = exc

    # -- REST -----------------------------------------------------------------------------------------
    async def _rest(self, connection, request):
        url = urlsplit(request.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        fault = self.rest_faults.pop(0) if self.rest_faults else None
        self.rest_log.append((time.monotonic(), q, self.cursor))
        if fault == "500":
            return connection.respond(HTTPStatus.INTERNAL_SERVER_ERROR, "oops\n")
        if fault == "timeout":
            await asyncio.sleep(self.rest_timeout_delay)
        if isinstance(fault, tuple) and fault[0] in ("429", "418"):
            r = connection.respond(int(fault[0]), '{"code":-1003,"msg":"Too many requests"}')
            r.headers["Retry-After"] = str(fault[1])
            return r
        if url.path != "/api/v3/klines":
            return connection.respond(HTTPStatus.NOT_FOUND, "not found\n")
        s = q.get("symbol")
        if s not in self.bars or q.get("interval") != "1m":
            return connection.respond(HTTPStatus.BAD_REQUEST, '{"code":-1121,"msg":"Invalid symbol."}')
        start = int(q.get("startTime", self.t0))
        end = int(q.get("endTime", 2**62))
        limit = min(int(q.get("limit", 500)), 1000)
        first = max(0, -(-(start - self.t0) // IV))
        rows = []
        i = first
        while len(rows) < limit and i <= min(self.cursor, self.n - 1):
            t = self.t0 + i * IV
            if t > end:
                break
            if i < self.cursor:
                rows.append(self.rest_row(s, i))
            elif self.rest_include_open:
                rows.append(self.rest_row(s, i, open_=True))
            i += 1
        body = json.dumps(rows) if fault != "garbage" else '[[1, "x"]'
        r = connection.respond(HTTPStatus.OK, body)
        r.headers["Content-Type"] = "application/json"
        return r


def _abort(ws) -> None:
    transport = getattr(ws, "transport", None)
    if transport is not None:
        transport.abort()


def garbage_frames(symbol: str = "btcusdt") -> list:
    """Bad frames of docs/hostile-inputs.md W4/W5, M1, M3, M9: each must be counted and dropped."""
    s = symbol
    return [
        "{not json",                                               # malformed JSON
        b"\x00\x01\x02binary",                                      # binary frame
        "",                                                         # empty frame
        '{"stream":"' + s + '@kline_1m","data":{"e":"kline","E":1,"s":"' + s.upper() + '","k":{"t":0,"T":59999,'
        '"s":"' + s.upper() + '","i":"1m","o":"NaN","c":"1","h":"1","l":"1","v":"1","x":true}}}',   # M1
        '{"stream":"' + s + '@kline_1m","data":{"e":"kline","E":1,"s":"' + s.upper() + '","k":{"t":0,"T":59999,'
        '"s":"' + s.upper() + '","i":"1m","o":"1","c":"1","h":"1","l":"2","v":"1","x":true}}}',     # M3 h < l
        '{"stream":"' + s + '@kline_1m","data":{"e":"kline","E":1,"s":"' + s.upper() + '","k":{"t":0,"T":59999,'
        '"s":"' + s.upper() + '","i":"1m","o":1e999,"c":"1","h":"1","l":"1","v":"1","x":true}}}',  # JSON number
        '{"stream":"' + s + '@depth@100ms","data":{"e":"depthUpdate","E":1}}',                     # unknown stream
        '{"stream":"dogeusdt@kline_1m","data":{"e":"kline"}}',                                       # unknown symbol
        '{"stream":"' + s + '@kline_1m"}',                                                          # missing data
        '{"stream":"' + s + '@kline_1m","data":[1,2]}',                                             # data not object
        '{"e":"somethingNew","E":1}',                                                               # unknown event
        '{"code":2,"msg":"Invalid request"}',                                                       # error frame
        '{"result":null,"id":987654}',                                                              # unmatched ack
        '{"stream":"x","data":{"a": NaN}}',                                                         # JSON NaN literal
    ]
