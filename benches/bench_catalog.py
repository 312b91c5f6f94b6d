"""Catalog: download throughput from a loopback fake Binance REST, and loading a month (Parquet vs CSV.gz).

Run: pytest benches/bench_catalog.py --benchmark-only

The fake server (tests/catalog/fake_rest.py) runs in its own process so the
downloader's parsing and writing are not sharing a GIL with it. Targets
(docs/catalog.md): >= 200,000 bars/s written to the catalog, and a month of 1m
bars loads faster from the catalog than from the Binance CSV.gz.
"""

import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
FAKE = REPO / "tests" / "catalog" / "fake_rest.py"
BTC = REPO.parent / "shared" / "data" / "binance" / "klines" / "1m" / "BTCUSDT-1m-2025-05-20_2025-08-18.csv.gz"
JUNE = (1748736000000, 1751328000000)  # 2025-06-01 .. 2025-07-01 UTC


@pytest.fixture(scope="module")
def server():
    if not BTC.exists():
        pytest.skip(f"real data not found at {BTC}")
    proc = subprocess.Popen([sys.executable, str(FAKE)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    url = proc.stdout.readline().strip()
    yield url
    proc.stdin.close()
    proc.wait(30)


def test_download_bars_per_s(benchmark, server, tmp_path):
    """Two full months (2025-06, 2025-07: 87,840 1m bars) from the loopback REST into a fresh catalog."""
    from tradesim.catalog import Catalog
    from tradesim.catalog.download import Downloader

    runs = iter(range(1000))
    cpu: list[float] = []

    def run():
        c = time.process_time()
        with Downloader(Catalog(tmp_path / str(next(runs))), rest_url=server) as dl:
            result = dl.download("BTCUSDT", "1m", JUNE[0], 1754006400000)
        cpu.append(time.process_time() - c)
        return result

    result = benchmark.pedantic(run, rounds=5, iterations=1, warmup_rounds=1)
    assert result.bars == 87_840
    stats = getattr(benchmark, "stats", None)
    if stats is not None and getattr(stats, "stats", None) is not None:
        benchmark.extra_info["bars_per_s"] = round(result.bars / stats.stats.median)
        benchmark.extra_info["target_bars_per_s"] = 200_000
        # The downloader's own CPU (this process; the server runs in another): bars per CPU second,
        # which a loaded machine disturbs less than the wall clock.
        benchmark.extra_info["bars_per_cpu_s"] = round(result.bars / float(np.median(cpu)))


def _month_from_csv():
    from tradesim.data import load_bars

    return load_bars(BTC).slice(*JUNE)


def test_load_month_catalog_vs_csv(benchmark, tmp_path):
    """One month of 1m bars: catalog (Parquet) vs the CSV.gz it came from, timed interleaved."""
    if not BTC.exists():
        pytest.skip(f"real data not found at {BTC}")
    from tradesim.catalog import Catalog

    cat = Catalog(tmp_path)
    cat.import_file(BTC)
    csv_times, cat_times = [], []
    for _ in range(5):  # interleaved, so machine noise hits both alike
        t = time.perf_counter()
        ref = _month_from_csv()
        csv_times.append(time.perf_counter() - t)
        t = time.perf_counter()
        got = cat.load("BTCUSDT", "1m", *JUNE)
        cat_times.append(time.perf_counter() - t)
    assert np.array_equal(ref.timestamp, got.timestamp) and np.array_equal(ref.close, got.close)
    benchmark.pedantic(lambda: cat.load("BTCUSDT", "1m", *JUNE), rounds=5, iterations=1)
    benchmark.extra_info.update(catalog_ms=round(1e3 * float(np.median(cat_times)), 2),
                                csv_gz_ms=round(1e3 * float(np.median(csv_times)), 2),
                                speedup=round(float(np.median(csv_times)) / float(np.median(cat_times)), 1),
                                bars=len(got))
