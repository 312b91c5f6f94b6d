"""`LogReader` and `verify_log`: a log read back block by block, every block checked before use.

Opening a log reads its index (written at close) when it matches the
segment files, else scans the block headers (a log cut by ``kill -9`` has no
index): a complete block that fails a check is `LogCorrupt`, naming its file
and offset; a block cut short at the end of the last segment, or zero bytes
there, is a torn tail: reading stops before it and `stopped_at` says where.
"""

from __future__ import annotations

import bisect
import io
import struct
import sys
import zlib
from array import array
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from itertools import accumulate, chain
from pathlib import Path
from typing import Any

import lz4.block

from tradesim.eventlog.flat_events import FlatDecoder
from tradesim.eventlog.format import (
    HEADER_SIZE,
    INDEX_NAME,
    NO_TIME,
    SEGMENT_MAGIC,
    SEGMENT_SUFFIX,
    TAIL_NAMES,
    BlockHeader,
    LogCorrupt,
    decode_events,
    unpack_header,
)

__all__ = ["LogReader", "VerifyReport", "verify_log"]


class LogReader:
    """Read the log in `directory` (finished, being written, or cut by a crash).

    Raises
    ------
    FileNotFoundError
        No such directory.
    LogCorrupt
        A segment's or block header's checks fail (file and offset named).

    Attributes
    ----------
    stopped_at : str or None
        None when every segment ends on a block boundary; else where reading
        stops (file, offset, what was found): the torn tail of a crash.
    indexed : bool
        The index written at close was used (the log was closed cleanly).
    """

    def __init__(self, directory: str | Path) -> None:
        self.directory = Path(directory)
        if not self.directory.is_dir():
            raise FileNotFoundError(f"{self.directory}: no event log here")
        self.segments = sorted(p.name for p in self.directory.glob("*" + SEGMENT_SUFFIX))
        self.stopped_at: str | None = None
        self.indexed = False
        self._files: dict[str, Any] = {}
        self._flat = FlatDecoder()   # the key layouts of this log's events, learnt as blocks are read
        self._tail: tuple[str, bytes] | None = None   # a tail file's snapshot block in use: (name, its bytes)
        blocks = self._from_index()
        if blocks is None:
            blocks = self._scan()
            self._recover_tail(blocks)
        else:
            self.indexed = True
        self._blocks: Sequence[BlockHeader] = blocks
        # first seqs, and the largest time so far (non-decreasing, so a bisect finds a time), per block
        if isinstance(blocks, _IndexedBlocks):
            self._first_seqs: Sequence[int] = blocks.columns["first_seq"]
            self._max_times: Sequence[int] = blocks.columns["max_time"]
            self._first_times: Iterable[int] = blocks.columns["first_time"]
        else:
            self._first_seqs = [b.first_seq for b in blocks]
            self._max_times = list(accumulate((b.last_time for b in blocks), max))
            self._first_times = [b.first_time for b in blocks]

    # -- opening ---------------------------------------------------------------------------

    def _from_index(self) -> _IndexedBlocks | None:
        path = self.directory / INDEX_NAME
        try:
            data = path.read_bytes()
        except FileNotFoundError:
            return None
        body, crc = data[:-4], data[-4:]
        if len(data) < 4 or zlib.crc32(body).to_bytes(4, "little") != crc:
            return None   # a damaged index is rebuilt from the segments
        try:
            index = decode_events(body, 1)[0][0]
            if index.get("format") != 2:
                return None   # an older index: rebuilt from the segments
            segments = [(name, size) for name, size in index["segments"]]
            columns = {name: _int64s(data) for name, data in index["columns"].items()}
            if any(len(c) != index["blocks"] for c in columns.values()):
                return None
        except Exception:
            return None
        actual = [(name, (self.directory / name).stat().st_size) for name in self.segments]
        if segments != actual:
            return None
        return _IndexedBlocks(columns, [name for name, _ in segments])
    def _scan(self) -> list[BlockHeader]:
        blocks: list[BlockHeader] = []
        expected = None
        for i, name in enumerate(self.segments):
            last = i == len(self.segments) - 1
            path = self.directory / name
            data = path.read_bytes()
            if data[:len(SEGMENT_MAGIC)] != SEGMENT_MAGIC:
                if last and len(data) < len(SEGMENT_MAGIC) and SEGMENT_MAGIC.startswith(data):
                    self.stopped_at = f"{name}: cut at byte {len(data)}, inside the segment header"
                    break
                raise LogCorrupt(f"{name}: not a tradesim log segment (bad magic at byte offset 0)")
            offset = len(SEGMENT_MAGIC)
            while offset < len(data):
                rest = len(data) - offset
                if rest < HEADER_SIZE:
                    if last:
                        self.stopped_at = _torn(name, offset, data, "a block header cut short")
                        break
                    raise LogCorrupt(f"{name}: {rest} stray bytes at byte offset {offset}")
                try:
                    hdr = unpack_header(data[offset:offset + HEADER_SIZE], name, offset)
                except LogCorrupt:
                    if last and not any(data[offset:]):
                        self.stopped_at = f"{name}: zero bytes from byte offset {offset} to the end"
                        break
                    raise
                if hdr.end > len(data):
                    if last:
                        self.stopped_at = _torn(name, offset, data, "a block cut short")
                        break
                    raise LogCorrupt(f"{name}: block at byte offset {offset} runs past the end of the segment")
                if expected is not None and hdr.first_seq != expected:
                    raise LogCorrupt(f"{name}: block at byte offset {offset} starts at seq {hdr.first_seq}, "
                                     f"expected {expected}")
                expected = hdr.last_seq + 1
                blocks.append(hdr)
                offset = hdr.end
            if self.stopped_at is not None:
                break
        return blocks

    def _recover_tail(self, blocks: list[BlockHeader]) -> None:
        # A log not closed cleanly: the writer's last flushed snapshot of its open block (tail0/1.blk), if
        # it continues the segments, holds events flushed but not yet in a segment. Of the two files the
        # valid one with the most events is used; an invalid one (a crash mid-write) is skipped.
        expected = blocks[-1].last_seq + 1 if blocks else 1
        best: tuple[BlockHeader, bytes] | None = None
        for name in TAIL_NAMES:
            try:
                data = (self.directory / name).read_bytes()
                hdr = unpack_header(data[:HEADER_SIZE], name, 0)
            except (OSError, LogCorrupt, struct.error):
                continue
            block = data[:hdr.end]
            if len(block) < hdr.end or zlib.crc32(block[HEADER_SIZE:]) != hdr.payload_crc:
                continue
            if hdr.first_seq == expected and (best is None or hdr.count > best[0].count):
                best = (hdr, block)
        if best is not None:
            blocks.append(best[0])
            self._tail = (best[0].segment, best[1])
            self.stopped_at = (f"{self.stopped_at}; " if self.stopped_at else "") + \
                f"{best[0].segment}: the last flushed snapshot of the open block (seq {best[0].first_seq}.." \
                f"{best[0].last_seq}) read; the log was not closed"

    # -- reading ------------------------------------------------------------------------------

    def __len__(self) -> int:
        return self.last_seq

    @property
    def last_seq(self) -> int:
        """The last event's seq (0 for an empty log)."""
        return self._blocks[-1].last_seq if self._blocks else 0

    @property
    def first_time(self) -> int | None:
        """The first ``time`` in the log (ms UTC), or None."""
        return next((t for t in self._first_times if t != NO_TIME), None)

    @property
    def last_time(self) -> int | None:
        """The largest ``time`` in the log (ms UTC), or None."""
        t = self._max_times[-1] if self._max_times else NO_TIME
        return None if t == NO_TIME else t

    def _file(self, segment: str):
        fh = self._files.get(segment)
        if fh is None:
            fh = self._files[segment] = open(self.directory / segment, "rb")  # noqa: SIM115 (close())
        return fh

    def block_events(self, block: BlockHeader, types: frozenset[str] | None = None) -> list[dict[str, Any]]:
        """One block's events, checked (CRCs, length, seq); only those whose ``type`` is in `types` when
        given (the others are checked as MessagePack but not decoded).

        Raises
        ------
        LogCorrupt
        """
        if self._tail is not None and block.segment == self._tail[0]:
            fh: Any = io.BytesIO(self._tail[1])   # read once at open: the writer may be rewriting the file
        else:
            fh = self._file(block.segment)
        fh.seek(block.offset)
        head = fh.read(HEADER_SIZE)
        if len(head) < HEADER_SIZE:
            raise LogCorrupt(f"{block.segment}: block at byte offset {block.offset} is missing")
        hdr = unpack_header(head, block.segment, block.offset)
        if hdr.first_seq != block.first_seq or hdr.count != block.count:
            raise LogCorrupt(f"{block.segment}: block at byte offset {block.offset} disagrees with the index")
        payload = fh.read(hdr.stored)
        where = f"{block.segment}: block at byte offset {block.offset} (seq {hdr.first_seq}..{hdr.last_seq})"
        if len(payload) < hdr.stored:
            raise LogCorrupt(f"{where} is cut short")
        if zlib.crc32(payload) != hdr.payload_crc:
            raise LogCorrupt(f"{where} fails its CRC")
        try:
            raw = lz4.block.decompress(payload, uncompressed_size=hdr.raw)
            events, first, last = decode_events(raw, hdr.count, types, self._flat)   # hdr.count values, or raises
        except Exception as exc:
            raise LogCorrupt(f"{where} does not decode ({type(exc).__name__}: {exc})") from None
        if first != hdr.first_seq or last != hdr.last_seq:
            raise LogCorrupt(f"{where} holds events seq {first}..{last}, not seq {hdr.first_seq}..{hdr.last_seq}")
        return events

    def events(self, from_seq: int = 1, to_seq: int | None = None,
               types: Iterable[str] | None = None) -> Iterator[dict[str, Any]]:
        """Events with from_seq <= seq <= to_seq, in order; only those whose ``type`` is in `types`
        when given. Blocks are found through the index (O(log n)) and checked as they are read.

        Raises
        ------
        LogCorrupt
            A block on the way fails its checks (nothing of it is returned).
        """
        return chain.from_iterable(self.batches(from_seq, to_seq, types))

    def batches(self, from_seq: int = 1, to_seq: int | None = None,
                types: Iterable[str] | None = None) -> Iterator[list[dict[str, Any]]]:
        """`events`, a block's worth at a time (lists, in order; none empty): for readers that work
        on a list at a time rather than pay a step per event.

        Raises
        ------
        LogCorrupt
            A block on the way fails its checks (nothing of it is returned).
        """
        wanted = frozenset(types) if types is not None else None
        i = max(0, bisect.bisect_right(self._first_seqs, from_seq) - 1)
        blocks = self._blocks
        for k in range(i, len(blocks)):
            block = blocks[k]
            if to_seq is not None and block.first_seq > to_seq:
                return
            events = self.block_events(block, wanted)
            if from_seq <= block.first_seq and (to_seq is None or block.last_seq <= to_seq):
                pass   # the whole block is in range
            elif wanted is None:   # events[k] has seq first_seq + k (checked): slice instead of testing each
                lo = max(0, from_seq - block.first_seq)
                hi = len(events) if to_seq is None else min(len(events), to_seq - block.first_seq + 1)
                events = events[lo:hi]
            else:
                last = block.last_seq if to_seq is None else to_seq
                events = [e for e in events if from_seq <= e["seq"] <= last]
            if events:
                yield events

    def seek_seq(self, seq: int) -> Iterator[dict[str, Any]]:
        """Events from `seq` on."""
        return self.events(from_seq=seq)

    def seek_time(self, time_ms: int) -> Iterator[dict[str, Any]]:
        """Events from the first one whose ``time`` is >= `time_ms` (ms UTC) on; events without a
        ``time`` before it are skipped."""
        i = bisect.bisect_left(self._max_times, time_ms)
        if i >= len(self._blocks):
            return iter(())
        for event in self.block_events(self._blocks[i]):
            t = event.get("time")
            if type(t) is int and t >= time_ms:
                return self.events(from_seq=event["seq"])
        return self.events(from_seq=self._blocks[i].last_seq + 1)

    def event(self, seq: int) -> dict[str, Any]:
        """The event with this seq (KeyError if the log does not hold it)."""
        for event in self.events(seq, seq):
            return event
        raise KeyError(f"seq {seq}: the log holds 1 .. {self.last_seq}")

    @property
    def blocks(self) -> list[BlockHeader]:
        """The blocks' headers (sparse index), in order."""
        return list(self._blocks)

    @property
    def n_blocks(self) -> int:
        return len(self._blocks)

    def block(self, i: int) -> BlockHeader:
        """Block `i` (0-based) of the sparse index."""
        return self._blocks[i]

    def block_for(self, seq: int) -> int:
        """The number of the block holding `seq` (the last block for a seq past the end)."""
        return max(0, bisect.bisect_right(self._first_seqs, seq) - 1)

    def close(self) -> None:
        for fh in self._files.values():
            fh.close()
        self._files.clear()

    def __enter__(self) -> LogReader:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        for fh in self._files.values():
            fh.close()


class _IndexedBlocks(Sequence[BlockHeader]):
    """The blocks of an index file: columns of int64, a `BlockHeader` made when one is asked for."""

    def __init__(self, columns: dict[str, array], segments: list[str]) -> None:
        self.columns, self.segments = columns, segments
        self._n = len(columns["first_seq"])

    def __len__(self) -> int:
        return self._n

    def __getitem__(self, i):  # type: ignore[override]
        if isinstance(i, slice):
            return [self[k] for k in range(*i.indices(self._n))]
        c = self.columns
        if i < 0:
            i += self._n
        return BlockHeader(c["stored"][i], None, c["count"][i], c["first_seq"][i], c["first_time"][i],
                           c["last_time"][i], None, self.segments[c["segment"][i]], c["offset"][i])


def _int64s(data: bytes) -> array:
    a = array("q")
    a.frombytes(data)
    if sys.byteorder == "big":
        a.byteswap()
    return a


def _torn(name: str, offset: int, data: bytes, what: str) -> str:
    return f"{name}: {what} at byte offset {offset} ({len(data) - offset} bytes to the end): a torn tail"


@dataclass
class VerifyReport:
    """What `verify_log` found: ok, events and last seq readable, segments, problems, torn tail."""

    ok: bool
    events: int
    last_seq: int
    segments: int
    problems: list[str] = field(default_factory=list)
    stopped_at: str | None = None


def verify_log(directory: str | Path) -> VerifyReport:
    """Check every block of the log in `directory` (headers, CRCs, decoding, seq continuity).

    A torn tail (a crash mid-write) is not a problem: it is reported in
    ``stopped_at``; a corrupt block is, with its file and offset.
    """
    try:
        reader = LogReader(directory)
    except (LogCorrupt, FileNotFoundError) as exc:
        segments = len(list(Path(directory).glob("*" + SEGMENT_SUFFIX))) if Path(directory).is_dir() else 0
        return VerifyReport(False, 0, 0, segments, [str(exc)])
    problems: list[str] = []
    events = 0
    last = 0
    with reader:
        for block in reader.blocks:
            try:
                got = reader.block_events(block)
            except LogCorrupt as exc:
                problems.append(str(exc))
                continue
            seqs = [e["seq"] for e in got]
            if seqs != list(range(block.first_seq, block.first_seq + block.count)):
                problems.append(f"{block.segment}: block at byte offset {block.offset}: seq not consecutive")
            events += len(got)
            last = max(last, seqs[-1])
        if not problems and events != reader.last_seq:
            problems.append(f"{events} events read, last seq {reader.last_seq}")
    return VerifyReport(not problems, events, last if not problems else reader.last_seq, len(reader.segments),
                        problems, reader.stopped_at)
