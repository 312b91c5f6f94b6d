"""Bar file loading: Binance klines, generic CSV, errors with file, line and field."""

import gzip

import numpy as np
import pytest

from tradesim.data import DataFileError, find_gaps, load_bars

HEADER = "open_time,open,high,low,close,volume,close_time,quote_asset_volume,number_of_trades," \
         "taker_buy_base_asset_volume,taker_buy_quote_asset_volume,ignore\n"


def test_real_binance_file_loads_all_rows(btc_bars):
    assert len(btc_bars) == 130_708  # PROVENANCE.md
    assert btc_bars.symbol == "BTCUSDT"
    assert btc_bars.timestamp[0] == 1747699200000 and btc_bars.timestamp[-1] == 1755541620000
    assert btc_bars.interval_ms == 60_000
    assert find_gaps(btc_bars) == []  # PROVENANCE.md: no gaps


def test_generic_iso_dated_csv_loads(shared_data):
    path = shared_data / "stocks" / "GOOG-1d-2004-08-19_2013-03-01.csv"
    bars = load_bars(path)
    assert bars.symbol == "GOOG" and len(bars) > 2000
    assert bars.timestamp[0] == 1092873600000  # 2004-08-19T00:00Z
    assert bars.interval_ms == 86_400_000


def test_empty_optional_columns_are_accepted(tmp_path):
    p = tmp_path / "X-1m.csv.gz"
    with gzip.open(p, "wt") as fh:
        fh.write(HEADER)
        fh.write("60000,10,11,9,10.5,1.5,119999,,,,,0\n")
        fh.write("120000,10.5,12,10,11,0,179999,,,,,0\n")
    bars = load_bars(p)
    np.testing.assert_array_equal(bars.close, [10.5, 11.0])
    assert bars.symbol == "X"


@pytest.mark.parametrize("row, field", [
    ("120000,10,11,9,abc,1,179999,,,,,0", "close"),
    ("120000,10,11,9,nan,1,179999,,,,,0", "close"),
    ("120000,10,8,9,9,1,179999,,,,,0", "high"),
    ("120000,10,11,9,10,-2,179999,,,,,0", "volume"),
    ("60000,10,11,9,10,1,119999,,,,,0", "open_time"),
    ("xx,10,11,9,10,1,119999,,,,,0", "open_time"),
])
def test_bad_row_names_file_line_and_field(tmp_path, row, field):
    p = tmp_path / "bad.csv"
    p.write_text(HEADER + "60000,10,11,9,10.5,1.5,119999,,,,,0\n" + row + "\n")
    with pytest.raises(DataFileError) as err:
        load_bars(p)
    assert err.value.line == 3 and err.value.field == field
    assert f"{p}:3: {field}" in str(err.value)


def test_gaps_are_reported_not_filled(tmp_path):
    p = tmp_path / "g.csv"
    t0 = 1_700_000_000_000
    rows = [f"{t0 + t},10,11,9,10,1" for t in (0, 60_000, 240_000, 300_000)]
    p.write_text("timestamp,open,high,low,close,volume\n" + "\n".join(rows) + "\n")
    bars = load_bars(p)
    assert len(bars) == 4
    assert find_gaps(bars) == [(t0 + 60_000, t0 + 240_000, 2)]


def test_second_and_microsecond_timestamps_become_ms(tmp_path):
    p = tmp_path / "s.csv"
    p.write_text("timestamp,open,high,low,close,volume\n1700000000,1,1,1,1,0\n1700000060000000,1,1,1,1,0\n")
    assert load_bars(p).timestamp.tolist() == [1_700_000_000_000, 1_700_000_060_000]


def test_unknown_header_and_missing_file(tmp_path):
    p = tmp_path / "h.csv"
    p.write_text("a,b,c\n1,2,3\n")
    with pytest.raises(DataFileError, match="unrecognised header"):
        load_bars(p)
    with pytest.raises(DataFileError, match="no such file"):
        load_bars(tmp_path / "missing.csv")
