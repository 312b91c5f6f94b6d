"""`tradesim download` against a loopback fake Binance REST (tests/catalog/fake_rest.py) serving real klines.

The reference is the source CSV read by `tradesim.data.load_bars` (a separate
reader from the REST path): downloads must equal it exactly through rate
limits, server errors, timeouts, bad pages, gaps, the end of history and a
SIGKILL mid-run. No test sleeps: waits go through an injected ``sleep`` that
records them, and a "timeout" is a request the server never answers.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from tradesim.catalog import Catalog, CatalogError
from tradesim.catalog.download import Downloader, DownloadError
from tradesim.data import load_bars
from tradesim.timeframes import parse_time

sys.path.insert(0, str(Path(__file__).resolve().parent))
from fake_rest import BTC_FILE, ETH_FILE, FakeRest  # noqa: E402

pytestmark = pytest.mark.skipif(not BTC_FILE.exists(), reason=f"real market data not found at {BTC_FILE}")

REPO = Path(__file__).resolve().parents[2]
IV = 60_000
# Six days across a month boundary: 8,640 1m bars, nine 1000-bar request windows.
START, END = parse_time("2025-07-28"), parse_time("2025-08-03")
AUG = parse_time("2025-08-01")
FIELDS = ("timestamp", "open", "high", "low", "close", "volume")


@pytest.fixture(scope="module")
def source():
    return load_bars(BTC_FILE)


@pytest.fixture
def server():
    with FakeRest({"BTCUSDT": BTC_FILE}) as srv:
        yield srv


NOW = time.time()  # a fixed clock: the weight budget's minute cannot roll over mid-test


def _downloader(catalog, server, **kw):
    slept: list[float] = []
    # A "timeout" fault is never answered; 2 s keeps slow-but-healthy answers on a loaded machine in time.
    kw.setdefault("timeout", 2.0)
    dl = Downloader(catalog, rest_url=server.url, sleep=slept.append, clock=lambda: NOW, backoff=(0.01, 0.05),
                    **kw)
    return dl, slept


def _assert_same(got, want):
    assert len(got) == len(want)
    for name in FIELDS:
        assert np.array_equal(getattr(got, name), getattr(want, name)), name


def test_download_equals_source(tmp_path, server, source):
    cat = Catalog(tmp_path)
    dl, _ = _downloader(cat, server)
    with dl:
        result = dl.download("BTCUSDT", "1m", START, END)
    want = source.slice(START, END)
    _assert_same(cat.load("BTCUSDT", "1m", START, END), want)
    assert result.bars == len(want) == 8640
    assert result.months_written == ["2025-07", "2025-08"]
    assert result.requests == 9 == len(server.log)
    assert cat.verify() == []
    assert cat.gaps() == []


@pytest.mark.parametrize("workers", [1, 4])
def test_faults_are_retried_and_bars_still_equal(tmp_path, server, source, workers):
    server.faults = ["weight", ("429", "0"), ("418", "1"), "500", "503", "timeout", "truncated", "dup", "badohlc"]
    cat = Catalog(tmp_path)
    dl, slept = _downloader(cat, server, workers=workers, max_attempts=10)
    with dl:
        result = dl.download("BTCUSDT", "1m", START, END)
    _assert_same(cat.load("BTCUSDT", "1m", START, END), source.slice(START, END))
    assert result.rate_limited == 2
    # 500, 503, timeout, truncated, dup, badohlc (more only if a healthy answer took > 2 s)
    assert result.retries >= 6
    assert result.weight_waits == 1      # the answer saying 5990 of 6000 used
    assert result.requests == 9 + 2 + result.retries  # every fault but "weight" costs one more request
    # Retry-After is honoured as sent (0 and 1 s); the backoffs stay within (0, 0.05] s.
    assert 0.0 in slept and 1.0 in slept
    weight_wait = [s for s in slept if s > 1.0]
    assert len(weight_wait) == 1 and weight_wait[0] <= 60.5


def test_retries_exhausted_is_an_error_and_nothing_is_written(tmp_path, server):
    server.faults = ["500"] * 3
    cat = Catalog(tmp_path)
    dl, _ = _downloader(cat, server, max_attempts=3, workers=1)
    with dl, pytest.raises(DownloadError, match="HTTP 500"):
        dl.download("BTCUSDT", "1m", START, END)
    assert cat.coverage() == []


def test_long_ban_is_an_error(tmp_path, server):
    server.faults = [("418", "86400")]
    dl, slept = _downloader(Catalog(tmp_path), server, workers=1)
    with dl, pytest.raises(DownloadError, match="418.*86400"):
        dl.download("BTCUSDT", "1m", START, END)
    assert slept == []


def test_client_error_is_not_retried(tmp_path, server):
    dl, _ = _downloader(Catalog(tmp_path), server, workers=1)
    with dl, pytest.raises(DownloadError, match="HTTP 400.*Invalid symbol"):
        dl.download("NOSUCHCOIN", "1m", START, END)
    assert len(server.log) == 1


def test_gap_is_recorded_never_filled(tmp_path, server, source):
    hole = list(range(parse_time("2025-07-30T10:00"), parse_time("2025-07-30T10:30"), IV))
    server.drop = set(hole)
    cat = Catalog(tmp_path)
    dl, _ = _downloader(cat, server)
    with dl:
        dl.download("BTCUSDT", "1m", START, END)
    want = source.slice(START, END)
    keep = ~np.isin(want.timestamp, hole)
    got = cat.load("BTCUSDT", "1m", START, END)
    assert len(got) == len(want) - 30
    for name in FIELDS:
        assert np.array_equal(getattr(got, name), getattr(want, name)[keep])
    [gap] = cat.gaps()
    assert (gap.start, gap.end, gap.bars) == (hole[0], hole[-1] + IV, 30)
    assert cat.verify() == []


def test_end_of_history_becomes_a_gap_and_is_not_asked_again(tmp_path, server, source):
    end = parse_time("2025-09-01")
    cat = Catalog(tmp_path)
    dl, _ = _downloader(cat, server)
    with dl:
        dl.download("BTCUSDT", "1m", AUG, end)
    last = int(source.timestamp[-1])
    _assert_same(cat.load("BTCUSDT", "1m", AUG, end), source.slice(AUG, end))
    [gap] = cat.gaps()
    assert (gap.start, gap.end) == (last + IV, end)  # the empty pages after the last kline
    asked = len(server.log)
    with dl:
        again = dl.download("BTCUSDT", "1m", AUG, end)
    assert again.requests == 0 and len(server.log) == asked
    assert again.months_skipped == ["2025-08"]


def test_second_run_asks_only_for_what_is_missing(tmp_path, server, source):
    cat = Catalog(tmp_path)
    dl, _ = _downloader(cat, server)
    with dl:
        dl.download("BTCUSDT", "1m", START, END)
        n = len(server.log)
        assert dl.download("BTCUSDT", "1m", START, END).requests == 0
        assert len(server.log) == n
        wider = dl.download("BTCUSDT", "1m", parse_time("2025-07-25"), parse_time("2025-08-05"))
    new = server.log[n:]
    assert new and all(not (START <= q["startTime"] < END) for q in new)
    assert wider.bars == 5 * 1440   # 3 days before, 2 after
    _assert_same(cat.load("BTCUSDT", "1m"), source.slice(parse_time("2025-07-25"), parse_time("2025-08-05")))
    assert cat.verify() == []


def test_recent_missing_tail_is_left_uncovered(tmp_path, server, source):
    """A tail the exchange has not published yet (less than 10 min old) is asked again, not a gap."""
    last = int(source.timestamp[-1])
    now = (last + 3 * IV) / 1000  # the clock says the last 2 bars have closed but REST has none of them
    cat = Catalog(tmp_path)
    dl = Downloader(cat, rest_url=server.url, sleep=lambda s: None, clock=lambda: now)
    with dl:
        dl.download("BTCUSDT", "1m", parse_time("2025-08-18"))
    assert cat.gaps() == []
    assert cat.covered("BTCUSDT", "1m")["2025-08"] == (parse_time("2025-08-18"), last + IV)


def test_two_symbols_and_bad_interval(tmp_path, source):
    with FakeRest({"BTCUSDT": BTC_FILE, "ETHUSDT": ETH_FILE}) as srv:
        cat = Catalog(tmp_path)
        dl, _ = _downloader(cat, srv)
        with dl:
            for s in ("BTCUSDT", "ethusdt"):
                dl.download(s, "1m", START, AUG)
            with pytest.raises(CatalogError, match="interval '1M'"):
                dl.download("BTCUSDT", "1M", START, AUG)
    assert [s for s, _ in cat.series()] == ["BTCUSDT", "ETHUSDT"]
    _assert_same(cat.load("ETHUSDT", "1m"), load_bars(ETH_FILE).slice(START, AUG))


_WITH_CTRL_C = ("import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
                "from tradesim.cli import main; sys.exit(main())")


@pytest.mark.parametrize("sig", [signal.SIGKILL, signal.SIGINT])
def test_killed_mid_run_leaves_no_partial_month_and_resumes(tmp_path, server, source, sig):
    """SIGKILL or Ctrl-C while August is being fetched: July stays, August is invisible; the rerun asks
    only for August."""
    server.block_at = AUG  # hold the first August request until the process is dead
    env = {**os.environ, "TRADESIM_CATALOG": str(tmp_path)}
    # Python leaves SIGINT ignored when it starts with it ignored (as a job sent to the background by a
    # non-interactive shell does): the child sets Ctrl-C's usual handler itself, so the test runs the same
    # from a terminal or from a background job.
    proc = subprocess.Popen([sys.executable, "-c", _WITH_CTRL_C, "download", "--symbol", "BTCUSDT",
                             "--interval", "1m", "--start", str(START), "--end", str(END), "--timeout", "1",
                             "--rest-url", server.url], env=env, cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        assert server.blocked.wait(120), "the downloader never reached August"
        proc.send_signal(sig)
        # Ctrl-C: click reports "Aborted!" and exits 1 once the requests in flight time out (1 s).
        assert proc.wait(60) == (-signal.SIGKILL if sig == signal.SIGKILL else 1)
    finally:
        if proc.poll() is None:
            proc.kill()
    cat = Catalog(tmp_path)
    assert list(cat.covered("BTCUSDT", "1m")) == ["2025-07"]
    with pytest.raises(CatalogError, match="no BTCUSDT 1m bars"):
        cat.load("BTCUSDT", "1m", AUG, END)
    assert all(p.message.startswith("temporary file") for p in cat.verify())
    july_requests = len(server.requests_in(START, AUG))
    server.release.set()

    dl, _ = _downloader(cat, server)
    with dl:
        result = dl.download("BTCUSDT", "1m", START, END)
    assert result.months_skipped == ["2025-07"] and result.months_written == ["2025-08"]
    assert len(server.requests_in(START, AUG)) == july_requests  # July was not asked again
    _assert_same(cat.load("BTCUSDT", "1m", START, END), source.slice(START, END))


def test_cli_download_then_backtest_from_catalog_equals_backtest_from_file(tmp_path, server, source):
    from click.testing import CliRunner

    from tradesim.cli import main

    runner = CliRunner()
    cat = str(tmp_path / "cat")
    r = runner.invoke(main, ["download", "--symbol", "BTCUSDT", "--start", "2025-07-28", "--end", "2025-08-03",
                             "--rest-url", server.url, "--catalog", cat])
    assert r.exit_code == 0, r.output
    assert "8,640 bars" in r.output
    r = runner.invoke(main, ["download", "--symbol", "BTCUSDT", "--start", "2025-07-28", "--end", "2025-08-03",
                             "--rest-url", server.url, "--catalog", cat, "--json"])
    assert r.exit_code == 0, r.output
    import json

    assert json.loads(r.output)["results"][0]["requests"] == 0
    strategy = str(REPO / "lua-strategies" / "examples" / "ema_crossover.lua")
    common = ["backtest", "--strategy", strategy, "--from", "2025-07-29", "--to", "2025-08-02", "--json"]
    from_file = runner.invoke(main, [*common, "--data", str(BTC_FILE)])
    from_cat = runner.invoke(main, [*common, "--symbol", "BTCUSDT", "--interval", "1m", "--catalog", cat])
    assert from_file.exit_code == 0 and from_cat.exit_code == 0, from_cat.output
    a, b = json.loads(from_file.output), json.loads(from_cat.output)
    assert a["metrics"] == b["metrics"] and a["trades"] == b["trades"]
    assert a["ledger"]["bars_processed"] == b["ledger"]["bars_processed"] == 4 * 1440


def test_retry_after_is_waited_once_on_a_moving_clock(tmp_path, server, source):
    """A clock that moves only when the downloader sleeps: Retry-After 5 costs exactly one 5 s wait."""
    now = [NOW]
    slept: list[float] = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    server.faults = [("429", "5")]
    cat = Catalog(tmp_path)
    with Downloader(cat, rest_url=server.url, sleep=sleep, clock=lambda: now[0], workers=1) as dl:
        result = dl.download("BTCUSDT", "1m", START, AUG)
    assert slept == [5.0] and result.rate_limited == 1
    _assert_same(cat.load("BTCUSDT", "1m"), source.slice(START, AUG))
