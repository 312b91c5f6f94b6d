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

import os
import struct
import zlib

__all__ = ["HEADER", "HEADER_SIZE", "INDEX_NAME", "NO_TIME", "SEGMENT_MAGIC", "SEGMENT_SUFFIX", "TAIL_NAMES",
           "BlockHeader", "LogCorrupt", "LogWriteError", "fsync_dir", "pack_header", "segment_name", "unpack_header"]

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


def segment_name(first_seq: int) -> str:
    return f"{first_seq:020d}{SEGMENT_SUFFIX}"


def fsync_dir(path: str | os.PathLike) -> None:
    """fsync a directory, so that files created or renamed in it survive a power loss."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
