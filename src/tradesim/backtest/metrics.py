"""Performance metrics of a backtest: returns, risk, drawdowns and trade statistics.

Every formula is written out in `compute_metrics`' Notes. Undefined quantities (a ratio with a
zero denominator, trade statistics without trades) are NaN, never exceptions; bad inputs
(shapes, NaN equity, unordered timestamps) raise `ValueError` naming the argument.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import asdict, dataclass

import numpy as np

from tradesim.runner.trades import Trade

__all__ = ["Metrics", "compute_metrics", "drawdown_series", "MS_PER_YEAR"]

#: Milliseconds in a mean Julian year (365.25 days); crypto markets trade every day.
MS_PER_YEAR = 365.25 * 86_400_000

# A per-bar return is computed as e1 / e0 - 1, so a curve growing at a constant rate still
# shows rounding noise around 1e-16; a standard deviation below this counts as zero.
_ZERO_STD = 1e-14


@dataclass(frozen=True)
class Metrics:
    """Result of `compute_metrics`; see its Notes for each formula.

    Attributes
    ----------
    start_time : int
        Open time of the first bar, ms since the epoch UTC.
    end_time : int
        Close time of the last bar (last timestamp + `interval_ms`), ms since the epoch UTC.
    n_bars : int
        Number of bars (length of the equity curve).
    interval_ms : int
        Bar length in ms.
    bars_per_year : float
        ``365.25 * 86_400_000 / interval_ms``.
    years : float
        Elapsed time ``(end_time - start_time) / (365.25 days)``.
    starting_cash, final_equity : float
        Quote currency.
    total_return, cagr, volatility : float
        Fractions (0.1 means 10 %); `cagr` and `volatility` annualized.
    sharpe, sortino, calmar : float
        Annualized ratios (dimensionless).
    max_drawdown : float
        Deepest peak-to-trough fall as a fraction <= 0 (-0.25 means a 25 % fall).
    max_drawdown_bars, max_drawdown_ms : int
        Duration of that drawdown, from its peak to recovery (or to the end).
    max_drawdown_recovered : bool
        Whether equity regained that peak before the end.
    longest_drawdown_bars, longest_drawdown_ms : int
        Duration of the longest drawdown (any depth), peak to recovery or end.
    exposure : float
        Fraction of bars with an open position, in [0, 1].
    n_trades, n_wins, n_losses, n_ambiguous : int
        Closed trades; wins have net P&L > 0, losses < 0; ambiguous = same-bar SL and TP.
    win_rate : float
        ``n_wins / n_trades``.
    profit_factor : float
        Sum of winning P&L / |sum of losing P&L|.
    expectancy, avg_win, avg_loss, best_trade, worst_trade, total_fees : float
        Quote currency; `avg_loss` is negative.
    risk_free_rate : float
        Annual risk-free rate used for Sharpe and Sortino (fraction).
    """

    start_time: int
    end_time: int
    n_bars: int
    interval_ms: int
    bars_per_year: float
    years: float
    starting_cash: float
    final_equity: float
    total_return: float
    cagr: float
    volatility: float
    sharpe: float
    sortino: float
    calmar: float
    max_drawdown: float
    max_drawdown_bars: int
    max_drawdown_ms: int
    max_drawdown_recovered: bool
    longest_drawdown_bars: int
    longest_drawdown_ms: int
    exposure: float
    n_trades: int
    n_wins: int
    n_losses: int
    n_ambiguous: int
    win_rate: float
    profit_factor: float
    expectancy: float
    avg_win: float
    avg_loss: float
    best_trade: float
    worst_trade: float
    total_fees: float
    risk_free_rate: float

    def to_dict(self) -> dict[str, int | float | bool]:
        """Field name -> value (plain Python scalars; NaN and inf kept as floats)."""
        return asdict(self)


def drawdown_series(equity: np.ndarray, starting_cash: float | None = None) -> np.ndarray:
    """Drawdown of an equity curve at each point: ``equity / running peak - 1`` (<= 0).

    Parameters
    ----------
    equity : ndarray of float64
        Mark-to-market equity per bar, quote currency.
    starting_cash : float, optional
        Equity before the first bar; when given it seeds the running peak, so a fall below the
        starting cash on the first bars counts as drawdown.

    Returns
    -------
    ndarray of float64
        Same length as `equity`; 0 at new highs. NaN where the running peak is <= 0.
    """
    equity = np.asarray(equity, dtype=np.float64)
    peak = np.maximum.accumulate(equity)
    if starting_cash is not None:
        peak = np.maximum(peak, float(starting_cash))
    with np.errstate(divide="ignore", invalid="ignore"):
        dd = equity / peak - 1.0
    dd[peak <= 0] = np.nan
    return dd


def compute_metrics(
    equity,
    timestamps,
    trades: Sequence[Trade],
    *,
    interval_ms: int,
    starting_cash: float,
    risk_free_rate: float = 0.0,
    in_position=None,
) -> Metrics:
    """Compute return, risk, drawdown and trade metrics of one backtest.

    Parameters
    ----------
    equity : array_like of float64, shape (n,)
        Mark-to-market equity (cash + open positions at the close) after each bar, quote
        currency; n >= 1, all finite.
    timestamps : array_like of int64, shape (n,)
        Bar open times, ms since the epoch UTC, strictly increasing.
    trades : sequence of Trade
        Closed trades of the run (any order).
    interval_ms : int
        Bar length in ms (> 0), e.g. 60_000 for 1-minute bars.
    starting_cash : float
        Equity before the first bar, quote currency (> 0).
    risk_free_rate : float, default 0.0
        Annual risk-free rate as a fraction (0.04 = 4 % a year), > -1.
    in_position : array_like of bool, shape (n,), optional
        True for bars during which a position was open. Without it, exposure is derived from
        the trades' bar indices (see Notes).

    Returns
    -------
    Metrics

    Raises
    ------
    ValueError
        If `equity` is not 1-D, is empty or holds non-finite values; `timestamps` is not an
        integer array of the same length or not strictly increasing; `interval_ms`,
        `starting_cash` or `risk_free_rate` are out of range; `in_position` is not a bool array
        of length n; or a trade's bar index is outside [0, n].
    TypeError
        If an element of `trades` is not a `Trade`.

    Notes
    -----
    Notation: E_0 = starting_cash, E_i = equity[i-1] for i = 1..n (the extended curve has
    n + 1 points; the first bar's return is measured against the starting cash). Point i's
    time is T_0 = timestamps[0] (first open) and T_i = timestamps[i-1] + interval_ms (close of
    bar i-1). r_i = E_i / E_{i-1} - 1 (i = 1..n) are the per-bar simple returns.

    *Annualization.* Bars per year B = 365.25 * 86_400_000 / interval_ms: crypto markets trade
    24/7, so a year has 365.25 days of bars (not 252 trading days). Elapsed years
    Y = (timestamps[-1] - timestamps[0] + interval_ms) / (365.25 days), i.e. from the first
    bar's open to the last bar's close; gaps in the data count as elapsed time.

    - total_return = E_n / E_0 - 1.
    - cagr = (E_n / E_0) ** (1 / Y) - 1; -1 if E_n <= 0 (total loss); +inf if the power
      overflows. Runs much shorter than a year extrapolate wildly; read it next to `years`.
    - volatility = std(r, ddof=1) * sqrt(B) (sample standard deviation). NaN if n < 2.
    - Per-bar risk-free rate rf = (1 + risk_free_rate) ** (1 / B) - 1 (geometric, so it
      compounds to the annual rate); excess returns x_i = r_i - rf.
    - sharpe = mean(x) / std(x, ddof=1) * sqrt(B). NaN if n < 2 or std(x) is zero (flat or
      constant-growth curve; below 1e-14 counts as zero, the rounding floor of e1/e0 - 1).
    - sortino = mean(x) * sqrt(B) / DD with downside deviation DD = sqrt(mean(min(x_i, 0)**2))
      over all n bars (Sortino & Price, 1994, with the risk-free rate as the target). If
      DD is zero: +inf when mean(x) > 0, else NaN. NaN if n < 2.
    - Ratios from returns (volatility, sharpe, sortino) are NaN if any E_i <= 0 for i < n
      (a return from zero or negative equity is undefined).
    - Drawdown D_i = E_i / max(E_0..E_i) - 1; max_drawdown = min(D) (<= 0, 0 if the curve
      never falls below its running peak).
    - A drawdown episode starts at the last point at the peak before the curve goes under it
      and ends at the first point back at or above that peak ("recovery"), or at the last
      point if it never recovers. Duration in bars = end index - peak index; in ms =
      T_end - T_peak. max_drawdown_bars/_ms describe the episode that contains the deepest
      point (0 if max_drawdown is 0); longest_drawdown_bars and longest_drawdown_ms are the
      longest episode counted in bars and in ms, each maximised on its own (they can belong
      to different episodes only when the data has gaps).
    - calmar = cagr / |max_drawdown|. NaN if max_drawdown is 0.
    - exposure = mean(in_position). Without `in_position`, bar j counts as exposed when some
      trade has entry_bar <= j < max(exit_bar, entry_bar + 1) (fills at a bar's open: the
      exit bar itself is flat); pass `in_position` for any other fill model.
    - Trade statistics use net P&L (after fees). Let W = {pnl > 0}, L = {pnl < 0}; trades
      with pnl == 0 count in n_trades only. win_rate = |W| / n_trades;
      profit_factor = sum(W) / |sum(L)| (+inf if there are wins and no losses, NaN if there
      are neither); expectancy = mean(pnl); avg_win = mean(W); avg_loss = mean(L) (< 0);
      best_trade / worst_trade = max / min pnl. Each is NaN when its set is empty.
    """
    eq, ts, n = _validate_curve(equity, timestamps)
    interval_ms = _validate_interval(interval_ms)
    starting_cash = _finite_float("starting_cash", starting_cash)
    if starting_cash <= 0:
        raise ValueError(f"starting_cash must be > 0, got {starting_cash!r}")
    risk_free_rate = _finite_float("risk_free_rate", risk_free_rate)
    if risk_free_rate <= -1:
        raise ValueError(f"risk_free_rate must be > -1 (an annual fraction), got {risk_free_rate!r}")
    trades = list(trades)
    for i, trade in enumerate(trades):
        if not isinstance(trade, Trade):
            raise TypeError(f"trades[{i}] is {type(trade).__name__}, not Trade")

    bars_per_year = MS_PER_YEAR / interval_ms
    start_time = int(ts[0])
    end_time = int(ts[-1]) + interval_ms
    years = (end_time - start_time) / MS_PER_YEAR

    curve = np.concatenate(([starting_cash], eq))
    times = np.concatenate((ts[:1], ts + interval_ms))
    final = float(eq[-1])
    total_return = final / starting_cash - 1.0
    cagr = _cagr(final / starting_cash, years)

    volatility = sharpe = sortino = math.nan
    if n >= 2 and (curve[:-1] > 0).all():
        returns = curve[1:] / curve[:-1] - 1.0
        rf_bar = (1.0 + risk_free_rate) ** (1.0 / bars_per_year) - 1.0
        excess = returns - rf_bar
        sd = float(np.std(returns, ddof=1))
        volatility = sd * math.sqrt(bars_per_year)
        mean_excess = float(np.mean(excess))
        sd_excess = float(np.std(excess, ddof=1))
        if sd_excess >= _ZERO_STD:
            sharpe = mean_excess / sd_excess * math.sqrt(bars_per_year)
        downside = math.sqrt(float(np.mean(np.minimum(excess, 0.0) ** 2)))
        if downside >= _ZERO_STD:
            sortino = mean_excess * math.sqrt(bars_per_year) / downside
        elif mean_excess > 0:
            sortino = math.inf

    dd = _drawdowns(curve, times)
    calmar = cagr / abs(dd["max_drawdown"]) if dd["max_drawdown"] < 0 else math.nan

    exposure = _exposure(n, trades, in_position)
    stats = _trade_stats(trades)
    return Metrics(
        start_time=start_time, end_time=end_time, n_bars=n, interval_ms=interval_ms,
        bars_per_year=bars_per_year, years=years, starting_cash=starting_cash,
        final_equity=final, total_return=total_return, cagr=cagr, volatility=volatility,
        sharpe=sharpe, sortino=sortino, calmar=calmar, exposure=exposure,
        risk_free_rate=risk_free_rate, **dd, **stats,
    )


def _cagr(growth: float, years: float) -> float:
    if growth <= 0:
        return -1.0
    try:
        return growth ** (1.0 / years) - 1.0
    except OverflowError:  # a gain over minutes extrapolated to a year
        return math.inf


def _validate_curve(equity, timestamps) -> tuple[np.ndarray, np.ndarray, int]:
    eq = np.asarray(equity)
    if eq.ndim != 1:
        raise ValueError(f"equity must be 1-D, got shape {eq.shape}")
    if eq.shape[0] == 0:
        raise ValueError("equity is empty (need at least one bar)")
    if not (np.issubdtype(eq.dtype, np.floating) or np.issubdtype(eq.dtype, np.integer)):
        raise ValueError(f"equity must be numeric, got dtype {eq.dtype}")
    eq = eq.astype(np.float64, copy=False)
    bad = np.flatnonzero(~np.isfinite(eq))
    if bad.size:
        raise ValueError(f"equity[{bad[0]}] is {eq[bad[0]]!r}; equity must be finite")
    ts = np.asarray(timestamps)
    if ts.shape != eq.shape:
        raise ValueError(f"timestamps shape {ts.shape} does not match equity shape {eq.shape}")
    if not np.issubdtype(ts.dtype, np.integer):
        raise ValueError(f"timestamps must be integers (ms since the epoch), got dtype {ts.dtype}")
    ts = ts.astype(np.int64, copy=False)
    if ts.shape[0] > 1:
        steps = np.diff(ts)
        if (steps <= 0).any():
            i = int(np.argmax(steps <= 0)) + 1
            raise ValueError(f"timestamps must be strictly increasing: timestamps[{i}] = {ts[i]} "
                             f"is not after timestamps[{i - 1}] = {ts[i - 1]}")
    return eq, ts, int(eq.shape[0])


def _validate_interval(interval_ms) -> int:
    if isinstance(interval_ms, bool) or not isinstance(interval_ms, (int, np.integer)):
        raise ValueError(f"interval_ms must be an int (ms), got {interval_ms!r}")
    if interval_ms <= 0:
        raise ValueError(f"interval_ms must be > 0, got {interval_ms!r}")
    return int(interval_ms)


def _finite_float(name: str, value) -> float:
    try:
        value = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a number, got {value!r}") from None
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value!r}")
    return value


def _drawdowns(curve: np.ndarray, times: np.ndarray) -> dict[str, float | int | bool]:
    """Max drawdown and episode durations on the extended curve (see compute_metrics Notes)."""
    peak = np.maximum.accumulate(curve)  # curve[0] = starting cash > 0, so peak > 0
    depth = curve / peak - 1.0
    underwater = curve < peak
    out: dict[str, float | int | bool] = {
        "max_drawdown": 0.0, "max_drawdown_bars": 0, "max_drawdown_ms": 0,
        "max_drawdown_recovered": True, "longest_drawdown_bars": 0, "longest_drawdown_ms": 0,
    }
    if not underwater.any():
        return out
    last = curve.shape[0] - 1
    edges = np.diff(np.concatenate(([0], underwater.astype(np.int8), [0])))
    starts = np.flatnonzero(edges == 1)       # first point under the peak (never 0)
    stops = np.flatnonzero(edges == -1)       # first point back at the peak, or last + 1
    peaks = starts - 1
    ends = np.minimum(stops, last)
    bars = ends - peaks
    spans = times[ends] - times[peaks]
    trough = int(np.argmin(depth))
    k = int(np.searchsorted(starts, trough, side="right")) - 1
    longest = int(np.argmax(bars))
    out.update(
        max_drawdown=float(depth[trough]), max_drawdown_bars=int(bars[k]),
        max_drawdown_ms=int(spans[k]), max_drawdown_recovered=bool(stops[k] <= last),
        longest_drawdown_bars=int(bars[longest]), longest_drawdown_ms=int(spans.max()),
    )
    return out


def _exposure(n: int, trades: list[Trade], in_position) -> float:
    if in_position is not None:
        mask = np.asarray(in_position)
        if mask.shape != (n,):
            raise ValueError(f"in_position shape {mask.shape} does not match equity shape {(n,)}")
        if mask.dtype != np.bool_:
            raise ValueError(f"in_position must be a bool array, got dtype {mask.dtype}")
        return float(mask.mean())
    if not trades:
        return 0.0
    entry = np.fromiter((t.entry_bar for t in trades), np.int64, len(trades))
    exit_ = np.fromiter((t.exit_bar for t in trades), np.int64, len(trades))
    if entry.max() >= n or exit_.max() > n:
        i = int(np.argmax((entry >= n) | (exit_ > n)))
        raise ValueError(f"trades[{i}] has entry_bar={entry[i]}, exit_bar={exit_[i]} outside the "
                         f"{n} bars of the equity curve; pass in_position or fix the indices")
    # Interval coverage by a difference array: +1 at each entry, -1 after the last held bar.
    delta = np.zeros(n + 1, dtype=np.int64)
    np.add.at(delta, entry, 1)
    np.add.at(delta, np.maximum(exit_, entry + 1), -1)
    return float((np.cumsum(delta[:n]) > 0).mean())


def _trade_stats(trades: list[Trade]) -> dict[str, float | int]:
    pnl = np.fromiter((t.pnl for t in trades), np.float64, len(trades))
    wins, losses = pnl[pnl > 0], pnl[pnl < 0]
    nan = math.nan
    gross_win, gross_loss = float(wins.sum()), float(losses.sum())
    if losses.size:
        profit_factor = gross_win / -gross_loss
    else:
        profit_factor = math.inf if wins.size else nan
    return {
        "n_trades": len(trades), "n_wins": int(wins.size), "n_losses": int(losses.size),
        "n_ambiguous": sum(1 for t in trades if t.ambiguous),
        "win_rate": wins.size / len(trades) if trades else nan,
        "profit_factor": profit_factor,
        "expectancy": float(pnl.mean()) if trades else nan,
        "avg_win": float(wins.mean()) if wins.size else nan,
        "avg_loss": float(losses.mean()) if losses.size else nan,
        "best_trade": float(pnl.max()) if trades else nan,
        "worst_trade": float(pnl.min()) if trades else nan,
        "total_fees": float(sum(t.fees for t in trades)),
    }
