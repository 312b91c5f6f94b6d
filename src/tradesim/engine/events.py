"""Typed engine events, their JSON form, and the `EventBus` that fans them out.

Every event carries a monotonic sequence number ``seq`` (assigned by the bus,
starting at 1, never reused within an engine) and ``time``, the wall-clock
time it was published (ms since epoch UTC). Runner events also name the
runner (``runner_id``), its symbol and strategy; timestamps of bars are bar
open times (ms since epoch UTC), prices are in quote currency.

Subscribers are async iterators with a bounded queue. Publishing never waits
for a subscriber: one whose queue is full is dropped, receives a final
`SubscriberDropped` notice, and its iterator ends. Events may be published
from any thread (runners decide on worker threads); each subscriber sees them
in ``seq`` order.
"""

from __future__ import annotations

import asyncio
import threading
import time
from collections import deque
from dataclasses import asdict, dataclass, field, fields
from typing import Any, ClassVar

import orjson

__all__ = [
    "ActionRejected", "BarReceived", "Event", "EventBus", "FeedStatus", "OpportunityDetected",
    "OrderCancelled", "OrderPlaced", "PositionClosed", "PositionOpened", "PositionReduced", "PositionUpdated",
    "RiskResumed", "RunnerErrorEvent", "RunnerStatusChanged",
    "AnalysisTimeout", "ControlApplied", "RequestRefused", "RiskLimit", "StateTransition", "StrategyReloaded",
    "SubscriberDropped",
    "Subscription",
    "EVENT_TYPES",
]


@dataclass(frozen=True, slots=True, kw_only=True)
class Event:
    """Base of every event: ``seq`` (monotonic per bus) and ``time`` (publish time, ms UTC)."""

    type: ClassVar[str] = "event"
    seq: int = 0
    time: int = 0

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict with ``type`` first."""
        return {"type": self.type, **asdict(self)}

    def to_json(self) -> bytes:
        """UTF-8 JSON (orjson; NaN/inf become null)."""
        return orjson.dumps(self.to_dict(), option=orjson.OPT_SERIALIZE_NUMPY)


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerEvent(Event):
    """An event about one runner."""

    runner_id: str = ""
    symbol: str = ""
    strategy: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class BarReceived(Event):
    """A closed bar arrived from a feed (delivered to every runner watching ``symbol``)."""

    type: ClassVar[str] = "bar_received"
    feed: str = ""
    symbol: str = ""
    timestamp: int = 0
    open: float = 0.0
    high: float = 0.0
    low: float = 0.0
    close: float = 0.0
    volume: float = 0.0
    bid: float | None = None
    ask: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class OpportunityDetected(RunnerEvent):
    """``detect_opportunity`` started an analysis (IDLE -> ANALYZING)."""

    type: ClassVar[str] = "opportunity_detected"
    timestamp: int = 0
    reason: str = ""
    context: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class StateTransition(RunnerEvent):
    """The state machine moved ``from_state`` -> ``to_state`` (names of `State`)."""

    type: ClassVar[str] = "state_transition"
    timestamp: int = 0
    from_state: str = ""
    to_state: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionOpened(RunnerEvent):
    """A fill opened a position (price incl. slippage, fee in quote currency)."""

    type: ClassVar[str] = "position_opened"
    timestamp: int = 0
    side: str = ""
    quantity: float = 0.0
    price: float = 0.0
    fee: float = 0.0
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionUpdated(RunnerEvent):
    """The strategy moved the stop-loss or take-profit of the open position."""

    type: ClassVar[str] = "position_updated"
    timestamp: int = 0
    stop_loss: float | None = None
    take_profit: float | None = None


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionClosed(RunnerEvent):
    """A position was closed; ``trade`` is `Trade.to_dict()` (P&L net of fees). A position of several
    lots (scaled in) books a trade per lot: one event each, at the same ``timestamp``."""

    type: ClassVar[str] = "position_closed"
    timestamp: int = 0
    trade: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class PositionReduced(RunnerEvent):
    """A partial exit closed ``quantity`` (base units) at ``price``; ``remaining`` is still open;
    ``trades``: the trades it booked (`Trade.to_dict()`, one per lot or part of a lot)."""

    type: ClassVar[str] = "position_reduced"
    timestamp: int = 0
    quantity: float = 0.0
    price: float = 0.0
    remaining: float = 0.0
    trades: list = field(default_factory=list)


@dataclass(frozen=True, slots=True, kw_only=True)
class _OrderEvent(RunnerEvent):
    """A limit or stop entry order (docs/orders.md): ``price`` its limit or stop."""

    timestamp: int = 0
    side: str = ""
    order_type: str = ""
    price: float = 0.0
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderPlaced(_OrderEvent):
    """A limit or stop entry order started working."""

    type: ClassVar[str] = "order_placed"


@dataclass(frozen=True, slots=True, kw_only=True)
class OrderCancelled(_OrderEvent):
    """A working order is gone unfilled; ``reason``: cancelled, replaced, expired,
    analysis_timeout, analysis_cancelled, rejected (at its fill), risk_limit, halted ..."""

    type: ClassVar[str] = "order_cancelled"


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskResumed(RunnerEvent):
    """A runner blocked by its own risk limit was resumed (its risk baseline restarts)."""

    type: ClassVar[str] = "risk_resumed"


@dataclass(frozen=True, slots=True, kw_only=True)
class ActionRejected(RunnerEvent):
    """An action the strategy asked for could not be carried out."""

    type: ClassVar[str] = "action_rejected"
    timestamp: int = 0
    action: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerErrorEvent(RunnerEvent):
    """A strategy call failed (error class and message, at most 1 KiB)."""

    type: ClassVar[str] = "runner_error"
    timestamp: int = 0
    error: str = ""
    message: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class RunnerStatusChanged(RunnerEvent):
    """RUNNING / PAUSED / HALTED / STOPPED / FAILED, with the reason."""

    type: ClassVar[str] = "runner_status"
    status: str = ""
    reason: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class StrategyReloaded(RunnerEvent):
    """The runner's strategy was reloaded from ``path`` (hot reload; position and window kept)."""

    type: ClassVar[str] = "strategy_reloaded"
    path: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class AnalysisTimeout(RunnerEvent):
    """An analysis lasted ``analysis_timeout_bars`` bars without a decision: back to IDLE."""

    type: ClassVar[str] = "analysis_timeout"
    timestamp: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class RiskLimit(RunnerEvent):
    """A risk limit was reached (docs/orders.md, Risk limits).

    ``scope``: ``"runner"`` (the runner's own limits) or ``"portfolio"`` (the
    engine's; ``runner_id`` empty unless an entry of that runner was
    rejected); ``limit`` names it (``max_daily_loss_pct``, ...), ``threshold``
    and ``value`` in its unit (percent, quote currency, or positions),
    ``action`` what was done (``rejected``, ``block``, ``halt``)
    and ``timestamp`` the bar (ms since epoch UTC).
    """

    type: ClassVar[str] = "risk_limit"
    scope: str = "runner"
    timestamp: int = 0
    limit: str = ""
    threshold: float = 0.0
    value: float = 0.0
    action: str = ""


@dataclass(frozen=True, slots=True, kw_only=True)
class FeedStatus(Event):
    """Feed connectivity: connected, reconnecting, gap_detected, backfilled, rejected, ...

    ``detail`` holds the feed's fields (symbol, counts, delays in s, ...).
    """

    type: ClassVar[str] = "feed_status"
    feed: str = ""
    status: str = ""
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class ControlApplied(Event):
    """A control command (add, pause, resume, stop, reload, exit, remove) applied to a runner.

    ``scope`` and ``origin`` say who asked (e.g. ``"control"`` and ``"api 127.0.0.1"``;
    empty for Python calls); ``time`` is when it took effect (between two bars when the engine runs).
    """

    type: ClassVar[str] = "control"
    command: str = ""
    runner_id: str | None = None
    scope: str = ""
    origin: str = ""
    detail: dict = field(default_factory=dict)


@dataclass(frozen=True, slots=True, kw_only=True)
class RequestRefused(Event):
    """A request a front end refused (``tradesim serve``: 401, 403, 413, 415, 421, 429).

    ``route`` is the method and path (no query string), ``reason`` the error code and message,
    ``client`` the caller's address; credentials are never included. ``suppressed`` counts the
    refusals not reported one by one since the previous such event (a flood is rate-limited).
    """

    type: ClassVar[str] = "request_refused"
    status: int = 0
    code: str = ""
    route: str = ""
    reason: str = ""
    client: str = ""
    suppressed: int = 0


@dataclass(frozen=True, slots=True, kw_only=True)
class SubscriberDropped(Event):
    """Last item of a subscription that fell ``maxsize`` events behind."""

    type: ClassVar[str] = "subscriber_dropped"
    reason: str = ""


EVENT_TYPES: dict[str, type[Event]] = {
    cls.type: cls for cls in (BarReceived, OpportunityDetected, StateTransition, PositionOpened,
                              PositionUpdated, PositionReduced, PositionClosed, OrderPlaced,
                              OrderCancelled, RiskResumed, ActionRejected, RunnerErrorEvent,
                              RunnerStatusChanged, StrategyReloaded, AnalysisTimeout, RiskLimit, FeedStatus,
                              ControlApplied, RequestRefused, SubscriberDropped)
}

_FIELDS = {name: {f.name for f in fields(cls)} for name, cls in EVENT_TYPES.items()}


class Subscription:
    """Async iterator over the events of one subscriber (see `EventBus.subscribe`)."""

    def __init__(self, bus: EventBus, maxsize: int, types: frozenset[str] | None) -> None:
        self._bus = bus
        self.maxsize = maxsize
        self.types = types
        self.dropped = False
        self._items: deque[Event] = deque()
        self._waiter: asyncio.Future | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._closed = False

    def _offer(self, event: Event) -> bool:
        """Called under the bus lock. False when this subscriber must be dropped."""
        if self.types is not None and event.type not in self.types:
            return True
        if len(self._items) >= self.maxsize:
            return False
        self._items.append(event)
        self._wake()
        return True

    def _drop(self, notice: SubscriberDropped) -> None:
        self.dropped = True
        self._items.clear()
        self._items.append(notice)
        self._closed = True
        self._wake()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and self._loop is not None:
            self._waiter = None
            self._loop.call_soon_threadsafe(_resolve, waiter)

    def close(self) -> None:
        """Unsubscribe; the iterator ends after the events already queued."""
        self._bus._remove(self)
        with self._bus._lock:
            self._closed = True
            self._wake()

    def __aiter__(self) -> Subscription:
        return self

    async def __anext__(self) -> Event:
        while True:
            with self._bus._lock:
                if self._items:
                    return self._items.popleft()
                if self._closed:
                    raise StopAsyncIteration
                self._loop = asyncio.get_running_loop()
                self._waiter = self._loop.create_future()
                waiter = self._waiter
            await waiter

    def get_nowait(self) -> Event | None:
        """The next queued event, or None."""
        with self._bus._lock:
            return self._items.popleft() if self._items else None

    def __len__(self) -> int:
        return len(self._items)


def _resolve(fut: asyncio.Future) -> None:
    if not fut.done():
        fut.set_result(None)


class EventBus:
    """Publish events to any number of bounded subscribers; thread-safe, never blocks.

    Parameters
    ----------
    history : int
        How many recent events `recent` keeps (0 = none).
    """

    def __init__(self, history: int = 0) -> None:
        self._lock = threading.Lock()
        self._subs: list[Subscription] = []
        self._seq = 0
        self._recent: deque[Event] | None = deque(maxlen=history) if history else None
        self.dropped_subscribers = 0

    @property
    def seq(self) -> int:
        """Sequence number of the last event published (0 before the first)."""
        return self._seq

    @property
    def active(self) -> bool:
        """True when someone listens (publishers may skip building events otherwise)."""
        return bool(self._subs) or self._recent is not None

    def subscribe(self, maxsize: int = 10_000, types: list[str] | None = None) -> Subscription:
        """A new subscriber that receives every later event (or only `types`).

        Raises
        ------
        ValueError
            If ``maxsize < 1`` or a type name is unknown.
        """
        if maxsize < 1:
            raise ValueError(f"maxsize = {maxsize}: must be >= 1")
        if types is not None:
            unknown = set(types) - EVENT_TYPES.keys()
            if unknown:
                raise ValueError(f"unknown event types {sorted(unknown)}; known: {sorted(EVENT_TYPES)}")
        sub = Subscription(self, maxsize, frozenset(types) if types is not None else None)
        with self._lock:
            self._subs.append(sub)
        return sub

    def _remove(self, sub: Subscription) -> None:
        with self._lock:
            if sub in self._subs:
                self._subs.remove(sub)

    def publish(self, cls: type[Event], **fields_: Any) -> Event:
        """Build an event of `cls` with the next ``seq`` and deliver it to every subscriber."""
        with self._lock:
            self._seq += 1
            event = cls(seq=self._seq, time=time.time_ns() // 1_000_000, **fields_)
            if self._recent is not None:
                self._recent.append(event)
            slow = [s for s in self._subs if not s._offer(event)]
            for sub in slow:
                self._subs.remove(sub)
                self.dropped_subscribers += 1
                self._seq += 1
                sub._drop(SubscriberDropped(
                    seq=self._seq, time=event.time,
                    reason=f"subscriber fell {sub.maxsize} events behind (at seq {event.seq}); dropped"))
        return event

    def recent(self, n: int | None = None) -> list[Event]:
        """The last `n` events kept (needs ``history > 0``)."""
        with self._lock:
            items = list(self._recent or ())
        return items if n is None else items[-n:]


def event_from_runner_dict(payload: dict) -> tuple[type[Event], dict] | None:
    """Map a `SymbolRunner` ``on_event`` dict to (event class, fields); None for unknown kinds."""
    name = payload.get("type")
    cls = EVENT_TYPES.get(name)
    if cls is None:
        return None
    allowed = _FIELDS[name]
    return cls, {k: v for k, v in payload.items() if k in allowed}
