"""Self-contained HTML report of a backtest: charts, metrics, trades and the run's ledger.

One file that opens offline: TradingView Lightweight Charts (vendored in ``static/``,
Apache-2.0) and all data are inlined, and a Content-Security-Policy forbids any network
access. Long series are downsampled so the file stays small (about 1 MB for 130k 1-minute
bars and 500 trades): candles are aggregated into coarser OHLC candles (`aggregate_ohlc`),
equity and drawdown lines keep each bucket's minimum and maximum (`minmax_indices`).

Every text that comes from data (symbols, strategy names, exit reasons, ledger entries) is
HTML-escaped in tables, and the embedded JSON escapes ``<``, ``>`` and ``&`` so it cannot
close its ``<script>`` element.
"""

from __future__ import annotations

import html
import json
import math
import re
from collections.abc import Mapping, Sequence
from importlib.resources import files
from pathlib import Path
from string import Template

import numpy as np

from tradesim.backtest.metric_format import metric_rows
from tradesim.backtest.metrics import Metrics, drawdown_series
from tradesim.display import format_number
from tradesim.portfolio import PortfolioCurves
from tradesim.runner.trades import Trade
from tradesim.timeframes import format_duration, format_time

__all__ = ["write_report", "aggregate_ohlc", "choose_bucket_ms", "minmax_indices", "LWC_VERSION"]

#: Version of the vendored ``static/lightweight-charts.standalone.production.js``.
LWC_VERSION = "5.2.1"
_LWC_FILE = "lightweight-charts.standalone.production.js"

# Candle widths the aggregation prefers, so candles start on round clock times (epoch-aligned).
_NICE_BUCKETS_MS = (
    *(1_000 * s for s in (1, 2, 5, 10, 15, 30)),
    *(60_000 * m for m in (1, 2, 3, 5, 10, 15, 30)),
    *(3_600_000 * h for h in (1, 2, 4, 6, 8, 12)),
    *(86_400_000 * d for d in (1, 2, 3, 7, 14, 30)),
)


# --------------------------------------------------------------------------- downsampling

def choose_bucket_ms(first_ms: int, last_ms: int, interval_ms: int, max_candles: int) -> int:
    """Width of the aggregated candles for bars from `first_ms` to `last_ms` (open times).

    Returns the smallest "round" width (1 s ... 30 d, a multiple of `interval_ms`) that yields
    at most `max_candles` epoch-aligned candles; when no round width fits (an unusual
    interval), the smallest multiple of `interval_ms` that does. Always >= 1000 ms, because
    the chart's time axis has one-second resolution, and >= `interval_ms`.

    Parameters
    ----------
    first_ms, last_ms : int
        Open times of the first and last bar, ms since the epoch UTC.
    interval_ms : int
        Bar length in ms (> 0).
    max_candles : int
        Upper bound on the number of candles (>= 3).
    """
    if interval_ms <= 0:
        raise ValueError(f"interval_ms must be > 0, got {interval_ms}")
    if max_candles < 3:
        raise ValueError(f"max_candles must be >= 3, got {max_candles}")
    span = last_ms - first_ms + interval_ms
    # Epoch alignment can split the span across one extra bucket at each end.
    for width in _NICE_BUCKETS_MS:
        if width >= interval_ms and width % interval_ms == 0 and span // width + 2 <= max_candles:
            return width
    factor = max(1, math.ceil(span / (interval_ms * (max_candles - 2))), math.ceil(1000 / interval_ms))
    return factor * interval_ms


def aggregate_ohlc(timestamp, open, high, low, close, bucket_ms: int) -> dict[str, np.ndarray]:
    """Aggregate bars into epoch-aligned candles `bucket_ms` wide (OHLC-correct).

    A candle holds the bars with ``timestamp // bucket_ms`` equal; its open is the first bar's
    open, high the maximum high, low the minimum low, close the last bar's close, and its time
    the bucket start ``(timestamp // bucket_ms) * bucket_ms``. Buckets without bars produce
    no candle (data gaps stay gaps).

    Parameters
    ----------
    timestamp : ndarray of int64
        Bar open times, ms since the epoch UTC, strictly increasing.
    open, high, low, close : ndarray of float64
        Prices in quote currency, same length as `timestamp`.
    bucket_ms : int
        Candle width in ms (> 0).

    Returns
    -------
    dict of ndarray
        ``timestamp`` (int64 bucket starts), ``open``, ``high``, ``low``, ``close``
        (float64), and ``first`` (int64 index of each candle's first bar).
    """
    ts = np.asarray(timestamp, dtype=np.int64)
    if bucket_ms <= 0:
        raise ValueError(f"bucket_ms must be > 0, got {bucket_ms}")
    if ts.size == 0:
        empty = np.empty(0)
        return {"timestamp": ts.copy(), "open": empty, "high": empty, "low": empty,
                "close": empty, "first": np.empty(0, dtype=np.int64)}
    key = ts // bucket_ms
    first = np.flatnonzero(np.concatenate(([True], key[1:] != key[:-1])))
    last = np.concatenate((first[1:], [ts.size])) - 1
    return {
        "timestamp": key[first] * bucket_ms,
        "open": np.asarray(open, dtype=np.float64)[first],
        "high": np.maximum.reduceat(np.asarray(high, dtype=np.float64), first),
        "low": np.minimum.reduceat(np.asarray(low, dtype=np.float64), first),
        "close": np.asarray(close, dtype=np.float64)[last],
        "first": first.astype(np.int64),
    }


def minmax_indices(values, max_points: int) -> np.ndarray:
    """Indices of a min/max-preserving decimation of `values` to at most `max_points` points.

    The series is cut into ``max_points // 2 - 1`` equal runs of consecutive points; each run
    keeps the positions of its minimum and maximum, and the first and last points are always
    kept. Extremes (the equity peak, the deepest drawdown) therefore survive exactly.

    Returns
    -------
    ndarray of int64
        Sorted unique indices; ``arange(n)`` when n <= `max_points`.
    """
    y = np.asarray(values, dtype=np.float64)
    n = y.shape[0]
    if max_points < 4:
        raise ValueError(f"max_points must be >= 4, got {max_points}")
    if n <= max_points:
        return np.arange(n, dtype=np.int64)
    runs = max_points // 2 - 1
    size = math.ceil(n / runs)
    # Pad with the last value so the runs reshape into a rectangle; padded hits map to n - 1.
    padded = np.concatenate((y, np.full(runs * size - n, y[-1])))
    grid = padded.reshape(runs, size)
    offsets = np.arange(runs, dtype=np.int64) * size
    keep = np.concatenate(([0, n - 1], offsets + np.argmin(grid, axis=1),
                           offsets + np.argmax(grid, axis=1)))
    return np.unique(np.minimum(keep, n - 1))


# --------------------------------------------------------------------------- the report

def write_report(
    path: str | Path,
    *,
    symbol_bars: Mapping[str, object],
    trades: Sequence[Trade],
    equity,
    timestamps,
    metrics: Metrics,
    ledger: Mapping[str, object] | None = None,
    title: str = "Backtest report",
    max_candles: int = 5000,
    max_line_points: int = 4000,
    max_trades: int = 5000,
    problems: Sequence[tuple[str, Mapping]] = (),
    portfolio: PortfolioCurves | None = None,
) -> Path:
    """Write a self-contained HTML report of one backtest.

    The page holds a candlestick chart per symbol with entry/exit markers, the equity curve,
    the drawdown curve, a metrics table, the trade list and the ledger. It needs no network:
    the charting library (TradingView Lightweight Charts, Apache-2.0, attribution in the page)
    and the data are inlined.

    Parameters
    ----------
    path : str or Path
        Output file (overwritten). Parent directories must exist.
    symbol_bars : mapping of str to Bars or mapping of str to array
        Price bars per symbol: `tradesim.data.Bars`, or columns ``timestamp`` (int64 ms since
        the epoch UTC, strictly increasing), ``open``, ``high``, ``low``, ``close`` (quote
        currency) and optionally ``interval_ms``. May be empty.
    trades : sequence of Trade
        Closed trades; markers go on the chart of ``trade.symbol``.
    equity : array_like of float64
        Mark-to-market equity after each bar, quote currency (as given to `compute_metrics`).
    timestamps : array_like of int64
        Bar open times of `equity`, ms since the epoch UTC.
    metrics : Metrics
        From `compute_metrics` on the same run.
    ledger : mapping of str to scalar, optional
        Assumptions and data health (fees, slippage, fill rule, gaps, ...), shown as a table.
    title : str
        Page title.
    max_candles : int, default 5000
        Upper bound on candles per symbol chart; longer series are aggregated.
    max_line_points : int, default 4000
        Upper bound on points of the equity and drawdown lines.
    max_trades : int, default 5000
        Only the first `max_trades` trades get markers and table rows (the page says so);
        export all of them with `trades_to_csv`.
    problems : sequence of (str, dict), optional
        Per runner name, `RunResult.problems()`: a failure reason, first distinct errors and
        rejections, shown in a "Problems" section at the top of the page when any exist.
    portfolio : PortfolioCurves, optional
        The run's portfolio P&L (`BacktestResult.portfolio`, on the same `timestamps`): a
        "Portfolio" section with realised / unrealised P&L and exposure-per-symbol charts, the
        final cash, equity and P&L, exposure per symbol, the settings and the ``risk_limit`` events.

    Returns
    -------
    Path
        The file written.

    Raises
    ------
    ValueError
        If `equity` and `timestamps` differ in length or are empty, `equity` is not finite,
        or a symbol's columns are missing, of different lengths, not finite or not in
        increasing time order.
    """
    path = Path(path)
    equity = np.asarray(equity, dtype=np.float64)
    timestamps = np.asarray(timestamps)
    if equity.ndim != 1 or equity.shape != timestamps.shape or equity.size == 0:
        raise ValueError(f"equity {equity.shape} and timestamps {timestamps.shape} must be "
                         "non-empty 1-D arrays of the same length")
    if not np.isfinite(equity).all():
        raise ValueError("equity holds non-finite values")
    timestamps = timestamps.astype(np.int64)
    trades = list(trades)
    shown = trades[:max_trades]

    symbols = []
    for index, (symbol, bars) in enumerate(symbol_bars.items()):
        cols = _symbol_columns(str(symbol), bars, metrics.interval_ms)
        symbols.append(_symbol_payload(index, str(symbol), cols, shown, max_candles))

    # The equity line starts at the starting cash at the first bar's open; equity[i] is
    # plotted at bar i's close, matching compute_metrics.
    curve = np.concatenate(([metrics.starting_cash], equity))
    times = np.concatenate((timestamps[:1], timestamps + metrics.interval_ms))
    drawdown = drawdown_series(curve) * 100.0
    payload = {
        "symbols": [s["data"] for s in symbols],
        "equity": _line(times, curve, max_line_points),
        "drawdown": _line(times, drawdown, max_line_points),
    }
    if portfolio is not None:
        if len(portfolio.timestamps) != len(timestamps):
            raise ValueError(f"portfolio has {len(portfolio.timestamps)} bars, equity {len(timestamps)}")
        closes = timestamps + metrics.interval_ms   # marked at each bar's close
        payload["portfolio"] = {
            "realised": _line(closes, np.asarray(portfolio.realised, dtype=np.float64), max_line_points),
            "unrealised": _line(closes, np.asarray(portfolio.unrealised, dtype=np.float64), max_line_points),
            "exposure": [{"symbol": str(sym), **_line(closes, np.asarray(v, dtype=np.float64), max_line_points)}
                         for sym, v in portfolio.exposure.items()],
        }

    charts = "\n".join(
        f'<section><h2>{html.escape(s["data"]["symbol"])}</h2>'
        f'<p class="note">{html.escape(s["note"])}</p>'
        f'<p class="note" id="markers-{s["data"]["index"]}"></p>'
        f'<div class="chart price" id="price-{s["data"]["index"]}"></div></section>'
        for s in symbols)
    trade_note = ""
    if len(trades) > len(shown):
        trade_note = (f'<p class="note">Showing the first {len(shown):,} of {len(trades):,} '
                      "trades (table and chart markers); export all with trades_to_csv.</p>")
    # The page, its stylesheet and scripts are package data files in static/.
    page = Template(_static_text("report.html")).substitute(
        license_comment=_license_comment(),
        title=html.escape(title),
        subtitle=html.escape(_subtitle(metrics, list(symbol_bars))),
        metrics_table=_metrics_table(metrics),
        price_charts=charts,
        trade_note=trade_note,
        trades_table=_trades_table(shown),
        ledger_table=_ledger_table(ledger or {}),
        problems=_problems_section(problems),
        portfolio_section=_portfolio_section(portfolio.summary() if portfolio is not None else None),
        lwc_version=LWC_VERSION,
        data_json=_script_json(payload),
        lwc_js=_library_js(),
        css=_static_text("report.css"),
        app_js=_static_text("report.js"),
        error_js=_static_text("report-errors.js"),
    )
    path.write_text(page, encoding="utf-8")
    return path


def _symbol_columns(symbol: str, bars, default_interval: int) -> dict[str, object]:
    get = bars.get if isinstance(bars, Mapping) else lambda name, default=None: getattr(bars, name, default)
    cols: dict[str, object] = {}
    ts = get("timestamp")
    if ts is None:
        raise ValueError(f"symbol_bars[{symbol!r}] has no 'timestamp' column")
    ts = np.asarray(ts)
    if ts.ndim != 1 or not np.issubdtype(ts.dtype, np.integer):
        raise ValueError(f"symbol_bars[{symbol!r}].timestamp must be a 1-D integer array (ms)")
    cols["timestamp"] = ts.astype(np.int64)
    for name in ("open", "high", "low", "close"):
        col = get(name)
        if col is None:
            raise ValueError(f"symbol_bars[{symbol!r}] has no {name!r} column")
        col = np.asarray(col, dtype=np.float64)
        if col.shape != ts.shape:
            raise ValueError(f"symbol_bars[{symbol!r}].{name} has shape {col.shape}, "
                             f"timestamp has {ts.shape}")
        if not np.isfinite(col).all():
            raise ValueError(f"symbol_bars[{symbol!r}].{name} holds non-finite values")
        cols[name] = col
    if ts.size > 1 and (np.diff(ts) <= 0).any():
        raise ValueError(f"symbol_bars[{symbol!r}].timestamp is not strictly increasing")
    interval = get("interval_ms")
    if not interval and ts.size > 1:
        interval = int(np.median(np.diff(ts)))
    cols["interval_ms"] = int(interval or default_interval)
    return cols


# Marker kinds; the page's script maps them to shape, position and colour.
_LONG_ENTRY, _SHORT_ENTRY, _EXIT_WIN, _EXIT_LOSS = 0, 1, 2, 3
# Exit markers carry the exit reason as text only while it stays readable.
_MAX_MARKER_TEXTS = 20


def _symbol_payload(index: int, symbol: str, cols, trades: list[Trade], max_candles: int):
    ts = cols["timestamp"]
    interval = cols["interval_ms"]
    if ts.size:
        bucket = choose_bucket_ms(int(ts[0]), int(ts[-1]), interval, max_candles)
        agg = aggregate_ohlc(ts, cols["open"], cols["high"], cols["low"], cols["close"], bucket)
    else:
        bucket = interval
        agg = aggregate_ohlc(ts, ts, ts, ts, ts, 1)
    candle_s = agg["timestamp"] // 1000
    mine = [t for t in trades if t.symbol == symbol]
    markers = []
    if candle_s.size and mine:
        entry_t = np.array([t.entry_time for t in mine], dtype=np.int64)
        exit_t = np.array([t.exit_time for t in mine], dtype=np.int64)
        # Snap each fill to the candle that contains it (the last candle starting at or before).
        last = candle_s.size - 1
        entry_k = np.clip(np.searchsorted(agg["timestamp"], entry_t, "right") - 1, 0, last)
        exit_k = np.clip(np.searchsorted(agg["timestamp"], exit_t, "right") - 1, 0, last)
        with_text = len(mine) <= _MAX_MARKER_TEXTS
        # At most one entry and one exit marker per candle and kind: several fills inside one
        # aggregated candle are one marker saying how many.
        grouped: dict[tuple[int, int], list[str]] = {}
        for t, ek, xk in zip(mine, entry_k, exit_k):
            grouped.setdefault((int(candle_s[ek]), _LONG_ENTRY if t.side == "long" else _SHORT_ENTRY),
                               []).append(t.side)
            grouped.setdefault((int(candle_s[xk]), _EXIT_WIN if t.pnl > 0 else _EXIT_LOSS),
                               []).append(t.exit_reason)
        for (when, kind), texts in sorted(grouped.items()):
            text = (texts[0] if len(texts) == 1 else f"{len(texts)}x") if with_text else ""
            markers.append([when, kind, text])
    factor = bucket // interval if bucket % interval == 0 else bucket / interval
    if bucket == interval:
        note = f"{ts.size:,} bars of {format_duration(interval)}, shown as they are."
    else:
        note = (f"{ts.size:,} bars of {format_duration(interval)} aggregated into {candle_s.size:,} "
                f"candles of {format_duration(bucket)} ({factor:g} bars each); trade markers sit on "
                "the candle containing the fill.")
    data = {
        "index": index, "symbol": symbol,
        "candles": {"t": candle_s.tolist(), "o": _rounded(agg["open"]), "h": _rounded(agg["high"]),
                    "l": _rounded(agg["low"]), "c": _rounded(agg["close"])},
        "markers": markers,
    }
    return {"data": data, "note": note}


def _line(times_ms: np.ndarray, values: np.ndarray, max_points: int) -> dict[str, list]:
    keep = minmax_indices(values, max_points)
    secs = times_ms[keep] // 1000
    # Bars shorter than a second collapse onto the chart's one-second grid: keep the last.
    if secs.size > 1 and (np.diff(secs) <= 0).any():
        last = np.concatenate((secs[1:] != secs[:-1], [True]))
        keep, secs = keep[last], secs[last]
    return {"t": secs.tolist(), "v": _rounded(values[keep])}


def _rounded(values: np.ndarray, digits: int = 10) -> list[float]:
    """Floats rounded to `digits` significant digits (plenty for a chart, much shorter JSON)."""
    return [float(f"{v:.{digits}g}") for v in np.asarray(values, dtype=np.float64).tolist()]


def _script_json(payload) -> str:
    """JSON safe inside a <script> element: no '<', '>' or '&' can end or confuse it."""
    text = json.dumps(payload, separators=(",", ":"), allow_nan=False, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def _static_text(name: str) -> str:
    return files("tradesim.backtest").joinpath("static", name).read_text(encoding="utf-8")


def _library_js() -> str:
    # The file has no '</script' today; neutralise it anyway so an upgrade cannot break pages.
    return re.sub(r"</(script)", r"<\\/\1", _static_text(_LWC_FILE), flags=re.IGNORECASE)


def _license_comment() -> str:
    text = (f"Embedded: TradingView Lightweight Charts v{LWC_VERSION} "
            "(static/lightweight-charts.standalone.production.js)\n\nNOTICE\n\n"
            + _static_text("NOTICE") + "\nLICENSE\n\n" + _static_text("LICENSE"))
    return "<!--\n" + text.replace("--", "- -") + "\n-->"


# --------------------------------------------------------------------------- tables

def _metrics_table(metrics: Metrics) -> str:
    rows, heading = [], None
    for section, label, key, text in metric_rows(metrics):
        if section != heading:
            heading = section
            rows.append(f'<tr class="section"><th colspan="2">{html.escape(section)}</th></tr>')
        rows.append(f'<tr><td>{html.escape(label)}</td><td class="num" data-metric="{key}">'
                    f"{html.escape(text)}</td></tr>")
    return '<table class="metrics">' + "".join(rows) + "</table>"


_TRADE_COLUMNS = ("#", "Symbol", "Strategy", "Side", "Quantity", "Entry (UTC)", "Entry price",
                  "Exit (UTC)", "Exit price", "Bars", "Net P&L", "Return", "Fees",
                  "Exit reason")


def _trades_table(trades: list[Trade]) -> str:
    if not trades:
        return '<p class="note">No trades.</p>'
    esc = html.escape
    head = "".join(f"<th>{esc(c)}</th>" for c in _TRADE_COLUMNS)
    rows = []
    for i, t in enumerate(trades, start=1):
        cls = "win" if t.pnl > 0 else "loss" if t.pnl < 0 else ""
        reason = esc(t.exit_reason) + (' <span class="flag" title="stop loss and take profit '
                                       'both inside the exit bar">ambiguous</span>'
                                       if t.ambiguous else "")
        rows.append(
            f'<tr class="{cls}"><td class="num">{i}</td><td>{esc(t.symbol)}</td>'
            f"<td>{esc(t.strategy)}</td><td>{esc(t.side)}</td>"
            f'<td class="num">{t.quantity:.8g}</td><td>{format_time(t.entry_time)}</td>'
            f'<td class="num">{t.entry_price:.10g}</td><td>{format_time(t.exit_time)}</td>'
            f'<td class="num">{t.exit_price:.10g}</td><td class="num">{t.exit_bar - t.entry_bar}</td>'
            f'<td class="num">{t.pnl:,.2f}</td><td class="num">{t.return_pct:.2f} %</td>'
            f'<td class="num">{t.fees:,.2f}</td><td>{reason}</td></tr>')
    return (f'<table class="trades"><thead><tr>{head}</tr></thead><tbody>'
            + "".join(rows) + "</tbody></table>")


def _ledger_value(value) -> str:
    if value is None:
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return "yes" if value else "no"
    if isinstance(value, (float, np.floating)):
        return format_number(float(value), ".10g")
    if isinstance(value, (int, np.integer, str)):
        return str(value)
    # Nested entries (gaps per symbol, warm-up per runner) read as "key: value" lines.
    if isinstance(value, Mapping):
        if not value:
            return "—"
        return "; ".join(f"{k}: {_ledger_value(v)}" for k, v in value.items())
    if isinstance(value, (list, tuple)):
        return ", ".join(_ledger_value(v) for v in value) if value else "none"
    return json.dumps(value, default=str, ensure_ascii=False)


def _problems_section(problems: Sequence[tuple[str, Mapping]]) -> str:
    """Failure reasons, first distinct errors and rejections per runner (empty when none)."""
    items = []
    for name, p in problems:
        lines = []
        if p.get("failed"):
            lines.append(f'<li class="failed"><b>FAILED</b>: {html.escape(str(p.get("reason", "")))}</li>')
        for e in p.get("errors", ()):
            lines.append(f"<li>error at bar {format_time(e['time'])} UTC: "
                         f"{html.escape(str(e['kind']))}: {html.escape(str(e['message']))}</li>")
        if p.get("error_count", 0) > len(p.get("errors", ())):
            lines.append(f"<li>{p['error_count']:,} strategy errors in all</li>")
        for x in p.get("rejections", ()):
            lines.append(f"<li>{x['count']:,} &times; rejected {html.escape(str(x['action']))}: "
                         f"{html.escape(str(x['reason']))} (first at bar {format_time(x['first_time'])} UTC)</li>")
        if lines:
            items.append(f"<h3>{html.escape(name)}</h3><ul>{''.join(lines)}</ul>")
    if not items:
        return ""
    return f'<section class="problems" id="problems"><h2>Problems</h2>{"".join(items)}</section>'


def _money(value) -> str:
    return "—" if value is None else format_number(float(value), ",.2f")


def _portfolio_section(portfolio: Mapping | None) -> str:
    """P&L, exposure per symbol, settings and risk_limit events of the portfolio (empty when none)."""
    if not portfolio:
        return ""
    esc = html.escape
    pnl = "".join(f'<tr><td>{esc(label)}</td><td class="num" data-portfolio="{key}">'
                  f"{_money(portfolio.get(key))}</td></tr>"
                  for label, key in (("Starting cash", "starting_cash"), ("Cash", "cash"),
                                     ("Equity", "equity"), ("Realised P&L", "realised_pnl"),
                                     ("Unrealised P&L", "unrealised_pnl")))
    exposure = "".join(
        f'<tr><td>{esc(str(symbol))}</td><td class="num">{_money(x.get("final"))}</td>'
        f'<td class="num">{_money(x.get("max_abs"))}</td>'
        f'<td class="num">{100.0 * float(x.get("time_in_market") or 0.0):.1f} %</td></tr>'
        for symbol, x in (portfolio.get("exposure") or {}).items())
    settings = "; ".join(f"{k}: {_ledger_value(v)}" for k, v in (portfolio.get("config") or {}).items())
    events = portfolio.get("risk_events") or []
    count = int(portfolio.get("risk_event_count") or len(events))
    if events:
        rows = "".join(
            f'<tr class="risk-event"><td>{format_time(e.get("timestamp"))}</td><td>{esc(str(e.get("scope", "")))}</td>'
            f'<td>{esc(str(e.get("symbol", "") or "all"))}</td><td>{esc(str(e.get("limit", "")))}</td>'
            f'<td class="num">{format_number(float(e.get("threshold", float("nan"))), ".6g")}</td>'
            f'<td class="num">{format_number(float(e.get("value", float("nan"))), ".6g")}</td>'
            f'<td>{esc(str(e.get("action", "")))}</td></tr>' for e in events)
        shown = f" (the first {len(events):,} of {count:,})" if count > len(events) else ""
        events_html = (f'<h3>Risk limit events{shown}</h3><div class="scroll"><table class="risk-events">'
                       "<thead><tr><th>Bar (UTC)</th><th>Scope</th><th>Symbol</th><th>Limit</th>"
                       "<th>Threshold</th><th>Value</th><th>Action</th></tr></thead>"
                       f"<tbody>{rows}</tbody></table></div>")
    else:
        events_html = '<p class="note">No risk limit was breached.</p>'
    return ('<section class="portfolio" id="portfolio"><h2>Portfolio</h2>'
            f'<p class="note">Settings: {esc(settings) or "defaults"}</p>'
            f'<table class="metrics">{pnl}</table>'
            '<h3>Realised and unrealised P&amp;L</h3><div class="chart small" id="pnl"></div>'
            '<h3>Exposure per symbol (signed position value)</h3><div class="chart small" id="exposure"></div>'
            '<h3>Exposure per symbol</h3><table class="exposure"><thead><tr><th>Symbol</th>'
            "<th>Final</th><th>Largest (abs)</th><th>Time in market</th></tr></thead>"
            f"<tbody>{exposure}</tbody></table>{events_html}</section>")


def _ledger_table(ledger: Mapping[str, object]) -> str:
    if not ledger:
        return '<p class="note">No ledger entries.</p>'
    rows = "".join(f"<tr><td>{html.escape(str(k))}</td><td>{html.escape(_ledger_value(v))}</td></tr>"
                   for k, v in ledger.items())
    return f'<table class="ledger">{rows}</table>'


def _subtitle(metrics: Metrics, symbols: list) -> str:
    names = ", ".join(str(s) for s in symbols) or "no symbols"
    return (f"{names} · {format_time(metrics.start_time)} → {format_time(metrics.end_time)} UTC · "
            f"{metrics.n_bars:,} bars of {format_duration(metrics.interval_ms)}")



