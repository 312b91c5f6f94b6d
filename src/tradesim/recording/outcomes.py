"""A recorded backtest's outcomes, one ``outcomes`` event per chunk: its rows and their expansion.

A recorded backtest makes about five outcome events per trade (decision,
opportunity_detected, position_opened, decision, position_closed). Written one
by one, each costs a handler call from C, a dict and a log record: more than a
fifth of the backtest's own time. So while a backtest records, the runner
buffers them as tuples (`tradesim.runner.SymbolRunner.take_records`: the core
appends decisions itself, without calling Python) and the recorder writes a
chunk's worth as one ``outcomes`` event (docs/sessions.md has its fields).

`expand_outcomes` turns one back into the events a per-event recording (a
live run) holds, field for field, so every reader sees one form: `expand`
does it for a stream of events.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable, Iterator
from typing import Any

from tradesim._core import ActionType, State

__all__ = ["DECISION", "OPENED", "CLOSED", "OPPORTUNITY", "OUTCOMES", "expand", "expand_outcomes"]

#: The event type of a batch of a runner's outcomes.
OUTCOMES = "outcomes"

#: Row codes (a row's first item); a row of any other event starts with its type (a str).
DECISION, OPENED, CLOSED, OPPORTUNITY = 0, 1, 2, 3

_STATE_NAMES = {s.value: s.name for s in State}
_ACTION_NAMES = {a.value: a.name.lower() for a in ActionType}
_DOUBLES: dict[int, struct.Struct] = {}


def _values(raw: bytes) -> tuple[float, ...]:
    n = len(raw) // 8
    unpack = _DOUBLES.get(n)
    if unpack is None:
        unpack = _DOUBLES[n] = struct.Struct(f"<{n}d")
    return unpack.unpack(raw)


def _indicators(layout: list, raw: bytes) -> dict[str, Any]:
    # As `SymbolRunner.indicator_values` then: the indicators the bank held (a prefix of the layout).
    values = _values(raw)
    k = len(values)
    return {key: values[slot] if n == 1 else dict(zip(names, values[slot:slot + n]))
            for key, slot, n, names in layout if slot + n <= k}


def _reader(layout: list):
    # The indicator values' reader for one batch: single-output indicators filling the bank (the
    # usual case) are a zip; anything else goes through `_indicators`.
    keys = [key for key, _, _, _ in layout]
    if all(n == 1 and slot == i for i, (_, slot, n, _) in enumerate(layout)):
        width = 8 * len(keys)
        unpack = struct.Struct(f"<{len(keys)}d").unpack

        def read(raw: bytes) -> dict[str, Any]:
            return dict(zip(keys, unpack(raw))) if len(raw) == width else _indicators(layout, raw)
        return read
    return lambda raw: _indicators(layout, raw)


def expand_outcomes(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The events an ``outcomes`` event stands for, in order, as a per-event recording writes them.

    Each gets the batch's ``runner``, ``symbol``, ``strategy`` and ``seq``, ``time`` from its
    ``timestamp`` (ms UTC) when that is an int, and ``sub``: its place in the batch (0, 1, ...).

    Raises
    ------
    ValueError
        A row of an unknown kind (a log written by a newer tradesim).
    """
    runner, symbol, strategy = event.get("runner"), event.get("symbol"), event.get("strategy")
    head = {"symbol": symbol, "strategy": strategy}
    seq = event.get("seq")
    indicators = _reader(event.get("indicators") or [])
    states, actions = _STATE_NAMES, _ACTION_NAMES
    out = []
    for i, row in enumerate(event["rows"]):
        code = row[0]
        if code == DECISION:
            (_, ts, state, started, start_reason, action, quantity, stop_loss, take_profit, price, reason,
             extra, values) = row
            ev = {"runner": runner, "type": "decision", "symbol": symbol, "strategy": strategy, "timestamp": ts,
                  "state": states[state], "started": bool(started), "start_reason": start_reason,
                  "action": actions[action] if action >= 0 else None, "quantity": quantity,
                  "stop_loss": stop_loss, "take_profit": take_profit, "price": price, "reason": reason,
                  "indicators": indicators(values)}
            if extra:
                ev["fields"] = extra
            if type(ts) is int:
                ev["time"] = ts
            ev["seq"] = seq
            ev["sub"] = i
            out.append(ev)
            continue
        elif code == OPENED:
            _, ts, side, quantity, price, fee, reason = row
            ev = {"runner": runner, "type": "position_opened", **head, "timestamp": ts, "side": side,
                  "quantity": quantity, "price": price, "fee": fee, "reason": reason}
        elif code == CLOSED:
            ev = {"runner": runner, "type": "position_closed", **head, "timestamp": row[1],
                  "trade": _trade(head, row)}
        elif code == OPPORTUNITY:
            _, ts, reason, context = row
            ev = {"runner": runner, "type": "opportunity_detected", **head, "timestamp": ts, "reason": reason,
                  "context": context}
        elif isinstance(code, str):
            ev = {"runner": runner, "type": code, **head, **row[1]}
        else:
            raise ValueError(f"outcomes event seq {seq}: unknown row kind {code!r}")
        ts = ev.get("timestamp")
        if type(ts) is int:
            ev["time"] = ts
        ev["seq"] = seq
        ev["sub"] = i
        out.append(ev)
    return out


def _trade(head: dict[str, Any], row: list) -> dict[str, Any]:
    # `Trade.to_dict` of the booked trade (the core's record), without building the Trade.
    (_, _, side, quantity, entry_time, entry_price, exit_time, exit_price, pnl, fees, exit_reason,
     ambiguous, entry_bar, exit_bar) = row
    # (the core books C doubles and integers: MessagePack brings them back as float and int)
    return {"symbol": head["symbol"], "strategy": head["strategy"], "side": side, "quantity": quantity,
            "entry_time": entry_time, "entry_price": entry_price, "exit_time": exit_time,
            "exit_price": exit_price, "pnl": pnl, "fees": fees, "exit_reason": exit_reason,
            "ambiguous": bool(ambiguous), "entry_bar": entry_bar, "exit_bar": exit_bar,
            "gross_pnl": pnl + fees, "return_pct": 100.0 * pnl / (quantity * entry_price)}


def expand(events: Iterable[dict[str, Any]], types: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
    """`events` with each ``outcomes`` event replaced by the events it stands for; only those whose
    ``type`` is in `types` when given."""
    wanted = frozenset(types) if types is not None else None
    for event in events:
        if event.get("type") == OUTCOMES:
            if wanted is None:
                yield from expand_outcomes(event)
            else:
                yield from (e for e in expand_outcomes(event) if e["type"] in wanted)
        elif wanted is None or event.get("type") in wanted:
            yield event
