"""The event log (docs/event-log.md, Speed): caller's cost per append, read rate, seek on a big log.

Run the figures (the 10-million-event log is written once in a temp dir, ~1 GB of RAM-free disk,
about a minute):

    python benches/bench_eventlog.py [--events 10000000]

or the pytest-benchmark versions (smaller logs):

    pytest benches/bench_eventlog.py --benchmark-only

Events are realistic: bar events (OHLCV floats, symbol, timestamp, time) with a decision event
(a small nested dict) every 10 bars.
"""

from __future__ import annotations

import argparse
import random
import shutil
import tempfile
import time
from pathlib import Path

import msgpack
import pytest

from tradesim.eventlog import LogReader, LogWriter

T0 = 1_747_699_200_000


def events(n: int, seed: int = 1):
    """n realistic events: bars, and a decision every 10th event."""
    rng = random.Random(seed)
    price = 100_000.0
    for i in range(n):
        t = T0 + 60_000 * i
        if i % 10 == 9:
            yield {"type": "decision", "runner": "BTCUSDT:ema_crossover", "time": t,
                   "action": {"type": "BUY" if i % 20 == 9 else "HOLD", "size": 0.25},
                   "indicators": {"fast": price * 0.999, "slow": price * 1.001}}
        else:
            price *= 1.0 + rng.gauss(0.0, 0.001)
            yield {"type": "bar", "symbol": "BTCUSDT", "timestamp": t, "time": t, "open": price,
                   "high": price * 1.0005, "low": price * 0.9995, "close": price * 1.0001,
                   "volume": 12.345 + (i % 100)}


def append_cost(path: Path, evs: list[dict], **options) -> tuple[float, float]:
    """(caller's seconds for all appends, seconds including close) for one log."""
    w = LogWriter(path, flush_interval=None, **options)
    append = w.append
    t0 = time.perf_counter()
    for e in evs:
        append(e)
    t1 = time.perf_counter()
    w.close()
    return t1 - t0, time.perf_counter() - t0


def write_big(path: Path, n: int) -> None:
    w = LogWriter(path, flush_interval=None, fsync="never")
    append = w.append
    batch = list(events(100_000))
    for k in range(0, n, len(batch)):
        for e in batch[:min(len(batch), n - k)]:
            e = dict(e)
            e["time"] = e["time"] + 60_000 * k
            append(e)
    w.close()


def seek_ms(path: Path, n: int, probes: int = 20) -> list[float]:
    """ms for a fresh LogReader + seek_seq + first event, at random seqs."""
    rng = random.Random(3)
    out = []
    for _ in range(probes):
        seq = rng.randint(1, n)
        t0 = time.perf_counter()
        r = LogReader(path)
        ev = next(r.seek_seq(seq))
        out.append((time.perf_counter() - t0) * 1e3)
        assert ev["seq"] == seq
        r.close()
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--events", type=int, default=10_000_000, help="size of the log for the seek figure")
    ap.add_argument("--append", type=int, default=500_000)
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="bench-eventlog-"))
    try:
        evs = list(events(args.append))
        for rnd in range(3):   # interleaved with the floor: msgpack's Packer alone on the same dicts
            copies = [dict(e) for e in evs]
            pack = msgpack.Packer().pack
            t0 = time.perf_counter()
            for e in copies:
                e["seq"] = 0
                pack(e)
            base = time.perf_counter() - t0
            copies = [dict(e) for e in evs]
            caller, total = append_cost(tmp / f"a{rnd}", copies, fsync="interval")
            print(f"append round {rnd}: caller {caller / len(evs) * 1e9:.0f} ns/event "
                  f"(msgpack pack alone {base / len(evs) * 1e9:.0f} ns, ratio {caller / base:.2f}), "
                  f"incl. close {total / len(evs) * 1e9:.0f} ns/event")
        raw = b"".join(msgpack.packb(e) for e in LogReader(tmp / "a0").events())
        for rnd in range(3):   # interleaved with the ceiling: msgpack's Unpacker over the same, uncompressed
            r = LogReader(tmp / "a0")
            t0 = time.perf_counter()
            k = sum(1 for _ in r.events())
            dt = time.perf_counter() - t0
            t0 = time.perf_counter()
            u = msgpack.Unpacker()
            u.feed(raw)
            k2 = sum(1 for _ in u)
            dt2 = time.perf_counter() - t0
            print(f"read round {rnd}: {k / dt / 1e6:.2f} M events/s ({k} events; msgpack Unpacker alone "
                  f"{k2 / dt2 / 1e6:.2f} M/s, ratio {dt2 / dt * k / k2:.2f})")
        t0 = time.perf_counter()
        write_big(tmp / "big", args.events)
        size = sum(p.stat().st_size for p in (tmp / "big").iterdir())
        print(f"wrote {args.events} events in {time.perf_counter() - t0:.1f} s, {size / 2**20:.0f} MiB")
        ms = sorted(seek_ms(tmp / "big", args.events))
        print(f"seek_seq on {args.events} events (fresh reader + seek + first event): "
              f"median {ms[len(ms) // 2]:.1f} ms, max {ms[-1]:.1f} ms")
        (tmp / "big" / "index.msgpack").unlink()
        t0 = time.perf_counter()
        LogReader(tmp / "big")
        print(f"open without the index (header scan, as after a crash): {(time.perf_counter() - t0) * 1e3:.0f} ms")
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


# -- pytest-benchmark versions (small logs) --------------------------------------------------------

N = 200_000


@pytest.fixture(scope="module")
def evs():
    return list(events(N))


def test_append_per_event(per_op, evs, tmp_path):
    k = iter(range(100))

    def run():
        append_cost(tmp_path / f"log{next(k)}", [dict(e) for e in evs])
    per_op(run, N, rounds=3)


def test_read_per_event(per_op, evs, tmp_path):
    append_cost(tmp_path / "log", [dict(e) for e in evs])

    def run():
        assert sum(1 for _ in LogReader(tmp_path / "log").events()) == N
    per_op(run, N, rounds=3)


def test_seek_seq_fresh_reader(per_op, evs, tmp_path):
    append_cost(tmp_path / "log", [dict(e) for e in evs])
    per_op(lambda: seek_ms(tmp_path / "log", N, probes=20), 20, rounds=3)


if __name__ == "__main__":
    main()
