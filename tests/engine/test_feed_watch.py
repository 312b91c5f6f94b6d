"""FeedWatch: the cause of each failed attempt on stderr (rate-limited), and a bounded offline time."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

from tradesim.engine.events import FeedStatus
from tradesim.engine.feed_watch import FeedWatch

REPO = Path(__file__).resolve().parents[2]
EMA = REPO / "lua-strategies" / "examples" / "ema_crossover.lua"


class _LiveFeed:
    live = True

    def __init__(self):
        self.status = "connecting"


class _Engine:
    def __init__(self):
        self.feed = _LiveFeed()
        self.feeds = {"live": self.feed, "sim": object()}
        self.stopped = 0

    def stop(self):
        self.stopped += 1


class _Clock:
    def __init__(self):
        self.t = 1000.0

    def __call__(self):
        return self.t


def _event(status, **detail):
    return FeedStatus(feed="live", status=status, detail=detail)


def test_reasons_are_said_at_most_once_per_interval_with_a_count_of_the_rest():
    said, clock, engine = [], _Clock(), _Engine()
    watch = FeedWatch(engine, said.append, max_offline=0, report_every=5.0, clock=clock)
    assert watch.live == ["live"]           # only live feeds are watched
    for _ in range(10):                     # ten failures in 4.5 s: one line
        watch.observe(_event("reconnecting", reason="gaierror: Name or service not known", delay=0.5))
        clock.t += 0.5
    clock.t += 1.0
    watch.observe(_event("reconnecting", reason="gaierror: Name or service not known", delay=1.0))
    assert said == ["feed live: reconnecting: gaierror: Name or service not known; retrying in 0.5 s",
                    "feed live: reconnecting: gaierror: Name or service not known; retrying in 1 s "
                    "(+9 more since the last report)"]
    assert not watch.check() and engine.stopped == 0   # max_offline 0: never gives up


def test_gives_up_after_max_offline_without_a_connection():
    said, clock, engine = [], _Clock(), _Engine()
    watch = FeedWatch(engine, said.append, max_offline=120, clock=clock)
    watch.observe(_event("reconnecting", reason="ConnectionRefusedError: [Errno 111]"))
    clock.t += 119
    assert not watch.check()
    engine.feed.status = "connected"         # a connection resets the offline time
    assert not watch.check()
    clock.t += 500
    assert not watch.check()
    engine.feed.status = "reconnecting"
    watch.observe(_event("disconnected", reason="timeout"))
    assert not watch.check()
    clock.t += 121
    assert watch.check() and engine.stopped == 1
    assert "no connection for 121 s" in watch.gave_up and "last error: timeout" in watch.gave_up
    assert said[-1].startswith("giving up: feed live")


def test_a_rotation_is_neither_trouble_nor_offline():
    # A rotation opens the new connection, then closes the old one ("disconnected", "rotated"):
    # the feed stays connected throughout.
    said, clock, engine = [], _Clock(), _Engine()
    watch = FeedWatch(engine, said.append, max_offline=120, clock=clock)
    engine.feed.status = "connected"
    assert not watch.check()
    watch.observe(_event("rotating"))
    watch.observe(_event("connected"))
    watch.observe(_event("disconnected", reason="rotated", lived=82_800.0))
    clock.t += 10_000
    assert not watch.check() and engine.stopped == 0 and said == []


def test_run_with_no_network_says_why_and_exits_1(tmp_path):
    with socket.socket() as s:      # a port nobody listens on: every connection is refused
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    t0 = time.monotonic()
    proc = subprocess.run(
        [sys.executable, "-m", "tradesim.cli", "run", "--strategy", str(EMA), "--feed", "binance",
         "--base-url", f"ws://127.0.0.1:{port}", "--rest-url", f"http://127.0.0.1:{port}",
         "--max-offline", "3"],
        capture_output=True, text=True, timeout=120, stdin=subprocess.DEVNULL)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert time.monotonic() - t0 < 100
    err = " ".join(proc.stderr.split())
    assert "feed main: reconnecting:" in err and "refused" in err.lower()
    assert "no connection for" in err and "--max-offline 3" in err
    assert "tradesim run" in proc.stdout        # the summary is still printed
