"""The local bar catalog: Parquet files by venue/symbol/interval/month and a JSON index.

Layout and guarantees are described in docs/catalog.md. In short::

    <root>/<venue>/<SYMBOL>/<interval>/<YYYY-MM>.parquet   one file per calendar month (UTC)
    <root>/<venue>/<SYMBOL>/<interval>/index.json          what is covered, and the gaps

A month file holds the bars whose open time falls in that month, columns
``open_time`` (int64, ms since the epoch UTC), ``open, high, low, close``
(float64, quote currency) and ``volume`` (float64, base units). The index lists,
per month, the covered range of open times ``[start, end)`` that was asked of
the exchange (or imported), the row count and the file's SHA-256; any open
time of the interval grid inside a covered range without a bar is a real gap
(the exchange had none) and is listed in ``gaps``. Bars are never invented.

Writes are atomic: a month file and the index are written to a temporary
file, fsynced, renamed over the old one with `os.replace`, and the folder is
fsynced. The index is written after the month file, and readers only see
what the index covers, so a killed writer leaves no partial month visible.
"""

from __future__ import annotations

import calendar
import contextlib
import fcntl
import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np

from tradesim.data import Bars, load_bars
from tradesim.timeframes import BINANCE_INTERVAL_MS

__all__ = ["CATALOG_ENV", "Catalog", "CatalogError", "Coverage", "Gap", "Problem", "default_root",
           "month_bounds", "months_between"]

#: Environment variable naming the catalog folder (``--catalog DIR`` wins over it).
CATALOG_ENV = "TRADESIM_CATALOG"
INDEX_NAME = "index.json"
INDEX_FORMAT = 1
COLUMNS = ("open_time", "open", "high", "low", "close", "volume")
_TMP_PREFIX = ".tmp-"


class CatalogError(ValueError):
    """The catalog cannot do what was asked (bad symbol/interval, conflicting bars, unreadable file)."""


def default_root() -> Path:
    """The catalog folder: ``$TRADESIM_CATALOG``, else ``~/.local/share/tradesim``."""
    env = os.environ.get(CATALOG_ENV)
    return Path(env).expanduser() if env else Path.home() / ".local" / "share" / "tradesim"


def month_key(ms: int) -> str:
    """``"YYYY-MM"`` of the UTC month holding `ms` (ms since the epoch)."""
    d = datetime.fromtimestamp(ms / 1000, UTC)
    return f"{d.year:04d}-{d.month:02d}"


def month_bounds(key: str) -> tuple[int, int]:
    """``[start, end)`` in ms since the epoch UTC of the month ``"YYYY-MM"``."""
    year, month = int(key[:4]), int(key[5:7])
    start = calendar.timegm((year, month, 1, 0, 0, 0)) * 1000
    ny, nm = (year + 1, 1) if month == 12 else (year, month + 1)
    return start, calendar.timegm((ny, nm, 1, 0, 0, 0)) * 1000


def months_between(start_ms: int, end_ms: int) -> list[str]:
    """Month keys overlapping ``[start_ms, end_ms)``, oldest first."""
    out: list[str] = []
    t = start_ms
    while t < end_ms:
        key = month_key(t)
        out.append(key)
        t = month_bounds(key)[1]
    return out


def interval_ms(interval: str) -> int:
    """Length in ms of a Binance interval name with a fixed length (``1s`` ... ``1w``).

    Raises
    ------
    CatalogError
        Unknown interval, or ``1M`` (calendar months have no fixed length).
    """
    step = BINANCE_INTERVAL_MS.get(interval)
    if step is None:
        known = ", ".join(k for k, v in BINANCE_INTERVAL_MS.items() if v)
        raise CatalogError(f"interval {interval!r} is not supported by the catalog (use one of {known})")
    return step


def _check_symbol(symbol: str) -> str:
    s = symbol.strip().upper()
    if not s or not s.isalnum():
        raise CatalogError(f"symbol {symbol!r}: expected letters and digits, e.g. BTCUSDT")
    return s


@dataclass(frozen=True)
class Gap:
    """Open times ``[start, end)`` (ms since epoch UTC) inside covered data with no bar; `bars` missing."""

    venue: str
    symbol: str
    interval: str
    start: int
    end: int
    bars: int


@dataclass(frozen=True)
class Coverage:
    """One month of one series: covered open times ``[start, end)`` (ms), `rows` bars, `gaps` missing bars."""

    venue: str
    symbol: str
    interval: str
    month: str
    start: int
    end: int
    rows: int
    missing: int

    @property
    def complete(self) -> bool:
        """Whether the whole calendar month is covered."""
        return (self.start, self.end) == month_bounds(self.month)


@dataclass(frozen=True)
class Problem:
    """A defect `Catalog.verify` found: where (series/month or file) and what."""

    where: str
    message: str


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _atomic_write(path: Path, write) -> None:
    """Call ``write(tmp_path)``, fsync the file, rename it over `path`, fsync the folder."""
    fd, tmp = tempfile.mkstemp(prefix=_TMP_PREFIX, suffix=path.suffix, dir=path.parent)
    os.close(fd)
    try:
        write(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; catalog files are plain data
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


_WEEK_MS = 7 * 86_400_000
#: Binance weeks open on Monday 00:00 UTC; 1970-01-01 was a Thursday.
_WEEK_OFFSET_MS = 4 * 86_400_000


def grid_ceil(t: int, step: int) -> int:
    """The first open time on the interval grid at or after `t` (ms): multiples of `step` from the
    epoch, except weeks, which open on Mondays."""
    off = _WEEK_OFFSET_MS if step == _WEEK_MS else 0
    return off + -(-(int(t) - off) // step) * step


def _gaps_in(ts: np.ndarray, start: int, end: int, step: int) -> list[tuple[int, int]]:
    """``[from, to)`` stretches of grid open times in ``[start, end)`` with no bar in `ts`."""
    start, end = grid_ceil(start, step), grid_ceil(end, step)
    edges = np.concatenate(([start - step], ts, [end]))
    d = np.diff(edges)
    idx = np.flatnonzero(d > step)
    return [(int(edges[i] + step), int(edges[i + 1])) for i in idx]


class Catalog:
    """Bars stored by venue/symbol/interval/month under `root` (see docs/catalog.md).

    Parameters
    ----------
    root : path, optional
        Catalog folder; default `default_root()` (``$TRADESIM_CATALOG`` or
        ``~/.local/share/tradesim``). Created on the first write.
    venue : str
        Exchange name, the first folder level (default ``binance``).
    """

    def __init__(self, root: str | Path | None = None, venue: str = "binance") -> None:
        self.root = Path(root).expanduser() if root is not None else default_root()
        self.venue = venue

    # -- paths and index -----------------------------------------------------------------

    def series_dir(self, symbol: str, interval: str) -> Path:
        """Folder of one series: ``<root>/<venue>/<SYMBOL>/<interval>``."""
        interval_ms(interval)
        return self.root / self.venue / _check_symbol(symbol) / interval

    def read_index(self, symbol: str, interval: str) -> dict:
        """The series' index (``{"months": {...}, ...}``; empty when nothing is stored).

        Raises
        ------
        CatalogError
            The index exists but is not valid JSON of the expected format.
        """
        path = self.series_dir(symbol, interval) / INDEX_NAME
        try:
            data = json.loads(path.read_text())
        except FileNotFoundError:
            return {"format": INDEX_FORMAT, "venue": self.venue, "symbol": _check_symbol(symbol),
                    "interval": interval, "interval_ms": interval_ms(interval), "months": {}}
        except (OSError, ValueError) as exc:
            raise CatalogError(f"{path}: unreadable index: {exc}") from None
        if not isinstance(data, dict) or data.get("format") != INDEX_FORMAT or not isinstance(data.get("months"), dict):
            raise CatalogError(f"{path}: not a catalog index of format {INDEX_FORMAT}")
        return data

    def _write_index(self, folder: Path, index: dict) -> None:
        text = json.dumps(index, indent=1, sort_keys=True)
        _atomic_write(folder / INDEX_NAME, lambda tmp: Path(tmp).write_text(text))

    @contextlib.contextmanager
    def _locked(self, folder: Path) -> Iterator[None]:
        """Hold an exclusive lock on a series while it is written (one writer at a time)."""
        folder.mkdir(parents=True, exist_ok=True)
        with open(folder / ".lock", "a") as fh:
            fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)

    def series(self) -> list[tuple[str, str]]:
        """(symbol, interval) of every series with an index, sorted."""
        base = self.root / self.venue
        if not base.is_dir():
            return []
        return sorted((p.parent.parent.name, p.parent.name) for p in base.glob(f"*/*/{INDEX_NAME}"))

    def covered(self, symbol: str, interval: str) -> dict[str, tuple[int, int]]:
        """Covered open-time range ``[start, end)`` (ms) per month key."""
        return {k: (int(m["start"]), int(m["end"]))
                for k, m in self.read_index(symbol, interval)["months"].items()}

    # -- reading -------------------------------------------------------------------------

    def _read_month(self, folder: Path, key: str, meta: dict) -> tuple[np.ndarray, ...]:
        import pyarrow as pa
        import pyarrow.parquet as pq

        path = folder / f"{key}.parquet"
        try:
            table = pq.read_table(path, columns=list(COLUMNS))
        except (OSError, pa.ArrowException) as exc:
            raise CatalogError(f"{path}: cannot read: {exc} (run `tradesim catalog verify`)") from None
        cols = tuple(table.column(c).to_numpy() for c in COLUMNS)
        ts = cols[0]
        lo, hi = np.searchsorted(ts, int(meta["start"])), np.searchsorted(ts, int(meta["end"]))
        return tuple(c[lo:hi] for c in cols)

    def load(self, symbol: str, interval: str, start_ms: int | None = None, end_ms: int | None = None) -> Bars:
        """Bars of one series with ``start_ms <= open time < end_ms`` (either bound optional).

        Only covered ranges are read; a gap inside them stays a gap (no bar is
        made up), and so does a range that was never downloaded.

        Returns
        -------
        Bars
            int64 open times in ms since the epoch UTC, float64 prices (quote
            currency) and volume (base units); ``source`` is ``catalog:<folder>``.

        Raises
        ------
        CatalogError
            Nothing is stored in ``[start_ms, end_ms)``, or a month file is unreadable.
        """
        symbol = _check_symbol(symbol)
        folder = self.series_dir(symbol, interval)
        months = self.read_index(symbol, interval)["months"]
        lo = -(2**62) if start_ms is None else int(start_ms)
        hi = 2**62 if end_ms is None else int(end_ms)
        parts = [self._read_month(folder, key, months[key]) for key in sorted(months)
                 if int(months[key]["start"]) < hi and int(months[key]["end"]) > lo]
        if parts:
            cols = [np.concatenate([p[i] for p in parts]) for i in range(len(COLUMNS))]
            a, b = np.searchsorted(cols[0], lo), np.searchsorted(cols[0], hi)
            cols = [np.ascontiguousarray(c[a:b]) for c in cols]
        if not parts or len(cols[0]) == 0:
            span = f"[{'start' if start_ms is None else start_ms}, {'end' if end_ms is None else end_ms})"
            raise CatalogError(f"catalog {self.root} has no {symbol} {interval} bars in {span}: "
                               f"run `tradesim download --symbol {symbol} --interval {interval} --start ...`")
        ts = cols[0].astype(np.int64, copy=False)
        return Bars(symbol, ts, *(c.astype(np.float64, copy=False) for c in cols[1:]),
                    source=f"catalog:{folder}", interval_ms=interval_ms(interval))

    def coverage(self, symbol: str | None = None, interval: str | None = None) -> list[Coverage]:
        """Covered months of every series (or one symbol/interval), oldest first per series."""
        out = []
        for sym, itv in self.series():
            if (symbol and sym != _check_symbol(symbol)) or (interval and itv != interval):
                continue
            for key, m in sorted(self.read_index(sym, itv)["months"].items()):
                out.append(Coverage(self.venue, sym, itv, key, int(m["start"]), int(m["end"]), int(m["rows"]),
                                    sum(int(g[2]) for g in m.get("gaps", []))))
        return out

    def gaps(self, symbol: str | None = None, interval: str | None = None) -> list[Gap]:
        """Real exchange gaps inside covered ranges (adjacent months' gaps joined), oldest first."""
        out: list[Gap] = []
        for sym, itv in self.series():
            if (symbol and sym != _check_symbol(symbol)) or (interval and itv != interval):
                continue
            step = interval_ms(itv)
            for _key, m in sorted(self.read_index(sym, itv)["months"].items()):
                for a, b, _n in m.get("gaps", []):
                    if out and (out[-1].symbol, out[-1].interval, out[-1].end) == (sym, itv, a):
                        prev = out.pop()
                        a = prev.start
                    out.append(Gap(self.venue, sym, itv, int(a), int(b), (int(b) - int(a)) // step))
        return out

    # -- writing -------------------------------------------------------------------------

    def write(self, symbol: str, interval: str, ts: np.ndarray, o: np.ndarray, h: np.ndarray,
              l: np.ndarray, c: np.ndarray, v: np.ndarray, start_ms: int, end_ms: int) -> int:
        """Store bars that are ALL the bars of ``[start_ms, end_ms)`` (missing open times = real gaps).

        The range is split by month; each month is merged with what is stored
        (covered ranges must overlap or touch, so each month stays one range),
        written atomically, then the index is updated.

        Parameters
        ----------
        ts : ndarray of int64
            Open times, ms since epoch UTC, strictly increasing, on the interval grid, in the range.
        o, h, l, c, v : ndarray of float64
            Prices in quote currency, volume in base units.

        Returns
        -------
        int
            Months written.

        Raises
        ------
        CatalogError
            Times not increasing or outside the range, or a bar that differs
            from the stored bar with the same open time (names both).
        """
        symbol = _check_symbol(symbol)
        step = interval_ms(interval)
        ts = np.asarray(ts, dtype=np.int64)
        cols = [np.asarray(x, dtype=np.float64) for x in (o, h, l, c, v)]
        if len(ts) and (ts[0] < start_ms or ts[-1] >= end_ms):
            raise CatalogError(f"{symbol} {interval}: bars from {ts[0]} to {ts[-1]} outside [{start_ms}, {end_ms})")
        if len(ts) > 1 and (np.diff(ts) <= 0).any():
            i = int(np.argmax(np.diff(ts) <= 0)) + 1
            raise CatalogError(f"{symbol} {interval}: open_time {ts[i]} is not after {ts[i - 1]}")
        folder = self.series_dir(symbol, interval)
        written = 0
        with self._locked(folder):
            index = self.read_index(symbol, interval)
            for key in months_between(start_ms, end_ms):
                m0, m1 = month_bounds(key)
                a, b = max(start_ms, m0), min(end_ms, m1)
                i, j = np.searchsorted(ts, a), np.searchsorted(ts, b)
                self._merge_month(folder, index, key, step, a, b, ts[i:j], [x[i:j] for x in cols])
                written += 1
        return written

    def _merge_month(self, folder: Path, index: dict, key: str, step: int, a: int, b: int,
                     ts: np.ndarray, cols: list[np.ndarray]) -> None:
        import pyarrow as pa
        import pyarrow.parquet as pq

        old = index["months"].get(key)
        if old is not None:
            oa, ob = int(old["start"]), int(old["end"])
            if b < oa or a > ob:
                raise CatalogError(f"{folder.name} {key}: range [{a}, {b}) does not touch the stored [{oa}, {ob})")
            ots, *ocols = self._read_month(folder, key, old)
            allts = np.concatenate((ots, ts))
            order = np.argsort(allts, kind="stable")
            allts = allts[order]
            merged = [np.concatenate((x, y))[order] for x, y in zip(ocols, cols)]
            dup = np.flatnonzero(np.diff(allts) == 0)
            if len(dup):
                # The same open time twice (old first, then new): the bars must agree.
                for name, col in zip(COLUMNS[1:], merged):
                    bad = dup[col[dup] != col[dup + 1]]
                    if len(bad):
                        k = int(bad[0])
                        raise CatalogError(f"{folder.parent.name} {folder.name} open_time {int(allts[k])}: {name} "
                                           f"{float(col[k])!r} stored, {float(col[k + 1])!r} new")
                keep = np.ones(len(allts), dtype=bool)
                keep[dup + 1] = False
                allts = allts[keep]
                merged = [x[keep] for x in merged]
            ts, cols, a, b = allts, merged, min(a, oa), max(b, ob)
        path = folder / f"{key}.parquet"
        table = pa.table({"open_time": pa.array(ts, pa.int64()),
                          **{n: pa.array(x, pa.float64()) for n, x in zip(COLUMNS[1:], cols)}})
        _atomic_write(path, lambda tmp: pq.write_table(table, tmp, compression="zstd"))
        gaps = [[g0, g1, (g1 - g0) // step] for g0, g1 in _gaps_in(ts, a, b, step)]
        index["months"][key] = {"start": int(a), "end": int(b), "rows": int(len(ts)), "gaps": gaps,
                                "sha256": _sha256(path)}
        self._write_index(folder, index)

    def import_file(self, path: str | Path, symbol: str | None = None, interval: str | None = None) -> Bars:
        """Add a Binance kline CSV (``SYMBOL-INTERVAL-....csv[.gz]``) or any file `load_bars` reads.

        The covered range is the file's first open time to its last plus one
        interval; missing bars inside it are recorded as gaps.

        Returns
        -------
        Bars
            What was imported.

        Raises
        ------
        DataFileError
            From `tradesim.data.load_bars` (file, line, field).
        CatalogError
            The interval cannot be told (give `interval`), the file's step
            disagrees with it, or a bar conflicts with a stored one.
        """
        path = Path(path)
        bars = load_bars(path, symbol)
        if interval is None:
            parts = path.name.split(".")[0].split("-")
            interval = parts[1] if len(parts) > 1 and parts[1] in BINANCE_INTERVAL_MS else None
        if interval is None:
            interval = next((k for k, v in BINANCE_INTERVAL_MS.items() if v and v == bars.interval_ms), None)
        if interval is None:
            raise CatalogError(f"{path}: cannot tell the interval (median step {bars.interval_ms} ms): "
                               "give it (--interval)")
        step = interval_ms(interval)
        if len(bars) > 1 and (np.diff(bars.timestamp) % step).any():
            raise CatalogError(f"{path}: open times are not on the {interval} grid")
        if len(bars) == 0:
            raise CatalogError(f"{path}: no bars")
        self.write(bars.symbol, interval, bars.timestamp, bars.open, bars.high, bars.low, bars.close,
                   bars.volume, int(bars.timestamp[0]), int(bars.timestamp[-1]) + step)
        return bars

    # -- checking ------------------------------------------------------------------------

    def verify(self) -> list[Problem]:
        """Check every series: files present and matching the index checksum and row count, bars
        valid and strictly increasing inside the covered range, gaps as recorded; stray
        month files or temporary files left by a killed writer.

        Returns
        -------
        list of Problem
            Empty when all is well.
        """
        from tradesim.data import _first_bad_bar

        problems: list[Problem] = []
        for sym, itv in self.series():
            folder = self.series_dir(sym, itv)
            try:
                months = self.read_index(sym, itv)["months"]
            except CatalogError as exc:
                problems.append(Problem(str(folder), str(exc)))
                continue
            step = interval_ms(itv)
            for key, m in sorted(months.items()):
                where = f"{sym} {itv} {key}"
                path = folder / f"{key}.parquet"
                if not path.exists():
                    problems.append(Problem(where, f"{path.name} is missing"))
                    continue
                if _sha256(path) != m.get("sha256"):
                    problems.append(Problem(where, f"{path.name} does not match the index checksum"))
                try:
                    ts, *cols = self._read_month(folder, key, m)
                except CatalogError as exc:
                    problems.append(Problem(where, str(exc)))
                    continue
                if len(ts) != m["rows"]:
                    problems.append(Problem(where, f"{len(ts)} bars, the index says {m['rows']}"))
                if len(ts) > 1 and (np.diff(ts) <= 0).any():
                    problems.append(Problem(where, "open times not strictly increasing"))
                elif len(ts) and (np.diff(ts) % step).any():
                    problems.append(Problem(where, f"open times not on the {itv} grid"))
                elif [list(g) for g in _gaps_in(ts, int(m["start"]), int(m["end"]), step)] != \
                        [g[:2] for g in m.get("gaps", [])]:
                    problems.append(Problem(where, "gaps differ from the index"))
                if len(ts) and (found := _first_bad_bar(ts, *cols)) is not None:
                    row, exc = found
                    problems.append(Problem(where, f"bar at open_time {int(ts[row])}: {exc}"))
            for stray in sorted(folder.iterdir()):
                if stray.name.startswith(_TMP_PREFIX):
                    problems.append(Problem(str(stray), "temporary file left by an interrupted write "
                                                        "(harmless; delete it)"))
                elif stray.suffix == ".parquet" and stray.stem not in months:
                    problems.append(Problem(str(stray), "month file not in the index (ignored by loads)"))
        return problems
