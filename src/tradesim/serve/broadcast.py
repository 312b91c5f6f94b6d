"""Fan the engine's events out to WebSocket clients without ever slowing the engine.

One `Broadcaster` per server. It serializes each event once, keeps the newest
``replay`` of them (a client that reconnects gets what it missed from
``from_seq``), and hands the bytes to every client whose types match. Each
client has a bounded queue: one that falls ``client_queue`` events behind is
dropped with a ``subscriber_dropped`` notice, never waited for.

Where the events come from (docs/serve.md, "Live events"):

* **A recorded session** (``--record`` or ``[sessions]``): the session log is the
  stream. The recorder's `tap` hands over every logged event; `LogStream` turns
  those a client can use into the engine's event shapes (``bar`` ->
  ``bar_received``, ``runner_added`` -> ``control`` ``add``, a runner's events
  with ``runner_id``), and **``seq`` is the log's seq**. So a client that missed
  more than the kept events gets the rest read back from the log on disk
  (`LogPages`), then the kept ones, then live ones: each event once, in order.
  The engine's bus is not listened to at all (nothing is built for it).
* **No recording**: the engine's `EventBus`, subscribed only while at least one
  client is connected (``bus.active`` is False otherwise, and the engine builds no
  events). ``seq`` is the bus's; a ``from_seq`` older than what was kept gets
  ``gap_from`` (the oldest seq still known) in its ``hello``.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections import deque
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import orjson

from tradesim.engine import TradingEngine
from tradesim.engine.events import EVENT_TYPES

__all__ = ["Broadcaster", "Client", "LogPages", "LogStream"]

log = logging.getLogger(__name__)

#: The fields of each engine event type (a converted log event carries exactly these).
_FIELDS = {name: [f.name for f in fields(cls) if f.name not in ("seq", "time")]
           for name, cls in EVENT_TYPES.items()}

#: A runner's logged events that are engine events too (same name and fields, ``runner`` -> ``runner_id``).
RUNNER_TYPES = frozenset({"opportunity_detected", "state_transition", "position_opened", "position_updated",
                          "position_reduced", "position_closed", "order_placed", "order_cancelled",
                          "action_rejected", "runner_error", "runner_status", "strategy_reloaded",
                          "analysis_timeout", "risk_limit", "risk_resumed"})

#: Event types a recorded session's stream carries (the log's decisions and snapshots are read
#: with ``/api/sessions/{id}/events``).
LOG_STREAM_TYPES = RUNNER_TYPES | {"bar_received", "feed_status", "control", "request_refused"}

#: Control-event fields that are not part of its ``detail``.
_CONTROL_OWN = frozenset({"type", "seq", "time", "command", "runner", "wall", "scope", "origin", "source",
                          "sha256"})


class LogStream:
    """Turns session-log events into the engine's event shapes (the recorded stream's messages).

    ``time`` of a converted event: when the server received it (``recv`` of a bar or feed status,
    ``wall`` of a control), and for a runner's events the latest such time before it in the log
    (`wall`), so the same log event converts to the same bytes live and read back.

    Parameters
    ----------
    wall : int, optional
        The latest receive / wall time (ms UTC) before the first event converted.
    """

    def __init__(self, wall: int | None = None) -> None:
        self.wall = wall

    def convert(self, event: dict[str, Any]) -> tuple[str, bytes] | None:
        """``(type, JSON bytes)`` of one logged event, or None for those the stream does not carry."""
        kind = event["type"]
        own = event.get("recv", event.get("wall"))
        if type(own) is int:
            self.wall = own
        seq = event["seq"]
        if kind == "bar":
            out = {"type": "bar_received", "seq": seq, "time": self.wall,
                   **{k: event.get(k) for k in _FIELDS["bar_received"]}}
        elif kind in RUNNER_TYPES:
            out = {"type": kind, "seq": seq, "time": self.wall,
                   **{k: event.get(k) for k in _FIELDS[kind] if k != "runner_id"}, "runner_id": event["runner"]}
        elif kind == "feed_status":
            out = {"type": kind, "seq": seq, "time": self.wall, "feed": event.get("feed"),
                   "status": event.get("status"), "detail": event.get("detail") or {}}
        elif kind == "control":
            detail = {k: v for k, v in event.items()
                      if k not in _CONTROL_OWN and isinstance(v, (str, int, float, bool))}
            out = {"type": "control", "seq": seq, "time": self.wall, "command": event["command"],
                   "runner_id": event.get("runner"), "scope": event.get("scope", ""),
                   "origin": event.get("origin", ""), "detail": detail}
        elif kind == "request_refused":
            out = {"type": kind, "seq": seq, "time": self.wall, **{k: event.get(k) for k in _FIELDS[kind]}}
        elif kind == "runner_added":
            out = {"type": "control", "seq": seq, "time": self.wall, "command": "add",
                   "runner_id": event["runner"], "scope": event.get("scope", ""),
                   "origin": event.get("origin", ""),
                   "detail": {k: event.get(k) for k in ("symbol", "strategy", "feed")}}
        else:
            return None
        return out["type"], orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY)


def _reader(log_dir: Path):
    from tradesim.eventlog import LogReader

    return LogReader(log_dir)


def wall_before(reader: Any, seq: int) -> int | None:
    """The latest ``recv`` / ``wall`` (ms UTC) of an event before `seq` (the blocks just before it)."""
    if reader.last_seq == 0 or seq <= 1:
        return None
    k = reader.block_for(min(seq - 1, reader.last_seq))
    for i in range(k, max(-1, k - 4), -1):
        for event in reversed(reader.block_events(reader.block(i))):
            if event["seq"] < seq:
                own = event.get("recv", event.get("wall"))
                if type(own) is int:
                    return own
    return None


class LogPages:
    """A recorded session's log from `from_seq` on, page by page, as the stream's JSON messages
    (`LogStream`): what a reconnecting client missed. One reader serves the pages; it is reopened
    only when the log on disk has grown past it.

    Parameters
    ----------
    log_dir : Path
        The session's log folder.
    from_seq : int
        The first seq wanted.
    types : frozenset of str, optional
        Stream event types wanted (all if None).
    """

    def __init__(self, log_dir: Path, from_seq: int, types: frozenset[str] | None) -> None:
        self.log_dir, self.types = log_dir, types
        self.next = from_seq   # the first seq not read yet
        self._reader: Any = None
        self._stream: LogStream | None = None

    def read(self, to_seq: int, limit: int = 5000) -> list[bytes]:
        """Messages of seqs ``next .. min(to_seq, next + limit - 1)`` (as far as the log on disk
        reaches: `next` says where it stopped)."""
        reader = self._reader
        if reader is None or self.next > reader.last_seq:
            if reader is not None:
                reader.close()
            self._reader = reader = _reader(self.log_dir)
        if self._stream is None:
            self._stream = LogStream(wall_before(reader, self.next))
        convert, types = self._stream.convert, self.types
        out: list[bytes] = []
        for event in reader.events(from_seq=self.next, to_seq=min(to_seq, self.next + limit - 1)):
            self.next = event["seq"] + 1
            converted = convert(event)
            if converted is not None and (types is None or converted[0] in types):
                out.append(converted[1])
        return out

    def close(self) -> None:
        if self._reader is not None:
            self._reader.close()
            self._reader = None


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
        The broadcaster's own bus subscription size (it is resubscribed if ever dropped).
    recorder : SessionRecorder, optional
        The session being recorded (started): its log is the stream (see the module docstring).
    """

    def __init__(self, engine: TradingEngine, replay: int = 20_000, bus_queue: int = 200_000,
                 recorder: Any = None) -> None:
        self.engine = engine
        self.recent: deque[tuple[int, str, bytes]] = deque(maxlen=replay)
        self.clients: set[Client] = set()
        self.bus_queue = bus_queue
        self.dropped_clients = 0
        self.recorder = recorder if recorder is not None and recorder.recording else None
        self.numbering = "session" if self.recorder is not None else "engine"
        self.horizon = 1   # the oldest seq this broadcaster can vouch for (kept, or read from the log)
        self._sub: Any = None
        self._task: asyncio.Task | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # recorded stream: events the tap handed over, put back in seq order on the loop
        self._tapped: deque[dict[str, Any]] = deque()
        self._wake_pending = False
        self._pending: list[tuple[int, dict[str, Any]]] = []
        self._next = 1
        self._stream = LogStream()
        self._watch: asyncio.Task | None = None

    @property
    def log_dir(self) -> Path | None:
        """The recorded session's log folder (None without a recording)."""
        if self.recorder is None:
            return None
        from tradesim.recording.manifest import LOG_DIR

        return Path(self.recorder.path) / LOG_DIR

    @property
    def seq(self) -> int:
        """The last seq delivered to clients (the stream's numbering)."""
        return self._next - 1 if self.recorder is not None else self.engine.bus.seq

    def start(self) -> None:
        """Start on the running loop: with a recording, tap its log (call before the engine runs)."""
        self._loop = asyncio.get_running_loop()
        rec = self.recorder
        if rec is not None:
            self._watch = self._loop.create_task(self._watch_recording())
            rec.tap = self._on_tap
            self._next = rec.last_seq + 1
            self.horizon = 1   # everything before is on disk
            rec.flush()
            if rec.last_seq and self.log_dir is not None and self.log_dir.is_dir():
                reader = _reader(self.log_dir)
                try:
                    self._stream = LogStream(wall_before(reader, self._next))
                finally:
                    reader.close()

    async def _watch_recording(self, period: float = 0.25) -> None:
        # A recording that fails (disk full ...) logs nothing more: the stream falls back to the
        # engine's bus. Its numbering differs, so every client is closed with the reason (it
        # reconnects; an old from_seq then gets gap_from, a newer one is ignored).
        while self.recorder is not None:
            await asyncio.sleep(period)
            rec = self.recorder
            if rec is not None and rec.error is not None and not rec.finished:
                self._drain_tapped()
                rec.tap = None
                self.recorder = None
                self.numbering = "engine"
                self.recent.clear()
                self.horizon = self.engine.bus.seq + 1
                for client in list(self.clients):
                    client.dropped = (f"{rec.error}: the live stream now follows the engine's own numbering; "
                                      "reconnect")
                    client.wake.set()
                self.clients.clear()
                log.warning("session %s: %s; WebSocket clients now get the engine's events", rec.id, rec.error)

    async def stop(self) -> None:
        if self._watch is not None:
            self._watch.cancel()
        if self.recorder is not None and self.recorder.tap == self._on_tap:
            self.recorder.tap = None
        self._unsubscribe()
        for client in list(self.clients):
            client.wake.set()

    # -- engine bus (no recording) --------------------------------------------------------------

    def _subscribe(self) -> None:
        bus = self.engine.bus
        last = self.recent[-1][0] if self.recent else self.horizon - 1
        self._sub = self.engine.subscribe(maxsize=self.bus_queue)
        if bus.seq > last:   # published while nobody listened: the kept events are not continuous
            self.recent.clear()
            self.horizon = bus.seq + 1
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run())

    def _unsubscribe(self) -> None:
        sub, self._sub = self._sub, None
        if sub is None:
            return
        sub.close()   # no event enters after this; take what is queued
        while (event := sub.get_nowait()) is not None:
            self.publish(event.seq, event.type, event.to_json())
        if self._task is not None:
            self._task.cancel()
            self._task = None

    async def _run(self) -> None:
        while True:
            sub = self._sub
            if sub is None:
                return
            try:
                event = await sub.__anext__()
            except StopAsyncIteration:
                if sub.dropped and sub is self._sub:   # should not happen: resubscribe
                    log.warning("event broadcaster fell behind; resubscribing")
                    self._sub = None
                    self._subscribe_again()
                    continue
                return
            self.publish(event.seq, event.type, event.to_json())
            # Take what else is queued without a loop round-trip per event.
            while (nxt := sub.get_nowait()) is not None:
                self.publish(nxt.seq, nxt.type, nxt.to_json())

    def _subscribe_again(self) -> None:
        self._sub = self.engine.subscribe(maxsize=self.bus_queue)
        self.recent.clear()
        self.horizon = self.engine.bus.seq + 1

    # -- session log (recording) -------------------------------------------------------------

    def _on_tap(self, event: dict[str, Any]) -> None:
        # Any thread. The loop puts the events back in seq order (`_drain_tapped`).
        self._tapped.append(event)
        if not self._wake_pending and self._loop is not None:
            self._wake_pending = True
            with contextlib.suppress(RuntimeError):   # the loop is closed: nobody to tell
                self._loop.call_soon_threadsafe(self._drain_tapped)

    def _drain_tapped(self) -> None:
        self._wake_pending = False
        tapped, pending = self._tapped, self._pending
        while tapped:
            event = tapped.popleft()
            if event["seq"] >= self._next:
                heapq.heappush(pending, (event["seq"], event))
        convert = self._stream.convert
        while pending and pending[0][0] == self._next:
            seq, event = heapq.heappop(pending)
            self._next = seq + 1
            converted = convert(event)
            if converted is not None:
                self.publish(seq, converted[0], converted[1])

    # -- clients ---------------------------------------------------------------------------------

    def publish(self, seq: int, kind: str, data: bytes) -> None:
        """Keep one serialized event and offer it to every client (those too far behind are dropped)."""
        if kind == "subscriber_dropped":
            return
        self.recent.append((seq, kind, data))
        for client in list(self.clients):
            if not client.offer(seq, kind, data):
                self.clients.discard(client)
                self.dropped_clients += 1
                self._maybe_idle()

    def kept_from(self) -> int:
        """The oldest seq the kept events (then live ones) deliver without a hole."""
        if self.recent:
            return self.recent[0][0]
        return self._next if self.recorder is not None else max(self.horizon, self.engine.bus.seq + 1)

    def add(self, types: frozenset[str] | None, maxsize: int, from_seq: int | None) -> tuple[Client, int | None]:
        """A new client; with `from_seq`, the kept events from there are queued first.

        Returns the client and, when `from_seq` is older than what is kept, the oldest seq kept
        (the client missed events in between; with a recording, read them first with `LogPages`).
        """
        client = Client(types, maxsize)
        gap_from = None
        if self.recorder is None and self._sub is None:
            self._subscribe()
        if from_seq is not None:
            oldest = self.kept_from()
            if from_seq < oldest:
                gap_from = oldest
            for seq, kind, data in self.recent:
                if seq >= from_seq and (types is None or kind in types):
                    client.queue.append(data)
                    client.last_seq = seq
            if len(client.queue) > maxsize:   # keep the newest; the client sees the gap by seq
                for _ in range(len(client.queue) - maxsize):
                    client.queue.popleft()
            client.last_seq = max(client.last_seq, from_seq - 1)
        self.clients.add(client)
        return client, gap_from

    def remove(self, client: Client) -> None:
        self.clients.discard(client)
        self._maybe_idle()

    def _maybe_idle(self) -> None:
        if not self.clients and self.recorder is None:
            self._unsubscribe()

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
