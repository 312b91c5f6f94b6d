"""A crash-safe, append-only event log: MessagePack events in CRC-checked, LZ4-compressed blocks.

`LogWriter` appends events (dicts) from any thread and writes them on a
thread of its own; `LogReader` reads them back, seeking by sequence number or
time through a sparse index; `verify_log` checks every block. The format, the
flush and fsync policy and what a crash can cost are in docs/event-log.md.
"""

from tradesim.eventlog.format import LogCorrupt, LogWriteError
from tradesim.eventlog.reader import LogReader, VerifyReport, verify_log
from tradesim.eventlog.writer import LogWriter

__all__ = ["LogCorrupt", "LogReader", "LogWriteError", "LogWriter", "VerifyReport", "verify_log"]
