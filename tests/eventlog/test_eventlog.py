"""The event log: round trips, byte identity, seeking, torn tails, bit flips, a full disk, a full queue.

Cases E1-E9 of docs/hostile-inputs.md (event-log faults); the session-level
crash test (SIGKILL at random moments) is tests/sessions/test_crash.py.
"""

from __future__ import annotations

import math
import os
import random
import signal
import subprocess
import sys
import threading
from pathlib import Path

import msgpack
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from tradesim.eventlog import LogCorrupt, LogReader, LogWriteError, LogWriter, verify_log
from tradesim.eventlog import writer as writer_module
from tradesim.eventlog.format import HEADER_SIZE, SEGMENT_MAGIC, decode_events, encode_event


def _event(i: int, t0: int = 1_700_000_000_000) -> dict:
    return {"type": ("bar", "decision", "position_opened")[i % 3], "runner": "BTCUSDT:ema", "time": t0 + 60_000 * i,
            "close": 100.0 + (i % 97) * 0.25, "quantity": math.nan if i % 5 == 0 else 0.5,
            "context": {"reason": "x" * (i % 7), "n": i} if i % 3 == 1 else None, "payload": bytes([i % 256]) * 3}


def _write(path: Path, events, **options) -> LogWriter:
    options.setdefault("flush_interval", None)
    w = LogWriter(path, **options)
    for e in events:
        w.append(dict(e))
    w.close()
    return w


def _packed(events) -> list[bytes]:
    return [msgpack.packb(e) for e in events]   # NaN-safe comparison


def test_round_trip_with_seq_nan_none_nested_and_bytes(tmp_path):
    events = [_event(i) for i in range(5000)]
    w = _write(tmp_path / "log", events, block_bytes=4096)
    r = LogReader(tmp_path / "log")
    got = list(r.events())
    assert [e["seq"] for e in got] == list(range(1, 5001))
    assert _packed([{k: v for k, v in e.items() if k != "seq"} for e in got]) == _packed(events)
    assert len(r) == r.last_seq == 5000 and r.indexed and r.stopped_at is None
    assert w.stats["events"] == 5000 and w.stats["blocks"] > 10 and w.stats["dropped"] == 0
    assert r.first_time == events[0]["time"] and r.last_time == events[-1]["time"]
    assert verify_log(tmp_path / "log").ok


_scalars = (st.none() | st.booleans() | st.integers(-(2**63), 2**64 - 1) | st.floats(allow_nan=True)
            | st.text() | st.binary())
_values = st.recursive(_scalars, lambda inner: st.lists(inner, max_size=5)
                       | st.dictionaries(st.text(max_size=8) | st.integers(-5, 5), inner, max_size=5), max_leaves=25)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.dictionaries(st.text(max_size=12), _values, max_size=8), min_size=1, max_size=6))
def test_the_codec_writes_msgpack_pythons_bytes_and_reads_them_back(events):
    # The log's codec (msgspec) against msgpack-python, an independent MessagePack implementation:
    # the same bytes, and each reads what the other wrote.
    data = [encode_event(e) for e in events]
    assert data == [msgpack.packb(e) for e in events]
    got, _, _ = decode_events(b"".join(data), len(events))
    assert _packed(got) == data
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(b"".join(data))
    assert _packed(list(unpacker)) == _packed(got)


def test_the_codec_takes_float_and_int_subclasses_as_msgpack_python_does():
    import enum

    import numpy as np

    class Side(enum.IntEnum):
        LONG = 1

    event = {"price": np.float64(101.25), "side": Side.LONG, "flag": True}
    assert encode_event(event) == msgpack.packb(event)
    with pytest.raises(TypeError, match="int64"):
        encode_event({"n": np.int64(3)})   # not an int subclass: msgpack-python refuses it too
    with pytest.raises(TypeError):
        msgpack.packb({"n": np.int64(3)})
    with pytest.raises(Exception, match="truncated|trailing|[Ii]nput"):
        decode_events(encode_event(event), 2)   # fewer values than the header's count
    with pytest.raises(Exception, match="trailing|[Ii]nput|[Ee]xtra"):
        decode_events(encode_event(event) * 3, 2)   # more
    with pytest.raises(Exception, match="trailing|[Ii]nput|[Ee]xtra"):
        decode_events(encode_event(event) * 2, 1)


def test_a_large_event_makes_a_block_of_its_own(tmp_path):
    # small events, then one larger than a block (a backtest's chunk of bars), then small ones again
    events = [_event(i) for i in range(40)] + [{"type": "bars", "time": 5, "cols": b"\x01" * 20_000}] + \
        [_event(i) for i in range(40, 80)]
    _write(tmp_path / "log", events, block_bytes=4096)
    r = LogReader(tmp_path / "log")
    got = list(r.events())
    assert [e["seq"] for e in got] == list(range(1, 82))
    assert _packed([{k: v for k, v in e.items() if k != "seq"} for e in got]) == _packed(events)
    big = [b for b in r.blocks if b.first_seq <= 41 <= b.first_seq + b.count - 1]
    assert len(big) == 1 and big[0].first_seq == 41 and big[0].count == 1
    assert r.event(41)["cols"] == b"\x01" * 20_000 and verify_log(tmp_path / "log").ok


def _big(kind: str, i: int, first: str = "type", extra_keys: int = 0) -> dict:
    # a block of its own, its "type" first (as the recorder writes events) or not; a map16 with extra keys
    event = {first: kind} if first == "type" else {first: i, "type": kind}
    event.update({f"k{j}": j for j in range(extra_keys)})
    event.update({"time": i, "cols": bytes([i % 256]) * 9000})
    return event


@settings(max_examples=40, deadline=None)
@given(st.data())
def test_a_type_filtered_read_is_the_unfiltered_read_filtered(tmp_path_factory, data):
    # Blocks of many small events and blocks of one large event (whose type a filtered read peeks
    # from its first bytes: fixmap or map16 heads, short and long type names, "type" not first).
    kinds = ["bar", "decision", "bars", "x" * 40, "é" * 3]
    events = []
    for i in range(data.draw(st.integers(20, 150), label="n")):
        if data.draw(st.booleans(), label=f"big{i}"):
            events.append(_big(data.draw(st.sampled_from(kinds)), i, data.draw(st.sampled_from(["type", "a"])),
                               data.draw(st.sampled_from([0, 20]))))
        else:
            events.append({**_event(i), "type": data.draw(st.sampled_from(kinds))})
    path = tmp_path_factory.mktemp("log") / "log"
    _write(path, events, block_bytes=4096)
    r = LogReader(path)
    everything = list(r.events())
    wanted = frozenset(data.draw(st.sets(st.sampled_from(kinds)), label="types"))
    lo = data.draw(st.integers(1, len(events)), label="from")
    hi = data.draw(st.none() | st.integers(lo, len(events) + 3), label="to")
    expected = [e for e in everything if e["type"] in wanted and lo <= e["seq"] <= (hi or len(events))]
    assert _packed(list(r.events(lo, hi, types=wanted))) == _packed(expected)


def test_same_events_give_byte_identical_logs(tmp_path):
    events = [_event(i) for i in range(3000)]
    _write(tmp_path / "a", events, block_bytes=8192, segment_bytes=60_000)
    _write(tmp_path / "b", events, block_bytes=8192, segment_bytes=60_000)
    files = sorted(p.name for p in (tmp_path / "a").iterdir())
    assert len([f for f in files if f.endswith(".seg")]) > 1
    for name in files:
        assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes(), name


def test_segments_roll_and_the_index_can_be_rebuilt(tmp_path):
    events = [_event(i) for i in range(4000)]
    _write(tmp_path / "log", events, block_bytes=2048, segment_bytes=30_000)
    indexed = LogReader(tmp_path / "log")
    assert indexed.indexed and len(indexed.segments) > 3
    (tmp_path / "log" / "index.msgpack").unlink()          # as after a crash: rebuilt by a scan
    scanned = LogReader(tmp_path / "log")
    assert not scanned.indexed
    assert [(b.segment, b.offset, b.first_seq) for b in scanned.blocks] == \
        [(b.segment, b.offset, b.first_seq) for b in indexed.blocks]
    assert _packed(scanned.events()) == _packed(indexed.events())


@settings(max_examples=25, deadline=None)
@given(times=st.lists(st.integers(0, 10_000), min_size=1, max_size=400),
       block=st.sampled_from([64, 300, 4096]), probe=st.integers(-5, 10_005), start=st.integers(1, 450))
def test_seeks_agree_with_a_linear_scan(tmp_path_factory, times, block, probe, start):
    path = tmp_path_factory.mktemp("seek") / "log"
    _write(path, [{"type": "x", "time": t} for t in times], block_bytes=block)
    r = LogReader(path)
    everything = list(r.events())
    assert [e["seq"] for e in r.seek_seq(start)] == [e["seq"] for e in everything if e["seq"] >= start]
    first = next((e["seq"] for e in everything if e["time"] >= probe), None)
    got = next(iter(r.seek_time(probe)), None)
    assert (got["seq"] if got else None) == first
    if start <= len(times):
        assert r.event(start)["time"] == times[start - 1]


def test_truncation_at_every_byte_of_the_last_block_is_a_clean_torn_tail(tmp_path):
    events = [_event(i) for i in range(600)]
    _write(tmp_path / "log", events, block_bytes=2048)
    (tmp_path / "log" / "index.msgpack").unlink()
    segment = next((tmp_path / "log").glob("*.seg"))
    data = segment.read_bytes()
    blocks = LogReader(tmp_path / "log").blocks
    last = blocks[-1]
    complete = last.first_seq - 1                       # events in the blocks before the last
    for cut in range(last.offset + 1, len(data)):
        segment.write_bytes(data[:cut])
        r = LogReader(tmp_path / "log")
        assert r.stopped_at is not None and str(last.offset) in r.stopped_at, cut
        assert len(list(r.events())) == complete, cut
        assert verify_log(tmp_path / "log").ok, cut
        r.close()
    segment.write_bytes(data + bytes(4096))                # a zero-filled tail (E3)
    r = LogReader(tmp_path / "log")
    assert "zero bytes" in r.stopped_at and len(list(r.events())) == len(events)


def test_a_flipped_bit_in_any_block_is_refused_with_its_offset(tmp_path):
    events = [_event(i) for i in range(3000)]
    _write(tmp_path / "log", events, block_bytes=4096)
    segment = next((tmp_path / "log").glob("*.seg"))
    data = segment.read_bytes()
    blocks = LogReader(tmp_path / "log").blocks
    rng = random.Random(7)
    for _ in range(30):
        block = rng.choice(blocks[:-1])                      # complete blocks with more after them
        pos = rng.randrange(block.offset, block.end)
        damaged = bytearray(data)
        damaged[pos] ^= 1 << rng.randrange(8)
        segment.write_bytes(bytes(damaged))
        with pytest.raises(LogCorrupt, match=rf"{segment.name}.*offset {block.offset}"):
            r = LogReader(tmp_path / "log")                  # the index is used: the block is read ...
            list(r.events())                                 # ... and refused when its data is
        report = verify_log(tmp_path / "log")
        assert not report.ok and str(block.offset) in " ".join(report.problems)
    segment.write_bytes(data)
    assert verify_log(tmp_path / "log").ok


def test_a_bad_segment_magic_is_corruption(tmp_path):
    _write(tmp_path / "log", [_event(i) for i in range(100)])
    segment = next((tmp_path / "log").glob("*.seg"))
    segment.write_bytes(b"X" + segment.read_bytes()[1:])
    (tmp_path / "log" / "index.msgpack").unlink()
    with pytest.raises(LogCorrupt, match="bad magic"):
        LogReader(tmp_path / "log")
    assert SEGMENT_MAGIC[:1] == b"T" and HEADER_SIZE == 48


FILL = """
import resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))
from tradesim.eventlog import LogWriter, LogWriteError
w = LogWriter(sys.argv[1], flush_interval=None, block_bytes=4096, fsync="block")
try:
    for i in range(100_000):
        w.append({"type": "x", "i": i, "pad": "y" * 100})
    w.close()
except LogWriteError as exc:
    print("ERROR", exc)
    sys.exit(3)
"""


def test_a_full_disk_fails_with_a_clear_error_and_keeps_what_was_written(tmp_path):
    done = subprocess.run([sys.executable, "-c", FILL, str(tmp_path / "log")], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 3, (done.stdout, done.stderr)
    assert "errno 27" in done.stdout and ".seg" in done.stdout          # EFBIG, naming the file
    report = verify_log(tmp_path / "log")
    assert report.ok and report.events > 100                            # earlier blocks intact


def test_a_full_queue_drops_and_counts_or_raises(tmp_path, monkeypatch):
    gate = threading.Event()
    real = writer_module.LogWriter._write_block

    def slow(self, *args):
        gate.wait(10)
        return real(self, *args)
    monkeypatch.setattr(writer_module.LogWriter, "_write_block", slow)
    w = LogWriter(tmp_path / "drop", flush_interval=None, block_bytes=1, queue_size=10, on_full="drop")
    seqs = [w.append({"i": i}) for i in range(100)]
    assert seqs[:10] == list(range(1, 11)) and set(seqs[10:]) == {0}
    assert w.stats["dropped"] == 90
    gate.set()
    w.close()
    assert [e["i"] for e in LogReader(tmp_path / "drop").events()] == list(range(10))
    gate.clear()
    w = LogWriter(tmp_path / "raise", flush_interval=None, block_bytes=1, queue_size=5, on_full="raise")
    for i in range(5):
        w.append({"i": i})
    with pytest.raises(LogWriteError, match="queue_size 5"):
        w.append({"i": 5})
    gate.set()
    w.close()


def test_fsync_policies_and_directory_syncs(tmp_path, monkeypatch):
    calls = {"fsync": 0, "dir": 0}
    real_fsync, real_dir = os.fsync, writer_module.fsync_dir

    def fsync(fd):
        calls["fsync"] += 1
        real_fsync(fd)

    def fsync_dir(path):
        calls["dir"] += 1
        real_dir(path)
    monkeypatch.setattr(writer_module.os, "fsync", fsync)
    monkeypatch.setattr(writer_module, "fsync_dir", fsync_dir)
    w = _write(tmp_path / "block", [_event(i) for i in range(2000)], block_bytes=4096, segment_bytes=40_000,
               fsync="block")
    # one per block, one per new segment, one per finished segment, one for the index (E8, E9)
    assert calls["fsync"] >= w.stats["blocks"] + w.stats["segments"]
    assert calls["dir"] == w.stats["segments"] + 1                   # each new segment, and the index rename
    calls.update(fsync=0, dir=0)
    _write(tmp_path / "never", [_event(i) for i in range(2000)], fsync="never")
    assert calls == {"fsync": 0, "dir": 0}


def test_timed_flush_writes_a_quiet_stream_and_flush_waits(tmp_path):
    w = LogWriter(tmp_path / "log", flush_interval=0.05)
    w.append({"type": "x"})
    w.flush()                                   # written and fsynced, the writer still open
    assert [e["seq"] for e in LogReader(tmp_path / "log").events()] == [1]
    w.append({"type": "y"})
    w.close()
    with pytest.raises(ValueError, match="closed"):
        w.append({"type": "z"})
    with pytest.raises(TypeError):
        LogWriter(tmp_path / "bad", flush_interval=None).append({"x": object()})
    with pytest.raises(LogWriteError, match="holds a log already"):
        LogWriter(tmp_path / "log")


# -- timed flushes write tail snapshots: segments stay byte-identical; a crash keeps what was flushed --------

def test_flushes_at_any_moment_leave_the_segments_byte_identical(tmp_path):
    events = [_event(i) for i in range(3000)]
    _write(tmp_path / "plain", events, block_bytes=8192, segment_bytes=60_000)
    w = LogWriter(tmp_path / "flushed", block_bytes=8192, segment_bytes=60_000, flush_interval=0.001)
    rng = random.Random(5)
    for e in events:
        w.append(dict(e))
        if rng.random() < 0.02:
            w.flush()                        # at arbitrary points, as a timer would
    assert w.stats["tail_writes"] > 10
    w.close()
    names = sorted(p.name for p in (tmp_path / "plain").iterdir())
    assert names == sorted(p.name for p in (tmp_path / "flushed").iterdir())     # no tail files left
    assert not any(n.startswith("tail") for n in names)
    for name in names:
        assert (tmp_path / "plain" / name).read_bytes() == (tmp_path / "flushed" / name).read_bytes(), name


CRASH_AFTER_FLUSH = """
import os, sys
from tradesim.eventlog import LogWriter
w = LogWriter(sys.argv[1], flush_interval=None, block_bytes=4096, fsync="never")
for i in range(int(sys.argv[2])):
    w.append({"type": "x", "i": i, "pad": "p" * (i % 13)})
w.flush()
for i in range(50):                          # appended after the flush: not promised
    w.append({"type": "late", "i": i})
os._exit(9)                                  # no close: as a crash
"""


@pytest.mark.parametrize("n", [1, 37, 400])   # in the first block, and with full blocks in the segment
def test_a_crash_keeps_every_event_flushed_before_it(tmp_path, n):
    log = tmp_path / "log"
    done = subprocess.run([sys.executable, "-c", CRASH_AFTER_FLUSH, str(log), str(n)], capture_output=True, timeout=60)
    assert done.returncode == 9, done.stderr
    r = LogReader(log)
    got = [e for e in r.events() if e["type"] == "x"]
    assert [e["i"] for e in got] == list(range(n))
    assert [e["seq"] for e in got] == list(range(1, n + 1))
    assert r.stopped_at is not None and "tail" in r.stopped_at
    assert verify_log(log).ok
    # a torn rewrite of the newest snapshot falls back to the older one (or to the segments): never an error
    newest = max(log.glob("tail*.blk"), key=lambda p: LogReader(log).blocks[-1].segment == p.name)
    newest.write_bytes(newest.read_bytes()[:-1])
    assert [e["seq"] for e in LogReader(log).events()] == list(range(1, len(list(LogReader(log).events())) + 1))
    assert verify_log(log).ok


STREAM = """
import sys
from tradesim.eventlog import LogWriter
w = LogWriter(sys.argv[1], flush_interval=0.002, block_bytes=2048, segment_bytes=40_000, fsync="never")
print("started", flush=True)
i = 0
while True:                                  # an endless stream: every kill lands in the middle of it
    w.append({"type": "bar" if i % 4 else "decision", "i": i, "time": 1_700_000_000_000 + 60_000 * i,
              "close": 100.0 + (i % 89) * 0.5, "ctx": {"k": i % 7} if i % 4 == 0 else None})
    i += 1
"""


def test_sigkill_at_random_moments_leaves_a_readable_prefix(tmp_path):
    rng = random.Random(20261204)
    for k in range(20):
        log = tmp_path / f"log{k}"
        proc = subprocess.Popen([sys.executable, "-c", STREAM, str(log)], stdout=subprocess.PIPE)
        proc.stdout.readline()
        try:
            proc.wait(timeout=rng.uniform(0.0, 0.6))
        except subprocess.TimeoutExpired:
            pass
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=60)
        proc.stdout.close()
        report = verify_log(log)
        assert report.ok, (k, report.problems)
        got = list(LogReader(log).events())
        assert report.events == len(got) == report.last_seq
        # the uninterrupted stream's first len(got) events, independently rebuilt
        for j, e in enumerate(got):
            assert e["seq"] == j + 1 and e["i"] == j and e["time"] == 1_700_000_000_000 + 60_000 * j, (k, j)


HASHED = """
import sys
from tradesim.eventlog import LogWriter
names = {"BTCUSDT", "ETHUSDT", "SOLUSDT", "BNBUSDT"}   # set order varies with PYTHONHASHSEED
w = LogWriter(sys.argv[1], flush_interval=0.001, block_bytes=4096, segment_bytes=50_000)
for i in range(20_000):
    w.append({"type": "bar", "symbol": sorted(names)[i % 4], "time": i * 60_000, "close": i / 7,
              "ctx": {name: i % 3 for name in sorted(names)}})
w.close()
"""


def test_logs_are_byte_identical_across_processes_and_hash_seeds(tmp_path):
    for seed in ("0", "1", "12345"):
        env = dict(os.environ, PYTHONHASHSEED=seed)
        done = subprocess.run([sys.executable, "-c", HASHED, str(tmp_path / seed)], env=env, capture_output=True,
                              timeout=120)
        assert done.returncode == 0, done.stderr
    names = sorted(p.name for p in (tmp_path / "0").iterdir())
    assert len(names) > 2
    for seed in ("1", "12345"):
        assert sorted(p.name for p in (tmp_path / seed).iterdir()) == names
        for name in names:
            assert (tmp_path / seed / name).read_bytes() == (tmp_path / "0" / name).read_bytes(), (seed, name)


def test_an_fsync_error_stops_the_writer_for_good(tmp_path, monkeypatch):
    def eio(fd):
        raise OSError(5, "Input/output error")
    w = LogWriter(tmp_path / "log", flush_interval=None, block_bytes=512, fsync="block")
    monkeypatch.setattr(writer_module.os, "fsync", eio)
    with pytest.raises(LogWriteError, match=r"\.seg.*errno 5 EIO"):
        for i in range(10_000):                 # the first block's fsync fails; appends then raise
            w.append({"type": "x", "i": i, "pad": "z" * 50})
        w.flush()
    assert isinstance(w.error, LogWriteError) and w.error.errno == 5
    for call in (lambda: w.append({"type": "x"}), w.flush, w.close):   # no retry-and-continue (E7)
        with pytest.raises(LogWriteError, match="EIO"):
            call()


def test_a_missing_segment_is_a_seq_gap(tmp_path):
    _write(tmp_path / "log", [_event(i) for i in range(3000)], block_bytes=2048, segment_bytes=20_000)
    segments = sorted((tmp_path / "log").glob("*.seg"))
    assert len(segments) >= 3
    segments[1].unlink()                                  # the index no longer matches: a scan finds the gap
    with pytest.raises(LogCorrupt, match=rf"{segments[2].name}: block at byte offset 8 starts at seq \d+, expected"):
        LogReader(tmp_path / "log")
    report = verify_log(tmp_path / "log")
    assert not report.ok and "expected" in report.problems[0]


SHORT = """
import os, resource, signal, sys
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
from tradesim.eventlog import LogWriter, LogWriteError
w = LogWriter(sys.argv[1], fsync="never", flush_interval=None, block_bytes=4096)
w.append({"type": "a", "blob": os.urandom(3000)})
w.flush()
size = os.path.getsize(os.path.join(sys.argv[1], sorted(os.listdir(sys.argv[1]))[0]))
resource.setrlimit(resource.RLIMIT_FSIZE, (size + 1000, resource.RLIM_INFINITY))   # the next block half fits
w.append({"type": "b", "blob": os.urandom(3000)})
try:
    w.close()
except LogWriteError as exc:
    print("ERROR", exc)
    sys.exit(3)
"""


def test_a_short_write_is_an_error_not_a_silent_loss(tmp_path):
    done = subprocess.run([sys.executable, "-c", SHORT, str(tmp_path / "log")], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 3 and "errno 27" in done.stdout, (done.stdout, done.stderr)
    report = verify_log(tmp_path / "log")
    assert report.ok and report.events == 1 and report.stopped_at      # the half block is a torn tail


def test_close_while_an_append_waits_on_a_full_queue_and_flush_after_close(tmp_path, monkeypatch):
    gate = threading.Event()
    real = writer_module.LogWriter._write_block

    def slow(self, *args):
        gate.wait(10)
        return real(self, *args)
    monkeypatch.setattr(writer_module.LogWriter, "_write_block", slow)
    w = LogWriter(tmp_path / "log", flush_interval=None, block_bytes=10**6, queue_size=3, on_full="block",
                  fsync="interval")
    for i in range(3):
        w.append({"i": i})                      # the open block holds the queue's 3 events
    outcome = []
    waiter = threading.Thread(target=lambda: outcome.append(_try(w.append, {"i": 3})))
    waiter.start()
    closer = threading.Thread(target=w.close)
    closer.start()
    gate.set()
    closer.join(10)
    waiter.join(10)
    assert not closer.is_alive() and not waiter.is_alive()
    got = [e["i"] for e in LogReader(tmp_path / "log").events()]
    # the waiting event was either written with its seq, or refused: never a seq that is not in the log
    assert (outcome == [4] and got == [0, 1, 2, 3]) or (isinstance(outcome[0], ValueError) and got == [0, 1, 2])
    w.flush()                                   # after close: returns at once, never hangs


def _try(fn, *args):
    try:
        return fn(*args)
    except Exception as exc:
        return exc


def test_values_msgspec_refuses_but_msgpack_python_packed_are_logged_as_before(tmp_path):
    # str / bytes / dict / list subclasses (numpy.str_, OrderedDict, namedtuple) as their base value
    import collections

    import numpy as np

    event = {"symbol": np.str_("BTCUSDT"), "raw": np.bytes_(b"ab"), "map": collections.OrderedDict(a=1),
             "pair": collections.namedtuple("P", "x y")(1, 2)}
    assert encode_event(event) == msgpack.packb(event)


def test_a_cyclic_or_oversized_value_is_a_value_error_and_logs_nothing(tmp_path):
    w = LogWriter(tmp_path / "log", flush_interval=None)
    cyclic: dict = {"type": "note"}
    cyclic["self"] = cyclic
    for bad in (cyclic, {"type": "note", "n": 2**64}):
        with pytest.raises(ValueError, match="cannot log this event"):
            w.append(bad)
    assert w.append({"type": "ok"}) == 1   # the log goes on
    w.close()
    assert [e["type"] for e in LogReader(tmp_path / "log").events()] == ["ok"]


def test_a_type_filtered_read_takes_events_with_non_str_keys(tmp_path):
    events = [{"type": "a", 5: "int key"}, {"type": "b", "x": 1}, {"type": "a", None: 2}]
    _write(tmp_path / "log", events)
    r = LogReader(tmp_path / "log")
    assert [e["seq"] for e in r.events(types={"a"})] == [1, 3]
    assert [e["seq"] for e in r.events(types={"b"})] == [2]
    assert r.event(1)[5] == "int key"


def test_a_type_filtered_read_takes_a_large_event_with_non_str_keys(tmp_path):
    # a block of one event (larger than a block) whose type is not wanted, holding an int key
    events = [{"type": "bars", 3: "x", "cols": b"\x01" * 9000}, {"type": "b"}]
    _write(tmp_path / "log", events, block_bytes=4096)
    r = LogReader(tmp_path / "log")
    assert [e["seq"] for e in r.events(types={"b"})] == [2]
    assert [e[3] for e in r.events(types={"bars"})] == ["x"]
