"""`Session`: a recorded run read back — its manifest, its log, each runner's inputs and outcomes.

A session is a folder written by `tradesim.recording.SessionRecorder`
(docs/sessions.md). `open_session` finds one by path or by id in a sessions
folder; `list_sessions` lists a folder.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from itertools import chain
from pathlib import Path
from typing import Any

import numpy as np

from tradesim.data import Bars
from tradesim.eventlog import LogReader
from tradesim.recording import LOG_DIR, MANIFEST_NAME, ManifestError, default_sessions_folder, load_manifest
from tradesim.recording.outcomes import OUTCOMES, expand_batch
from tradesim.recording.recorder import BAR_COLUMNS, bar_columns

__all__ = ["INPUT_TYPES", "OUTCOME_TYPES", "Session", "SessionNotFound", "chunk_span", "event_trades",
           "list_sessions", "open_session", "same_event"]

#: Events a run's outcome depends on (replayed in recorded order).
INPUT_TYPES = frozenset({"bars", "bar", "feed_status", "runner_added", "control", "shutdown"})

#: A runner's outcomes: what a replay must reproduce, and what `compare` aligns.
OUTCOME_TYPES = frozenset({"decision", "opportunity_detected", "position_opened", "position_closed",
                           "position_reduced", "order_placed", "order_cancelled",
                           "position_updated", "action_rejected", "analysis_timeout", "runner_error",
                           "runner_status", "strategy_reloaded"})

#: Fields that differ between two runs of the same decisions without meaning anything.
_IGNORED_FIELDS = frozenset({"seq", "sub", "time", "runner", "strategy", "source", "sha256", "path"})


def event_trades(event: dict[str, Any]) -> list[dict[str, Any]]:
    """The trades (`Trade.to_dict()`) an outcome event booked: a ``position_closed``'s ``trade``, a
    ``position_reduced``'s ``trades`` (a partial exit), none for any other event."""
    kind = event.get("type")
    if kind == "position_closed":
        trade = event.get("trade")
        return [trade] if isinstance(trade, dict) else []
    if kind == "position_reduced":
        return [t for t in event.get("trades") or [] if isinstance(t, dict)]
    return []


class SessionNotFound(LookupError):
    """No session folder at that path or with that id."""


def open_session(ref: str | Path, folder: str | Path | None = None) -> Session:
    """The session at path `ref`, or with id `ref` in `folder` (default: the sessions folder).

    Raises
    ------
    SessionNotFound
        Neither a session folder nor a known id (the message lists the folder's sessions).
    ManifestError
        The folder's manifest is unreadable.
    """
    path = Path(ref)
    if (path / MANIFEST_NAME).is_file():
        return Session(path)
    base = Path(folder) if folder is not None else default_sessions_folder()
    candidate = base / str(ref)
    if (candidate / MANIFEST_NAME).is_file():
        return Session(candidate)
    known = [p.name for p in sorted(base.iterdir())] if base.is_dir() else []
    hint = f"; sessions in {base}: {', '.join(known[-10:])}" if known else f"; {base} holds no sessions"
    raise SessionNotFound(f"no session {str(ref)!r}{hint}")


def list_sessions(folder: str | Path | None = None) -> list[Session]:
    """Sessions in `folder` (default: the sessions folder), oldest first; unreadable ones skipped."""
    base = Path(folder) if folder is not None else default_sessions_folder()
    if not base.is_dir():
        return []
    out = []
    for path in sorted(base.iterdir()):
        if (path / MANIFEST_NAME).is_file():
            try:
                out.append(Session(path))
            except ManifestError:
                continue
    return out


@dataclass(frozen=True)
class RunnerInfo:
    """A recorded runner: its key, symbol, feed, strategy (name, source, sha256), params, execution."""

    key: str
    symbol: str
    feed: str | None
    strategy: str
    script: str
    source: str
    params: dict[str, Any]
    execution: dict[str, Any]
    window_size: int
    options: dict[str, Any]
    added_during_run: bool = False
    risk: dict[str, Any] | None = None


class Session:
    """A recorded session (read-only).

    Parameters
    ----------
    path : path
        The session folder (``manifest.json`` and ``log/``).

    Raises
    ------
    ManifestError
        No readable manifest.
    """

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.manifest = load_manifest(self.path)
        self.id: str = self.manifest.get("id", self.path.name)
        self.kind: str = self.manifest.get("kind", "?")
        self._log: LogReader | None = None
        self._runners: list[RunnerInfo] | None = None

    @property
    def log(self) -> LogReader:
        """The event log (opened on first use; raises `tradesim.eventlog.LogCorrupt` on a bad block)."""
        if self._log is None:
            self._log = LogReader(self.path / LOG_DIR)
        return self._log

    def size_bytes(self) -> int:
        """Bytes on disk (manifest and log)."""
        return sum(p.stat().st_size for p in self.path.rglob("*") if p.is_file())

    # -- runners ------------------------------------------------------------------------

    def runners(self) -> list[RunnerInfo]:
        """Every runner the session recorded, those added during a live run included, in order."""
        if self._runners is None:   # (a live session's late runners are read from its log once)
            self._runners = self._read_runners()
        return list(self._runners)

    def _read_runners(self) -> list[RunnerInfo]:
        strategies = self.manifest.get("strategies", {})
        out = [self._runner(entry, strategies.get(entry.get("sha256"), "")) for entry in self.manifest["runners"]]
        seen = {r.key for r in out}
        if self.kind != "backtest":
            for event in self.log.events(types={"runner_added"}):
                if event["key"] not in seen:
                    seen.add(event["key"])
                    out.append(self._runner(event, event.get("source", "")))
        return out

    @staticmethod
    def _runner(entry: dict[str, Any], source: str) -> RunnerInfo:
        return RunnerInfo(entry["key"], entry["symbol"], entry.get("feed"), entry["strategy"],
                          entry.get("script", ""), source, dict(entry.get("params") or {}),
                          dict(entry.get("execution") or {}), int(entry.get("window_size") or 500),
                          dict(entry.get("options") or {}), bool(entry.get("added_during_run")),
                          dict(entry.get("risk") or {}))

    def runner(self, key: str) -> RunnerInfo:
        """One runner by key (raises KeyError naming the known keys)."""
        for r in self.runners():
            if r.key == key:
                return r
        raise KeyError(f"no runner {key!r} in session {self.id}; runners: {[r.key for r in self.runners()]}")

    def events(self, from_seq: int = 1, to_seq: int | None = None,
               types: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        """The log's events with from_seq <= seq <= to_seq, in order, each ``outcomes`` event (a
        backtest's chunk of outcomes) expanded into the events it stands for (they share its
        ``seq``); only those whose ``type`` is in `types` when given.

        Raises
        ------
        LogCorrupt
            A block on the way fails its checks.
        """
        wanted = frozenset(types) if types is not None else None
        batches = self.log.batches(from_seq, to_seq, types=None if wanted is None else wanted | {OUTCOMES})
        return chain.from_iterable(expand_batch(batch, wanted) for batch in batches)

    # -- inputs ---------------------------------------------------------------------------

    def inputs(self) -> Iterator[dict[str, Any]]:
        """The input events (bars, bar, feed_status, runner_added, control, shutdown), in order."""
        return self.log.events(types=INPUT_TYPES)

    def bars_for(self, key: str) -> Bars:
        """The bars runner `key` took, as columns: a backtest's chunks, or a feed's bars for its
        feed and symbol from when it was added until the shutdown, or until a stop or remove
        command (recorded with how many bars it had processed then)."""
        info = self.runner(key)
        cols: dict[str, list[np.ndarray]] = {name: [] for name, _ in BAR_COLUMNS}
        active = not info.added_during_run
        limit: int | None = None
        for event in self.inputs():   # one pass; a stop is logged after bars it never took
            kind = event["type"]
            if kind == "bars" and event["runner"] == key:
                for name, column in bar_columns(event).items():
                    cols[name].append(column)
            elif kind == "bar" and active and event["symbol"] == info.symbol \
                    and (info.feed is None or event["feed"] == info.feed):
                for name, dtype in BAR_COLUMNS:
                    cols[name].append(np.array([event[name]], dtype=dtype))
            elif kind == "runner_added" and event["key"] == key:
                active = True
            elif kind == "control" and event.get("runner") == key and event["command"] in ("stop", "remove") \
                    and limit is None:
                limit = event.get("bars")
            elif kind == "shutdown" and event.get("runner") in (None, key):
                break
        arrays = {name: (np.concatenate(cols[name]) if cols[name] else np.empty(0, dtype))[:limit]
                  for name, dtype in BAR_COLUMNS}
        return Bars(info.symbol, arrays["timestamp"].astype(np.int64),
                    *(arrays[n].astype(np.float64) for n in ("open", "high", "low", "close", "volume")),
                    source=f"session {self.id}")

    # -- outcomes -----------------------------------------------------------------------------

    def outcomes(self, key: str | None = None) -> dict[str, list[dict[str, Any]]]:
        """Each runner's outcome events (`OUTCOME_TYPES`) up to the shutdown, in order, by runner key."""
        out: dict[str, list[dict[str, Any]]] = {r.key: [] for r in self.runners()} if key is None else {key: []}
        done: set[str] = set()
        everyone = False
        for event in self.events(types=OUTCOME_TYPES | {"shutdown"}):
            if event["type"] == "shutdown":
                if event.get("runner") is None:
                    everyone = True
                else:
                    done.add(event["runner"])
                continue
            runner = event.get("runner")
            if everyone or runner in done or runner not in out:
                continue
            out[runner].append(event)
        return out

    def dropped(self) -> int:
        """Events the recording dropped (its writer's queue was full): the log is incomplete if > 0."""
        return int((self.manifest.get("log") or {}).get("dropped") or 0)

    def warnings(self) -> list[str]:
        """What makes this session's log incomplete: dropped events, a recording error, a torn tail."""
        out = []
        if self.dropped():
            out.append(f"{self.dropped():,} events were dropped while recording (the disk was too slow): "
                       f"a divergence may come from events missing from the log")
        if self.manifest.get("error"):
            out.append(f"the recording stopped early: {self.manifest['error']}")
        if self.manifest.get("status") == "recording":
            out.append("the recording did not finish (the run was killed?): the log ends where it stopped")
        return out

    def summary(self) -> dict[str, Any]:
        """What ``tradesim sessions list`` shows: id, kind, status, created, runners, bars, trades, P&L, size."""
        m = self.manifest
        result = m.get("result") or {}
        return {"id": self.id, "kind": self.kind, "status": m.get("status", "?"),
                "created": m.get("created"), "runners": [r["key"] for r in m.get("runners", [])],
                "bars": result.get("bars"), "trades": result.get("trades"),
                "net_profit": result.get("net_profit"), "events": (m.get("log") or {}).get("events"),
                "dropped": self.dropped(),
                "size_bytes": self.size_bytes(), "error": m.get("error"), "path": str(self.path)}


def chunk_span(event: dict[str, Any]) -> tuple[int | None, int | None]:
    """A ``bars`` event's first and last bar open times (ms UTC), from its int64 column."""
    raw = event.get("timestamp")
    if not isinstance(raw, bytes) or len(raw) < 8:
        return None, None
    if event.get("shuffled"):   # byte k of value i is at k * n + i
        n = len(raw) // 8
        return (int.from_bytes(raw[0::n][:8], "little", signed=True),
                int.from_bytes(raw[n - 1::n][:8], "little", signed=True))
    return int.from_bytes(raw[:8], "little", signed=True), int.from_bytes(raw[-8:], "little", signed=True)


def same_event(a: dict[str, Any], b: dict[str, Any]) -> bool:
    """True if two outcome events say the same (NaN equals NaN; seq, runner key and strategy name ignored)."""
    keys = (a.keys() | b.keys()) - _IGNORED_FIELDS
    return all(_same(a.get(k), b.get(k)) for k in keys)


def _same(x: Any, y: Any) -> bool:
    if isinstance(x, float) and isinstance(y, float):
        return x == y or (math.isnan(x) and math.isnan(y))
    if isinstance(x, dict) and isinstance(y, dict):   # (a trade inside an event names its strategy too)
        keys = x.keys() - {"strategy"}
        return keys == y.keys() - {"strategy"} and all(_same(x[k], y[k]) for k in keys)
    if isinstance(x, (list, tuple)) and isinstance(y, (list, tuple)):
        return len(x) == len(y) and all(_same(p, q) for p, q in zip(x, y))
    return x == y
