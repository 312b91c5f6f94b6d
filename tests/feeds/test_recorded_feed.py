"""RecordedFeed: recorded Binance combined-stream messages replayed through the live feed's bar assembly."""

import asyncio
import gzip
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

from tradesim.feeds.recorded import RecordedFeed, TradeBarBuilder, read_recording

sys.path.insert(0, str(Path(__file__).resolve().parent))
import fake_binance

RECORDINGS = fake_binance.SHARED_DATA / "binance" / "ws-samples" / "recordings"
BTC_REC = RECORDINGS / "BTCUSDT-spot-ws-2024-08-08.txt.gz"
ETH_REC = RECORDINGS / "ETHUSDT-spot-ws-2024-08-08.txt.gz"
needs_recordings = pytest.mark.skipif(not BTC_REC.exists(), reason=f"recordings not found at {RECORDINGS}")
needs_data = pytest.mark.skipif(not fake_binance.data_available(),
                                reason=f"real market data not found at {fake_binance.SHARED_DATA}")


def replay(feed):
    async def main():
        return [bar async for bar in feed]
    return asyncio.run(main())


def rows(bars):
    return [(b.timestamp, b.open, b.high, b.low, b.close, b.volume) for b in bars]


def numpy_trade_bars(path, step):
    """Independent aggregation: closed bars (t, o, h, l, c, v) from the @trade lines, plus each bar's quote.

    Bars are aligned to `step` ms; empty intervals are flat at the previous close with volume 0;
    the last bar (no later trade proves it closed) is left out. The quote of a bar is the latest
    valid bookTicker before the trade that proved it closed.
    """
    times, prices, qtys, quote_at_trade = [], [], [], []
    bid = ask = math.nan
    last_u = -1
    with gzip.open(path, "rt") as fh:
        for line in fh:
            msg = json.loads(line.split(" ", 1)[1])
            stream = msg.get("stream", "")
            if stream.endswith("@bookTicker"):
                d = msg["data"]
                if d["u"] > last_u:
                    last_u = d["u"]
                    b, a = float(d["b"]), float(d["a"])
                    if b <= a and float(d["B"]) > 0 and float(d["A"]) > 0:
                        bid, ask = b, a
            elif stream.endswith("@trade"):
                d = msg["data"]
                times.append(d["T"])
                prices.append(float(d["p"]))
                qtys.append(float(d["q"]))
                quote_at_trade.append((bid, ask))
    t = np.array(times, dtype=np.int64)
    p = np.array(prices)
    units = np.rint(np.array(qtys) * 1e8).astype(np.int64)
    bucket = t - t % step
    assert (np.diff(bucket) >= 0).all()
    starts = np.flatnonzero(np.r_[True, np.diff(bucket) > 0])
    ends = np.r_[starts[1:], len(t)] - 1
    o, c = p[starts], p[ends]
    h, lo = np.maximum.reduceat(p, starts), np.minimum.reduceat(p, starts)
    v = np.add.reduceat(units, starts) / 1e8
    out, quotes = [], []
    for k in range(len(starts) - 1):
        proof = quote_at_trade[starts[k + 1]]
        out.append((int(bucket[starts[k]]), o[k], h[k], lo[k], c[k], v[k]))
        quotes.append(proof)
        for gap_t in range(int(bucket[starts[k]]) + step, int(bucket[starts[k + 1]]), step):
            out.append((gap_t, c[k], c[k], c[k], c[k], 0.0))
            quotes.append(proof)
    return out, quotes


@needs_recordings
@pytest.mark.parametrize("interval, step", [("1s", 1000), ("1m", 60_000)])
def test_bars_from_trades_equal_an_independent_numpy_aggregation(interval, step):
    feed = RecordedFeed(BTC_REC, klines_from_trades=interval)
    assert feed.symbols == ("BTCUSDT",) and feed.interval == interval
    bars = replay(feed)
    expected, quotes = numpy_trade_bars(BTC_REC, step)
    assert rows(bars) == expected
    assert [(b.bid, b.ask) for b in bars] == quotes
    assert len(bars) == (346 if interval == "1s" else 6)  # the last trades fall in 00:00 (exchange time)
    # Depth diffs and the REST snapshot line are ignored, not errors; every trade was used.
    assert feed.stats["ignored"] == 3451 + 1 and feed.stats["rejected"] == {}
    assert feed.stats["late_trades"] == 0 and feed.health.clean and feed.status == "finished"


@needs_recordings
def test_two_recordings_merge_by_receive_time():
    both = replay(RecordedFeed([BTC_REC, ETH_REC], klines_from_trades="1s"))
    btc = replay(RecordedFeed(BTC_REC, klines_from_trades="1s"))
    eth = replay(RecordedFeed(ETH_REC, klines_from_trades="1s"))
    assert rows([b for b in both if b.symbol == "BTCUSDT"]) == rows(btc)
    assert rows([b for b in both if b.symbol == "ETHUSDT"]) == rows(eth)
    assert {b.symbol for b in both} == {"BTCUSDT", "ETHUSDT"}


def test_trade_bar_builder_fills_silent_intervals_and_drops_late_trades():
    b = TradeBarBuilder("X", "1s")
    assert b.add(1, 1_000, 10.0, 1.0) == []
    assert b.add(2, 1_500, 12.0, 0.1) == []
    out = b.add(3, 4_200, 11.0, 0.2)  # closes [1000, 2000), then 2000 and 3000 had no trades
    assert [(k.open_time, k.open, k.high, k.low, k.close, k.volume) for k in out] == [
        (1000, 10.0, 12.0, 10.0, 12.0, 1.1), (2000, 12.0, 12.0, 12.0, 12.0, 0.0),
        (3000, 12.0, 12.0, 12.0, 12.0, 0.0)]
    assert b.add(3, 4_300, 11.0, 0.2) == [] and b.add(4, 3_900, 11.0, 0.2) == []
    assert b.late_trades == 2
    with pytest.raises(ValueError):
        TradeBarBuilder("X", "1M")


def write_recording(path, lines):
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "wt") as fh:
        fh.write("\n".join(lines) + "\n")


@needs_data
@pytest.mark.parametrize("name", ["eth.txt.gz", "eth.txt"])
def test_replay_of_a_kline_recording_is_exact_and_skips_bad_lines(tmp_path, name):
    fb = fake_binance.FakeBinance(symbols=("ETHUSDT",), n_bars=60)  # message builders only; no server
    s, base = "ETHUSDT", 1_774_267_200_000_000_000
    lines = []
    for i in range(60):
        if 30 <= i < 33:
            continue  # a hole of 3 bars in the recording
        stamp = base + i * 60_000_000_000
        lines += [f"{stamp} {fb.kline(s, i, 'first')}", f"{stamp + 1} {fb.book(s, i)}",
                  f"{stamp + 2} {fb.kline(s, i, 'mid')}"]
        if i == 10:
            lines += [f"{stamp + 3} {fb.book(s, i, crossed=True)}", f"{stamp + 3} " + "{not json",
                      "", '{"lastUpdateId":1,"bids":[],"asks":[]}',
                      f'{stamp + 3} {{"stream":"ethusdt@depth@100ms","data":{{"e":"depthUpdate"}}}}']
        closed = fb.kline(s, i, "closed")
        lines.append(closed if i == 20 else f"{stamp + 4} {closed}")  # one bare-JSON line
        if i in (15, 40):
            lines += [f"{stamp + 5} {closed}", f"{stamp + 5} {fb.kline(s, i - 2, 'closed')}"]
    path = tmp_path / name
    write_recording(path, lines)
    events = []
    feed = RecordedFeed(path, on_status=lambda kind, **f: events.append((kind, f)))
    assert feed.symbols == ("ETHUSDT",)
    bars = replay(feed)
    assert rows(bars) == fb.expected(s, 0, 30) + fb.expected(s, 33, 60)
    assert [(b.bid, b.ask) for b in bars] == [fb.expected_quote(s, fb.index_of(s, b.timestamp)) for b in bars]
    st = feed.stats
    assert st["rejected"] == {"crossed_quote": 1, "malformed": 1}
    assert st["duplicates"] == 2 and st["out_of_order"] == 2 and st["ignored"] == 2
    assert feed.health.gap_count == {s: 1} and feed.health.missing_bars == {s: 3}
    assert feed.health.gap_examples[s] == [(fb.t0 + 29 * 60_000, fb.t0 + 33 * 60_000, 3)]
    bad = [n for n, text in enumerate(lines, 1) if "{not json" in text]
    assert bad == [45]  # 10 bars x 4 lines, first/book/mid of bar 10, the crossed quote, then this
    assert {f["connection"] for k, f in events if k == "rejected"} == {f"{name}:44", f"{name}:45"}


@needs_data
def test_pacing_follows_receive_times_scaled_by_speed(tmp_path):
    fb = fake_binance.FakeBinance(symbols=("ETHUSDT",), n_bars=20)
    base = 1_774_267_200_000_000_000
    lines = [f"{base + i * 2_000_000_000} {fb.kline('ETHUSDT', i, 'closed')}" for i in range(20)]
    write_recording(tmp_path / "r.txt", lines)
    now, slept = [0.0], []

    async def sleep(s):
        slept.append(s)
        now[0] += s

    for speed, total in [(0, 0.0), (1, 38.0), (4, 9.5)]:
        slept.clear()
        bars = replay(RecordedFeed(tmp_path / "r.txt", speed=speed, clock=lambda: now[0], sleep=sleep))
        assert len(bars) == 20
        assert sum(slept) == pytest.approx(total)
        if speed:
            assert slept == pytest.approx([2.0 / speed] * 19)


@needs_recordings
def test_close_stops_the_replay_and_errors_are_clear(tmp_path):
    feed = RecordedFeed(BTC_REC, klines_from_trades="1s")

    async def main():
        got = []
        async for bar in feed:
            got.append(bar)
            if len(got) == 5:
                feed.close()
        return got

    assert len(asyncio.run(main())) == 5 and feed.status == "closed"
    with pytest.raises(FileNotFoundError):
        RecordedFeed(tmp_path / "missing.txt.gz")
    with pytest.raises(ValueError, match="differs"):
        RecordedFeed(BTC_REC, interval="1m", klines_from_trades="1s")
    with pytest.raises(ValueError, match="fixed-length"):
        RecordedFeed(BTC_REC, klines_from_trades="1M")


@needs_recordings
def test_read_recording_lines():
    first = next(read_recording(BTC_REC))
    assert first[0] == 1723161253937085768 and first[1].startswith('{"stream":"btcusdt@depth@100ms"') and first[2] == 1
