"""An ``outcomes`` event's rows turned back into the events a per-event recording holds.

This is the reading side of `tradesim.recording.outcomes` (the row layout is
documented there and in docs/sessions.md). It is compiled because every reader
of a backtest session (compare, replay, diff-live, inspect, the serve API)
goes through it once per outcome event, and building these dicts is most of
what reading such a session costs: in Python about 1 µs per event, here a
third of that (docs/sessions.md, Speed).
"""

from libc.string cimport memcpy


cdef extern from "Python.h":
    int PyGC_Enable()    # Python >= 3.10: the previous state (1 enabled, 0 disabled)
    int PyGC_Disable()

import sys

from tradesim._core import ActionType, State

# Row codes (a row's first item); a row of any other event starts with its type (a str).
cdef enum:
    _DECISION = 0
    _OPENED = 1
    _CLOSED = 2
    _OPPORTUNITY = 3

DECISION, OPENED, CLOSED, OPPORTUNITY = _DECISION, _OPENED, _CLOSED, _OPPORTUNITY
# Items in a row of each kind (docs/sessions.md); a row of any other event is [type, fields].
cdef dict _WIDTHS = {DECISION: 13, OPENED: 7, CLOSED: 14, OPPORTUNITY: 4}

cdef dict _STATE_NAMES = {s.value: s.name for s in State}
cdef dict _ACTION_NAMES = {a.value: a.name.lower() for a in ActionType}
# The indicator values are little-endian doubles; on a big-endian host they are read by struct.
cdef bint _LITTLE = sys.byteorder == "little"


cdef class _Indicators:
    """One batch's indicator values reader: its layout (``[key, slot, n, names]`` per indicator) turned
    into dicts like `SymbolRunner.indicator_values` (the indicators the bank held: a prefix of the layout)."""
    cdef list layout
    cdef tuple keys
    cdef bint flat        # every indicator single-output, in slot order: {key: value}

    def __init__(self, layout, seq):
        self.layout = [tuple(entry) for entry in (layout or [])]
        for entry in self.layout:   # (checked: the values are read without bounds checks)
            if len(entry) != 4 or type(entry[1]) is not int or type(entry[2]) is not int \
                    or entry[1] < 0 or entry[2] < 1:
                raise ValueError(f"outcomes event seq {seq}: bad indicator layout entry {entry!r}")
        self.keys = tuple(entry[0] for entry in self.layout)
        self.flat = all(n == 1 and slot == i for i, (_, slot, n, _) in enumerate(self.layout))

    cdef dict read(self, object raw):
        cdef bytes data = raw
        cdef Py_ssize_t n = len(data) // 8, k, slot, width
        if len(data) % 8:
            raise ValueError(f"indicator values of {len(data)} bytes: not float64s")
        cdef const char* p = data
        cdef double v
        cdef dict out = {}
        cdef list values
        if not _LITTLE:
            import struct
            values = list(struct.unpack(f"<{n}d", data[:8 * n]))
        elif self.flat and n == len(self.keys):
            for k in range(n):
                memcpy(&v, p + 8 * k, 8)
                out[self.keys[k]] = v
            return out
        else:
            values = [0.0] * n
            for k in range(n):
                memcpy(&v, p + 8 * k, 8)
                values[k] = v
        for key, slot, width, names in self.layout:
            if slot + width <= n:
                out[key] = values[slot] if width == 1 else dict(zip(names, values[slot:slot + width]))
        return out


#: The event type of a batch of a runner's outcomes.
OUTCOMES = "outcomes"
cdef str _OUTCOMES = OUTCOMES


def expand_batch(list events, frozenset types=None):
    """`events` (a block's, in order) with each ``outcomes`` event replaced by the events it stands
    for (`expand_outcomes`); only those whose ``type`` is in `types` when given.

    Returns `events` itself when it holds nothing to expand or leave out (no copy).
    """
    cdef Py_ssize_t i, n = len(events)
    cdef object kind
    if types is None:
        for i in range(n):
            kind = (<dict?>events[i]).get("type")
            if type(kind) is str and len(<str>kind) == 8 and <str>kind == _OUTCOMES:
                break
        else:
            return events
    else:
        for i in range(n):
            kind = (<dict?>events[i]).get("type")
            if kind not in types or kind == _OUTCOMES:
                break
        else:
            return events
    cdef list out = events[:i]
    cdef dict event
    for event in events[i:]:
        kind = event.get("type")
        if kind == _OUTCOMES:
            if types is None:
                out.extend(expand_outcomes(event))
            else:
                out.extend([e for e in expand_outcomes(event) if e["type"] in types])
        elif types is None or kind in types:
            out.append(event)
    return out


def expand_outcomes(dict event):
    """The events an ``outcomes`` event stands for, in order, as a per-event recording writes them.

    Each gets the batch's ``runner``, ``symbol``, ``strategy`` and ``seq``, ``time`` from its
    ``timestamp`` (ms UTC) when that is an int, and ``sub``: its place in the batch (0, 1, ...).

    Parameters
    ----------
    event : dict
        An ``outcomes`` event as the log holds it (``rows``: lists, docs/sessions.md).

    Returns
    -------
    list of dict

    Raises
    ------
    ValueError
        A row of an unknown kind (a log written by a newer tradesim), a row whose length is not
        its kind's, a bad indicator layout or indicator bytes that are not float64s.
    """
    # The cyclic GC is paused while the batch is built: a collection would only walk the new dicts
    # (they hold no cycle), and those walks cost twice the building. The pause is process-wide but
    # short (one batch), and no Python code runs in it (the GIL is held throughout).
    cdef int was_enabled = PyGC_Disable()
    try:
        return _expand(event)
    finally:
        if was_enabled:
            PyGC_Enable()


cdef list _expand(dict event):
    cdef object runner = event.get("runner"), symbol = event.get("symbol"), strategy = event.get("strategy")
    cdef object seq = event.get("seq")
    cdef _Indicators indicators = _Indicators(event.get("indicators"), seq)
    cdef list out = []
    cdef list rows = event["rows"]
    cdef Py_ssize_t i
    cdef object row, code, ts, action, extra
    cdef Py_ssize_t width
    cdef dict ev
    for i in range(len(rows)):
        row = rows[i]
        # (checked: the items are read without bounds checks, and a malformed row is an error)
        if type(row) is not list and type(row) is not tuple or not row:
            raise ValueError(f"outcomes event seq {seq}: row {i} is {row!r}, not a row")
        code = row[0]
        if type(code) is str:
            width = 2
        elif type(code) is int and code in _WIDTHS:
            width = _WIDTHS[code]
        else:
            raise ValueError(f"outcomes event seq {seq}: unknown row kind {code!r}")
        if len(row) != width:
            raise ValueError(f"outcomes event seq {seq}: row {i} of kind {code!r} has {len(row)} items, "
                             f"not {width}")
        ts = row[1]
        if code == _DECISION:
            action = row[5]
            ev = {"runner": runner, "type": "decision", "symbol": symbol, "strategy": strategy, "timestamp": ts,
                  "state": _STATE_NAMES[row[2]], "started": bool(row[3]), "start_reason": row[4],
                  "action": _ACTION_NAMES[action] if action >= 0 else None, "quantity": row[6],
                  "stop_loss": row[7], "take_profit": row[8], "price": row[9], "reason": row[10],
                  "indicators": indicators.read(row[12])}
            extra = row[11]
            if extra:
                ev["fields"] = extra
        elif code == _OPENED:
            ev = {"runner": runner, "type": "position_opened", "symbol": symbol, "strategy": strategy,
                  "timestamp": ts, "side": row[2], "quantity": row[3], "price": row[4], "fee": row[5],
                  "reason": row[6]}
        elif code == _CLOSED:
            ev = {"runner": runner, "type": "position_closed", "symbol": symbol, "strategy": strategy,
                  "timestamp": ts, "trade": _trade(symbol, strategy, row)}
        elif code == _OPPORTUNITY:
            ev = {"runner": runner, "type": "opportunity_detected", "symbol": symbol, "strategy": strategy,
                  "timestamp": ts, "reason": row[2], "context": row[3]}
        else:   # [type, fields]
            ev = {"runner": runner, "type": code, "symbol": symbol, "strategy": strategy}
            ev.update(row[1])
            ts = ev.get("timestamp")
        if type(ts) is int:
            ev["time"] = ts
        ev["seq"] = seq
        ev["sub"] = i
        out.append(ev)
    return out


cdef dict _trade(object symbol, object strategy, object row):
    # `Trade.to_dict` of the booked trade (the core's record), without building the Trade; the core
    # books C doubles and integers, which MessagePack brings back as float and int.
    (_, _, side, quantity, entry_time, entry_price, exit_time, exit_price, pnl, fees, exit_reason,
     ambiguous, entry_bar, exit_bar) = row
    return {"symbol": symbol, "strategy": strategy, "side": side, "quantity": quantity,
            "entry_time": entry_time, "entry_price": entry_price, "exit_time": exit_time,
            "exit_price": exit_price, "pnl": pnl, "fees": fees, "exit_reason": exit_reason,
            "ambiguous": bool(ambiguous), "entry_bar": entry_bar, "exit_bar": exit_bar,
            "gross_pnl": pnl + fees, "return_pct": 100.0 * pnl / (quantity * entry_price)}
