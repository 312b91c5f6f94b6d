"""A loopback fake of Binance's REST ``GET /api/v3/klines`` serving real klines (no network).

`FakeRest` (an `http.server.ThreadingHTTPServer` on 127.0.0.1, port 0, HTTP/1.1
keep-alive) answers from the rows of Binance kline CSV files in
``../shared/data/binance/klines/1m``, keeping the decimal strings exactly as
Binance published them. Faults are queued per test in `faults` and consumed
one per request: ``("429", retry_after)``, ``("418", retry_after)``,
``"500"``, ``"503"``, ``"timeout"`` (no answer until `release` is set),
``"truncated"`` (a JSON body cut in half), ``"weight"`` (an answer saying the
IP's used weight is near the limit), ``"dup"`` (the second row repeated),
``"badohlc"`` (the first row's high below its low). `drop` removes open times (a gap the
exchange "never published"). `block_at` holds the first request whose
startTime is >= it until `release` is set and sets `blocked` (used to kill a
downloader mid-run deterministically). Every request is logged in `log`.
"""

from __future__ import annotations

import csv
import functools
import gzip
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import numpy as np
import orjson

SHARED_DATA = Path(__file__).resolve().parents[2].parent / "shared" / "data"
KLINES_1M = SHARED_DATA / "binance" / "klines" / "1m"
BTC_FILE = KLINES_1M / "BTCUSDT-1m-2025-05-20_2025-08-18.csv.gz"
ETH_FILE = KLINES_1M / "ETHUSDT-1m-2025-05-20_2025-08-18.csv.gz"


@functools.cache
def read_rows(path: Path) -> tuple[np.ndarray, list[bytes]]:
    """(open times, JSON of each REST row) from a Binance kline CSV, strings kept verbatim."""
    times, rows = [], []
    with gzip.open(path, "rt", newline="") as fh:
        reader = csv.reader(fh)
        next(reader)
        for r in reader:
            t = int(r[0])
            times.append(t)
            rows.append(orjson.dumps([t, r[1], r[2], r[3], r[4], r[5], int(r[6]), r[7] or "0",
                                      int(r[8] or 0), r[9] or "0", r[10] or "0", "0"]))
    return np.asarray(times, dtype=np.int64), rows


class FakeRest:
    """Loopback REST klines server; use as a context manager. `url` is the base URL."""

    def __init__(self, files: dict[str, Path], used_weight: int = 10) -> None:
        self.data = {sym: read_rows(p) for sym, p in files.items()}
        self.faults: list = []
        self.drop: set[int] = set()
        self.log: list[dict] = []
        self.used_weight = used_weight
        self.block_at: int | None = None
        self.blocked = threading.Event()
        self.release = threading.Event()
        self._lock = threading.Lock()
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stalls

            def log_message(self, *args):
                pass

            def do_GET(self):
                fake._handle(self)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self) -> FakeRest:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.release.set()
        self.server.shutdown()
        self.server.server_close()

    def requests_in(self, start: int, end: int) -> list[dict]:
        """Logged requests whose startTime is in [start, end)."""
        return [q for q in self.log if start <= q["startTime"] < end]

    def _send(self, h, code: int, body: bytes, headers: dict | None = None) -> None:
        h.send_response(code)
        h.send_header("Content-Type", "application/json")
        h.send_header("Content-Length", str(len(body)))
        for k, v in (headers or {}).items():
            h.send_header(k, v)
        h.end_headers()
        h.wfile.write(body)

    def _handle(self, h) -> None:
        url = urlsplit(h.path)
        q = {k: v[0] for k, v in parse_qs(url.query).items()}
        if url.path != "/api/v3/klines":
            return self._send(h, 404, b'{"code":-1,"msg":"not found"}')
        try:
            symbol, start, end = q["symbol"], int(q["startTime"]), int(q["endTime"])
            limit = int(q.get("limit", 500))
        except (KeyError, ValueError):
            return self._send(h, 400, b'{"code":-1102,"msg":"bad parameters"}')
        with self._lock:
            fault = self.faults.pop(0) if self.faults else None
            self.log.append({"symbol": symbol, "startTime": start, "endTime": end, "fault": fault})
            block = self.block_at is not None and start >= self.block_at
            if block:
                self.block_at = None
        if block:
            self.blocked.set()
            self.release.wait(30)
        weight = {"X-MBX-USED-WEIGHT-1M": str(self.used_weight)}
        if fault == "timeout":
            self.release.wait(30)
            return
        if isinstance(fault, tuple) and fault[0] in ("429", "418"):
            return self._send(h, int(fault[0]), b'{"code":-1003,"msg":"Too many requests"}',
                              {"Retry-After": str(fault[1]), **weight})
        if fault in ("500", "503"):
            return self._send(h, int(fault), b"<html>oops</html>", weight)
        if symbol not in self.data:
            return self._send(h, 400, b'{"code":-1121,"msg":"Invalid symbol."}', weight)
        times, rows = self.data[symbol]
        i, j = np.searchsorted(times, start), np.searchsorted(times, end, "right")
        picked = [rows[k] for k in range(i, j) if not self.drop or int(times[k]) not in self.drop][:limit]
        if fault == "dup" and len(picked) > 1:
            picked.insert(1, picked[1])
        if fault == "badohlc" and picked:
            row = orjson.loads(picked[0])
            row[2], row[3] = row[3], row[2]
            if row[2] == row[3]:
                row[2] = "0.5"  # high below low even for a flat bar
            picked[0] = orjson.dumps(row)
        body = b"[" + b",".join(picked) + b"]"
        if fault == "truncated":
            body = body[: len(body) // 2]
        if fault == "weight":
            weight = {"X-MBX-USED-WEIGHT-1M": "5990"}
        self._send(h, 200, body, weight)


def main() -> None:  # pragma: no cover - used by benches/bench_catalog.py
    """Serve BTCUSDT and ETHUSDT until stdin closes; print the base URL on the first line."""
    import sys

    with FakeRest({"BTCUSDT": BTC_FILE, "ETHUSDT": ETH_FILE}) as srv:
        print(srv.url, flush=True)
        sys.stdin.read()


if __name__ == "__main__":  # pragma: no cover
    main()
