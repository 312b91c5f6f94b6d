"""Fan the engine's events out to WebSocket clients without ever slowing the engine.

One `Broadcaster` holds one subscription to the engine's `EventBus` (publishing
there only appends to a deque). On the event loop it serializes each event once
(`Event.to_json`), keeps the newest ``replay`` of them (so a client that
reconnects gets what it missed from ``from_seq``), tracks each (feed, symbol)'s
last bar arrival (the dashboard's "last bar age"), and hands the bytes to every
client whose types match. Each client has a bounded queue: one that falls
``client_queue`` events behind is dropped with a ``subscriber_dropped`` notice,
never waited for.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

import orjson

from tradesim.engine import TradingEngine

__all__ = ["Broadcaster", "Client"]

log = logging.getLogger(__name__)


@dataclass(eq=False)
class Client:
    """One WebSocket client: its types filter and its bounded queue of JSON events."""

    types: frozenset[str] | None
    maxsize: int
    queue: deque[bytes] = field(default_factory=deque)
    wake: asyncio.Event = field(default_factory=asyncio.Event)
    dropped: str | None = None
    last_seq: int = 0

    def offer(self, seq: int, kind: str, data: bytes) -> bool:
        if self.dropped is not None:
            return False
        if seq <= self.last_seq or (self.types is not None and kind not in self.types):
            return True
        if len(self.queue) >= self.maxsize:
            self.dropped = f"client fell {self.maxsize} events behind (at seq {seq}); dropped"
            self.queue.clear()
            self.wake.set()
            return False
        self.queue.append(data)
        self.last_seq = seq
        self.wake.set()
        return True


class Broadcaster:
    """See the module docstring.

    Parameters
    ----------
    engine : TradingEngine
    replay : int
        Newest events kept for clients that reconnect with ``from_seq``.
    bus_queue : int
        The broadcaster's own subscription size (it is resubscribed if ever dropped).
    """

    def __init__(self, engine: TradingEngine, replay: int = 20_000, bus_queue: int = 200_000) -> None:
        self.engine = engine
        self.recent: deque[tuple[int, str, bytes]] = deque(maxlen=replay)
        self.clients: set[Client] = set()
        self.last_bar_wall: dict[str, float] = {}   # symbol -> time.time() of its last bar
        self.bus_queue = bus_queue
        self.sent = 0
        self.dropped_clients = 0
        self._sub = engine.subscribe(maxsize=bus_queue)
        self._task: asyncio.Task | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        self._sub.close()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for client in list(self.clients):
            client.wake.set()

    async def _run(self) -> None:
        while True:
            try:
                event = await self._sub.__anext__()
            except StopAsyncIteration:
                if self._sub.dropped:   # should not happen: resubscribe and tell the clients
                    log.warning("event broadcaster fell behind; resubscribing")
                    self._sub = self.engine.subscribe(maxsize=self.bus_queue)
                    continue
                return
            self.publish(event.seq, event.type, event.to_json(), event)
            # Take what else is queued without a loop round-trip per event.
            while (nxt := self._sub.get_nowait()) is not None:
                self.publish(nxt.seq, nxt.type, nxt.to_json(), nxt)

    def publish(self, seq: int, kind: str, data: bytes, event: Any = None) -> None:
        if kind == "bar_received" and event is not None:
            self.last_bar_wall[event.symbol] = time.time()
        if kind == "subscriber_dropped":
            return
        self.recent.append((seq, kind, data))
        for client in list(self.clients):
            if not client.offer(seq, kind, data):
                self.clients.discard(client)
                self.dropped_clients += 1

    def add(self, types: frozenset[str] | None, maxsize: int, from_seq: int | None) -> tuple[Client, int | None]:
        """A new client; with `from_seq`, the kept events from there are queued first.

        Returns the client and, when `from_seq` is older than what is kept, the oldest seq kept
        (the client missed events in between: the session log has them when recording).
        """
        client = Client(types, maxsize)
        gap_from = None
        if from_seq is not None:
            if self.recent and self.recent[0][0] > from_seq:
                gap_from = self.recent[0][0]
            for seq, kind, data in self.recent:
                if seq >= from_seq and (types is None or kind in types):
                    client.queue.append(data)
                    client.last_seq = seq
            if len(client.queue) > maxsize:   # keep the newest; the client sees the gap by seq
                for _ in range(len(client.queue) - maxsize):
                    client.queue.popleft()
        self.clients.add(client)
        return client, gap_from

    def remove(self, client: Client) -> None:
        self.clients.discard(client)

    @staticmethod
    def batch(client: Client, limit: int = 1000) -> bytes:
        """Up to `limit` queued events as one JSON array (one WebSocket message)."""
        items = []
        q = client.queue
        while q and len(items) < limit:
            items.append(q.popleft())
        return b"[" + b",".join(items) + b"]"

    @staticmethod
    def notice(kind: str, **fields: Any) -> bytes:
        return orjson.dumps([{"type": kind, "time": time.time_ns() // 1_000_000, **fields}])
