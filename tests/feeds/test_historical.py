"""HistoricalFeed: real Binance file, date filter, merge order, gap ledger, errors, Parquet."""

import asyncio
import gzip
import sys

import numpy as np
import pytest

from tradesim.data import Bars, DataFileError, _load_csv_fast, load_bars
from tradesim.feeds import HistoricalFeed, MarketDataSource

COLUMNS = ("timestamp", "open", "high", "low", "close", "volume")
BINANCE_HEADER = ("open_time,open,high,low,close,volume,close_time,quote_asset_volume,"
                  "number_of_trades,taker_buy_base_asset_volume,taker_buy_quote_asset_volume,ignore\n")
T0 = 1_700_000_040_000  # a minute boundary, 2023-11-14T22:14Z
FIRST_BTC, LAST_BTC = 1747699200000, 1755541620000  # PROVENANCE.md
DAY = 86_400_000


class FakeTime:
    def __init__(self):
        self.now = 0.0
        self.sleeps = []

    def clock(self):
        return self.now

    async def sleep(self, seconds):
        self.sleeps.append(seconds)
        self.now += seconds


def collect(feed):
    async def run():
        return [bar async for bar in feed]
    return asyncio.run(run())


def write_binance(path, minutes, price=10.0, bad_row=None):
    """A Binance kline file with one bar per minute offset in `minutes` (bad_row replaces a row)."""
    rows = []
    for i, m in enumerate(minutes):
        t = T0 + 60_000 * m
        p = price + 0.01 * i
        rows.append(f"{t},{p},{p + 0.5},{p - 0.5},{p + 0.01},{1 + i % 7},{t + 59_999},,,,,0")
    if bad_row is not None:
        index, text = bad_row
        rows[index] = text
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "wt") as fh:
        fh.write(BINANCE_HEADER + "\n".join(rows) + "\n")
    return path


def assert_same_bars(a, b):
    assert a.symbol == b.symbol and len(a) == len(b)
    for name in COLUMNS:
        np.testing.assert_array_equal(getattr(a, name), getattr(b, name), err_msg=name)


def test_loads_the_real_btcusdt_file(btc_path, btc_bars):
    feed = HistoricalFeed(btc_path)
    assert isinstance(feed, MarketDataSource)
    assert feed.symbols == ["BTCUSDT"] and feed.interval_ms == 60_000
    bars = feed.bars("BTCUSDT")
    assert len(bars) == 130_708
    assert bars.timestamp[0] == FIRST_BTC and bars.timestamp[-1] == LAST_BTC
    assert_same_bars(bars, btc_bars)  # the fast reader agrees with load_bars to the bit
    assert feed.health.clean and feed.health.gap_count == {"BTCUSDT": 0}
    assert feed.health.bars_emitted == {"BTCUSDT": 130_708}


def test_fast_csv_reader_matches_load_bars_or_defers_to_it(tmp_path, shared_data):
    binance = write_binance(tmp_path / "XUSDT-1m.csv.gz", range(50))
    fast = _load_csv_fast(binance, None)
    assert fast is not None  # the well-formed file takes the vectorized path
    assert_same_bars(fast, load_bars(binance))
    assert fast.interval_ms == 60_000 and fast.source == str(binance)
    headerless = tmp_path / "Y-1m.csv"
    headerless.write_text(gzip.decompress(binance.read_bytes()).decode().split("\n", 1)[1])
    assert_same_bars(load_bars(headerless), load_bars(headerless))
    # ISO dates are not for the fast path; the result is still load_bars'.
    goog = shared_data / "stocks" / "GOOG-1d-2004-08-19_2013-03-01.csv"
    assert _load_csv_fast(goog, None) is None
    assert_same_bars(load_bars(goog), load_bars(goog))


def test_date_filter_takes_iso_dates_or_ms(btc_path):
    june1 = 1748736000000  # 2025-06-01T00:00Z
    by_date = HistoricalFeed(btc_path, start="2025-06-01", end="2025-06-02")
    bars = by_date.bars("BTCUSDT")
    assert len(bars) == 1440
    assert bars.timestamp[0] == june1 and bars.timestamp[-1] == june1 + DAY - 60_000
    by_ms = HistoricalFeed(btc_path, start=june1, end=june1 + DAY)
    assert_same_bars(by_ms.bars("BTCUSDT"), bars)
    tail = HistoricalFeed(btc_path, start="2025-08-18T18:00").bars("BTCUSDT")
    assert len(tail) == 28 and tail.timestamp[-1] == LAST_BTC
    head = HistoricalFeed(btc_path, end="2025-05-20T01:00Z").bars("BTCUSDT")
    assert len(head) == 60 and head.timestamp[0] == FIRST_BTC
    with pytest.raises(ValueError, match="before end"):
        HistoricalFeed(btc_path, start="2025-06-02", end="2025-06-01")


def test_several_files_merge_by_timestamp_then_symbol_order(tmp_path):
    a = write_binance(tmp_path / "AAA-1m.csv", [0, 1, 2, 3])
    b = write_binance(tmp_path / "BBB-1m.csv.gz", [1, 4])
    feed = HistoricalFeed([b, a])  # BBB first: it wins ties
    assert feed.symbols == ["BBB", "AAA"]
    order = [(bar.symbol, (bar.timestamp - T0) // 60_000) for bar in collect(feed)]
    assert order == [("AAA", 0), ("BBB", 1), ("AAA", 1), ("AAA", 2), ("AAA", 3), ("BBB", 4)]
    flipped = HistoricalFeed([a, b])
    assert [bar.symbol for bar in collect(flipped)][1:3] == ["AAA", "BBB"]


def test_real_btc_and_eth_merge_alternating(btc_path, shared_data):
    eth = shared_data / "binance" / "klines" / "1m" / "ETHUSDT-1m-2025-05-20_2025-08-18.csv.gz"
    feed = HistoricalFeed([btc_path, eth], start="2025-07-07T14:00", end="2025-07-07T15:00")
    bars = collect(feed)
    assert [b.symbol for b in bars] == ["BTCUSDT", "ETHUSDT"] * 60
    assert [b.timestamp for b in bars[::2]] == [b.timestamp for b in bars[1::2]]
    sync = feed.bars("BTCUSDT")
    np.testing.assert_array_equal([b.close for b in bars[::2]], sync.close)
    # The bar PROVENANCE.md cross-checks against the real WebSocket event (2025-07-07 14:09).
    bar = bars[2 * 9]
    assert (bar.open, bar.low, bar.high) == (108521.04, 108473.02, 108523.00)
    assert feed.health.bars_emitted == {"BTCUSDT": 60 + 60, "ETHUSDT": 60}


def test_same_symbol_twice_is_an_error(tmp_path, btc_path):
    other = write_binance(tmp_path / "BTCUSDT-1m-other.csv", range(5))
    with pytest.raises(ValueError, match="BTCUSDT appears twice"):
        HistoricalFeed([btc_path, other])
    renamed = HistoricalFeed([btc_path, other], symbols=[None, "BTCUSDT_ALT"], end="2025-05-21")
    assert renamed.symbols == ["BTCUSDT", "BTCUSDT_ALT"]


def test_gaps_are_counted_with_first_examples_not_filled(tmp_path):
    minutes = [0, 1, 2, 5, 6, 10, 11]  # 2 missing after 2, 3 missing after 6
    feed = HistoricalFeed(write_binance(tmp_path / "GAP-1m.csv", minutes))
    assert len(feed.bars("GAP")) == len(minutes)  # nothing filled
    h = feed.health
    assert h.gap_count == {"GAP": 2} and h.missing_bars == {"GAP": 5}
    assert h.gap_examples["GAP"] == [(T0 + 2 * 60_000, T0 + 5 * 60_000, 2),
                                     (T0 + 6 * 60_000, T0 + 10 * 60_000, 3)]
    assert not h.clean
    assert h.as_dict()["gap_examples"]["GAP"][0] == [T0 + 120_000, T0 + 300_000, 2]


def test_gap_examples_are_capped_but_all_gaps_counted(tmp_path):
    minutes = [2 * i for i in range(20)] + list(range(40, 100))  # 20 one-bar gaps (1, 3, ..., 39)
    feed = HistoricalFeed(write_binance(tmp_path / "G-1m.csv", minutes))
    assert feed.health.gap_count["G"] == 20 and feed.health.missing_bars["G"] == 20
    assert len(feed.health.gap_examples["G"]) == feed.health.max_gap_examples == 5


def test_gaps_are_counted_within_the_date_range_only(tmp_path):
    path = write_binance(tmp_path / "R-1m.csv", [0, 1, 5, 6, 7, 8])
    feed = HistoricalFeed(path, start=T0 + 5 * 60_000)
    assert feed.health.gap_count == {"R": 0} and len(feed.bars("R")) == 4


@pytest.mark.parametrize("row, field", [
    ("{t},10,11,9,abc,1,{t2},,,,,0", "close"),
    ("{t},10,11,9,nan,1,{t2},,,,,0", "close"),
    ("{t},10,8,9,9,1,{t2},,,,,0", "high"),
    ("{t},10,11,9,10,-2,{t2},,,,,0", "volume"),
    ("{t0},10,11,9,10,1,{t2},,,,,0", "open_time"),
    ("{t},10,11,9", None),
])
def test_bad_row_raises_the_loaders_error_with_file_line_and_field(tmp_path, row, field):
    t = T0 + 60_000 * 300
    text = row.format(t=t, t2=t + 59_999, t0=T0)
    path = write_binance(tmp_path / "BAD-1m.csv.gz", range(1000), bad_row=(300, text))
    with pytest.raises(DataFileError) as err:
        HistoricalFeed(path)
    assert err.value.path == str(path) and err.value.line == 302 and err.value.field == field
    assert f"{path}:302" in str(err.value)


def test_bars_objects_and_limit(btc_bars):
    part = btc_bars.slice(FIRST_BTC, FIRST_BTC + 100 * 60_000)
    feed = HistoricalFeed(part, symbols="BTC")
    assert feed.symbols == ["BTC"] and feed.sources == {"BTC": part.source}
    assert len(feed.bars("BTC", limit=10)) == 10 and len(feed.bars("BTC", limit=500)) == 100
    single = Bars("ONE", np.array([T0]), *(np.ones(1) for _ in range(5)))
    with pytest.raises(ValueError, match="interval"):
        HistoricalFeed(single)
    assert HistoricalFeed(single, interval="1m").interval_ms == 60_000


def test_replay_pacing_follows_timestamps_including_gaps(tmp_path):
    fake = FakeTime()
    path = write_binance(tmp_path / "P-1m.csv", [0, 1, 4, 5])
    feed = HistoricalFeed(path, speed=60, clock=fake.clock, sleep=fake.sleep)  # 1 min -> 1 s
    assert [b.timestamp for b in collect(feed)] == [T0 + 60_000 * m for m in (0, 1, 4, 5)]
    assert fake.sleeps == pytest.approx([1.0, 3.0, 1.0])


def parquet_bars(n=500):
    rng = np.random.default_rng(0)
    close = 100 * np.exp(np.cumsum(rng.normal(0, 0.001, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    return Bars("PQ", T0 + 60_000 * np.arange(n, dtype=np.int64), open_,
                np.maximum(open_, close) * 1.001, np.minimum(open_, close) * 0.999, close,
                rng.gamma(2.0, 3.0, n), "", 60_000)


def test_parquet_round_trip(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    src = parquet_bars()
    cols = {name: getattr(src, name) for name in COLUMNS}
    pq.write_table(pa.table(cols), tmp_path / "PQ-1m.parquet")
    # freqtrade-style: a `date` column of UTC timestamps, capitalised price names.
    pq.write_table(pa.table({"date": pa.array(src.timestamp, pa.timestamp("ms", "UTC")),
                             **{k.capitalize(): v for k, v in cols.items() if k != "timestamp"}}),
                   tmp_path / "QP-1m.parquet")
    feed = HistoricalFeed([tmp_path / "PQ-1m.parquet", tmp_path / "QP-1m.parquet"],
                          start=T0 + 60_000 * 100)
    assert feed.symbols == ["PQ", "QP"] and feed.interval_ms == 60_000
    want = src.slice(T0 + 60_000 * 100)
    assert_same_bars(feed.bars("PQ"), want)
    got = feed.bars("QP")
    for name in COLUMNS:
        np.testing.assert_array_equal(getattr(got, name), getattr(want, name))
    assert_same_bars(load_bars(tmp_path / "PQ-1m.parquet"), src)  # load_bars dispatches on suffix


def test_parquet_bad_value_names_row_and_field(tmp_path):
    pa = pytest.importorskip("pyarrow")
    pq = pytest.importorskip("pyarrow.parquet")
    src = parquet_bars(20)
    close = src.close.tolist()
    close[6] = None
    pq.write_table(pa.table({"timestamp": src.timestamp, "open": src.open, "high": src.high,
                             "low": src.low, "close": close, "volume": src.volume}),
                   tmp_path / "N.parquet")
    with pytest.raises(DataFileError) as err:
        HistoricalFeed(tmp_path / "N.parquet")
    assert err.value.field == "close" and err.value.line == 7
    high = src.high.copy()
    high[3] = 1.0  # below low
    pq.write_table(pa.table({"timestamp": src.timestamp, "open": src.open, "high": high,
                             "low": src.low, "close": src.close, "volume": src.volume}),
                   tmp_path / "H.parquet")
    with pytest.raises(DataFileError) as err:
        HistoricalFeed(tmp_path / "H.parquet")
    assert err.value.field == "high" and err.value.line == 4
    pq.write_table(pa.table({"timestamp": src.timestamp, "open": src.open}), tmp_path / "C.parquet")
    with pytest.raises(DataFileError, match="lack"):
        HistoricalFeed(tmp_path / "C.parquet")


def test_parquet_without_pyarrow_names_the_extra(tmp_path, monkeypatch):
    for name in ("pyarrow", "pyarrow.parquet", "pyarrow.compute"):
        monkeypatch.setitem(sys.modules, name, None)  # makes `import pyarrow` fail
    (tmp_path / "X.parquet").write_bytes(b"PAR1")
    with pytest.raises(ImportError, match=r"pip install 'tradesim\[parquet\]'"):
        HistoricalFeed(tmp_path / "X.parquet")
