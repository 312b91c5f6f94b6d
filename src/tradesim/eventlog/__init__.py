"""TEMPORARY stand-in for the event log (one msgpack stream, no CRC, no blocks): the real
implementation comes from branch wt-eventlog (issue 16 part A) and replaces this file whole."""
# ruff: noqa
import os, threading
from dataclasses import dataclass, field
from pathlib import Path
import msgpack

class LogCorrupt(Exception): pass
class LogWriteError(Exception): pass

@dataclass
class VerifyReport:
    ok: bool; events: int; last_seq: int; segments: int; problems: list = field(default_factory=list); stopped_at: str | None = None

class LogWriter:
    def __init__(self, directory, **kw):
        self.dir = Path(directory); self.dir.mkdir(parents=True, exist_ok=True)
        self.fh = open(self.dir / "seg-0.bin", "wb"); self.seq = 0; self.lock = threading.Lock(); self.error = None
        self.stats = {"events": 0}
    def append(self, event):
        with self.lock:
            self.seq += 1; event["seq"] = self.seq
            self.fh.write(msgpack.packb(event)); self.stats["events"] += 1
            return self.seq
    def flush(self): self.fh.flush()
    def close(self):
        if not self.fh.closed: self.fh.close()

class LogReader:
    def __init__(self, directory):
        self.dir = Path(directory)
        with open(self.dir / "seg-0.bin", "rb") as fh:
            self._evs = list(msgpack.Unpacker(fh, raw=False, strict_map_key=False))
        self.stopped_at = None
    def __len__(self): return len(self._evs)
    @property
    def last_seq(self): return self._evs[-1]["seq"] if self._evs else 0
    def events(self, from_seq=1, to_seq=None, types=None):
        for e in self._evs:
            if e["seq"] < from_seq or (to_seq is not None and e["seq"] > to_seq): continue
            if types is not None and e.get("type") not in types: continue
            yield e
    def seek_seq(self, n): return self.events(n)
    def seek_time(self, t):
        for e in self._evs:
            if isinstance(e.get("time"), int) and e["time"] >= t:
                return self.events(e["seq"])
        return iter(())
    def event(self, n): return self._evs[n - 1]

def verify_log(directory):
    r = LogReader(directory); return VerifyReport(True, len(r), r.last_seq, 1)
