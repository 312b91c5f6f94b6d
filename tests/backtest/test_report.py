"""The self-contained HTML report: offline, small, escaped, OHLC-correct downsampling, and a
headless Chromium render (skipped when chromium is not installed; CI installs the Debian
package ``chromium``)."""

import json
import re
from html.parser import HTMLParser

import numpy as np
import pytest

from tradesim.backtest import Trade, compute_metrics, write_report
from tradesim.backtest.report import aggregate_ohlc, choose_bucket_ms, minmax_indices
from tradesim.data import Bars

MINUTE = 60_000
T0 = 1_747_699_200_000  # 2025-05-20 00:00 UTC
EVIL = "<script>alert('x')</script>"


def synthetic_run(n=130_000, n_trades=500, seed=11, strategy="ema_cross", reason="signal"):
    """n 1-minute bars of a random walk, trades at random bars, and an equity curve."""
    rng = np.random.default_rng(seed)
    ts = T0 + np.arange(n, dtype=np.int64) * MINUTE
    close = 60_000.0 * np.exp(np.cumsum(rng.normal(0, 8e-4, n)))
    open_ = np.concatenate(([close[0]], close[:-1]))
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 3e-4, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 3e-4, n)))
    bars = {"timestamp": ts, "open": open_, "high": high, "low": low, "close": close}
    trades = []
    hold = min(400, n // 5)  # longest holding period, bars
    entries = np.sort(rng.choice(n - hold, n_trades, replace=False))
    for i, e in enumerate(entries):
        x = int(e + rng.integers(1, hold))
        side = "long" if i % 3 else "short"
        sign = 1.0 if side == "long" else -1.0
        fees = 0.001 * 0.05 * (close[e] + close[x])
        trades.append(Trade("BTCUSDT", strategy, side, 0.05, int(ts[e]), float(close[e]),
                            int(ts[x]), float(close[x]),
                            float(sign * 0.05 * (close[x] - close[e]) - fees), float(fees),
                            reason if i % 2 else "take_profit", i % 40 == 0, int(e), x))
    equity = 10_000.0 + np.cumsum(rng.normal(0.02, 2.0, n))
    metrics = compute_metrics(equity, ts, trades, interval_ms=MINUTE, starting_cash=10_000.0)
    return bars, trades, equity, ts, metrics


def make_report(path, run, **kwargs):
    bars, trades, equity, ts, metrics = run
    args = {"symbol_bars": {"BTCUSDT": bars}, "trades": trades, "equity": equity,
            "timestamps": ts, "metrics": metrics, "title": "BTCUSDT ema_cross",
            "ledger": {"fee_bps": 10.0, "slippage_bps": 2, "fill": "next bar open",
                       "gaps": 0, "sl_tp_same_bar": "stop loss first"}}
    args.update(kwargs)
    return write_report(path, **args)


@pytest.fixture(scope="module")
def big_report(tmp_path_factory):
    """The 130k-bar, 500-trade report every size and render check looks at."""
    run = synthetic_run()
    path = make_report(tmp_path_factory.mktemp("report") / "report.html", run)
    return path, run


class TagCollector(HTMLParser):
    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.tags = []  # (tag, attrs)
        self.scripts = []  # (attrs, text)
        self._in_script = None

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        if tag == "script":
            self._in_script = (dict(attrs), [])

    def handle_data(self, data):
        if self._in_script is not None:
            self._in_script[1].append(data)

    def handle_endtag(self, tag):
        if tag == "script" and self._in_script is not None:
            self.scripts.append((self._in_script[0], "".join(self._in_script[1])))
            self._in_script = None


def parse(path):
    parser = TagCollector()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


# --------------------------------------------------------------------------- file checks

def test_report_is_self_contained(big_report):
    path, _ = big_report
    page = parse(path)
    for tag, attrs in page.tags:
        if tag == "a":  # the TradingView attribution link is a link, not a resource
            continue
        for name in ("src", "href", "srcset", "data", "action", "poster"):
            assert name not in attrs, f"<{tag} {name}={attrs[name]!r}> loads an external resource"
    assert [attrs.get("src") for attrs, _ in page.scripts] == [None] * 4
    text = path.read_text(encoding="utf-8")
    assert "@import" not in text and not re.search(r"url\(\s*['\"]?(https?:)?//", text)
    # Library inlined, with its license and attribution.
    assert "TradingView Lightweight Charts" in text and "Apache License" in text
    assert any("createChart" in body for _, body in page.scripts)
    assert "Content-Security-Policy" in text and "default-src 'none'" in text


def test_report_for_130k_bars_is_under_3_mb(big_report):
    path, _ = big_report
    size = path.stat().st_size
    assert size < 3_000_000, f"{size:,} bytes"


def report_data(path):
    (_, body), = [(a, b) for a, b in parse(path).scripts if a.get("id") == "report-data"]
    return json.loads(body)


def test_candles_are_aggregated_and_markers_snapped(big_report):
    path, (bars, trades, _, _, metrics) = big_report
    data = report_data(path)
    (symbol,) = data["symbols"]
    candles = symbol["candles"]
    assert 1000 < len(candles["t"]) <= 5000
    width = candles["t"][1] - candles["t"][0]
    assert width == 1800  # 130k minutes into 30-minute candles (seconds on the chart)
    times = set(candles["t"])
    assert all(m[0] in times for m in symbol["markers"])
    # One marker per candle and kind (entry long/short, exit win/loss), however many fills it holds.
    def candle(ms):
        return (ms // 1_800_000) * 1800
    expected = {(candle(t.entry_time), 0 if t.side == "long" else 1) for t in trades} | \
        {(candle(t.exit_time), 2 if t.pnl > 0 else 3) for t in trades}
    assert sorted((m[0], m[1]) for m in symbol["markers"]) == sorted(expected)
    assert [m[0] for m in symbol["markers"]] == sorted(m[0] for m in symbol["markers"])
    # Lines are decimated but keep their extremes.
    assert len(data["equity"]["t"]) <= 4000 and len(data["drawdown"]["t"]) <= 4000
    assert metrics.max_drawdown < 0
    assert min(data["drawdown"]["v"]) == pytest.approx(100 * metrics.max_drawdown, rel=1e-9)
    assert max(data["equity"]["v"]) == pytest.approx(
        max(metrics.starting_cash, *big_report[1][2]), rel=1e-9)


def test_text_from_data_is_escaped(tmp_path):
    run = synthetic_run(n=3000, n_trades=20, strategy=EVIL, reason="</script><b>x</b>")
    path = make_report(tmp_path / "r.html", run, title=EVIL,
                       ledger={EVIL: EVIL, "note": "a & b", "none": None, "flag": True})
    text = path.read_text(encoding="utf-8")
    assert "alert('x')</script>" not in text
    assert "<b>x</b>" not in text
    assert "&lt;script&gt;alert(&#x27;x&#x27;)&lt;/script&gt;" in text
    assert "a &amp; b" in text
    page = parse(path)
    assert len(page.scripts) == 4  # error hook, data, library, app: nothing injected
    assert not any(tag == "b" for tag, _ in page.tags)
    # The JSON survives the escaping intact: marker texts are the original strings.
    texts = {m[2] for m in report_data(path)["symbols"][0]["markers"]}
    assert "</script><b>x</b>" in texts


def test_accepts_bars_objects_and_truncates_long_trade_lists(tmp_path):
    bars, trades, equity, ts, metrics = synthetic_run(n=2000, n_trades=30)
    obj = Bars(symbol="BTCUSDT", timestamp=bars["timestamp"], open=bars["open"],
               high=bars["high"], low=bars["low"], close=bars["close"], volume=np.ones(2000),
               source="", interval_ms=MINUTE)
    path = make_report(tmp_path / "r.html", (bars, trades, equity, ts, metrics),
                       symbol_bars={"BTCUSDT": obj}, max_trades=10)
    text = path.read_text(encoding="utf-8")
    assert "Showing the first 10 of 30 trades" in text
    markers = report_data(path)["symbols"][0]["markers"]
    # markers of the 10 trades shown only (one per bar and kind)
    shown = trades[:10]
    expected = {(t.entry_time // 1000, 0 if t.side == "long" else 1) for t in shown} | \
        {(t.exit_time // 1000, 2 if t.pnl > 0 else 3) for t in shown}
    assert sorted((m[0], m[1]) for m in markers) == sorted(expected)
    assert text.count('<tr class="win">') + text.count('<tr class="loss">') <= 10


def test_metrics_table_shows_nan_and_inf_readably(tmp_path):
    ts = T0 + np.arange(3, dtype=np.int64) * MINUTE
    win = Trade("X", "s", "long", 1.0, int(ts[0]), 10.0, int(ts[1]), 11.0, 0.9, 0.1, "signal",
                False, 0, 1)
    metrics = compute_metrics([100.0, 100.0, 100.0], ts, [win], interval_ms=MINUTE,
                              starting_cash=100.0)
    path = write_report(tmp_path / "r.html", symbol_bars={}, trades=[win],
                        equity=[100.0, 100.0, 100.0], timestamps=ts, metrics=metrics, ledger={})
    text = path.read_text(encoding="utf-8")
    assert re.search(r'data-metric="sharpe">n/a<', text)
    assert re.search(r'data-metric="profit_factor">∞<', text)


def test_sub_second_bars_give_strictly_increasing_chart_times(tmp_path):
    # The chart's time axis counts whole seconds; 250 ms bars must not produce duplicates.
    n = 2000
    ts = T0 + np.arange(n, dtype=np.int64) * 250
    close = 100 + np.cumsum(np.random.default_rng(2).normal(0, 0.1, n))
    bars = {"timestamp": ts, "open": close, "high": close + 0.1, "low": close - 0.1, "close": close}
    metrics = compute_metrics(close * 10, ts, [], interval_ms=250, starting_cash=1000.0)
    path = write_report(tmp_path / "r.html", symbol_bars={"X": bars}, trades=[], equity=close * 10,
                        timestamps=ts, metrics=metrics)
    data = report_data(path)
    for times in (data["symbols"][0]["candles"]["t"], data["equity"]["t"], data["drawdown"]["t"]):
        assert (np.diff(times) > 0).all()


def test_trades_of_symbols_without_bars_are_listed_without_markers(tmp_path):
    bars, trades, equity, ts, metrics = synthetic_run(n=2000, n_trades=10)
    other = Trade("ETHUSDT", "s", "long", 1.0, int(ts[5]), 3000.0, int(ts[9]), 3010.0, 9.0, 1.0,
                  "signal", False, 5, 9)
    path = make_report(tmp_path / "r.html", (bars, trades + [other], equity, ts, metrics))
    assert "<td>ETHUSDT</td>" in path.read_text(encoding="utf-8")
    markers = report_data(path)["symbols"][0]["markers"]
    # the BTCUSDT trades' markers only (one per bar and kind)
    expected = {(t.entry_time // 1000, 0 if t.side == "long" else 1) for t in trades} | \
        {(t.exit_time // 1000, 2 if t.pnl > 0 else 3) for t in trades}
    assert sorted((m[0], m[1]) for m in markers) == sorted(expected)


def test_rejects_mismatched_inputs(tmp_path):
    bars, trades, equity, ts, metrics = synthetic_run(n=500, n_trades=5)
    with pytest.raises(ValueError, match="same length"):
        make_report(tmp_path / "r.html", (bars, trades, equity[:-1], ts, metrics))
    with pytest.raises(ValueError, match="non-finite"):
        make_report(tmp_path / "r.html", (bars, trades, np.where(ts == ts[7], np.nan, equity),
                                          ts, metrics))
    broken = dict(bars, high=bars["high"][:-1])
    with pytest.raises(ValueError, match="high"):
        make_report(tmp_path / "r.html", (broken, trades, equity, ts, metrics))


# --------------------------------------------------------------------------- downsampling

def reference_aggregate(ts, o, h, l, c, width):
    """Direct per-bucket numpy computation (masks), independent of reduceat."""
    keys = ts // width
    out = {k: [] for k in ("timestamp", "open", "high", "low", "close")}
    for key in np.unique(keys):
        sel = np.flatnonzero(keys == key)
        out["timestamp"].append(key * width)
        out["open"].append(o[sel[0]])
        out["high"].append(h[sel].max())
        out["low"].append(l[sel].min())
        out["close"].append(c[sel[-1]])
    return {k: np.array(v) for k, v in out.items()}


@pytest.mark.parametrize("width", [MINUTE, 5 * MINUTE, 30 * MINUTE, 7 * MINUTE, 86_400_000])
def test_aggregate_ohlc_matches_direct_computation(width):
    rng = np.random.default_rng(5)
    n = 4000
    # Irregular timestamps with gaps, not aligned to the bucket start.
    ts = T0 + 13_000 + np.cumsum(rng.choice([1, 1, 1, 2, 9], n)).astype(np.int64) * MINUTE
    c = 100 + np.cumsum(rng.normal(0, 1, n))
    o = c + rng.normal(0, 0.5, n)
    h = np.maximum(o, c) + rng.random(n)
    l = np.minimum(o, c) - rng.random(n)
    got = aggregate_ohlc(ts, o, h, l, c, width)
    ref = reference_aggregate(ts, o, h, l, c, width)
    for key in ref:
        np.testing.assert_array_equal(got[key], ref[key], err_msg=key)
    assert (got["high"] >= np.maximum(got["open"], got["close"])).all()
    assert (got["low"] <= np.minimum(got["open"], got["close"])).all()
    np.testing.assert_array_equal(ts[got["first"]] // width, got["timestamp"] // width)


def test_aggregate_ohlc_identity_when_bucket_is_the_interval():
    ts = T0 + np.arange(10, dtype=np.int64) * MINUTE
    x = np.arange(10, dtype=float)
    got = aggregate_ohlc(ts, x, x + 1, x - 1, x + 0.5, MINUTE)
    np.testing.assert_array_equal(got["timestamp"], ts)
    np.testing.assert_array_equal(got["close"], x + 0.5)


@pytest.mark.parametrize("n, interval, limit", [
    (130_000, MINUTE, 5000), (1_000_000, MINUTE, 5000), (3000, MINUTE, 5000),
    (50_000, 1000, 2000), (10_000, 90_000, 500), (100, 250, 50), (200_000, 3_600_000, 10_000),
])
def test_bucket_choice_bounds_the_candle_count(n, interval, limit):
    ts = T0 + 7 * interval + np.arange(n, dtype=np.int64) * interval
    width = choose_bucket_ms(int(ts[0]), int(ts[-1]), interval, limit)
    assert width % interval == 0 and width >= 1000
    assert len(np.unique(ts // width)) <= limit
    if n <= limit - 2 and interval >= 1000 and interval in (1000, MINUTE, 3_600_000):
        assert width == interval  # short series stay unaggregated


def test_minmax_indices_keep_extremes_and_ends():
    rng = np.random.default_rng(3)
    y = np.cumsum(rng.normal(0, 1, 100_003))
    keep = minmax_indices(y, 4000)
    assert len(keep) <= 4000
    assert keep[0] == 0 and keep[-1] == len(y) - 1
    assert (np.diff(keep) > 0).all()
    assert y[keep].max() == y.max() and y[keep].min() == y.min()
    np.testing.assert_array_equal(minmax_indices(y[:50], 4000), np.arange(50))


# --------------------------------------------------------------------------- headless render

def test_chromium_renders_all_charts(big_report, render_page):
    path, _ = big_report
    attrs = render_page(path)
    assert "data-error" not in attrs, attrs["data-error"]
    assert attrs.get("data-rendered") == "ok", attrs
    # One price chart, the equity and the drawdown chart; each has several canvases.
    assert int(attrs["data-canvases"]) >= 3
    assert int(attrs["data-painted"]) >= 3
    data = report_data(path)
    expected = len(data["symbols"][0]["candles"]["t"]) + len(data["equity"]["t"]) + len(data["drawdown"]["t"])
    assert int(attrs["data-points"]) == expected
    # ~1,000 markers over the whole range would bury the candles: hidden until zoomed in.
    assert attrs.get("data-markers-0") == "hidden"
    # the 500-row trades table and the ledger fit the window (they scroll or wrap)
    assert attrs.get("data-page-overflow") == "false"


def test_chromium_shows_markers_when_few_are_in_view(tmp_path, render_page):
    run = synthetic_run(n=2_000, n_trades=20)
    path = make_report(tmp_path / "few.html", run)
    attrs = render_page(path)
    assert "data-error" not in attrs and attrs.get("data-rendered") == "ok"
    assert attrs.get("data-markers-0") == "shown"


def test_chromium_renders_a_report_without_symbols_or_trades(tmp_path, render_page):
    ts = T0 + np.arange(500, dtype=np.int64) * MINUTE
    equity = 100.0 + np.sin(np.arange(500) / 20.0)
    metrics = compute_metrics(equity, ts, [], interval_ms=MINUTE, starting_cash=100.0)
    path = write_report(tmp_path / "r.html", symbol_bars={}, trades=[], equity=equity,
                        timestamps=ts, metrics=metrics, ledger={})
    attrs = render_page(path)
    assert "data-error" not in attrs and attrs.get("data-rendered") == "ok"
    assert int(attrs["data-painted"]) >= 2


def test_chromium_check_detects_a_script_error(tmp_path, render_page):
    # Negative control: the render check must notice when the page's script fails.
    bars, trades, equity, ts, metrics = synthetic_run(n=500, n_trades=3)
    path = make_report(tmp_path / "r.html", (bars, trades, equity, ts, metrics))
    text = path.read_text(encoding="utf-8")
    path.write_text(text.replace('chart.addSeries(LWC.CandlestickSeries',
                                 'chart.addSeries(LWC.NoSuchSeries'), encoding="utf-8")
    attrs = render_page(path)
    assert "data-error" in attrs and attrs.get("data-rendered") != "ok"
