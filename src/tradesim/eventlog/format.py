"""The on-disk layout of an event log (docs/event-log.md, Format), in one place.

A log is a directory of segment files ``<first seq, 20 digits>.seg`` and, once
closed, ``index.msgpack``. A segment starts with `SEGMENT_MAGIC` and holds
blocks back to back. A block is a `HEADER` followed by its payload: the block's
MessagePack-encoded events, back to back, compressed with LZ4 (block mode, no
stored size: the header has it)::

    magic "TSB1" | stored u32 | raw u32 | count u32 | first_seq u64 | first_time i64 |
    last_time i64 | payload_crc u32 | header_crc u32        (48 bytes, little-endian)

``header_crc`` is the CRC32 of the 44 bytes before it, so a damaged length is
never trusted; ``payload_crc`` the CRC32 of the stored (compressed) payload.
Times are the events' ``time`` (ms UTC), `NO_TIME` when none has one.
"""

from __future__ import annotations

import gc
import os
import struct
import zlib
from typing import Any

import msgspec

from tradesim.eventlog.flat_events import FlatDecoder

__all__ = ["HEADER", "HEADER_SIZE", "INDEX_NAME", "NO_TIME", "SEGMENT_MAGIC", "SEGMENT_SUFFIX", "TAIL_NAMES",
           "BlockHeader", "LogCorrupt", "LogWriteError", "decode_events", "encode_event", "fsync_dir", "pack_header",
           "segment_name", "unpack_header"]

SEGMENT_MAGIC = b"TSLOG1\r\n"
SEGMENT_SUFFIX = ".seg"
INDEX_NAME = "index.msgpack"
TAIL_NAMES = ("tail0.blk", "tail1.blk")   # snapshots of the open block (written by flushes, removed at close)
BLOCK_MAGIC = b"TSB1"
HEADER = struct.Struct("<4sIIIQqqI")   # without header_crc
HEADER_SIZE = HEADER.size + 4
NO_TIME = -(2**63)


class LogCorrupt(Exception):
    """A complete block fails its checks (magic, CRC, length, sequence): the message names the
    segment file and byte offset. Never returned as data."""


class LogWriteError(OSError):
    """The log could not be written (disk full, EIO ...): the message names the file and errno."""


class BlockHeader:
    """One block's header fields (see the module docstring), and where the block starts."""

    __slots__ = ("stored", "raw", "count", "first_seq", "first_time", "last_time", "payload_crc",
                 "segment", "offset")

    def __init__(self, stored, raw, count, first_seq, first_time, last_time, payload_crc, segment, offset):
        self.stored, self.raw, self.count = stored, raw, count
        self.first_seq, self.first_time, self.last_time = first_seq, first_time, last_time
        self.payload_crc, self.segment, self.offset = payload_crc, segment, offset

    @property
    def last_seq(self) -> int:
        return self.first_seq + self.count - 1

    @property
    def end(self) -> int:
        """Offset just after the block."""
        return self.offset + HEADER_SIZE + self.stored


def pack_header(stored: int, raw: int, count: int, first_seq: int, first_time: int, last_time: int,
                payload_crc: int) -> bytes:
    head = HEADER.pack(BLOCK_MAGIC, stored, raw, count, first_seq, first_time, last_time, payload_crc)
    return head + struct.pack("<I", zlib.crc32(head))


def unpack_header(data: bytes, segment: str, offset: int) -> BlockHeader:
    """The header in `data` (48 bytes).

    Raises
    ------
    LogCorrupt
        Bad magic or header CRC.
    """
    head = data[:HEADER.size]
    (crc,) = struct.unpack_from("<I", data, HEADER.size)
    magic, stored, raw, count, first_seq, first_time, last_time, payload_crc = HEADER.unpack(head)
    if magic != BLOCK_MAGIC or zlib.crc32(head) != crc or count == 0:
        raise LogCorrupt(f"{segment}: corrupt block header at byte offset {offset}"
                         f" ({'bad magic' if magic != BLOCK_MAGIC else 'header CRC mismatch'})")
    return BlockHeader(stored, raw, count, first_seq, first_time, last_time, payload_crc, segment, offset)


# MessagePack through msgspec: the same bytes as msgpack-python's `Packer` for these values (tested),
# encoded 2-5x and decoded ~2x faster (docs/event-log.md, Speed).
def _builtin(value: Any) -> Any:
    # msgpack-python packs subclasses of the types it knows (numpy.float64, numpy.str_, IntEnum ...) as
    # their base type's value; so does the log
    for base in (float, int, str, bytes, dict):
        if isinstance(value, base):
            return base(value)
    if isinstance(value, (list, tuple)):
        return list(value)
    raise TypeError(f"cannot log a value of type {type(value).__name__}: {value!r}")


class _Head(msgspec.Struct):
    # What a type-filtered read decodes of every event: the rest of an event not asked for (a chunk's
    # bar columns) is skipped in place, never copied out.
    type: Any = None
    seq: Any = None


_ENCODER = msgspec.msgpack.Encoder(enc_hook=_builtin)
_DECODER = msgspec.msgpack.Decoder()
_RAWS = msgspec.msgpack.Decoder(list[msgspec.Raw])
_HEAD = msgspec.msgpack.Decoder(_Head)

#: One event's MessagePack bytes (raises TypeError for a value it cannot encode).
encode_event = _ENCODER.encode


def decode_events(raw: bytes, count: int, types: frozenset[str] | None = None,
                  flat: FlatDecoder | None = None) -> tuple[list[Any], Any, Any]:
    """The `count` MessagePack values back to back in `raw` (a block's payload, decompressed).

    A full read decodes the flat events (a live log's bars, decisions, fills) by their key layouts,
    the others by msgspec (`flat_events.pyx`); `flat`: the decoder that knows the log's layouts
    (a reader's own; a new one if None).

    Returns ``(values, first_seq, last_seq)``: the values (only the events whose ``type`` is in
    `types`, when given) and the ``seq`` of the first and last of all `count`.

    Raises
    ------
    msgspec.DecodeError
        `raw` is not exactly `count` values.
    """
    # The cyclic GC is paused while one block's values are built: a collection would only walk them
    # (it finds no cycle), and those walks cost half a read of small events. The pause is process-wide:
    # another thread may run in it, for one block's decode at most.
    paused = gc.isenabled()
    if paused:
        gc.disable()
    try:
        if types is None:
            if count == 1:
                values = [_DECODER.decode(raw)]
            else:
                values = (flat if flat is not None else FlatDecoder()).decode_block(raw, count)
            return values, _seq(values[0]), _seq(values[-1])
        if count == 1:
            kind = _first_type(raw)
            if kind is not None and kind in types:   # a block of its own (a chunk of bars, of outcomes)
                values = [_DECODER.decode(raw)]
                return values, _seq(values[0]), _seq(values[0])
        raws = [raw] if count == 1 else _RAWS.decode(_array(raw, count))
        values, first, last = [], None, None
        for k, r in enumerate(raws):
            try:   # the type and seq only: the rest is skipped in place
                head = _HEAD.decode(r)
                kind, seq, value = head.type, head.seq, None
            except msgspec.ValidationError:   # not a map with str keys only: decoded whole
                value = _DECODER.decode(r)
                kind, seq = (value.get("type"), value.get("seq")) if isinstance(value, dict) else (None, None)
            if type(kind) is str and kind in types:
                values.append(_DECODER.decode(r) if value is None else value)
            if k == 0:
                first = seq
            last = seq
        return values, first, last
    finally:
        if paused:
            gc.enable()


def _array(raw: bytes, count: int) -> bytes:
    # An array header before values back to back makes them one array: one decode call, no stream state.
    return b"\xdd" + count.to_bytes(4, "big") + raw


_FIXSTR, _STR8 = 0xA0, 0xD9


def _first_type(raw: bytes) -> str | None:
    # The type of an event whose map starts with its "type" (as every recorder event does), read from
    # the first bytes without decoding the rest; None for any other layout (then it is decoded).
    start = {0xDE: 3, 0xDF: 5}.get(raw[0], 1 if 0x80 <= raw[0] <= 0x8F else 0) if raw else 0
    if not start or raw[start:start + 5] != b"\xa4type":
        return None
    tag = raw[start + 5] if len(raw) > start + 5 else -1
    if _FIXSTR <= tag < _FIXSTR + 32:
        begin, size = start + 6, tag - _FIXSTR
    elif tag == _STR8 and len(raw) > start + 6:
        begin, size = start + 7, raw[start + 6]
    else:
        return None
    try:
        return raw[begin:begin + size].decode()
    except UnicodeDecodeError:
        return None


def _seq(value: Any) -> Any:
    return value.get("seq") if isinstance(value, dict) else None


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory, so that files created or renamed in it survive a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
