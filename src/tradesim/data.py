"""Reading bar files: Binance kline CSV (.csv/.csv.gz) and generic OHLCV CSV.

Binance's 12-column layout (with a header) is ``open_time, open, high, low,
close, volume, close_time, quote_asset_volume, number_of_trades,
taker_buy_base_asset_volume, taker_buy_quote_asset_volume, ignore``; the four
optional columns may be empty. The generic layout is
``timestamp, open, high, low, close, volume`` where timestamp is an integer
(ms since the epoch UTC; seconds and microseconds are recognised by size) or
an ISO-8601 date/time (taken as UTC). Parquet files (``.parquet``) are read by
`load_parquet` when pyarrow is installed (``pip install 'tradesim[parquet]'``).
"""

from __future__ import annotations

import csv
import gzip
import io
import warnings
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tradesim._core.market_data import first_invalid_row
from tradesim.timeframes import parse_epoch_text

__all__ = ["Bars", "DataFileError", "find_gaps", "load_bars", "load_parquet"]

PRICE_FIELDS = ("open", "high", "low", "close", "volume")
_ROW_DTYPE = np.dtype([("t", "<i8"), ("o", "<f8"), ("h", "<f8"), ("l", "<f8"), ("c", "<f8"),
                       ("v", "<f8")])
BINANCE_HEADER = ("open_time", "open", "high", "low", "close", "volume", "close_time",
                  "quote_asset_volume", "number_of_trades", "taker_buy_base_asset_volume",
                  "taker_buy_quote_asset_volume", "ignore")


class DataFileError(ValueError):
    """A bar file could not be read. Names the file, line (1-based) and field."""

    def __init__(self, path, line, field, message):
        self.path, self.line, self.field = str(path), line, field
        where = f"{path}:{line}" if line else str(path)
        super().__init__(f"{where}: {field + ': ' if field else ''}{message}")


@dataclass
class Bars:
    """Columns of consecutive bars for one symbol (oldest first).

    Attributes
    ----------
    symbol : str
        Instrument (from the file name when not given).
    timestamp : ndarray of int64
        Bar open times, ms since the epoch UTC, strictly increasing.
    open, high, low, close : ndarray of float64
        Prices in quote currency.
    volume : ndarray of float64
        Volume in base units.
    source : str
        Where the bars came from (path).
    """

    symbol: str
    timestamp: np.ndarray
    open: np.ndarray
    high: np.ndarray
    low: np.ndarray
    close: np.ndarray
    volume: np.ndarray
    source: str = ""
    interval_ms: int | None = field(default=None)

    def __len__(self) -> int:
        return int(self.timestamp.shape[0])

    def columns(self) -> dict[str, np.ndarray]:
        """The price/volume columns keyed by name."""
        return {name: getattr(self, name) for name in PRICE_FIELDS}

    def slice(self, start_ms: int | None = None, end_ms: int | None = None) -> Bars:
        """Bars with start_ms <= timestamp < end_ms (either bound optional)."""
        lo = 0 if start_ms is None else int(np.searchsorted(self.timestamp, start_ms, "left"))
        hi = len(self) if end_ms is None else int(np.searchsorted(self.timestamp, end_ms, "left"))
        return Bars(self.symbol, self.timestamp[lo:hi], self.open[lo:hi], self.high[lo:hi],
                    self.low[lo:hi], self.close[lo:hi], self.volume[lo:hi], self.source,
                    self.interval_ms)


def _open_text(path: Path):
    if path.suffix == ".gz":
        return io.TextIOWrapper(gzip.open(path, "rb"), encoding="utf-8", newline="")
    return open(path, encoding="utf-8", newline="")


def _symbol_from_name(path: Path) -> str:
    name = path.name.split(".")[0]
    return name.split("-")[0].upper() or "UNKNOWN"


def _load_csv_fast(path: Path, symbol: str | None) -> Bars | None:
    """Bars from a well-formed CSV in one vectorized pass, or None when the careful
    row-by-row reader must decide (ISO dates, s/us timestamps, quoting, any bad row:
    it names the file, line and field)."""
    try:
        with _open_text(path) as fh:
            text = fh.read()
    except (OSError, EOFError, UnicodeDecodeError):
        return None
    first = text[:text.find("\n")] if "\n" in text else text
    header = [h.strip().lower() for h in first.split(",")]
    if header[:6] == list(BINANCE_HEADER[:6]) or header[:6] == ["timestamp", *PRICE_FIELDS]:
        skip = 1
    elif len(header) >= 6 and header[0].isdigit():
        skip = 0
    else:
        return None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # e.g. "input contained no data"
            rows = np.loadtxt(io.StringIO(text), delimiter=",", skiprows=skip, usecols=range(6),
                              dtype=_ROW_DTYPE, comments=None, ndmin=1)
    except (ValueError, IndexError, UserWarning):
        return None
    if len(rows) < 2:
        return None
    ts = np.ascontiguousarray(rows["t"])
    # Only plain ms timestamps here; load_bars owns the seconds/microseconds heuristics.
    if ts.min() < 10**11 or ts.max() >= 10**14:
        return None
    o, h, lo, c, v = (np.ascontiguousarray(rows[k]) for k in "ohlcv")
    nan = np.full(len(ts), np.nan)
    steps = np.diff(ts)
    if first_invalid_row(o, h, lo, c, v, nan, nan) >= 0 or (steps <= 0).any():
        return None
    return Bars(symbol or _symbol_from_name(path), ts, o, h, lo, c, v, str(path),
                int(np.median(steps)))


def _first_bad_bar(timestamp: np.ndarray, o: np.ndarray, h: np.ndarray, l: np.ndarray,
                   c: np.ndarray, v: np.ndarray):
    """(row index, the `InvalidMarketData` naming field and value) of the first invalid bar, or None."""
    nan = np.full(len(timestamp), np.nan)
    bad = first_invalid_row(o, h, l, c, v, nan, nan)
    if bad < 0:
        return None
    from tradesim._core.market_data import InvalidMarketData, MarketData
    try:
        MarketData("", int(timestamp[bad]), o[bad], h[bad], l[bad], c[bad], v[bad])
    except InvalidMarketData as exc:
        return bad, exc
    raise AssertionError(f"row {bad} flagged invalid but accepted by MarketData")


def load_bars(path: str | Path, symbol: str | None = None) -> Bars:
    """Read a Binance kline CSV (.csv or .csv.gz) or a generic OHLCV CSV.

    Parameters
    ----------
    path : str or Path
        File to read. The layout is detected from the header row; a Binance
        file without a header (12 numeric columns) is accepted too.
    symbol : str, optional
        Instrument name; defaults to the file name's first dash-separated
        part (``BTCUSDT-1m-....csv.gz`` -> ``BTCUSDT``).

    Returns
    -------
    Bars
        Columns oldest first; timestamps in ms since the epoch UTC.

    Raises
    ------
    DataFileError
        Missing file, unknown header, a row with too few fields, a field that
        is not a number, a bar breaking the `MarketData` rules (NaN, price <= 0,
        high < low, ...), or timestamps not strictly increasing. The message
        names the file, the 1-based line and the field.
    """
    path = Path(path)
    if path.suffix.lower() == ".parquet":
        return load_parquet(path, symbol)
    if not path.exists():
        raise DataFileError(path, None, None, "no such file")
    fast = _load_csv_fast(path, symbol)
    if fast is not None:
        return fast
    ts: list[int] = []
    cols: list[list[float]] = [[], [], [], [], []]
    try:
        with _open_text(path) as fh:
            reader = csv.reader(fh)
            first = next(reader, None)
            if first is None:
                raise DataFileError(path, None, None, "file is empty")
            header = [h.strip().lower() for h in first]
            if header[:6] == list(BINANCE_HEADER[:6]) or header[:6] == ["timestamp", *PRICE_FIELDS]:
                names = header[:6]
                rows = reader
                line0 = 2
            elif len(header) >= 6 and header[0].isdigit():  # Binance file without header
                names = list(BINANCE_HEADER[:6])
                rows = _chain(first, reader)
                line0 = 1
            else:
                raise DataFileError(path, 1, None,
                                    f"unrecognised header {first[:6]!r}; expected Binance kline "
                                    "columns or timestamp,open,high,low,close,volume")
            append_ts = ts.append
            appends = [c.append for c in cols]
            line = line0
            for line, row in enumerate(rows, start=line0):
                if not row:
                    continue
                if len(row) < 6:
                    raise DataFileError(path, line, None, f"expected at least 6 fields, got {len(row)}")
                try:
                    append_ts(parse_epoch_text(row[0]))
                except (ValueError, OverflowError):
                    raise DataFileError(path, line, names[0], f"{row[0]!r} is not a timestamp") from None
                for j in range(5):
                    text = row[j + 1]
                    try:
                        appends[j](float(text))
                    except ValueError:
                        raise DataFileError(path, line, PRICE_FIELDS[j],
                                            f"{text!r} is not a number") from None
    except (OSError, EOFError, UnicodeDecodeError, csv.Error) as exc:
        raise DataFileError(path, None, None, f"cannot read: {exc}") from None

    timestamp = np.asarray(ts, dtype=np.int64)
    o, h, l, c, v = (np.asarray(col, dtype=np.float64) for col in cols)
    if (found := _first_bad_bar(timestamp, o, h, l, c, v)) is not None:
        bad, exc = found
        raise DataFileError(path, line0 + bad, exc.field, f"{exc.value!r} rejected: {exc}")
    if len(timestamp) > 1:
        steps = np.diff(timestamp)
        if (steps <= 0).any():
            i = int(np.argmax(steps <= 0)) + 1
            raise DataFileError(path, line0 + i, names[0],
                                f"{timestamp[i]} is not after the previous bar's {timestamp[i - 1]} "
                                "(bars must be in strictly increasing time order)")
        interval = int(np.median(steps))
    else:
        interval = None
    return Bars(symbol or _symbol_from_name(path), timestamp, o, h, l, c, v, str(path), interval)


PARQUET_TIME_COLUMNS = ("timestamp", "open_time", "date")


def load_parquet(path: str | Path, symbol: str | None = None) -> Bars:
    """Read OHLCV bars from a Parquet file (needs pyarrow).

    Parameters
    ----------
    path : str or Path
        File with a time column named ``timestamp``, ``open_time`` or ``date``
        (an Arrow timestamp or date of any unit and zone, or integers: ms since
        the epoch UTC, with seconds and microseconds recognised by size) and
        float columns ``open, high, low, close, volume`` (names case-insensitive;
        other columns are ignored).
    symbol : str, optional
        Instrument name; defaults to the file name's first dash-separated part.

    Returns
    -------
    Bars
        As from `load_bars`: timestamps int64 ms since the epoch UTC, prices in
        quote currency, volume in base units.

    Raises
    ------
    ImportError
        pyarrow is not installed; the message says ``pip install 'tradesim[parquet]'``.
    DataFileError
        Missing or unreadable file, missing column, a null, a bar breaking the
        `MarketData` rules or timestamps not strictly increasing. ``line`` is
        the 1-based row number.
    """
    path = Path(path)
    try:
        import pyarrow as pa
        import pyarrow.compute as pc
        import pyarrow.parquet as pq
    except ImportError as exc:
        raise ImportError(f"reading Parquet ({path.name}) needs pyarrow: "
                          "pip install 'tradesim[parquet]'") from exc
    if not path.exists():
        raise DataFileError(path, None, None, "no such file")
    try:
        table = pq.read_table(path)
    except (OSError, pa.ArrowException) as exc:
        raise DataFileError(path, None, None, f"cannot read Parquet: {exc}") from None
    by_lower = {name.lower(): name for name in table.column_names}
    time_name = next((by_lower[c] for c in PARQUET_TIME_COLUMNS if c in by_lower), None)
    missing = [f for f in PRICE_FIELDS if f not in by_lower]
    if time_name is None or missing:
        raise DataFileError(path, None, None,
                            f"columns {table.column_names} lack "
                            f"{missing or ['timestamp (or open_time / date)']}")

    def column(name, kind):
        col = table.column(name)
        if col.null_count:
            row = int(np.argmax(pc.is_null(col).to_numpy(zero_copy_only=False)))
            raise DataFileError(path, row + 1, name, f"row {row + 1}: value is missing (null)")
        try:
            if kind == "time":
                if pa.types.is_date(col.type):
                    col = col.cast(pa.timestamp("ms"))
                if pa.types.is_timestamp(col.type):
                    return col.cast(pa.timestamp("ms", col.type.tz), safe=False) \
                              .cast(pa.int64()).to_numpy()
                if not pa.types.is_integer(col.type):
                    raise DataFileError(path, None, name, f"type {col.type} is not a time")
                raw = col.cast(pa.int64()).to_numpy()
                # Seconds, milliseconds or microseconds since the epoch, told apart by size.
                mag = np.abs(raw)
                return np.where(mag < 10**11, raw * 1000, np.where(mag >= 10**14, raw // 1000, raw))
            return col.cast(pa.float64()).to_numpy()
        except pa.ArrowException as exc:
            raise DataFileError(path, None, name, f"cannot convert {col.type}: {exc}") from None

    timestamp = np.ascontiguousarray(column(time_name, "time"), dtype=np.int64)
    o, h, l, c, v = (np.ascontiguousarray(column(by_lower[f], "price"), dtype=np.float64)
                     for f in PRICE_FIELDS)
    if (found := _first_bad_bar(timestamp, o, h, l, c, v)) is not None:
        bad, exc = found
        raise DataFileError(path, bad + 1, exc.field, f"row {bad + 1}: {exc.value!r} rejected: {exc}")
    interval = None
    if len(timestamp) > 1:
        steps = np.diff(timestamp)
        if (steps <= 0).any():
            i = int(np.argmax(steps <= 0)) + 1
            raise DataFileError(path, i + 1, time_name,
                                f"row {i + 1}: {timestamp[i]} is not after the previous row's "
                                f"{timestamp[i - 1]} (bars must be in strictly increasing time order)")
        interval = int(np.median(steps))
    return Bars(symbol or _symbol_from_name(path), timestamp, o, h, l, c, v, str(path), interval)


def _chain(first, rest):
    yield first
    yield from rest


def find_gaps(bars: Bars, interval_ms: int | None = None) -> list[tuple[int, int, int]]:
    """Missing stretches: (last timestamp before, first after, bars missing) per gap.

    `interval_ms` defaults to the file's median step.
    """
    interval_ms = interval_ms or bars.interval_ms
    if not interval_ms or len(bars) < 2:
        return []
    steps = np.diff(bars.timestamp)
    idx = np.flatnonzero(steps > interval_ms)
    return [(int(bars.timestamp[i]), int(bars.timestamp[i + 1]), int(steps[i] // interval_ms) - 1)
            for i in idx]
