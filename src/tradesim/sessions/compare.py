"""Where two runs first part: aligning runners' outcome events and finding the first difference.

Two runs are compared runner by runner (paired by key, else by symbol; the
rest are listed as unpaired). A runner's outcomes (`tradesim.sessions.session.OUTCOME_TYPES`:
decisions, fills, rejections, errors ...) are compared event by event, in
order; the first pair that differs (`same_event`: NaN equals NaN, the seq,
runner key and strategy name do not count) is the runner's divergence, at
the bar whose open time the events carry. The earliest divergence over all
runners is the run's. With it come the inputs at that bar in both runs, each
run's last decision before it (context and indicator values), and what
happened after: events, trades and net P&L on each side.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from tradesim.jsonable import jsonable
from tradesim.sessions.session import event_trades, same_event

if TYPE_CHECKING:
    from tradesim.sessions.session import Session

__all__ = ["Comparison", "Divergence", "compare_outcomes", "compare_sessions", "first_difference"]


@dataclass
class Divergence:
    """The first difference of one runner's outcomes between run A and run B.

    Attributes
    ----------
    runner : str
        Runner key in A (``key_b`` in B when it differs).
    index : int
        Position in the runner's outcome list (0-based).
    timestamp : int or None
        Open time of the bar where they part (ms since epoch UTC).
    a, b : dict or None
        The differing events (None: that run had no more events).
    state_a, state_b : dict
        Each run's last decision up to that point: ``{"decision": ..., "context": ..., "indicators": ...}``.
    bar_a, bar_b : dict or None
        The input bar at `timestamp` in each run (OHLCV), when known.
    after_a, after_b : dict
        From the divergence on: ``{"events": {type: count}, "trades": n, "net_profit": x}``.
    """

    runner: str
    key_b: str
    index: int
    timestamp: int | None
    a: dict[str, Any] | None
    b: dict[str, Any] | None
    state_a: dict[str, Any] = field(default_factory=dict)
    state_b: dict[str, Any] = field(default_factory=dict)
    bar_a: dict[str, Any] | None = None
    bar_b: dict[str, Any] | None = None
    after_a: dict[str, Any] = field(default_factory=dict)
    after_b: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return jsonable({k: getattr(self, k) for k in self.__dataclass_fields__})


@dataclass
class Comparison:
    """Run A against run B (see the module docstring).

    Attributes
    ----------
    label_a, label_b : str
    pairs : list of (str, str)
        Runner keys paired (A, B).
    unpaired : list of str
        Runners only one run has.
    compared : int
        Outcome events compared (pairs up to each runner's divergence, or all).
    decisions : int
        Decisions among them.
    divergences : list of Divergence
        One per runner that differs, earliest first.
    """

    label_a: str
    label_b: str
    pairs: list[tuple[str, str]]
    unpaired: list[str]
    compared: int
    decisions: int
    divergences: list[Divergence]

    @property
    def first(self) -> Divergence | None:
        """The earliest divergence over all runners, or None when the runs agree."""
        return self.divergences[0] if self.divergences else None

    def to_dict(self) -> dict[str, Any]:
        return {"a": self.label_a, "b": self.label_b, "pairs": [list(p) for p in self.pairs],
                "unpaired": self.unpaired, "compared": self.compared, "decisions": self.decisions,
                "identical": self.first is None and not self.unpaired,
                "first": self.first.to_dict() if self.first else None,
                "divergences": [d.to_dict() for d in self.divergences]}


def first_difference(a: list[dict[str, Any]], b: list[dict[str, Any]]) -> int | None:
    """Index of the first event where `a` and `b` differ (one ending first counts), or None."""
    for i, (x, y) in enumerate(zip(a, b)):
        if not same_event(x, y):
            return i
    return None if len(a) == len(b) else min(len(a), len(b))


def compare_outcomes(a: dict[str, list[dict[str, Any]]], b: dict[str, list[dict[str, Any]]], *,
                     label_a: str = "A", label_b: str = "B", inputs_a: Session | None = None,
                     inputs_b: Session | None = None) -> Comparison:
    """Compare two runs' outcome events by runner (dicts of key -> events in order).

    `inputs_a` / `inputs_b`: the sessions whose bars to show at a divergence.
    """
    pairs, unpaired = _pair(list(a), list(b), inputs_a, inputs_b)
    compared = decisions = 0
    found = []
    for key_a, key_b in pairs:
        ea, eb = a[key_a], b[key_b]
        i = first_difference(ea, eb)
        upto = min(len(ea), len(eb)) if i is None else i
        compared += upto
        decisions += sum(1 for e in ea[:upto] if e["type"] == "decision")
        if i is not None:
            found.append(_divergence(key_a, key_b, i, ea, eb, inputs_a, inputs_b))
    found.sort(key=lambda d: (d.timestamp is None, d.timestamp or 0, d.runner))
    return Comparison(label_a, label_b, pairs, unpaired, compared, decisions, found)


def compare_sessions(a: Session, b: Session) -> Comparison:
    """Compare two recorded sessions (live vs backtest, two parameter sets, two strategy versions)."""
    return compare_outcomes(a.outcomes(), b.outcomes(), label_a=a.id, label_b=b.id, inputs_a=a, inputs_b=b)


def _pair(keys_a: list[str], keys_b: list[str], sa: Session | None,
          sb: Session | None) -> tuple[list[tuple[str, str]], list[str]]:
    pairs = [(k, k) for k in keys_a if k in keys_b]
    rest_a = [k for k in keys_a if k not in keys_b]
    rest_b = [k for k in keys_b if k not in keys_a]
    symbol = {k: k.split(":", 1)[0] for k in rest_a + rest_b}
    for k in list(rest_a):   # then by symbol (the same symbol under another strategy name)
        match = next((m for m in rest_b if symbol[m] == symbol[k]), None)
        if match is not None:
            pairs.append((k, match))
            rest_a.remove(k)
            rest_b.remove(match)
    return pairs, rest_a + rest_b


def _divergence(key_a: str, key_b: str, i: int, ea: list, eb: list, sa: Session | None,
                sb: Session | None) -> Divergence:
    x = ea[i] if i < len(ea) else None
    y = eb[i] if i < len(eb) else None
    stamps = [e.get("timestamp") for e in (x, y) if e is not None and e.get("timestamp") is not None]
    ts = min(stamps) if stamps else None
    return Divergence(key_a, key_b, i, ts, x, y, _state(ea[:i]), _state(eb[:i]),
                      _bar_at(sa, key_a, ts), _bar_at(sb, key_b, ts), _after(ea[i:]), _after(eb[i:]))


def _state(events: list[dict[str, Any]]) -> dict[str, Any]:
    # The last decision (with the indicator values then) and the context the strategy had:
    # set by the analysis that started (opportunity_detected), cleared when a position closes.
    last = next((e for e in reversed(events) if e["type"] == "decision"), None)
    context: dict[str, Any] | None = None
    for e in reversed(events):
        if e["type"] == "opportunity_detected":
            context = e.get("context") or {}
            break
        if e["type"] in ("position_closed", "analysis_timeout"):
            context = {}
            break
    if last is None:
        return {"decision": None, "context": context, "indicators": None}
    decision = {k: last.get(k) for k in ("timestamp", "state", "started", "start_reason", "action",
                                        "quantity", "stop_loss", "take_profit", "price", "reason")}
    return {"decision": decision, "context": context, "indicators": last.get("indicators")}


def _after(events: list[dict[str, Any]]) -> dict[str, Any]:
    trades = [t for e in events for t in event_trades(e)]
    return {"events": dict(Counter(e["type"] for e in events)), "trades": len(trades),
            "net_profit": float(sum(t.get("pnl", 0.0) for t in trades))}


def _bar_at(session: Session | None, key: str, ts: int | None) -> dict[str, Any] | None:
    if session is None or ts is None:
        return None
    try:
        bars = session.bars_for(key)
    except KeyError:
        return None
    i = int(np.searchsorted(bars.timestamp, ts))
    if i >= len(bars) or int(bars.timestamp[i]) != ts:
        return None
    return {"timestamp": ts, **{n: float(getattr(bars, n)[i]) for n in ("open", "high", "low", "close", "volume")}}
