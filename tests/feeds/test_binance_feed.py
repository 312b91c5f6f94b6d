"""BinanceFeed against a loopback fake Binance (tests/feeds/fake_binance.py).

Cases of docs/binance.md (How BinanceFeed applies these rules) and of
docs/hostile-inputs.md (Market data M1-M10, WebSocket faults W1-W11; the ids
are in the comments).

Every end-to-end case checks the bars the client yielded against the source bars
exactly (open time and OHLCV): none missing, none duplicated, in order per symbol.
No real network: the fake listens on 127.0.0.1.
"""

import asyncio
import itertools
import json
import math
import sys
from pathlib import Path

import pytest

from tradesim._core import MarketData
from tradesim.feeds.base import DataHealth
from tradesim.feeds.binance import (
    Backoff,
    BarAssembler,
    BinanceFeed,
    BinanceFeedError,
    RateWindow,
    new_stats,
    parse_retry_after,
)

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fake_binance
from fake_binance import FakeBinance, garbage_frames

needs_data = pytest.mark.skipif(not fake_binance.data_available(),
                                reason=f"real market data not found at {fake_binance.SHARED_DATA}")

# Fast reconnects and short timeouts for loopback; generous overall deadlines for a loaded 2-core box.
FAST = {"backoff_initial": 0.05, "backoff_max": 0.5, "rest_backoff_initial": 0.05, "rest_backoff_max": 0.5,
        "rest_timeout": 1.0, "open_timeout": 5.0, "ping_interval": None, "max_clock_skew": None, "proxy": None}
DEADLINE = 45.0


def make_feed(srv, events=None, **kw):
    args = dict(FAST, base_url=srv.ws_url, rest_url=srv.rest_url, wall_ms=srv.sim_now_ms, backfill_from=srv.t0)
    if events is not None:
        args["on_status"] = lambda kind, **f: events.append((kind, f))
    args.update(kw)
    return BinanceFeed(srv.symbols, **args)


async def collect(feed, want, deadline=DEADLINE, stop=None):
    """Bars per symbol until each has `want` (or `stop(got)` is true); always closes the feed."""
    got = {s: [] for s in feed.symbols}

    async def run():
        async for bar in feed:
            got[bar.symbol].append(bar)
            if stop(got) if stop else all(len(v) >= want for v in got.values()):
                return

    try:
        await asyncio.wait_for(run(), deadline)
    except TimeoutError:
        pytest.fail(f"timed out: {({s: len(v) for s, v in got.items()})} stats={feed.stats} status={feed.status}")
    finally:
        await feed.aclose()
    return got


def rows(bars):
    return [(b.timestamp, b.open, b.high, b.low, b.close, b.volume) for b in bars]


def assert_exact(srv, got, start=0):
    for s, bars in got.items():
        assert rows(bars) == srv.expected(s, start), s


def kinds(events, kind):
    return [f for k, f in events if k == kind]


def run(coro):
    return asyncio.run(coro)


# -- end-to-end -----------------------------------------------------------------------------------


@needs_data
def test_clean_stream_of_3000_bars_for_3_symbols_is_exact_with_quotes_attached():
    async def main():
        async with FakeBinance(n_bars=3000, bar_period=0.0005) as srv:
            events = []
            feed = make_feed(srv, events)
            got = await collect(feed, srv.n)
            assert_exact(srv, got)
            for s, bars in got.items():
                live = [b for b in bars if not math.isnan(b.bid)]
                assert len(live) > 2900  # the first few came over REST (no quote)
                for b in live:
                    assert (b.bid, b.ask) == srv.expected_quote(s, srv.index_of(s, b.timestamp))
            assert feed.stats["rejected"] == {} and feed.stats["gaps"] == 0
            assert feed.stats["connections"] == 1 and feed.stats["reconnects"] == 0
            assert feed.health.bars_emitted == {s: 3000 for s in srv.symbols}
            assert feed.status == "closed"
            assert [k for k, _ in events[:2]] == ["connecting", "connected"]
    run(main())


@needs_data
def test_without_backfill_from_starts_at_the_first_live_closed_kline():
    async def main():
        async with FakeBinance(n_bars=300, start_on_connect=False, bar_period=0.002) as srv:
            await asyncio.sleep(0.1)  # the exchange has been running: history exists before we connect
            feed = make_feed(srv, backfill_from=None)
            got = await collect(feed, 0, stop=lambda g: all(v and v[-1].timestamp == srv.expected(s)[-1][0]
                                                             for s, v in g.items()))
            for s, bars in got.items():
                first = srv.index_of(s, bars[0].timestamp)
                assert first > 0 and not math.isnan(bars[0].bid)
                assert rows(bars) == srv.expected(s, first)
            assert feed.stats["backfilled_bars"] == 0
    run(main())


@needs_data
def test_tcp_dropped_mid_stream_reconnects_and_backfills_without_duplicates():  # W1
    async def main():
        async with FakeBinance(n_bars=1500, bar_period=0.001) as srv:
            for i in (300, 700, 1100):
                srv.at(i, "drop")
            events = []
            feed = make_feed(srv, events)
            got = await collect(feed, srv.n)
            assert_exact(srv, got)
            assert feed.stats["reconnects"] >= 3 and feed.stats["connections"] >= 4
            assert feed.stats["backfilled_bars"] > 3
            assert len(kinds(events, "disconnected")) >= 3 and kinds(events, "reconnecting")
            # Every connection resubscribed all streams (URL) and ran the backfill check.
            assert all(p.count("@") == 6 for _, p in srv.handshakes)
    run(main())


@needs_data
def test_a_reconnect_within_a_bar_costs_no_rest_request():
    async def main():
        async with FakeBinance(n_bars=600, bar_period=0.002) as srv:
            srv.at(200, "reconnect_within_bar")
            srv.at(400, "reconnect_within_bar")
            feed = make_feed(srv, backfill_from=None)   # no history check at the first connect
            got = await collect(feed, 0, stop=lambda g: all(v and v[-1].timestamp == srv.expected(s)[-1][0]
                                                             for s, v in g.items()))
            for s, bars in got.items():
                assert rows(bars) == srv.expected(s, srv.index_of(s, bars[0].timestamp))
            assert feed.stats["reconnects"] == 2
            # both reconnects found that nothing could be missing: no request, no backfill
            assert feed.stats["checks_skipped"] == 2 * len(srv.symbols)
            assert feed.stats["rest_requests"] == 0 and feed.stats["backfilled_bars"] == 0
    run(main())


@pytest.mark.parametrize("fault", ["gap", "gap_closed"])
@needs_data
def test_gap_is_backfilled_over_rest_before_newer_live_bars(fault):  # M7
    async def main():
        async with FakeBinance(n_bars=400, bar_period=0.002) as srv:
            srv.at(200, fault, 3)
            events = []
            feed = make_feed(srv, events)
            got = await collect(feed, srv.n)
            assert_exact(srv, got)
            gaps = kinds(events, "gap_detected")
            assert sorted(g["symbol"] for g in gaps) == sorted(srv.symbols)
            t200 = srv.t0 + 200 * 60_000
            for g in gaps:
                assert (g["from"], g["to"], g["missing"]) == (t200, t200 + 3 * 60_000, 3)
            filled = [b for b in kinds(events, "backfilled") if b["from"] == t200]
            assert len(filled) == 3 and all(b["bars"] >= 3 for b in filled)
            assert feed.stats["gaps"] == 3 and feed.health.clean
    run(main())


@needs_data
def test_flapping_server_backoff_grows_and_is_not_reset_by_short_connections():  # W2
    async def main():
        async with FakeBinance(n_bars=200, bar_period=0.002) as srv:  # publishes from the 6th connection
            srv.flap = 5
            events = []
            feed = make_feed(srv, events, backoff_initial=0.05, backoff_max=1.0, random=lambda: 0.0)
            got = await collect(feed, srv.n)
            assert_exact(srv, got)
            times = [t for t, _ in srv.handshakes]
            gaps = [b - a for a, b in itertools.pairwise(times)]
            assert len(times) == 6
            delays = [r["delay"] for r in kinds(events, "reconnecting")]
            assert delays == [0.05, 0.1, 0.2, 0.4, 0.8]
            for gap, delay in zip(gaps, delays):
                assert gap >= delay
    run(main())


@needs_data
def test_attempt_budget_bounds_connections_of_a_server_that_always_flaps():  # W2, global budget
    async def main():
        async with FakeBinance(n_bars=10) as srv:
            srv.flap = 10**6
            events = []
            waiting = asyncio.Event()

            def on_status(kind, **f):
                events.append((kind, f))
                if kind == "reconnecting" and f["delay"] > 100:
                    waiting.set()
            feed = make_feed(srv, on_status=on_status, backoff_initial=0.01, backoff_max=0.01,
                             max_attempts_per_5min=5, backfill_from=None)
            task = asyncio.ensure_future(feed.__anext__())
            await asyncio.wait_for(waiting.wait(), 20)
            assert feed.status == "reconnecting"
            await feed.aclose()
            with pytest.raises(StopAsyncIteration):
                await task
            assert len(srv.handshakes) == 5 and feed.stats["connection_attempts"] == 5
            assert 290 < kinds(events, "reconnecting")[-1]["delay"] <= 300
    run(main())


@needs_data
def test_handshake_429_honours_retry_after():  # W3
    async def main():
        async with FakeBinance(n_bars=200, bar_period=0.002, start_on_connect=False) as srv:
            srv.handshake_faults = [(429, 1), (418, 1)]
            events = []
            feed = make_feed(srv, events)
            got = await collect(feed, srv.n)
            assert_exact(srv, got)
            times = [t for t, _ in srv.handshakes]
            assert len(times) == 3
            assert times[1] - times[0] >= 1.0 and times[2] - times[1] >= 1.0
            limited = kinds(events, "rate_limited")
            assert [(r["status"], r["retry_after"], r["source"]) for r in limited] == [
                (429, 1.0, "websocket"), (418, 1.0, "websocket")]
    run(main())


@needs_data
def test_fatal_handshake_status_fails_the_feed_clearly():
    async def main():
        async with FakeBinance(n_bars=10, start_on_connect=False) as srv:
            srv.handshake_faults = [(451, None)]
            events = []
            feed = make_feed(srv, events)
            with pytest.raises(BinanceFeedError, match="451"):
                await asyncio.wait_for(feed.__anext__(), 20)
            assert feed.status == "failed" and kinds(events, "failed")
            await feed.aclose()
    run(main())


@needs_data
def test_bad_frames_unknown_events_errors_and_acks_are_dropped_and_reader_survives():  # W4, W5, M1, M3, M9
    async def main():
        async with FakeBinance(n_bars=400, bar_period=0.002) as srv:
            for i in (100, 250):
                srv.at(i, "garbage", garbage_frames())
            events = []
            # url_streams=2: the other 4 streams are SUBSCRIBEd, so real acks come back too.
            feed = make_feed(srv, events, url_streams=2, subscribe_batch=2)
            got = await collect(feed, srv.n)
            assert_exact(srv, got)
            st = feed.stats
            assert st["connections"] == 1 and st["reconnects"] == 0  # the reader never died
            rej = st["rejected"]
            assert rej["malformed"] == 6 and rej["binary"] == 2 and rej["empty"] == 2
            assert rej["invalid_kline"] == 4 and rej["unknown"] == 10
            assert st["server_errors"] == 2 and st["unmatched_acks"] == 2
            assert st["subscribe_messages"] == 2 and st["acks"] == 2
            errors = kinds(events, "server_error")
            assert [(e["code"], e["msg"]) for e in errors] == [(2, "Invalid request")] * 2
            rejected = kinds(events, "rejected")
            assert all(r["connection"] == "c1" and len(r["snippet"]) <= 200 for r in rejected)
    run(main())


@needs_data
def test_oversize_frame_forces_a_reconnect_then_backfill():  # M8
    async def main():
        async with FakeBinance(n_bars=300, bar_period=0.002) as srv:
            srv.at(150, "oversize")
            events = []
            feed = make_feed(srv, events)
            got = await collect(feed, srv.n)
            assert_exact(srv, got)
            assert feed.stats["reconnects"] == 1
            assert "1009" in kinds(events, "disconnected")[0]["reason"]
    run(main())


@needs_data
def test_server_shutdown_rotates_without_gap_or_duplicate():  # W5 serverShutdown
    async def main():
        async with FakeBinance(n_bars=600, bar_period=0.002) as srv:
            srv.at(200, "shutdown", 50)
            events = []
            feed = make_feed(srv, events)
            got = await collect(feed, srv.n)
            assert_exact(srv, got)
            st = feed.stats
            assert st["server_shutdowns"] == 1 and st["rotations"] == 1 and st["gaps"] == 0
            assert st["reconnects"] == 0 and kinds(events, "server_shutdown")
            assert [d["reason"] for d in kinds(events, "disconnected")] == ["rotated"]
            assert len(srv.handshakes) == 2
    run(main())


@needs_data
def test_silent_stall_triggers_the_watchdog_then_backfill():  # W8
    async def main():
        async with FakeBinance(n_bars=500, bar_period=0.003, ping_interval=0.2) as srv:
            srv.at(150, "stall")
            events = []
            feed = make_feed(srv, events, silence_timeout=0.5)
            got = await collect(feed, srv.n)
            assert_exact(srv, got)
            assert feed.stats["silence_timeouts"] == 1 and feed.stats["reconnects"] == 1
            assert "no data" in kinds(events, "disconnected")[0]["reason"]
            assert feed.stats["backfilled_bars"] > 10
    run(main())


@needs_data
def test_rest_failures_are_retried_and_live_bars_wait_for_the_backfill():  # W11
    async def main():
        async with FakeBinance(n_bars=400, bar_period=0.002) as srv:
            srv.rest_timeout_delay = 1.5
            srv.at(200, "gap", 4)
            events = []
            feed = make_feed(srv, events, rest_timeout=0.5)
            # The first 3 requests (the initial check) succeed; the gap's backfill meets failures.
            srv.rest_faults = [None, None, None, "500", "timeout", ("429", 1), "garbage"]
            got = await collect(feed, srv.n)
            assert_exact(srv, got)
            st = feed.stats
            assert st["rest_errors"] == 3 and st["rate_limited"] == 1
            assert sorted(e["error"][:8] for e in kinds(events, "rest_error")) == ["HTTP 500", "ReadTime", "malforme"]
            assert st["backfill_failures"] == 0 and feed.health.clean
    run(main())


@needs_data
def test_backfill_that_cannot_complete_fails_clearly_and_records_the_hole():  # W11, giving up
    async def main():
        async with FakeBinance(n_bars=300, bar_period=0.002, symbols=("BTCUSDT",)) as srv:
            srv.at(100, "gap", 3)
            events = []
            feed = make_feed(srv, events, rest_retries=2)
            srv.rest_faults = [None] + ["500"] * 50
            got = await collect(feed, srv.n - 3)
            bars = got["BTCUSDT"]
            expected = srv.expected("BTCUSDT")
            assert rows(bars) == expected[:100] + expected[103:]
            failed = kinds(events, "backfill_failed")
            assert len(failed) == 1 and failed[0]["from"] == srv.t0 + 100 * 60_000
            assert feed.health.gap_count["BTCUSDT"] == 1 and feed.health.missing_bars["BTCUSDT"] == 3
    run(main())


@needs_data
def test_duplicate_and_out_of_order_klines_and_stale_quotes_are_dropped():  # M5, M6
    async def main():
        async with FakeBinance(n_bars=400, bar_period=0.002) as srv:
            for i in (100, 200, 300):
                srv.at(i, "dup")
                srv.at(i, "ooo", 3)
                srv.at(i, "stale_quote")
            feed = make_feed(srv)
            got = await collect(feed, srv.n)
            assert_exact(srv, got)
            st = feed.stats
            assert st["duplicates"] >= 9 and st["out_of_order"] >= 18 and st["stale_quotes"] == 9
    run(main())


@needs_data
def test_crossed_or_empty_quotes_are_never_attached():  # M4
    async def main():
        async with FakeBinance(n_bars=300, bar_period=0.002) as srv:
            for i in range(50, 300, 10):
                srv.at(i, "crossed")
            for i in range(55, 300, 10):
                srv.at(i, "empty_quote")
            feed = make_feed(srv)
            got = await collect(feed, srv.n)
            assert_exact(srv, got)
            for s, bars in got.items():
                for b in bars:
                    if not math.isnan(b.bid):
                        assert b.bid <= b.ask
                        assert (b.bid, b.ask) == srv.expected_quote(s, srv.index_of(s, b.timestamp))
            assert feed.stats["rejected"]["crossed_quote"] == 75
            assert feed.stats["rejected"]["empty_quote"] == 75
    run(main())


@needs_data
def test_time_compressed_24h_rotation_has_no_gap_or_duplicate():  # W9
    async def main():
        async with FakeBinance(n_bars=1500, bar_period=0.002) as srv:
            events = []
            feed = make_feed(srv, events, rotate_after=0.6)
            got = await collect(feed, srv.n)
            assert_exact(srv, got)
            st = feed.stats
            assert st["rotations"] >= 2 and st["gaps"] == 0 and st["reconnects"] == 0
            assert all(d["reason"] == "rotated" for d in kinds(events, "disconnected"))
    run(main())


@needs_data
def test_streams_are_split_across_connections_and_subscribe_is_throttled():  # W10
    async def main():
        async with FakeBinance(n_bars=600, bar_period=0.003) as srv:
            feed = make_feed(srv, streams_per_connection=4, url_streams=1, subscribe_batch=1, control_rate=2.0)
            assert feed.streams() == [["btcusdt@kline_1m", "btcusdt@bookTicker", "ethusdt@kline_1m",
                                       "ethusdt@bookTicker"], ["solusdt@kline_1m", "solusdt@bookTicker"]]
            got = await collect(feed, srv.n)
            assert_exact(srv, got)
            assert len(srv.conns) == 2
            assert sorted(len(c.streams) for c in srv.conns) == [2, 4]
            for c in srv.conns:  # <= 2 per second (measured at the server, with some latency slack)
                times = c.subscribe_times
                assert all(sum(1 for u in times if t <= u < t + 0.9) <= 2 for t in times)
            assert sorted(len(c.subscribe_times) for c in srv.conns) == [1, 3]
            three = max(srv.conns, key=lambda c: len(c.subscribe_times)).subscribe_times
            assert three[2] - three[0] >= 0.9
            assert feed.stats["acks"] == feed.stats["subscribe_messages"] == 4
    run(main())


@needs_data
def test_status_callback_errors_never_reach_the_feed():
    async def main():
        async with FakeBinance(n_bars=100, bar_period=0.002) as srv:
            def bad(kind, **f):
                raise RuntimeError("consumer bug")
            feed = make_feed(srv)
            feed.on_status = bad  # as an engine does
            got = await collect(feed, srv.n)
            assert_exact(srv, got)
    run(main())


# -- units: assembler, backoff, budget ----------------------------------------------------------------


def kline_frame(t, o=10.0, h=11.0, l=9.0, c=10.5, v=1.0, closed=True, sym="BTCUSDT", iv="1m", close_time=None):
    step = {"1m": 60_000}.get(iv)
    T = close_time if close_time is not None else t + step - 1
    return json.dumps({"stream": f"{sym.lower()}@kline_{iv}", "data": {"e": "kline", "E": t, "s": sym, "k": {
        "t": t, "T": T, "s": sym, "i": iv, "o": f"{o}", "h": f"{h}", "l": f"{l}", "c": f"{c}", "v": f"{v}",
        "x": closed}}})


def book_frame(u, b, a, bq="1", aq="1", sym="BTCUSDT"):
    return json.dumps({"stream": f"{sym.lower()}@bookTicker",
                       "data": {"u": u, "s": sym, "b": f"{b}", "B": bq, "a": f"{a}", "A": aq}})


def assembler(interval="1m", start_from=None):
    out, events = [], []
    asm = BarAssembler(["BTCUSDT"], interval, out.append, new_stats(), DataHealth(),
                       lambda k, **f: events.append((k, f)), start_from=start_from)
    return asm, out, events


def test_assembler_ordering_rule_duplicates_out_of_order_and_gap():
    asm, out, _ = assembler()
    m = 60_000
    for f in [kline_frame(0, closed=False), kline_frame(0), kline_frame(0), kline_frame(m), kline_frame(0),
              kline_frame(3 * m)]:
        asm.feed(f, "c1")
    assert [b.timestamp for b in out] == [0, m, 3 * m]
    st = asm.stats
    assert (st["duplicates"], st["out_of_order"], st["gaps"]) == (1, 1, 1)
    assert asm.health.gap_examples["BTCUSDT"] == [(m, 3 * m, 1)]


def test_assembler_quotes_latest_valid_only():
    asm, out, events = assembler()
    for f in [book_frame(5, 10.0, 10.1), book_frame(4, 9.0, 9.1), book_frame(6, 10.2, 10.0),
              book_frame(7, 10.0, 10.1, bq="0"), kline_frame(0)]:
        asm.feed(f)
    assert (out[0].bid, out[0].ask) == (10.0, 10.1)
    assert asm.stats["stale_quotes"] == 1
    assert asm.stats["rejected"] == {"crossed_quote": 1, "empty_quote": 1}
    assert {f["reason"] for k, f in events} == {"crossed_quote", "empty_quote"}


def test_assembler_monthly_interval_uses_close_time_plus_one():
    from datetime import UTC, datetime

    def ms(y, mo):
        return int(datetime(y, mo, 1, tzinfo=UTC).timestamp() * 1000)

    asm, out, _ = assembler("1M")
    months = [ms(2025, m) for m in (1, 2, 3, 4, 5)]
    for a, b in [(0, 1), (1, 2), (1, 2), (3, 4)]:  # Jan, Feb, Feb again, Apr (Mar missing)
        asm.feed(kline_frame(months[a], iv="1M", close_time=months[b] - 1))
    assert [b.timestamp for b in out] == [months[0], months[1], months[3]]
    assert asm.stats["duplicates"] == 1 and asm.stats["gaps"] == 1


def test_assembler_counts_clock_skew_but_keeps_kline_time():
    asm, out, _ = assembler()
    asm.skew_ms, asm.wall_ms = 5000, lambda: 10**9
    asm.feed(kline_frame(0))
    assert asm.stats["clock_skew"] == 1 and out[0].timestamp == 0


def test_backoff_grows_with_jitter_and_resets_only_after_a_stable_connection():
    draws = iter([0.0, 1.0, 0.5, 0.0, 0.0, 0.0, 0.0, 0.0])
    b = Backoff(initial=1.0, maximum=8.0, factor=2.0, jitter=0.5, stable_after=10.0, random=lambda: next(draws))
    delays = [b.next_delay() for _ in range(6)]
    assert delays == [0.0, 1.0, 1.0, 3.0, 8.0, 8.0]  # 0, 1*(1-0), 2*(1-.5), 4*(1-.25), capped
    b.connection_ended(9.9)
    assert b.next_delay() == 8.0
    b.connection_ended(10.0)
    assert b.next_delay() == 0.0 and b.failures == 1
    with pytest.raises(ValueError):
        Backoff(initial=0)


def test_rate_window_allows_at_most_limit_in_any_window():
    now = [0.0]
    w = RateWindow(250, 300.0, clock=lambda: now[0])
    taken = []
    while now[0] < 1200:
        if w.wait_time() == 0:
            w.take()
            taken.append(now[0])
        now[0] += 0.5
    assert len(taken) == 1000  # 250 per 300 s, sustained
    for i, t in enumerate(taken):
        assert sum(1 for u in taken[i:i + 260] if u < t + 300) <= 250
    now[0] = 5000.0
    for _ in range(250):
        w.take()
    assert w.wait_time() == pytest.approx(300.0)
    now[0] += 100
    assert w.wait_time() == pytest.approx(200.0)
    with pytest.raises(ValueError):
        w.wait_time(251)


def test_rate_window_acquire_sleeps_until_room():
    now = [0.0]
    slept = []

    async def sleep(s):
        slept.append(s)
        now[0] += s

    w = RateWindow(5, 1.0, clock=lambda: now[0])

    async def main():
        for _ in range(12):
            await w.acquire(1.0, sleep)

    asyncio.run(main())
    assert slept == [1.0, 1.0] and now[0] == 2.0


def test_parse_retry_after():
    assert parse_retry_after("120") == 120.0
    assert parse_retry_after(None) == 60.0 and parse_retry_after("soon", default=5.0) == 5.0
    assert 0 <= parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT") <= 0.0 + 1e-9


def test_constructor_validates_arguments():
    with pytest.raises(ValueError, match="interval"):
        BinanceFeed("BTCUSDT", "7m")
    with pytest.raises(ValueError, match="region"):
        BinanceFeed("BTCUSDT", region="eu")
    with pytest.raises(ValueError, match="symbol"):
        BinanceFeed("BTC/USDT")
    with pytest.raises(ValueError, match="ping_interval"):
        BinanceFeed("BTCUSDT", ping_interval=5)
    with pytest.raises(ValueError, match="streams_per_connection"):
        BinanceFeed("BTCUSDT", streams_per_connection=2000)
    f = BinanceFeed(["btcusdt", "ethusdt", "BTCUSDT"], "1M", region="us")
    assert f.symbols == ("BTCUSDT", "ETHUSDT") and f.interval_ms == 30 * 86_400_000
    assert f.base_url == "wss://stream.binance.us:9443" and f.rest_url == "https://api.binance.us"
    assert f.status == "idle" and isinstance(f.health, DataHealth)
    assert isinstance(MarketData, type)


# -- frames taken straight from the socket callback (FrameConnection) ------------------------

def _kline_frame(i, closed=True):
    t = 1_751_897_340_000 + 60_000 * i
    price = f"{100 + i}.00"
    return json.dumps({"stream": "btcusdt@kline_1m", "data": {
        "e": "kline", "E": t + 60_000, "s": "BTCUSDT", "k": {
            "t": t, "T": t + 59_999, "s": "BTCUSDT", "i": "1m", "o": price, "c": price, "h": price, "l": price,
            "v": "1.0", "x": closed}}})


async def _serve(frames_or_parts):
    """A bare websockets server sending each item (a list = one message in fragments), then idling."""
    import websockets

    async def handler(ws):
        for item in frames_or_parts:
            await ws.send(iter(item) if isinstance(item, list) else item)
        await asyncio.sleep(30)

    return await websockets.serve(handler, "127.0.0.1", 0)


def _bare_feed(server, **kw):
    port = server.sockets[0].getsockname()[1]
    args = dict(FAST, base_url=f"ws://127.0.0.1:{port}", rest_url=f"http://127.0.0.1:{port}")
    args.update(kw)
    return BinanceFeed(["BTCUSDT"], **args)


def test_a_fragmented_message_switches_to_websockets_queue_and_keeps_the_order():
    f = [_kline_frame(i) for i in range(6)]
    parts = [f[0], f[1], [f[2][:40], f[2][40:90], f[2][90:]], f[3], f[4], f[5]]

    async def main():
        server = await _serve(parts)
        try:
            feed = _bare_feed(server)
            got = await collect(feed, 6)
        finally:
            server.close()
        want = [1_751_897_340_000 + 60_000 * i for i in range(6)]
        assert [b.timestamp for b in got["BTCUSDT"]] == want
        assert [b.close for b in got["BTCUSDT"]] == [100.0 + i for i in range(6)]
        assert feed.stats["rejected"] == {} and feed.stats["out_of_order"] == 0
    run(main())


def test_stream_to_pushes_bars_and_survives_a_consumer_that_raises():
    frames = [_kline_frame(i) for i in range(5)]

    async def main():
        server = await _serve(frames)
        seen = []
        try:
            feed = _bare_feed(server)

            def consumer(bar):
                if len(seen) == 1 and not getattr(consumer, "raised", False):
                    consumer.raised = True
                    raise RuntimeError("consumer bug")
                seen.append(bar.timestamp)
                if len(seen) == 4:
                    feed.close()

            await asyncio.wait_for(feed.stream_to(consumer), DEADLINE)
            with pytest.raises(RuntimeError, match="already started"):
                await feed.stream_to(consumer)
        finally:
            server.close()
        t0 = 1_751_897_340_000
        assert seen == [t0, t0 + 120_000, t0 + 180_000, t0 + 240_000]   # the raising call's bar is lost to it
        assert feed.stats["bars"] == 5
    run(main())


def test_stream_to_raises_when_the_feed_fails():
    async def main():
        feed = BinanceFeed(["BTCUSDT"], **dict(FAST, base_url="ws://127.0.0.1:9", rest_url="http://127.0.0.1:9",
                                               max_failures=1, backoff_initial=0.01, backoff_max=0.01))
        with pytest.raises(BinanceFeedError, match="consecutive failed"):
            await asyncio.wait_for(feed.stream_to(lambda bar: None), DEADLINE)
    run(main())


@pytest.mark.parametrize("interval, skew, now_after_open, fetch", [
    ("1m", 5.0, 1_000, False),                  # reconnected 1 s into the expected bar
    ("1m", 5.0, 54_999, False),                 # 60 s bar, 5 s allowance for the clocks
    ("1m", 5.0, 55_000, True),                  # it may have closed on the exchange's clock
    ("1m", None, 55_000, True),                 # skew check off: the same 5 s allowance
    ("1m", 2.0, 57_999, False),
    ("1m", 2.0, 58_000, True),
    ("1h", 5.0, 3_500_000, False),
    ("1M", 5.0, 27 * 86_400_000, False),         # a month is at least 28 days long
    ("1M", 5.0, 28 * 86_400_000, True),
])
def test_reconnect_check_asks_rest_only_if_the_expected_bar_may_have_closed(
        monkeypatch, interval, skew, now_after_open, fetch):
    t_next = 1_751_897_340_000                  # open time of the bar expected next
    feed = BinanceFeed(["BTCUSDT"], interval, max_clock_skew=skew, proxy=None,
                       wall_ms=lambda: t_next + now_after_open)
    caught_up = []
    monkeypatch.setattr(feed, "_catch_up", caught_up.append)
    st = feed._asm.syms["btcusdt"]
    feed._check(st)                             # a symbol with no bar yet: nothing to check
    assert caught_up == [] and feed.stats["checks_skipped"] == 0
    st.next_t = t_next
    feed._check(st)
    assert caught_up == ([st] if fetch else [])
    assert feed.stats["checks_skipped"] == (0 if fetch else 1)
