"""`LogWriter`: events in from any thread, blocks out on a writer thread of its own.

The caller's cost per event is a lock, a MessagePack encoding and a copy into
the open block; compression (LZ4 releases the GIL), ``write`` and ``fsync``
happen on the writer thread. Blocks are cut only when they reach
`block_bytes` (and at close), so the segment files depend only on the events:
two runs of one backtest write identical logs. A timed flush (`flush_interval`)
or `LogWriter.flush` does not cut the open block: it writes a snapshot of it
to one of two tail files (``tail0.blk`` / ``tail1.blk``, alternately, so a
crash in the middle of one leaves the other), which a reader after a crash
uses to recover what was flushed; close removes them (docs/event-log.md).
"""

from __future__ import annotations

import errno as _errno
import os
import sys
import threading
import time
import zlib
from array import array
from collections import deque
from itertools import accumulate
from pathlib import Path
from typing import Any

import lz4.block

from tradesim.eventlog.format import (
    HEADER_SIZE,
    INDEX_NAME,
    NO_TIME,
    SEGMENT_MAGIC,
    SEGMENT_SUFFIX,
    TAIL_NAMES,
    LogWriteError,
    encode_event,
    fsync_dir,
    pack_header,
    segment_name,
)

__all__ = ["FSYNC_POLICIES", "LogWriter"]

FSYNC_POLICIES = ("never", "interval", "block")
ON_FULL = ("block", "drop", "raise")


class LogWriter:
    """Append events to a new log in `directory` (see docs/event-log.md).

    Parameters
    ----------
    directory : path
        Created if missing; must not hold a log already.
    segment_bytes : int
        A new segment file is started when the current one would grow past this.
    block_bytes : int
        Encoded bytes at which a block is cut (a larger event makes a block of its own).
    flush_interval : float or None
        Seconds an appended event may wait before the writer thread writes it
        (as a snapshot of the open block to a tail file: block boundaries, hence
        the segment files, do not depend on timing), and the group fsync period
        of ``fsync="interval"``. This bounds what a crash can lose of a quiet
        stream. None: no timed writes (only full blocks, `flush` and `close`).
    fsync : {"never", "interval", "block"}
        ``never``: the OS decides (a process crash loses nothing written; a power
        loss may lose recent blocks); ``interval``: fsync at most every
        `flush_interval` (1 s if None) and at close; ``block``: after every block.
    queue_size : int
        Events accepted but not yet written that the writer holds at most.
    on_full : {"block", "drop", "raise"}
        When it holds that many: wait for the disk, drop the event (counted in
        ``stats["dropped"]``; it gets no seq), or raise `LogWriteError`.

    Attributes
    ----------
    error : LogWriteError or None
        What stopped the writer thread (disk full, EIO ...); every later
        `append`, `flush` and `close` raises it.
    stats : dict
        events, blocks, bytes (written to segments, compressed), raw_bytes, dropped, segments,
        tail_writes (snapshots of the open block written by flushes).

    Raises
    ------
    LogWriteError
        The directory cannot be created or already holds a log.
    """

    def __init__(self, directory: str | os.PathLike, *, segment_bytes: int = 64 * 2**20,
                 block_bytes: int = 64 * 2**10, flush_interval: float | None = 0.2, fsync: str = "interval",
                 queue_size: int = 100_000, on_full: str = "block") -> None:
        if fsync not in FSYNC_POLICIES:
            raise ValueError(f"fsync = {fsync!r}: must be one of {FSYNC_POLICIES}")
        if on_full not in ON_FULL:
            raise ValueError(f"on_full = {on_full!r}: must be one of {ON_FULL}")
        if flush_interval is not None and not flush_interval > 0:
            raise ValueError(f"flush_interval = {flush_interval!r}: must be > 0 or None")
        if block_bytes < 1 or segment_bytes < block_bytes or queue_size < 1:
            raise ValueError("need block_bytes >= 1, segment_bytes >= block_bytes and queue_size >= 1")
        self.directory = Path(directory)
        try:
            self.directory.mkdir(parents=True, exist_ok=True)
            if any(self.directory.glob("*" + SEGMENT_SUFFIX)) or any(
                    (self.directory / t).exists() for t in TAIL_NAMES):
                raise LogWriteError(_errno.EEXIST, f"{self.directory}: holds a log already")
        except OSError as exc:
            raise _write_error(exc, self.directory) from None
        self.segment_bytes, self.block_bytes = segment_bytes, block_bytes
        self.flush_interval, self.fsync, self.queue_size, self.on_full = flush_interval, fsync, queue_size, on_full
        self.error: LogWriteError | None = None
        self.stats: dict[str, int] = {"events": 0, "blocks": 0, "bytes": 0, "raw_bytes": 0, "dropped": 0,
                                      "segments": 0, "tail_writes": 0}
        self._lock = threading.Lock()
        self._cond = threading.Condition(self._lock)
        self._limit = queue_size     # append's fast-path bound: queue_size, or -1 once failed or closing
        self._buf = bytearray()
        self._first_seq = 1
        self._first_time = self._last_time = NO_TIME
        self._opened_at = 0.0
        self._dirty = False          # events appended since the open block was last written (cut or snapshot)
        self._seq = 0
        # (raw, count, first_seq, first_time, last_time, tail): blocks to write, in order; tail: a snapshot
        self._pending: deque[tuple[bytes, int, int, int, int, bool]] = deque()
        self._done_seq = 0           # the last seq written to a segment: seq - done_seq events wait (queue_size)
        self._written_seq = 0
        self._closing = False
        self._closed = False
        self._fsync_target = 0               # flush(): fsync once everything up to this seq is written
        self._synced_seq = 0                 # ... and the last seq an fsync covered
        # writer-thread state
        self._fh = None
        self._tail_fds: list[int] = []
        self._tail_next = 0
        self._segment: Path | None = None
        self._errpath: Path | None = None   # the file being written (named by an error)
        self._segment_size = 0
        self._segments: list[list] = []      # [name, size]
        self._blocks: list[list[int]] = []   # [segment no, offset, first_seq, count, first/last time, stored]
        self._last_fsync = time.monotonic()
        self._thread = threading.Thread(target=self._run, name="tradesim-eventlog", daemon=True)
        self._thread.start()

    # -- caller side ---------------------------------------------------------------------

    def append(self, event: dict[str, Any]) -> int:
        """Log `event` (its values: str, int, float, bool, None, bytes, lists and dicts of them).

        Sets ``event["seq"]`` (1, 2, 3 ... per log) and returns it; 0 when the
        event was dropped (``on_full="drop"``). Thread-safe.

        Raises
        ------
        LogWriteError
            The writer has failed, or the queue is full with ``on_full="raise"``.
        TypeError
            A value MessagePack cannot encode (nothing is logged).
        ValueError
            The writer is closed; or a value is nested in itself or too deep, or an int is
            beyond 64 bits (nothing is logged).
        """
        with self._lock:   # the Condition's own lock: a plain `with` is cheaper than the Condition's
            if self._seq - self._done_seq >= self._limit:   # full, failed or closed (_limit -1): the slow path
                if not self._admit():
                    return 0
            seq = self._seq + 1
            event["seq"] = seq
            try:
                data = encode_event(event)
            except Exception as exc:
                del event["seq"]
                if isinstance(exc, (RecursionError, OverflowError)):   # a cycle, too deep, an int > 64 bits
                    raise ValueError(f"cannot log this event: {exc}") from None
                raise
            if len(data) >= self.block_bytes:
                # A large event makes a block of its own, handed over as it is (no copy into the open
                # block: a backtest's chunk of bars is ~800 kB). The open block is cut first.
                self._cut()
                self._seq = seq
                t = event.get("time")
                t = t if type(t) is int else NO_TIME
                self._pending.append((data, 1, seq, t, t, False))
                self._cond.notify_all()
                return seq
            self._seq = seq
            if not self._buf:
                self._first_seq = seq
            if not self._dirty:
                self._dirty = True
                self._opened_at = time.monotonic()
                if not self._pending:
                    self._cond.notify_all()   # the writer thread times the unwritten events
            t = event.get("time")
            if type(t) is int:
                if self._first_time == NO_TIME:
                    self._first_time = t
                if t > self._last_time:
                    self._last_time = t
            self._buf += data
            if len(self._buf) >= self.block_bytes:
                self._cut()
            return seq

    def _admit(self) -> bool:
        # (lock held) May an event go in? False: drop it; raises when it may not.
        waited = False
        while True:
            if self.error is not None:
                raise self.error
            if self._closing:
                raise ValueError(f"{self.directory}: the log writer "
                                 f"{'was closed while this event waited' if waited else 'is closed'}")
            if self._seq - self._done_seq < self.queue_size:
                return True
            if self._buf and self._seq - self._first_seq + 1 >= self.queue_size:
                # The open block alone fills the queue: hand it over, or nothing would drain. Its size
                # depends only on the events (a full queue always gets here), so logs stay identical.
                self._cut()
                continue
            if self.on_full == "drop":
                self.stats["dropped"] += 1
                return False
            if self.on_full == "raise":
                raise LogWriteError(_errno.ENOBUFS, f"{self.directory}: {self._seq - self._done_seq} events wait for "
                                                    f"the disk (queue_size {self.queue_size})")
            self._cond.wait()
            waited = True

    def _cut(self) -> None:
        # (lock held) The open block goes to the writer thread.
        if self._buf:
            self._pending.append((bytes(self._buf), self._seq - self._first_seq + 1, self._first_seq,
                                  self._first_time, self._last_time, False))
            self._buf.clear()
            self._dirty = False
            self._first_time = self._last_time = NO_TIME
            self._cond.notify_all()

    def _snapshot(self) -> None:
        # (lock held) A copy of the open block goes to the writer thread for a tail file; the block stays open.
        if self._buf and self._dirty:
            self._pending.append((bytes(self._buf), self._seq - self._first_seq + 1, self._first_seq,
                                  self._first_time, self._last_time, True))
            self._dirty = False
            self._cond.notify_all()

    @property
    def last_seq(self) -> int:
        """The seq of the last event appended (0 before the first)."""
        return self._seq

    def flush(self) -> None:
        """Write everything appended so far, fsynced unless ``fsync="never"``.

        The open block is not cut (the segments stay independent of when flush
        is called): a snapshot of it goes to a tail file.

        Raises
        ------
        LogWriteError
            The writer failed (now or before).
        """
        with self._cond:
            if self.error is not None:
                raise self.error
            if self._closing:   # close() writes (and fsyncs) everything itself
                return
            self._snapshot()
            target = self._seq
            if self.fsync != "never":
                self._fsync_target = max(self._fsync_target, target)
            self._cond.notify_all()
            while (self._written_seq < target or self._synced_seq < self._fsync_target) \
                    and self.error is None and not self._closing:
                self._cond.wait()
            if self.error is not None:
                raise self.error

    def close(self) -> None:
        """Write everything, fsync (unless ``fsync="never"``), write the index; idempotent.

        Raises
        ------
        LogWriteError
            The writer failed (now or before).
        """
        with self._cond:
            if self._closed:
                if self.error is not None:
                    raise self.error
                return
            self._closed = True
            self._cut()
            self._closing = True
            self._limit = -1
            self._cond.notify_all()
        self._thread.join()
        if self.error is not None:
            raise self.error
        try:
            self._write_index()
        except OSError as exc:
            self.error = _write_error(exc, self.directory / INDEX_NAME)
            self._limit = -1
            raise self.error from None

    def __enter__(self) -> LogWriter:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- writer thread ---------------------------------------------------------------------

    def _run(self) -> None:
        try:
            while True:
                with self._cond:
                    block = self._next_block()
                    if block is None:
                        break
                if block is not False:
                    *fields, tail = block
                    if tail:
                        self._write_tail(*fields)
                    else:
                        self._write_block(*fields)
                    with self._cond:
                        if not tail:
                            self._done_seq = block[2] + block[1] - 1
                        self._written_seq = max(self._written_seq, block[2] + block[1] - 1)
                        self._cond.notify_all()
                self._maybe_fsync()
            self._finish_segment()
            self._remove_tails()
        except OSError as exc:
            with self._cond:
                self.error = _write_error(exc, self._errpath or self.directory)
                self._limit = -1
                self._cond.notify_all()
        except BaseException as exc:   # a bug: still never leave appenders or flush() waiting
            with self._cond:
                self.error = LogWriteError(_errno.EIO, f"{self.directory}: log writer failed: {exc!r}")
                self._limit = -1
                self._cond.notify_all()
            raise
        finally:
            if self._fh is not None:
                try:
                    self._fh.close()
                except OSError:
                    pass
            for fd in self._tail_fds:
                try:
                    os.close(fd)
                except OSError:
                    pass
            self._tail_fds = []

    def _next_block(self):
        # (lock held) The next block to write; False: nothing yet (timed wake-up); None: done.
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._closing:
                return None
            if self._fsync_target > self._synced_seq and self._written_seq >= self._fsync_target:
                return False
            if self._buf and self._dirty and self.flush_interval is not None:
                due = self._opened_at + self.flush_interval - time.monotonic()
                if due <= 0:
                    self._snapshot()
                    continue
                self._cond.wait(due)
            else:
                self._cond.wait(self._fsync_wait())
                if not self._pending and not self._closing:
                    return False

    def _fsync_wait(self) -> float | None:
        if self.fsync == "interval" and self._fh is not None:
            return self.flush_interval or 1.0
        return None

    def _write_block(self, raw: bytes, count: int, first_seq: int, first_time: int, last_time: int) -> None:
        payload = lz4.block.compress(raw, store_size=False)
        header = pack_header(len(payload), len(raw), count, first_seq, first_time, last_time, zlib.crc32(payload))
        size = HEADER_SIZE + len(payload)
        if self._fh is None or (self._segment_size + size > self.segment_bytes
                                and self._segment_size > len(SEGMENT_MAGIC)):
            self._new_segment(first_seq)
        self._errpath = self._segment
        offset = self._segment_size
        _write_all(self._fh, header + payload)   # one write(2) unless the disk takes less
        self._segment_size += size
        self._segments[-1][1] = self._segment_size
        self._blocks.append([len(self._segments) - 1, offset, first_seq, count, first_time, last_time,
                             len(payload)])
        self.stats["events"] += count
        self.stats["blocks"] += 1
        self.stats["bytes"] += size
        self.stats["raw_bytes"] += len(raw)
        if self.fsync == "block":
            os.fsync(self._fh.fileno())

    def _write_tail(self, raw: bytes, count: int, first_seq: int, first_time: int, last_time: int) -> None:
        # The open block's snapshot, as a block at offset 0 of the tail file not written last time: a crash
        # in the middle of this write leaves the other one (an older snapshot) intact.
        payload = lz4.block.compress(raw, store_size=False)
        header = pack_header(len(payload), len(raw), count, first_seq, first_time, last_time, zlib.crc32(payload))
        if not self._tail_fds:
            for name in TAIL_NAMES:
                self._errpath = self.directory / name
                self._tail_fds.append(os.open(self._errpath, os.O_RDWR | os.O_CREAT | os.O_TRUNC, 0o644))
            if self.fsync != "never":
                fsync_dir(self.directory)
        path = self.directory / TAIL_NAMES[self._tail_next]
        self._errpath = path   # named by an error
        fd = self._tail_fds[self._tail_next]
        data = header + payload
        if os.pwrite(fd, data, 0) != len(data):
            raise OSError(_errno.EIO, "short write")
        if self.fsync != "never":
            os.fsync(fd)
        self._tail_next ^= 1
        self.stats["tail_writes"] += 1

    def _remove_tails(self) -> None:
        # At close, after the last block is in its segment (and fsynced): the snapshots are obsolete.
        if self._tail_fds:
            self._errpath = self.directory
            for fd in self._tail_fds:
                os.close(fd)
            self._tail_fds = []
            for name in TAIL_NAMES:
                (self.directory / name).unlink(missing_ok=True)
            if self.fsync != "never":
                fsync_dir(self.directory)

    def _new_segment(self, first_seq: int) -> None:
        self._finish_segment()
        path = self.directory / segment_name(first_seq)
        self._segment = self._errpath = path
        self._fh = open(path, "xb", buffering=0)  # noqa: SIM115 (closed by _finish_segment / _run)
        self._fh.write(SEGMENT_MAGIC)
        if self.fsync != "never":   # the new file and its directory entry survive a power loss
            os.fsync(self._fh.fileno())
            fsync_dir(self.directory)
        self._segment_size = len(SEGMENT_MAGIC)
        self._segments.append([path.name, self._segment_size])
        self.stats["segments"] += 1

    def _finish_segment(self) -> None:
        if self._fh is not None:
            self._errpath = self._segment
            if self.fsync != "never":
                os.fsync(self._fh.fileno())
            self._fh.close()
            self._fh = None

    def _maybe_fsync(self) -> None:
        with self._cond:
            written = self._written_seq
            wanted = self._fsync_target > self._synced_seq and written >= self._fsync_target
        if self._fh is not None and self.fsync != "never":
            due = self.fsync == "interval" and \
                time.monotonic() - self._last_fsync >= (self.flush_interval or 1.0)
            if wanted or due:
                os.fsync(self._fh.fileno())
                self._last_fsync = time.monotonic()
                with self._cond:
                    self._synced_seq = max(self._synced_seq, written)
                    self._cond.notify_all()
        elif wanted:   # nothing to fsync (no segment yet)
            with self._cond:
                self._synced_seq = max(self._synced_seq, written)
                self._cond.notify_all()

    def _write_index(self) -> None:
        # The sparse index (docs/event-log.md, Format): per block, in columns of little-endian int64 (an
        # open reads them with array.frombytes, no per-block objects); written to a temp file and replaced.
        names = ("segment", "offset", "first_seq", "count", "first_time", "last_time", "stored")
        columns = {name: _int64s(b[k] for b in self._blocks) for k, name in enumerate(names)}
        columns["max_time"] = _int64s(accumulate((b[5] for b in self._blocks), max))
        body = encode_event({"format": 2, "segments": self._segments, "blocks": len(self._blocks),
                              "columns": columns, "events": self._seq})
        tmp = self.directory / (INDEX_NAME + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(body + zlib.crc32(body).to_bytes(4, "little"))
            if self.fsync != "never":
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, self.directory / INDEX_NAME)
        if self.fsync != "never":
            fsync_dir(self.directory)


def _int64s(values) -> bytes:
    a = array("q", values)
    if sys.byteorder == "big":
        a.byteswap()
    return a.tobytes()


def _write_all(fh, data: bytes) -> None:
    """Write all of `data` to an unbuffered file: a short write (a disk filling up, a file-size
    limit) is followed by another, which then fails with the reason (ENOSPC, EFBIG)."""
    view = memoryview(data)
    while view:
        n = fh.write(view)
        if not n:
            raise OSError(_errno.EIO, "write wrote nothing")
        view = view[n:]


def _write_error(exc: OSError, path: Path) -> LogWriteError:
    if isinstance(exc, LogWriteError):
        return exc
    code = exc.errno or 0
    name = _errno.errorcode.get(code, str(code))
    return LogWriteError(code, f"{path}: {exc.strerror or exc} (errno {code} {name})")
