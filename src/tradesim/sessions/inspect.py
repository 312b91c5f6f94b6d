"""The state of a recorded session at one point (``tradesim inspect``), without replaying it.

The log holds each runner's state (``snapshot`` events) every chunk of a
backtest and every 1,000 bars of a live feed. `state_at` finds (through the
log's sparse index) the block holding the point, reads blocks backwards until
every runner's latest snapshot is found, then rolls each runner's snapshot
forward over the events up to the point: decisions (indicator values),
analyses (context), fills (position), status changes.
"""

from __future__ import annotations

import copy
from typing import Any

from tradesim.recording.outcomes import expand
from tradesim.sessions.session import Session, chunk_span, event_trades

__all__ = ["resolve_point", "state_at"]

#: Events after the first one past ``--time`` still searched for events at or before it.
LOOK_AHEAD = 10_000

def resolve_point(session: Session, seq: int | None = None, time_ms: int | None = None) -> int:
    """The seq a ``--seq`` / ``--time`` names: `seq` itself, or the last event whose time is at or
    before `time_ms` (looking up to `LOOK_AHEAD` events past the first later one: a live runner's
    decisions on a bar are logged after the bars that arrived meanwhile).

    Raises
    ------
    ValueError
        Neither or both given, `seq` outside the log, or `time_ms` before its first event.
    """
    log = session.log
    if (seq is None) == (time_ms is None):
        raise ValueError("give exactly one of seq and time")
    last = log.last_seq
    if seq is not None:
        if not 1 <= seq <= last:
            raise ValueError(f"seq = {seq}: the log holds seq 1 .. {last}")
        return seq
    after = next(iter(log.seek_time(time_ms + 1)), None)   # the first event after the time
    if after is None:
        return last
    if after["seq"] <= 1:
        raise ValueError(f"time = {time_ms}: before the session's first event")
    point = after["seq"] - 1
    # A live runner's outcomes for bar T are logged after the bars that arrived while it decided:
    # take those too (within a bounded look-ahead), so the state is the one after bar T.
    for event in session.events(from_seq=after["seq"], to_seq=after["seq"] + LOOK_AHEAD):
        t = event.get("time")
        if type(t) is int and t <= time_ms:
            point = event["seq"]
    return point


def state_at(session: Session, seq: int, sub: int | None = None, until_time: int | None = None) -> dict[str, Any]:
    """Each runner's state just after event `seq`: status, state, position, working order,
    context, indicator values, last decision, last bar, trades and realised P&L since the snapshot.

    `seq` a backtest's ``outcomes`` event (a chunk's outcomes): after all of them, or after the
    one at place `sub` (their ``sub``) when given, or after the last one whose bar time is at or
    before `until_time` (ms UTC; what ``--time`` names) when given.

    Returns ``{"seq": seq, "event": the event, "runners": {key: state}}``.
    """
    log = session.log
    keys = {r["key"] for r in session.manifest.get("runners", [])}
    events = _back_to_snapshots(log, seq, keys)
    if sub is not None:
        events = [e for e in events if e["seq"] < seq or e.get("sub", 0) <= sub]
    if until_time is not None:   # (a chunk's outcomes after that time are not yet)
        events = [e for e in events if e["seq"] < seq or "sub" not in e or type(e.get("timestamp")) is not int
                  or e["timestamp"] <= until_time]
    states: dict[str, dict[str, Any]] = {}
    for event in events:
        key = event.get("runner")
        kind = event["type"]
        if kind == "snapshot":
            states[key] = _from_snapshot(event)
            continue
        if key is None or kind in ("bars", "control", "shutdown"):
            if kind == "bars":   # a backtest's chunk: logged before its bars are run
                _state(states, key)["last_input_bar"] = {"chunk_last": chunk_span(event)[1]}
            elif kind == "control" and key is not None:
                _state(states, key)["last_control"] = {k: event.get(k) for k in ("command", "wall", "bars")}
            elif kind == "bar":
                for st in states.values():
                    if st.get("symbol") == event["symbol"]:   # the feed's; the runner's is at_bar
                        st["last_input_bar"] = {k: event[k] for k in ("timestamp", "open", "high", "low",
                                                                       "close", "volume")}
            continue
        st = _state(states, key)
        _apply(st, event)
        if isinstance(event.get("timestamp"), int):
            st["at_bar"] = event["timestamp"]
    target = events[-1] if events and events[-1]["seq"] == seq else next(session.events(seq, seq), None)
    return {"seq": seq, "event": target, "runners": states}


def _back_to_snapshots(log, seq: int, keys: set[str]) -> list[dict[str, Any]]:
    """The events from the latest snapshot of every runner in `keys` (or the log's start) up to `seq`,
    read block by block backwards from the block holding `seq` (the sparse index finds it)."""
    i = log.block_for(seq) if log.n_blocks else -1
    chunks: list[list[dict[str, Any]]] = []
    missing = set(keys)
    while i >= 0:
        got = list(expand(e for e in log.block_events(log.block(i)) if e["seq"] <= seq))
        chunks.append(got)
        missing -= {e.get("runner") for e in got if e["type"] == "snapshot"}
        if not missing:
            break
        i -= 1
    return [e for chunk in reversed(chunks) for e in chunk]


def _state(states: dict[str, dict[str, Any]], key: str) -> dict[str, Any]:
    if key not in states:   # no snapshot yet: the state a new runner starts in
        states[key] = {"status": "running", "state": "IDLE", "position": None, "working_order": None,
                       "context": {}, "indicators": {}, "last_decision": None, "at_bar": None,
                       "trades_since_snapshot": 0, "realized_pnl_since_snapshot": 0.0, "from_seq": None}
    return states[key]


def _from_snapshot(event: dict[str, Any]) -> dict[str, Any]:
    st = _state({}, event["runner"])
    st.update(status=event.get("status"), state=event.get("state"), position=copy.deepcopy(event.get("position")),
              working_order="pending order" if event.get("pending_order") else None,
              context=event.get("context") or {}, indicators=event.get("indicators") or {},
              cash=event.get("cash"), equity=event.get("equity"), bars=event.get("bars"),
              trades=event.get("trades"), from_seq=event["seq"], symbol=event.get("symbol"),
              at_bar=event.get("timestamp"))
    return st


def _numbers(*values: Any) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _apply(st: dict[str, Any], event: dict[str, Any]) -> None:
    kind = event["type"]
    st["symbol"] = event.get("symbol", st.get("symbol"))
    for trade in event_trades(event):   # a close's trade (one per lot), a partial exit's trades
        st["trades_since_snapshot"] += 1
        st["realized_pnl_since_snapshot"] += float(trade.get("pnl", 0.0) or 0.0)
        st["last_trade"] = trade
    if kind == "decision":
        st["last_decision"] = {k: event.get(k) for k in ("seq", "timestamp", "state", "started", "start_reason",
                                                         "action", "quantity", "stop_loss", "take_profit",
                                                         "price", "reason")}
        st["indicators"] = event.get("indicators") or st["indicators"]
        st["context"] = event.get("context") if event.get("context") is not None else st["context"]
        if event.get("action") in ("enter_long", "enter_short", "exit"):
            st["working_order"] = {"action": event["action"], "since": event.get("timestamp"),
                                   "reason": event.get("reason")}
        if event.get("started") and st["state"] == "IDLE":
            st["state"] = "ANALYZING"
        if event.get("action") == "cancel_analysis":
            st["state"], st["context"] = "IDLE", {}
    elif kind == "opportunity_detected":
        st["state"], st["context"] = "ANALYZING", event.get("context") or {}
    elif kind == "analysis_timeout":
        st["state"], st["context"] = "IDLE", {}
    elif kind == "position_opened":
        st["state"], st["working_order"] = "IN_POSITION", None
        pos, qty, price = st["position"], event.get("quantity"), event.get("price")
        if pos is not None and _numbers(pos.get("quantity"), pos.get("entry_price"), qty, price):
            # a scale-in: the quantity-weighted average entry, as the state machine keeps it
            total = pos["quantity"] + qty
            pos["entry_price"] = (pos["quantity"] * pos["entry_price"] + qty * price) / total
            pos["quantity"] = total
        else:
            st["position"] = {"side": event.get("side"), "quantity": qty, "entry_price": price,
                              "entry_time": event.get("timestamp"), "entry_reason": event.get("reason")}
    elif kind == "position_updated":
        if st["position"] is not None:
            st["position"].update({k: v for k, v in event.items() if k in ("stop_loss", "take_profit")})
    elif kind == "position_closed":
        st["state"], st["position"], st["working_order"], st["context"] = "IDLE", None, None, {}
    elif kind == "position_reduced":   # a partial exit: the rest stays open
        pos, left = st["position"], event.get("remaining")
        if pos is not None and left is not None:
            closed = event_trades(event)
            lots = [x for t in closed for x in (t.get("quantity"), t.get("entry_price"))]
            if closed and left > 0 and _numbers(pos.get("quantity"), pos.get("entry_price"), *lots):
                # the lots closed leave the average entry of the lots left (the state machine's rule)
                cost = sum(t["quantity"] * t["entry_price"] for t in closed)
                pos["entry_price"] = (pos["quantity"] * pos["entry_price"] - cost) / left
            pos["quantity"] = left
    elif kind == "action_rejected":
        st["working_order"] = None
        st["last_rejection"] = {k: event.get(k) for k in ("timestamp", "action", "reason")}
    elif kind == "runner_error":
        st["last_error"] = {k: event.get(k) for k in ("timestamp", "error", "message")}
    elif kind == "runner_status":
        st["status"] = event.get("status")
