"""`LogWriter`: events in from any thread, blocks out on a writer thread of its own.

The caller's cost per event is a lock, a MessagePack encoding and a copy into
the open block (about a microsecond); compression (LZ4 releases the GIL),
``write`` and ``fsync`` happen on the writer thread. Blocks are cut when they
reach `block_bytes` (and, when `flush_interval` is set, when their first event
has waited that long), so with ``flush_interval=None`` the bytes written
depend only on the events: two runs of one backtest write identical logs.
"""

from __future__ import annotations

import errno as _errno
import os
import threading
import time
import zlib
from collections import deque
from pathlib import Path
from typing import Any

import lz4.block
import msgpack

from tradesim.eventlog.format import (
    HEADER_SIZE,
    INDEX_NAME,
    NO_TIME,
    SEGMENT_MAGIC,
    SEGMENT_SUFFIX,
    LogWriteError,
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
        Seconds a block may stay open before the writer thread cuts and writes it
        (bounds what a process crash can lose of a quiet stream), and the group
        fsync period of ``fsync="interval"``. None: blocks are cut by size only
        (byte-identical logs for identical events; a backtest's choice).
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
        events, blocks, bytes (written, compressed), raw_bytes, dropped, segments.

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
            if any(self.directory.glob("*" + SEGMENT_SUFFIX)):
                raise LogWriteError(_errno.EEXIST, f"{self.directory}: holds a log already")
        except OSError as exc:
            raise _write_error(exc, self.directory) from None
        self.segment_bytes, self.block_bytes = segment_bytes, block_bytes
        self.flush_interval, self.fsync, self.queue_size, self.on_full = flush_interval, fsync, queue_size, on_full
        self.error: LogWriteError | None = None
        self.stats: dict[str, int] = {"events": 0, "blocks": 0, "bytes": 0, "raw_bytes": 0, "dropped": 0,
                                      "segments": 0}
        self._cond = threading.Condition(threading.Lock())
        self._packer = msgpack.Packer()
        self._buf = bytearray()
        self._count = 0
        self._first_seq = 1
        self._first_time = self._last_time = NO_TIME
        self._opened_at = 0.0
        self._seq = 0
        self._pending: deque[tuple[bytes, int, int, int, int]] = deque()
        self._unwritten = 0          # events accepted, not yet written (open block included)
        self._written_seq = 0
        self._closing = False
        self._closed = False
        self._fsync_target = 0               # flush(): fsync once everything up to this seq is written
        self._synced_seq = 0                 # ... and the last seq an fsync covered
        # writer-thread state
        self._fh = None
        self._segment: Path | None = None
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
            The writer is closed.
        """
        with self._cond:
            if self.error is not None:
                raise self.error
            if self._closing:
                raise ValueError(f"{self.directory}: the log writer is closed")
            if self._unwritten >= self.queue_size:
                if self.on_full == "drop":
                    self.stats["dropped"] += 1
                    return 0
                if self.on_full == "raise":
                    raise LogWriteError(_errno.ENOBUFS, f"{self.directory}: {self._unwritten} events wait for "
                                                        f"the disk (queue_size {self.queue_size})")
                self._cut()   # the open block counts too: hand it over, or nothing would drain
                while self._unwritten >= self.queue_size and self.error is None and not self._closing:
                    self._cond.wait()
                if self.error is not None:
                    raise self.error
                if self._closing:
                    raise ValueError(f"{self.directory}: the log writer was closed while this event waited")
            seq = self._seq + 1
            event["seq"] = seq
            try:
                data = self._packer.pack(event)
            except Exception:
                self._packer.reset()
                del event["seq"]
                raise
            self._seq = seq
            if not self._count:
                self._first_seq = seq
                self._opened_at = time.monotonic()
                if not self._pending:
                    self._cond.notify_all()   # the writer thread times the open block
            t = event.get("time")
            if type(t) is int:
                if self._first_time == NO_TIME:
                    self._first_time = t
                if t > self._last_time:
                    self._last_time = t
            self._buf += data
            self._count += 1
            self._unwritten += 1
            if len(self._buf) >= self.block_bytes:
                self._cut()
            return seq

    def _cut(self) -> None:
        # (lock held) The open block goes to the writer thread.
        if self._count:
            self._pending.append((bytes(self._buf), self._count, self._first_seq, self._first_time, self._last_time))
            self._buf.clear()
            self._count = 0
            self._first_time = self._last_time = NO_TIME
            self._cond.notify_all()

    def flush(self) -> None:
        """Write everything appended so far (cutting the open block), fsynced unless ``fsync="never"``."""
        with self._cond:
            if self.error is not None:
                raise self.error
            if self._closing:   # close() writes (and fsyncs) everything itself
                return
            self._cut()
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
            self._cond.notify_all()
        self._thread.join()
        if self.error is not None:
            raise self.error
        try:
            self._write_index()
        except OSError as exc:
            self.error = _write_error(exc, self.directory / INDEX_NAME)
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
                    self._write_block(*block)
                    with self._cond:
                        self._unwritten -= block[1]
                        self._written_seq = block[2] + block[1] - 1
                        self._cond.notify_all()
                self._maybe_fsync()
            self._finish_segment()
        except OSError as exc:
            with self._cond:
                self.error = _write_error(exc, self._segment or self.directory)
                self._cond.notify_all()
        except BaseException as exc:   # a bug: still never leave appenders or flush() waiting
            with self._cond:
                self.error = LogWriteError(_errno.EIO, f"{self.directory}: log writer failed: {exc!r}")
                self._cond.notify_all()
            raise
        finally:
            if self._fh is not None:
                try:
                    self._fh.close()
                except OSError:
                    pass

    def _next_block(self):
        # (lock held) The next block to write; False: nothing yet (timed wake-up); None: done.
        while True:
            if self._pending:
                return self._pending.popleft()
            if self._closing:
                return None
            if self._fsync_target > self._synced_seq and self._written_seq >= self._fsync_target:
                return False
            if self._count and self.flush_interval is not None:
                due = self._opened_at + self.flush_interval - time.monotonic()
                if due <= 0:
                    self._cut()
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

    def _new_segment(self, first_seq: int) -> None:
        self._finish_segment()
        path = self.directory / segment_name(first_seq)
        self._segment = path
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
        # The sparse index: one entry per block (docs/event-log.md, Index); atomically replaced.
        body = msgpack.packb({"format": 1, "segments": self._segments, "blocks": self._blocks,
                              "events": self._seq})
        tmp = self.directory / (INDEX_NAME + ".tmp")
        with open(tmp, "wb") as fh:
            fh.write(body + zlib.crc32(body).to_bytes(4, "little"))
            if self.fsync != "never":
                fh.flush()
                os.fsync(fh.fileno())
        os.replace(tmp, self.directory / INDEX_NAME)
        if self.fsync != "never":
            fsync_dir(self.directory)


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
