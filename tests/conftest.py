"""Shared fixtures: the real market data in ../shared/data (beside the repo root)."""

from pathlib import Path

import numpy as np
import pytest

REPO_ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = REPO_ROOT.parent / "shared" / "data"
KLINES_1M = SHARED_DATA / "binance" / "klines" / "1m"
BTC_1M = KLINES_1M / "BTCUSDT-1m-2025-05-20_2025-08-18.csv.gz"
ETH_1M = KLINES_1M / "ETHUSDT-1m-2025-05-20_2025-08-18.csv.gz"


def need_shared_data(path: Path = KLINES_1M) -> Path:
    if not path.exists():
        pytest.skip(f"real market data not found at {path} (expected ../shared/data beside the repo)")
    return path


@pytest.fixture(scope="session")
def btc_bars():
    from tradesim.data import load_bars

    return load_bars(need_shared_data(BTC_1M))


@pytest.fixture(scope="session")
def eth_bars():
    from tradesim.data import load_bars

    return load_bars(need_shared_data(ETH_1M))


@pytest.fixture(scope="session")
def random_walk():
    """200k-bar geometric random walk with consistent OHLCV (seeded)."""
    rng = np.random.default_rng(20261121)
    n = 200_000
    close = 100.0 * np.exp(np.cumsum(rng.normal(0, 0.01, n)))
    open_ = np.concatenate([[100.0], close[:-1]])
    high = np.maximum(open_, close) * (1 + np.abs(rng.normal(0, 0.003, n)))
    low = np.minimum(open_, close) * (1 - np.abs(rng.normal(0, 0.003, n)))
    volume = rng.gamma(2.0, 50.0, n)
    volume[rng.random(n) < 0.01] = 0.0  # some bars without trades
    return {"open": open_, "high": high, "low": low, "close": close, "volume": volume}


@pytest.fixture(scope="session")
def shared_data():
    """Path of ../shared/data; skips the test when it is absent."""
    return need_shared_data(SHARED_DATA)


@pytest.fixture(scope="session")
def btc_path():
    """Path of the real BTCUSDT 1m kline file; skips when absent."""
    return need_shared_data(BTC_1M)


CHROMIUM = next((p for p in map(__import__("shutil").which, ("chromium", "chromium-browser", "google-chrome"))
                 if p), None)
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]


@pytest.fixture()
def render_page(tmp_path):
    """``render_page(path) -> dict``: open an offline HTML page in headless Chromium (Playwright driving
    the system's chromium, no browser download), wait until its script marks the <html> element
    with ``data-rendered`` or ``data-error`` (a condition, not a time budget: a loaded machine only
    makes it slower), and return that element's attributes. Skips without chromium."""
    if CHROMIUM is None:
        pytest.skip("chromium not installed (Debian: apt-get install -y chromium)")
    sync_api = pytest.importorskip("playwright.sync_api")

    def render(path, width: int = 1280, height: int = 2000) -> dict:
        with sync_api.sync_playwright() as p:
            browser = p.chromium.launch(executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS)
            try:
                page = browser.new_page(viewport={"width": width, "height": height})
                page.goto(path.resolve().as_uri())
                page.wait_for_function("() => document.documentElement.hasAttribute('data-rendered')"
                                       " || document.documentElement.hasAttribute('data-error')", timeout=120_000)
                return page.evaluate("() => Object.fromEntries([...document.documentElement.attributes]"
                                     ".map(a => [a.name, a.value]))")
            finally:
                browser.close()
    return render
