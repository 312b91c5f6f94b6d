"""A recorded backtest's outcomes, one ``outcomes`` event per chunk: its rows and their expansion.

A recorded backtest makes about five outcome events per trade (decision,
opportunity_detected, position_opened, decision, position_closed). Written one
by one, each costs a handler call from C, a dict and a log record: more than a
fifth of the backtest's own time. So while a backtest records, the runner
buffers them as tuples (`tradesim.runner.SymbolRunner.take_records`: the core
appends decisions itself, without calling Python) and the recorder writes a
chunk's worth as one ``outcomes`` event (docs/sessions.md has its fields).

`expand_outcomes` (compiled: `tradesim.recording.expansion`) turns one back
into the events a per-event recording (a live run) holds, field for field, so
every reader sees one form: `expand_batch` does it for a block's events.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Any

from tradesim.recording.expansion import (
    CLOSED,
    DECISION,
    OPENED,
    OPPORTUNITY,
    OUTCOMES,
    expand_batch,
    expand_outcomes,
)

__all__ = ["DECISION", "OPENED", "CLOSED", "OPPORTUNITY", "OUTCOMES", "expand", "expand_batch", "expand_outcomes"]


def expand(events: Iterable[dict[str, Any]], types: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
    """`events` with each ``outcomes`` event replaced by the events it stands for; only those whose
    ``type`` is in `types` when given (lazily, an event at a time: `expand_batch` does a list)."""
    wanted = frozenset(types) if types is not None else None
    for event in events:
        yield from expand_batch([event], wanted)
