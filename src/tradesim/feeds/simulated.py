"""Simulated bars: seeded geometric Brownian motion per symbol, no network and no files.

The embedded default feed. The same seed gives the same bars on the sync path
(`SimulatedFeed.bars`, vectorized) and on the async path (``async for``), and a
symbol's path depends only on (seed, symbol), so adding a symbol leaves the
others unchanged.
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from datetime import datetime

import numpy as np

from tradesim.data import Bars
from tradesim.feeds.base import BaseFeed, Chunk, parse_interval, parse_time

__all__ = ["DEFAULT_START_MS", "MS_PER_YEAR", "SimulatedFeed"]

#: Default first bar open time: 2024-01-01T00:00:00Z, fixed so runs are reproducible.
DEFAULT_START_MS = 1_704_067_200_000
#: Volatility and drift are annualized over a 365-day year (crypto trades around the clock).
MS_PER_YEAR = 365 * 86_400_000

#: Default first prices (quote currency), round figures near the real markets' in 2025-26, so
#: a simulated run's sizes, fees and P&L read like real ones.
TYPICAL_PRICES = {"BTCUSDT": 100_000.0, "ETHUSDT": 3_000.0, "BNBUSDT": 600.0, "SOLUSDT": 150.0,
                  "XRPUSDT": 2.0}
#: Bars per generated block on the async path (and the cap per block on the sync path).
ASYNC_BLOCK = 4096
SYNC_BLOCK = 1 << 20


class _GBMPath:
    """One symbol's generator state: two independent random streams and the last close.

    Prices and volumes come from separate streams that each draw one kind of
    variate, so drawing n + m bars in one block or in two blocks gives the same
    numbers; the log price is carried from block to block by prepending it to the
    sequential cumulative sum, so the floats are identical too.
    """

    def __init__(self, feed: SimulatedFeed, symbol: str):
        price_seq, volume_seq = np.random.SeedSequence(
            [feed.seed, *_symbol_words(symbol)]).spawn(2)
        self.price_rng = np.random.Generator(np.random.PCG64(price_seq))
        self.volume_rng = np.random.Generator(np.random.PCG64(volume_seq))
        self.feed = feed
        self.symbol = symbol
        start = feed.start_prices[symbol]
        self.log_close = math.log(start)
        self.close = start
        self.index = 0

    def next_block(self, n: int):
        """The next `n` bars: (timestamp, open, high, low, close, volume) arrays."""
        feed = self.feed
        k = feed.steps_per_bar
        steps = self.price_rng.standard_normal(n * k)
        steps *= feed.bar_volatility / math.sqrt(k)
        steps += feed.bar_drift / k
        steps[0] += self.log_close  # sequential sum from the carried log price
        path = np.cumsum(steps, out=steps).reshape(n, k)
        last = path[:, -1]
        # Column-wise extremes: faster than max(axis=1) over short rows.
        hi_log = path[:, 0].copy()
        lo_log = hi_log.copy()
        for j in range(1, k):
            np.maximum(hi_log, path[:, j], out=hi_log)
            np.minimum(lo_log, path[:, j], out=lo_log)
        if not (np.all(lo_log > -700.0) and np.all(hi_log < 700.0)):
            raise OverflowError(f"simulated {self.symbol} price left the float range after bar "
                                f"{self.index}; lower volatility or drift")
        close = np.exp(last)
        open_ = np.empty(n)
        open_[0] = self.close
        open_[1:] = close[:-1]
        high = np.maximum(np.maximum(open_, close), np.exp(hi_log))
        low = np.minimum(np.minimum(open_, close), np.exp(lo_log))
        volume = self.volume_rng.gamma(2.0, 0.5 * feed.mean_volume, n)
        ts = feed.start_time + feed.interval_ms * np.arange(self.index, self.index + n, dtype=np.int64)
        self.log_close = float(last[-1])
        self.close = float(close[-1])
        self.index += n
        return ts, open_, high, low, close, volume


def _symbol_words(symbol: str) -> list[int]:
    # A stable digest, not hash(): str hashes change between interpreter runs.
    digest = hashlib.sha256(symbol.encode("utf-8")).digest()
    return [int.from_bytes(digest[i:i + 4], "little") for i in range(0, 16, 4)]


class SimulatedFeed(BaseFeed):
    """Seeded geometric Brownian motion bars for one or more symbols.

    Parameters
    ----------
    symbols : str or sequence of str, default ("BTCUSDT",)
        Instruments; each gets its own path from (seed, symbol).
    start_price : float or mapping of symbol to float, optional
        First price, quote currency. By default a level like the real market's
        (`TYPICAL_PRICES`: BTCUSDT 100,000, ETHUSDT 3,000, ...; 100 for others).
    volatility : float, default 0.35
        Annualized volatility of log returns (0.35 = 35 % per year, about
        BTCUSDT's on 1m bars in May-Aug 2025; 365-day
        year). Per bar: ``bar_volatility = volatility * sqrt(interval_ms / MS_PER_YEAR)``,
        the standard deviation of close-to-close log returns.
    drift : float, default 0.0
        Annualized GBM drift mu (E[price] grows as exp(mu t)); the mean log
        return per bar is ``bar_drift = (drift - volatility**2 / 2) * dt``.
    interval : str or int, default "1m"
        Bar length: ``"1s"``, ``"1m"``, ``"1h"``, ``"1d"``, ... or ms.
    start_time : int, str or datetime, default `DEFAULT_START_MS`
        Open time of the first bar (ms since epoch UTC, or ISO-8601, UTC).
    seed : int, default 0
        Non-negative; the same seed gives the same bars.
    bars : int or None, default None
        Bars per symbol; None = infinite on the async path (then `bars()` needs
        `limit`).
    speed : float, default 0
        0 = as fast as possible, 1 = one bar per `interval` of wall time,
        N = N times faster.
    spread_bps : float, default 2.0
        Quoted spread around the close: bid = close * (1 - s/2), ask =
        close * (1 + s/2) with s = spread_bps / 10,000.
    mean_volume : float, default 10.0
        Mean volume per bar, base units; volumes are Gamma(shape 2) distributed
        (always > 0).
    steps_per_bar : int, default 8
        Brownian sub-steps per bar from which high and low are taken.
    clock, sleep
        Injectable monotonic clock (seconds) and async sleep, for tests.

    Raises
    ------
    ValueError
        On a non-positive price, negative volatility, spread or volume, a
        negative seed, an unknown interval or speed, or duplicate symbols.

    Notes
    -----
    Model: within bar i the log price follows ``steps_per_bar`` Gaussian
    increments with mean ``bar_drift / k`` and standard deviation
    ``bar_volatility / sqrt(k)`` (exact GBM sampled on a grid). open = previous
    close; close = last sub-step; high/low = extremes over the open and all
    sub-steps (so they underestimate the continuous path's range a little).
    Every bar satisfies the `MarketData` rules: prices > 0, low <= open, close
    <= high, volume > 0, bid <= ask.
    """

    def __init__(self, symbols: str | Sequence[str] = ("BTCUSDT",), *,
                 start_price: float | Mapping[str, float] | None = None,
                 volatility: float = 0.35, drift: float = 0.0, interval: str | int = "1m",
                 start_time: int | str | datetime = DEFAULT_START_MS, seed: int = 0,
                 bars: int | None = None, speed: float = 0.0, spread_bps: float = 2.0,
                 mean_volume: float = 10.0, steps_per_bar: int = 8,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], Awaitable[object]] = asyncio.sleep):
        super().__init__(speed=speed, clock=clock, sleep=sleep)
        self.symbols = [symbols] if isinstance(symbols, str) else list(symbols)
        if not self.symbols or len(set(self.symbols)) != len(self.symbols):
            raise ValueError(f"symbols must be distinct and at least one, got {self.symbols!r}")
        if start_price is None:
            prices = {s: TYPICAL_PRICES.get(s.upper(), 100.0) for s in self.symbols}
        elif isinstance(start_price, Mapping):
            prices = start_price
        else:
            prices = {s: start_price for s in self.symbols}
        self.start_prices = {}
        for s in self.symbols:
            p = float(prices.get(s, float("nan")))
            if not (math.isfinite(p) and p > 0):
                raise ValueError(f"start_price for {s} must be a finite price > 0, got {p!r}")
            self.start_prices[s] = p
        self.volatility = _finite("volatility", volatility, minimum=0.0)
        self.drift = _finite("drift", drift)
        self.spread_bps = _finite("spread_bps", spread_bps, minimum=0.0)
        self.mean_volume = _finite("mean_volume", mean_volume, minimum=0.0)
        if self.mean_volume == 0 or self.spread_bps >= 20_000:
            raise ValueError("mean_volume must be > 0 and spread_bps < 20000")
        self.interval_ms = parse_interval(interval)
        self.start_time = parse_time(start_time)
        if isinstance(seed, bool) or not isinstance(seed, (int, np.integer)) or seed < 0:
            raise ValueError(f"seed must be an int >= 0, got {seed!r}")
        self.seed = int(seed)
        if bars is not None and (isinstance(bars, bool) or int(bars) != bars or bars < 0):
            raise ValueError(f"bars must be an int >= 0 or None (infinite), got {bars!r}")
        self.n_bars = None if bars is None else int(bars)
        if int(steps_per_bar) != steps_per_bar or steps_per_bar < 1:
            raise ValueError(f"steps_per_bar must be an int >= 1, got {steps_per_bar!r}")
        self.steps_per_bar = int(steps_per_bar)
        dt = self.interval_ms / MS_PER_YEAR
        self.bar_volatility = self.volatility * math.sqrt(dt)
        self.bar_drift = (self.drift - 0.5 * self.volatility ** 2) * dt
        for s in self.symbols:
            self.health.add_symbol(s)

    def bars(self, symbol: str, limit: int | None = None) -> Bars:
        """The first `limit` bars of `symbol` as numpy columns (vectorized).

        Parameters
        ----------
        symbol : str
            One of `symbols`.
        limit : int, optional
            Number of bars; defaults to the feed's `bars`. Capped at `bars`
            when the feed is finite; required when it is infinite.

        Returns
        -------
        Bars
            timestamp int64 ms (UTC, bar open), prices in quote currency,
            volume in base units; identical to the first `limit` bars of the
            async path.

        Raises
        ------
        KeyError
            Unknown symbol.
        ValueError
            No `limit` for an infinite feed, or a negative `limit`.
        """
        self._check_symbol(symbol)
        n = self._count(limit)
        path = _GBMPath(self, symbol)
        blocks = [path.next_block(min(SYNC_BLOCK, n - i)) for i in range(0, n, SYNC_BLOCK)]
        if blocks:
            cols = [np.concatenate(parts) if len(parts) > 1 else parts[0] for parts in zip(*blocks)]
        else:
            cols = [np.empty(0, np.int64)] + [np.empty(0) for _ in range(5)]
        self.health.record_emitted(symbol, n)
        return Bars(symbol, *cols, source=f"simulated:seed={self.seed}", interval_ms=self.interval_ms)

    def bid_ask(self, close: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Bid and ask (quote currency) quoted `spread_bps` wide around `close`."""
        half = self.spread_bps / 20_000.0
        return close * (1.0 - half), close * (1.0 + half)

    def _count(self, limit: int | None) -> int:
        if limit is None:
            if self.n_bars is None:
                raise ValueError("this SimulatedFeed is infinite (bars=None): pass limit=")
            return self.n_bars
        if int(limit) != limit or limit < 0:
            raise ValueError(f"limit must be an int >= 0, got {limit!r}")
        return int(limit) if self.n_bars is None else min(int(limit), self.n_bars)

    def _chunks(self) -> Iterator[Chunk]:
        paths = [_GBMPath(self, s) for s in self.symbols]
        n_sym = len(paths)
        done = 0
        while self.n_bars is None or done < self.n_bars:
            m = ASYNC_BLOCK if self.n_bars is None else min(ASYNC_BLOCK, self.n_bars - done)
            blocks = [p.next_block(m) for p in paths]
            # Rows are bar index, columns symbols: ravel gives timestamp order, ties by symbol.
            ts, o, h, lo, c, v = (np.stack(col, axis=1).ravel() for col in zip(*blocks))
            bid, ask = self.bid_ask(c)
            yield Chunk(np.tile(np.arange(n_sym), m), ts, o, h, lo, c, v, bid, ask)
            done += m


def _finite(name: str, value: float, minimum: float | None = None) -> float:
    value = float(value)
    if not math.isfinite(value) or (minimum is not None and value < minimum):
        bound = "" if minimum is None else f" and >= {minimum}"
        raise ValueError(f"{name} must be finite{bound}, got {value!r}")
    return value
