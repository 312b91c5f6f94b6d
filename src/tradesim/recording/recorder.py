"""`SessionRecorder`: a run's inputs and outcomes, in order, into a session folder.

A session folder holds ``manifest.json`` (see `tradesim.recording.manifest`)
and ``log/``, a `tradesim.eventlog` log of MessagePack events, each with the
log's ``seq``. What a run's outcome depends on is recorded, in the order it
happened (docs/sessions.md has every event type and its fields):

- inputs: ``bars`` (a backtest's bars, one event per chunk, as little-endian
  int64/float64 columns), ``bar`` (one live or replayed bar, with ``recv``,
  its receive time), ``feed_status`` (connection changes, gaps, backfills),
  ``runner_added`` and ``control`` (pause, resume, stop, reload, remove, with
  ``bars``: how many bars the runner had processed when it was applied);
- outcomes, per runner (``runner``: its key): ``decision`` (what the strategy
  returned, before it is carried out), ``opportunity_detected``,
  ``position_opened`` / ``position_closed`` (fills), ``position_updated``,
  ``action_rejected``, ``analysis_timeout``, ``runner_error``,
  ``runner_status``, ``strategy_reloaded``;
- ``outcomes``: a backtest's outcomes of one chunk, one event (rows, see
  `tradesim.recording.outcomes`; readers expand it into the events above);
- ``snapshot``: a runner's state (position, context, indicators, cash) at a
  chunk boundary of a backtest, so `tradesim inspect` finds the state near any
  ``seq`` without replaying;
- ``shutdown`` (the run stops taking bars; later events close positions) and
  ``session_end``.

Backtest events hold no wall-clock time, so two runs of the same backtest
write byte-identical logs. A recording that fails (disk full, EIO) stops; the
run goes on, and `error` (and the manifest, and the run's summary) says why.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import logging
import os
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from tradesim.eventlog import LogWriteError, LogWriter
from tradesim.jsonable import jsonable, plain
from tradesim.recording.manifest import FORMAT, LOG_DIR, file_sha256, write_manifest
from tradesim.recording.outcomes import OUTCOMES

if TYPE_CHECKING:
    from tradesim.data import Bars
    from tradesim.runner import SymbolRunner

__all__ = ["RecordingError", "SessionRecorder", "bar_columns", "default_sessions_folder"]

log = logging.getLogger(__name__)

#: Environment variable naming the default sessions folder (else ``./sessions``).
SESSIONS_ENV = "TRADESIM_SESSIONS"

#: The bar columns of a ``bars`` event, with their dtypes (little-endian).
BAR_COLUMNS = (("timestamp", "<i8"), ("open", "<f8"), ("high", "<f8"), ("low", "<f8"),
               ("close", "<f8"), ("volume", "<f8"))


def _shuffle(column: np.ndarray) -> bytes:
    # Byte k of every value, then byte k+1 ...: the high bytes of prices and times repeat, so LZ4
    # compresses these bytes well and fast (on the plain bytes it gains a third and costs ~10x more).
    return column.view(np.uint8).reshape(-1, column.itemsize).T.tobytes()


def bar_columns(event: dict[str, Any]) -> dict[str, np.ndarray]:
    """A ``bars`` event's columns (`BAR_COLUMNS`, native byte order): byte-shuffled (``"shuffled":
    true``, session format 2) or plain little-endian bytes (format 1).

    Raises
    ------
    ValueError
        A column whose length is not ``count`` values.
    """
    n = int(event.get("count") or 0)
    out = {}
    for name, dtype in BAR_COLUMNS:
        raw = event[name]
        if len(raw) != 8 * n:
            raise ValueError(f"bars event seq {event.get('seq')}: column {name!r} holds {len(raw)} bytes, "
                             f"not {n} values")
        if event.get("shuffled"):
            a = np.frombuffer(raw, dtype=np.uint8).reshape(8, n).T.copy().view(dtype).reshape(n)
        else:
            a = np.frombuffer(raw, dtype=dtype)
        out[name] = a.astype(dtype.replace("<", "="), copy=False)
    return out


class RecordingError(RuntimeError):
    """The session could not be created (its folder exists, or cannot be written)."""


def default_sessions_folder() -> Path:
    """``$TRADESIM_SESSIONS``, else ``./sessions``."""
    return Path(os.environ.get(SESSIONS_ENV) or "sessions")


def _check_name(name: str) -> None:
    if not name or "/" in name or "\\" in name or name in (".", "..") or name.startswith("."):
        raise RecordingError(f"session name {name!r}: must be a plain folder name")


def _default_name(kind: str, now: float) -> str:
    return _dt.datetime.fromtimestamp(now, _dt.UTC).strftime("%Y%m%d-%H%M%S") + f"-{kind}"


def _utc(ms: float) -> str:
    return _dt.datetime.fromtimestamp(ms / 1000, _dt.UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")[:-4] + "Z"


class SessionRecorder:
    """Record one run into a new session folder under `folder`.

    Parameters
    ----------
    folder : path, optional
        The sessions folder (created if missing); `default_sessions_folder()` if None.
    kind : {"backtest", "run", "replay"}
        What is recorded (shown by ``tradesim sessions list``).
    name : str, optional
        The session's id (its folder name); default ``YYYYmmdd-HHMMSS-<kind>`` (UTC),
        with ``-2``, ``-3`` ... appended when taken.
    command : list of str, optional
        The command line, kept in the manifest.
    config : dict, optional
        Run settings kept in the manifest (execution, feeds, window size ...).
    seeds : dict, optional
        Seeds the run used (e.g. the simulated feed's), kept in the manifest.
    fsync : {"auto", "never", "interval", "block"}
        The log's fsync policy (see `tradesim.eventlog.LogWriter`). "auto":
        "never" for a backtest (a process crash loses nothing written, and a
        backtest can be run again after a power loss), "interval" for a live run.
    flush_interval : float, None or "auto"
        Seconds an open block of the log may wait before a copy of it is
        written (what a crash of a quiet run can lose; see docs/event-log.md:
        the log's bytes never depend on it). None: no timed flush. "auto": 0.2 s.
    on_full : {"block", "drop", "raise"}
        What `append` does when the writer's queue is full. A backtest blocks
        (nothing may be lost); a live run may prefer ``"drop"`` (counted and
        reported) so the feed never waits on the disk.
    wall_clock : callable
        Seconds since the epoch (``time.time``), for receive and control times.

    Raises
    ------
    RecordingError
        The session folder exists already (`name` given) or cannot be created.
    """

    def __init__(self, folder: str | Path | None = None, *, kind: str = "backtest",
                 name: str | None = None, command: list[str] | None = None,
                 config: dict[str, Any] | None = None, seeds: dict[str, Any] | None = None,
                 fsync: str = "auto", flush_interval: float | None | str = "auto", on_full: str = "block",
                 wall_clock: Callable[[], float] = time.time) -> None:
        if kind not in ("backtest", "run", "replay"):
            raise ValueError(f"kind = {kind!r}: must be 'backtest', 'run' or 'replay'")
        self.folder = Path(folder) if folder is not None else default_sessions_folder()
        self.wall_clock = wall_clock
        now = wall_clock()
        self._name, self._kind, self._created = name, kind, now
        if name is not None:   # a taken or unsafe name fails now, before the run loads anything
            _check_name(name)
            if (self.folder / name).exists():
                raise RecordingError(f"session {self.folder / name} exists already")
        # the folder is made by `start`: a run that fails to load leaves nothing behind
        self.path = self.folder / (name or _default_name(kind, now))
        self.id = self.path.name
        self.manifest: dict[str, Any] = {
            "format": FORMAT, "kind": kind, "id": self.id, "tradesim": _version(),
            "created": _utc(now * 1000), "command": list(command or []),
            "config": jsonable(config or {}), "runners": [], "strategies": {}, "data": [],
            "seeds": jsonable(seeds or {}), "status": "recording",
        }
        if flush_interval == "auto":   # (a timed flush never changes the log's bytes: tail copies)
            flush_interval = 0.2
        if fsync == "auto":
            fsync = "never" if kind == "backtest" else "interval"
        self._writer_options = {"fsync": fsync, "flush_interval": flush_interval, "on_full": on_full}
        self._writer: LogWriter | None = None
        self._runners: dict[str, SymbolRunner] = {}
        self._batched: dict[str, SymbolRunner] = {}   # runners whose outcomes are written per chunk
        self._lock = threading.Lock()
        self.error: str | None = None
        self.finished = False
        self._shut = False
        #: ``tap(event)`` sees every logged event (with its ``seq``) right after it is logged, on the
        #: appending thread (so not necessarily in seq order); `tradesim serve` streams the log with it.
        self.tap: Callable[[dict[str, Any]], Any] | None = None

    def _make_folder(self) -> None:
        try:
            self.folder.mkdir(parents=True, exist_ok=True)
            if self._name is not None:
                try:
                    self.path.mkdir()
                except FileExistsError:
                    raise RecordingError(f"session {self.path} exists already") from None
                return
            base = _default_name(self._kind, self._created)
            for n in range(1, 10_000):
                path = self.folder / (base if n == 1 else f"{base}-{n}")
                try:
                    path.mkdir()
                except FileExistsError:
                    continue
                self.path, self.id = path, path.name
                self.manifest["id"] = self.id
                return
            raise RecordingError(f"no free session name like {base!r} in {self.folder}")
        except OSError as exc:
            raise RecordingError(f"cannot create a session in {self.folder}: {exc}") from None

    # -- what the run is ------------------------------------------------------------

    def add_data(self, bars: Bars) -> None:
        """Name a symbol's bars (count and open-time range) in the manifest."""
        self.manifest["data"].append({"symbol": bars.symbol, "bars": len(bars),
                                      "first": int(bars.timestamp[0]) if len(bars) else None,
                                      "last": int(bars.timestamp[-1]) if len(bars) else None})

    def add_file(self, path: str | Path) -> None:
        """Name an input file (path and SHA-256) in the manifest."""
        self.manifest.setdefault("files", []).append({"path": str(path), "sha256": file_sha256(path)})

    def add_runner(self, key: str, runner: SymbolRunner, *, feed: str | None = None,
                   window_size: int | None = None, options: dict[str, Any] | None = None,
                   audit: dict[str, str] | None = None, batch: bool = False) -> None:
        """Record `runner` under `key`: its strategy (source kept), parameters and execution; every
        event and decision it makes from now on is logged. After `start` it is logged as
        ``runner_added`` at this point of the input stream too, with `audit` (who added it:
        ``scope``, ``origin``) and ``wall`` (ms UTC) when `audit` is given.

        `batch` (a backtest): the runner buffers its outcomes and they are logged as one
        ``outcomes`` event by `flush_outcomes` (which `snapshot`, `shutdown` and `finish` call),
        not one event each: a fifth of the events' cost (docs/sessions.md).
        """
        strategy = runner.strategy
        source = strategy.source
        sha = strategy_sha256(source)
        entry = {"key": key, "symbol": runner.symbol, "strategy": strategy.name,
                 "script": str(strategy.path), "sha256": sha, "params": jsonable(strategy.params),
                 "execution": jsonable(runner.execution.as_dict()),
                 "risk": jsonable(runner.risk.as_dict()),
                 "window_size": window_size if window_size is not None else runner.window.capacity,
                 "feed": feed, "options": jsonable(options or {})}
        if self._writer is not None:   # joins mid-run: replays start it at its runner_added event
            entry["added_during_run"] = True
        with self._lock:
            self.manifest["strategies"][sha] = source
            self.manifest["runners"].append(entry)
            self._runners[key] = runner
        runner.record_to(self._runner_sink(key), batch=batch)
        if batch:
            self._batched[key] = runner
        if self._writer is not None:
            who = {**plain(audit), "wall": int(self.wall_clock() * 1000)} if audit else {}
            self.append({"type": "runner_added", "runner": key, "source": source, **entry, **who})

    def _runner_sink(self, key: str) -> Callable[[dict], None]:
        append = self.append

        def sink(event: dict) -> None:
            # A runner's events hold plain values already (str, int, float, bool, None, and
            # dicts of those with sorted or fixed key order): no conversion on this path.
            append({"runner": key, **event})
        return sink

    # -- writing ------------------------------------------------------------------------

    def start(self) -> SessionRecorder:
        """Create the session folder, write the manifest and open the log; returns self.

        Raises
        ------
        RecordingError
            The folder cannot be created, or (a given name) exists already.
        """
        self._make_folder()
        write_manifest(self.path, self.manifest, fsync=self._writer_options["fsync"] != "never")
        self._writer = LogWriter(self.path / LOG_DIR, **self._writer_options)
        return self

    @property
    def last_seq(self) -> int:
        """The seq of the last event logged (0 before the first, or before `start`)."""
        return self._writer.last_seq if self._writer is not None else 0

    def flush(self) -> None:
        """Write what was logged so far (readable by a `tradesim.eventlog.LogReader`); no-op when not
        recording. A failed write stops the recording (see `error`), never the caller."""
        writer = self._writer
        if writer is None or self.error is not None or self.finished:
            return
        try:
            writer.flush()
        except LogWriteError as exc:
            self._failed(exc)

    @property
    def recording(self) -> bool:
        """True between `start` and `finish` while nothing has failed."""
        return self._writer is not None and self.error is None and not self.finished

    def append(self, event: dict[str, Any]) -> None:
        """Log one event (msgpack-able values); a failed log stops recording, never the run.

        An event with an int ``timestamp`` (a bar's open time) gets it as ``time`` too, the
        key the log's time index (`LogReader.seek_time`) reads.
        """
        writer = self._writer
        if writer is None or self.error is not None or self.finished:
            return
        if "time" not in event and type(event.get("timestamp")) is int:
            event["time"] = event["timestamp"]
        try:
            seq = writer.append(event)
        except (LogWriteError, ValueError, TypeError) as exc:   # disk, closed writer, unencodable value
            self._failed(exc)
            return
        tap = self.tap
        if seq and tap is not None:
            tap(event)

    def _failed(self, exc: BaseException) -> None:
        if self.error is None:
            self.error = f"recording stopped: {exc}"
            log.error("session %s: %s", self.id, self.error)
            for runner in self._runners.values():
                runner.record_to(None)

    def bars(self, key: str, bars: Bars, start: int, stop: int) -> None:
        """Log bars ``start .. stop-1`` of `bars`, the input of runner `key` (a backtest chunk): its
        columns little-endian and byte-shuffled (`bar_columns` reads them)."""
        event: dict[str, Any] = {"type": "bars", "runner": key, "symbol": bars.symbol,
                                 "start": int(start), "count": int(stop - start),
                                 "time": int(bars.timestamp[start]) if stop > start else None,
                                 "shuffled": True}
        for name, dtype in BAR_COLUMNS:
            event[name] = _shuffle(np.ascontiguousarray(getattr(bars, name)[start:stop], dtype=dtype))
        self.append(event)

    def bar(self, feed: str, bar: Any, recv_ms: int | None = None) -> None:
        """Log one bar a feed delivered (`recv_ms`: its receive time, ms UTC; now if None); its
        ``bid`` and ``ask`` only when known (not NaN or None; session format 3)."""
        event = {"type": "bar", "feed": feed, "symbol": bar.symbol, "timestamp": bar.timestamp,
                 "open": bar.open, "high": bar.high, "low": bar.low, "close": bar.close, "volume": bar.volume}
        # (a kline feed has no quote: two keys fewer make a tenth of a bar event's read, docs/sessions.md)
        bid, ask = bar.bid, bar.ask
        if bid is not None and bid == bid:
            event["bid"] = bid
        if ask is not None and ask == ask:
            event["ask"] = ask
        event["recv"] = recv_ms if recv_ms is not None else int(self.wall_clock() * 1000)
        self.append(event)

    def feed_status(self, feed: str, status: str, detail: dict[str, Any] | None = None) -> None:
        """Log a feed's status change (connected, gap, backfilled, ended ...)."""
        self.append({"type": "feed_status", "feed": feed, "status": status,
                     "detail": plain(detail or {}), "recv": int(self.wall_clock() * 1000)})

    def control(self, command: str, runner: str | None = None, **fields: Any) -> None:
        """Log a control command (pause, resume, stop, reload, remove, exit ...) with its wall time
        and, for a runner, the bars it had processed (where a replay applies it)."""
        event: dict[str, Any] = {"type": "control", "command": command, "runner": runner,
                                 "wall": int(self.wall_clock() * 1000), **plain(fields)}
        source = fields.get("source")
        if isinstance(source, str):   # a reload: the new version, as replays will run it
            event["sha256"] = sha = strategy_sha256(source)
            with self._lock:
                self.manifest["strategies"][sha] = source
        target = self._runners.get(runner) if runner is not None else None
        if target is not None:
            event["bars"] = int(target.core.bars)
        self.append(event)

    def flush_outcomes(self, key: str | None = None) -> None:
        """Log the outcomes runner `key` (every batched runner if None) buffered, as one ``outcomes``
        event each (nothing when none): ``runner``, ``symbol``, ``strategy``, ``time`` (the first
        row's bar time), ``count``, ``indicators`` (the layout of the decisions' indicator values)
        and ``rows`` (see `tradesim.recording.outcomes`).
        """
        for k, runner in ([(key, self._batched.get(key))] if key is not None else list(self._batched.items())):
            if runner is None:
                continue
            rows = runner.take_records()
            if rows and self.recording:
                first = rows[0]
                ts = first[1] if type(first[0]) is int else first[1].get("timestamp")
                self.append({"type": OUTCOMES, "runner": k, "symbol": runner.symbol,
                             "strategy": runner.strategy.name, "time": ts if type(ts) is int else None,
                             "count": len(rows), "indicators": runner.indicator_layout(), "rows": rows})

    def snapshot(self, key: str) -> None:
        """Log runner `key`'s state (what `tradesim inspect` starts from), after its buffered outcomes."""
        self.flush_outcomes(key)
        runner = self._runners[key]
        last = runner.window.latest().timestamp if len(runner.window) else None
        self.append({"type": "snapshot", "runner": key, "symbol": runner.symbol, "timestamp": last,
                     **plain(runner.state())})

    def shutdown(self, reason: str) -> None:
        """Mark the end of the input (once): what follows (closing positions) is the shutdown's doing."""
        if not self._shut:
            self._shut = True
            self.flush_outcomes()
            self.append({"type": "shutdown", "reason": reason})

    def finish(self, status: str = "completed", result: dict[str, Any] | None = None) -> None:
        """Close the log and complete the manifest (status, end time, result, log stats, error).

        Idempotent. `status`: ``"completed"``, ``"failed"`` or ``"interrupted"``.
        """
        if self.finished:
            return
        writer = self._writer
        if writer is not None and self.error is None:
            self.flush_outcomes()
        self.finished = True
        stats: dict[str, Any] = {}
        if writer is not None:
            if self.error is None:
                try:
                    writer.append({"type": "session_end", "status": status})
                except LogWriteError as exc:
                    self._failed(exc)
            try:
                writer.close()
            except LogWriteError as exc:
                self._failed(exc)
            stats = dict(writer.stats)
        for runner in self._runners.values():
            runner.record_to(None)
        self.manifest.update(status=status, ended=_utc(self.wall_clock() * 1000),
                             result=jsonable(result or {}), log=jsonable(stats))
        if self.error is not None:
            self.manifest["error"] = self.error
        try:
            write_manifest(self.path, self.manifest, fsync=self._writer_options["fsync"] != "never")
        except OSError as exc:
            self.error = self.error or f"manifest not completed: {exc}"

    def __enter__(self) -> SessionRecorder:
        return self if self._writer is not None else self.start()

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is None:
            self.finish("completed")
        else:
            self.finish("interrupted" if issubclass(exc_type, KeyboardInterrupt) else "failed",
                        {"error": f"{exc_type.__name__}: {exc}"})


def strategy_sha256(source: str) -> str:
    """Hex SHA-256 of a strategy's source text (UTF-8)."""
    return hashlib.sha256(source.encode("utf-8")).hexdigest()


def _version() -> str:
    from tradesim import __version__

    return __version__
