"""`optimize`: grid, seeded random or Optuna search over a strategy's parameters, optionally walk-forward.

Trial parameters are decided in the parent before dispatch (grid order, a seeded sample, or
Optuna asked in fixed batches of `OPTUNA_BATCH` and told in trial order), so the results are
the same for the same seed whatever the number of workers or the backend. See docs/optimize.md.
"""

from __future__ import annotations

import dataclasses
import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tradesim.backtest.metrics import Metrics, compute_metrics
from tradesim.data import Bars
from tradesim.jsonable import jsonable
from tradesim.optimize.backends import Task, TrialSetup, make_backend, run_backtest
from tradesim.optimize.space import Objective, OptimizeInputError, ParamSpec, SearchSpace, parse_param_spec
from tradesim.optimize.walkforward import (
    Fold,
    WalkForwardSpec,
    bootstrap_trades,
    make_folds,
    parameter_stability,
    parse_walk_forward,
    stitch_equity,
)

__all__ = ["optimize", "OptimizeResult", "Trial", "load_data", "METHODS", "OPTUNA_BATCH"]

METHODS = ("grid", "random", "optuna")

#: Trials Optuna proposes at a time (independent of the workers, so results do not depend on --jobs).
OPTUNA_BATCH = 8

#: Default number of trials for random and Optuna search.
DEFAULT_TRIALS = 100

_METRIC_NAMES = [f.name for f in dataclasses.fields(Metrics)]


def load_data(data: Any, start: Any = None, end: Any = None) -> list[Bars]:
    """Load the bars to optimise on: the one place data options go through.

    Parameters
    ----------
    data : path, Bars, or a sequence of them
        Bar files (Binance kline CSV(.gz), OHLCV CSV, Parquet) or loaded `Bars`; one per symbol.
    start, end : int or str, optional
        Keep bars with ``start <= open time < end`` (ms since epoch UTC or ISO date).

    Raises
    ------
    DataFileError
        An unreadable file or bad row.
    ValueError
        No bars in the range.
    """
    from tradesim.feeds.historical import HistoricalFeed

    items = list(data) if isinstance(data, (list, tuple)) else [data]
    feed = HistoricalFeed(items, start=start, end=end)
    bars = [feed.bars(s) for s in feed.symbols]
    if not any(len(b) for b in bars):
        raise ValueError("no bars in the data (check --data and the date range)")
    return [b for b in bars if len(b)]


@dataclass
class Trial:
    """One evaluated parameter combination.

    Attributes
    ----------
    number : int
        Order in which the trial was decided (0-based, across folds in a walk-forward).
    params : dict
    status : str
        ``ok``; ``failed`` (the backtest raised or a runner failed: see `reason`); ``excluded``
        (fewer trades than ``min_trades``); ``skipped`` (Optuna proposed a combination the
        constraints forbid: not run).
    objective : float
        The objective's value (NaN when undefined or not run).
    metrics : dict
        Portfolio `Metrics` fields ({} when the backtest raised or was skipped).
    fold : int or None
        Walk-forward fold whose train window the trial ran on.
    """

    number: int
    params: dict
    status: str
    reason: str = ""
    objective: float = math.nan
    metrics: dict = field(default_factory=dict)
    errors: int = 0
    seconds: float = 0.0
    fold: int | None = None

    @property
    def ranked(self) -> bool:
        """Whether the trial competes for best (ok with a finite objective)."""
        return self.status == "ok" and math.isfinite(self.objective)

    def to_dict(self) -> dict[str, Any]:
        return {"number": self.number, "fold": self.fold, "params": self.params, "status": self.status,
                "reason": self.reason, "objective": self.objective, "errors": self.errors,
                "seconds": self.seconds, "metrics": self.metrics}


def best_of(trials: Sequence[Trial]) -> Trial | None:
    """The ranked trial with the highest objective (ties: the lowest trial number)."""
    ranked = [t for t in trials if t.ranked]
    return max(ranked, key=lambda t: (t.objective, -t.number)) if ranked else None


@dataclass
class OptimizeResult:
    """What `optimize` returns.

    Attributes
    ----------
    trials : list of Trial
        Every finished trial, by number.
    best : Trial or None
        Best ranked trial of the whole-data search (None in a walk-forward, see `walk_forward`, or
        when no trial ranked).
    best_curve : dict or None
        The best trial re-run standalone: ``timestamps`` (int64 ms), ``equity`` (quote currency),
        ``pnls`` (net P&L per trade, exit order).
    walk_forward : dict or None
        ``spec``, ``folds`` (per fold: windows, chosen params, in-sample and out-of-sample metrics
        and objective, efficiency OOS/IS), ``oos_metrics`` (of the stitched curve), ``oos_curve``,
        ``degradation`` (mean OOS objective / mean IS objective) and ``stability``.
    monte_carlo : dict or None
        From `bootstrap_trades` on the best trial's trades (or the out-of-sample trades).
    interrupted : bool
        Stopped by Ctrl-C: `trials` holds what finished.
    """

    method: str
    objective: str
    space: list[dict]
    constraints: list[str]
    seed: int
    jobs: int
    backend: str
    min_trades: int
    trials: list[Trial]
    best: Trial | None = None
    best_curve: dict | None = None
    walk_forward: dict | None = None
    monte_carlo: dict | None = None
    interrupted: bool = False
    seconds: float = 0.0
    worker_restarts: int = 0
    data: list[dict] = field(default_factory=list)

    def top(self, n: int = 10) -> list[Trial]:
        """The `n` best ranked trials, best first."""
        ranked = [t for t in self.trials if t.ranked]
        return sorted(ranked, key=lambda t: (-t.objective, t.number))[:n]

    def to_dict(self, curves: bool = False) -> dict[str, Any]:
        """Strict-JSON view (NaN and infinities become None); per-bar curves only with `curves`."""
        wf = self.walk_forward
        if wf is not None and not curves:
            wf = {k: v for k, v in wf.items() if k != "oos_curve"}
        out = {"method": self.method, "objective": self.objective, "space": self.space,
               "constraints": self.constraints, "seed": self.seed, "jobs": self.jobs, "backend": self.backend,
               "min_trades": self.min_trades, "interrupted": self.interrupted, "seconds": self.seconds,
               "worker_restarts": self.worker_restarts, "data": self.data,
               "counts": {s: sum(t.status == s for t in self.trials)
                          for s in ("ok", "failed", "excluded", "skipped")},
               "best": self.best.to_dict() if self.best else None,
               "walk_forward": wf, "monte_carlo": self.monte_carlo,
               "trials": [t.to_dict() for t in self.trials]}
        if curves and self.best_curve is not None:
            out["best_curve"] = self.best_curve
        return jsonable(out)


class _Sweep:
    """Runs the trials of one search through a backend, keeps them and reports progress."""

    def __init__(self, backend, objective: Objective, min_trades: int, progress, total: int) -> None:
        self.backend, self.objective, self.min_trades = backend, objective, min_trades
        self.progress, self.total = progress, total
        self.trials: list[Trial] = []
        self.number = 0
        self._cache: dict[tuple, Trial] = {}

    def _record(self, task: Task, result: dict, fold: int | None) -> Trial:
        trial = Trial(task.number, dict(task.params), result["status"], result["reason"],
                      metrics=result["metrics"], errors=result["errors"], seconds=result["seconds"], fold=fold)
        if trial.metrics:
            trial.objective = self.objective(trial.metrics)
            if trial.status == "ok" and trial.metrics["n_trades"] < self.min_trades:
                trial.status = "excluded"
                trial.reason = f"{trial.metrics['n_trades']} trades < min_trades {self.min_trades}"
        self.trials.append(trial)
        self._cache[(fold, _key(task.params))] = trial
        if self.progress is not None:
            self.progress(len(self.trials), self.total, trial, best_of(self.trials))
        return trial

    def run(self, params_list: Sequence[dict], fold: Fold | None = None) -> list[Trial]:
        """Run these combinations (numbered in order) and return their trials by number."""
        tasks = []
        out: dict[int, Trial] = {}
        fold_index = None if fold is None else fold.index
        for params in params_list:
            number, self.number = self.number, self.number + 1
            cached = self._cache.get((fold_index, _key(params)))
            if cached is not None:  # Optuna may propose a combination again: same bars, same result
                out[number] = self._record(Task(number, params), {
                    "status": cached.status if cached.status != "excluded" else "ok", "reason": cached.reason,
                    "metrics": cached.metrics, "errors": cached.errors, "seconds": 0.0}, fold_index)
                continue
            tasks.append(Task(number, dict(params), fold.train_start if fold else None,
                              fold.train_end if fold else None))

        def done(task: Task, result: dict) -> None:
            out[task.number] = self._record(task, result, fold_index)

        self.backend.run(tasks, done)
        return [out[k] for k in sorted(out)]

    def skip(self, params: dict, reason: str, fold: Fold | None) -> Trial:
        number, self.number = self.number, self.number + 1
        trial = Trial(number, dict(params), "skipped", reason, fold=None if fold is None else fold.index)
        self.trials.append(trial)
        if self.progress is not None:
            self.progress(len(self.trials), self.total, trial, best_of(self.trials))
        return trial


def _key(params: Mapping[str, Any]) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in params.items()))


def _optuna_distributions(space: SearchSpace) -> dict:
    from optuna.distributions import CategoricalDistribution, FloatDistribution, IntDistribution

    dists: dict[str, Any] = {}
    for s in space.specs:
        if s.kind == "range" and s.is_int:
            dists[s.name] = IntDistribution(s.values[0], s.values[-1], step=int(s.step or 1))
        elif s.kind == "range":
            dists[s.name] = FloatDistribution(float(s.values[0]), float(s.values[-1]), step=float(s.step or 1))
        else:
            dists[s.name] = CategoricalDistribution(list(s.values))
    return dists


def _snap(space: SearchSpace, params: Mapping[str, Any]) -> dict[str, Any]:
    """Optuna's floats back onto the spec's exact values (0.30000000000000004 -> 0.3)."""
    out = {}
    for s in space.specs:
        v = params[s.name]
        if s.kind == "range" and not s.is_int:
            i = int(round((float(v) - float(s.values[0])) / float(s.step or 1)))
            v = s.values[min(max(i, 0), len(s.values) - 1)]
        out[s.name] = v
    return out


def _optuna_search(sweep: _Sweep, space: SearchSpace, n_trials: int, seed: int, fold: Fold | None,
                   journal: Path | None) -> list[Trial]:
    try:
        import optuna
    except ImportError:
        raise ImportError("--method optuna needs Optuna: pip install 'tradesim[optuna]'") from None
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = None
    if journal is not None:
        from optuna.storages import JournalStorage
        from optuna.storages.journal import JournalFileBackend

        storage = JournalStorage(JournalFileBackend(str(journal)))
    study = optuna.create_study(study_name="tradesim-optimize", storage=storage, direction="maximize",
                                sampler=optuna.samplers.TPESampler(seed=seed), load_if_exists=True)
    trials: list[Trial] = []
    # Resuming from the journal: finished trials come back as they were; unfinished ones are dropped.
    for ft in study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.FAIL)):
        attrs = ft.user_attrs
        if "status" not in attrs:
            continue
        number, sweep.number = sweep.number, sweep.number + 1
        metrics = {k: (math.nan if v is None else v) for k, v in attrs.get("metrics", {}).items()}
        t = Trial(number, _snap(space, ft.params), attrs["status"], attrs.get("reason", ""),
                  sweep.objective(metrics) if metrics else math.nan, metrics, attrs.get("errors", 0),
                  attrs.get("seconds", 0.0), None if fold is None else fold.index)
        sweep.trials.append(t)
        trials.append(t)
    dists = _optuna_distributions(space)
    while len(trials) < n_trials:
        batch = [study.ask(dists) for _ in range(min(OPTUNA_BATCH, n_trials - len(trials)))]
        proposals = [(ot, _snap(space, ot.params)) for ot in batch]
        allowed = [(ot, p) for ot, p in proposals if space.allowed(p)]
        results: dict[int, Trial] = {}
        for ot, p in proposals:
            if not space.allowed(p):
                results[ot.number] = sweep.skip(p, "the constraints forbid this combination", fold)
        first = sweep.number
        try:
            sweep.run([p for _, p in allowed], fold)
        finally:
            # Tell what finished, in trial order (whatever order the workers finished in).
            by_number = {t.number: t for t in sweep.trials if t.number >= first}
            for i, (ot, _) in enumerate(allowed):
                if first + i in by_number:
                    results[ot.number] = by_number[first + i]
            for ot, _ in proposals:
                told = results.get(ot.number)
                if told is None:  # interrupted before it finished
                    study.tell(ot, state=TrialState.FAIL)
                    continue
                t = told
                for name, value in (("status", t.status), ("reason", t.reason), ("errors", t.errors),
                                    ("seconds", t.seconds), ("metrics", jsonable(t.metrics))):
                    ot.set_user_attr(name, value)
                if t.ranked:
                    study.tell(ot, t.objective)
                else:
                    study.tell(ot, state=TrialState.FAIL)
        trials.extend(results.values())
    return sorted(trials, key=lambda t: t.number)


def _search(sweep: _Sweep, space: SearchSpace, method: str, n_trials: int | None, seed: int,
            fold: Fold | None, journal: Path | None) -> list[Trial]:
    if method == "grid":
        return sweep.run(list(space.grid()), fold)
    if method == "random":
        return sweep.run(space.sample(n_trials or DEFAULT_TRIALS, seed), fold)
    return _optuna_search(sweep, space, n_trials or DEFAULT_TRIALS, seed, fold, journal)


def _curve(result) -> dict[str, Any]:
    return {"timestamps": result.timestamps, "equity": result.equity, "in_position": result.in_position,
            "pnls": [t.pnl for t in result.trades], "starting_cash": result.metrics.starting_cash,
            "interval_ms": result.metrics.interval_ms}


def _specs(params: Any) -> list[ParamSpec]:
    if isinstance(params, Mapping):
        specs = []
        for name, value in params.items():
            if isinstance(value, str):
                specs.append(parse_param_spec(f"{name}={value}"))
            elif isinstance(value, (list, tuple, range)):
                vals = tuple(dict.fromkeys(value))
                if not vals:
                    raise OptimizeInputError(f"--param {name}: no values given (empty range)", f"--param {name}")
                specs.append(ParamSpec(name, vals, "list" if len(vals) > 1 else "fixed"))
            else:
                specs.append(ParamSpec(name, (value,), "fixed"))
        return specs
    return [p if isinstance(p, ParamSpec) else parse_param_spec(p) for p in params]


def optimize(strategy: str | Path | Sequence[str | Path], data: Any, params: Any, *,
             constraints: Sequence[str] = (), objective: str = "sharpe", method: str = "grid",
             trials: int | None = None, seed: int = 0, min_trades: int = 0, jobs: int = 1,
             backend: str = "local", ray_address: str | None = None,
             walk_forward: str | WalkForwardSpec | None = None, monte_carlo: int = 0,
             out: str | Path | None = None,
             progress: Callable[[int, int, Trial, Trial | None], Any] | None = None,
             start: Any = None, end: Any = None, **backtest_options: Any) -> OptimizeResult:
    """Search a strategy's parameters for the best objective, in parallel.

    Parameters
    ----------
    strategy : path or sequence of paths
        Lua strategy script(s), as for `Backtest`.
    data : path, Bars or a sequence of them
        Bars to optimise on (loaded once, by `load_data`).
    params : sequence of str, sequence of ParamSpec, or mapping
        ``["fast=5:40:5", "slow=20,30,50"]`` (see `parse_param_spec`) or
        ``{"fast": range(5, 41, 5), "slow": "20,30,50"}``.
    constraints : sequence of str
        Expressions over the parameters every combination must satisfy (``"fast < slow"``).
    objective : str
        ``sharpe``, ``sortino``, ``calmar``, ``return``, ``profit_factor``, a `Metrics` field or an
        expression over them; maximised.
    method : {"grid", "random", "optuna"}
        Every allowed combination; `trials` combinations drawn with `seed`; or Optuna's TPE sampler
        seeded with `seed` (resumable from ``out/optuna.journal``).
    trials : int, optional
        Trials for random and optuna (default 100; per fold in a walk-forward). Ignored by grid.
    seed : int
    min_trades : int
        Trials with fewer closed trades are "excluded" (not ranked).
    jobs : int
        Worker processes (local) or CPUs of a local Ray; 1 runs in this process.
    backend : {"local", "ray"}
    ray_address : str, optional
        Ray cluster to connect to (default: start a local one).
    walk_forward : str or WalkForwardSpec, optional
        ``"train=30d,test=7d[,anchored]"``: search on each train window, test the best parameters on
        the next window (see `tradesim.optimize.walkforward`).
    monte_carlo : int
        Bootstrap simulations of the best trial's (or the out-of-sample) trades; 0 = none.
    out : path, optional
        Folder for the Optuna journal (the CLI also writes the results there).
    progress : callable, optional
        ``progress(done, total, trial, best)`` after each trial (total is an estimate with optuna).
    start, end : optional
        Date range of the data (see `load_data`).
    **backtest_options
        `Backtest` keywords shared by every trial: ``commission_bps``, ``slippage_bps``, ``fill``,
        ``starting_cash``, ``risk_free_rate``, ``window_size``...

    Returns
    -------
    OptimizeResult

    Raises
    ------
    OptimizeInputError
        A bad parameter spec, an unknown parameter, an empty range, a constraint excluding every
        combination, a bad objective, method, trial count or walk-forward spec; the message names
        the option and value.
    StrategyLoadError, DataFileError
        The strategy or data cannot be loaded.
    ImportError
        ``method="optuna"`` without Optuna or ``backend="ray"`` without Ray.
    """
    from tradesim.strategy import LuaStrategy

    t0 = time.perf_counter()
    if method not in METHODS:
        raise OptimizeInputError(f"--method must be one of {', '.join(METHODS)}, got {method!r}", "--method")
    if trials is not None and trials < 1:
        raise OptimizeInputError(f"--trials must be >= 1, got {trials}", "--trials")
    if jobs < 1:
        raise OptimizeInputError(f"--jobs must be >= 1, got {jobs}", "--jobs")
    if min_trades < 0:
        raise OptimizeInputError(f"--min-trades must be >= 0, got {min_trades}", "--min-trades")
    if backend not in ("local", "ray"):
        raise OptimizeInputError(f"--backend must be local or ray, got {backend!r}", "--backend")
    paths = [Path(str(s)).resolve() for s in (strategy if isinstance(strategy, (list, tuple)) else [strategy])]
    declared: dict[str, Any] = {}
    for p in paths:
        declared.update(LuaStrategy(p).default_params)
    space = SearchSpace(_specs(params), constraints, declared)
    obj = Objective(objective, _METRIC_NAMES)
    wf_spec = parse_walk_forward(walk_forward) if isinstance(walk_forward, str) else walk_forward
    bars = load_data(data, start, end)
    folds = None
    if wf_spec is not None:
        first = min(int(b.timestamp[0]) for b in bars)
        interval = min(b.interval_ms or 60_000 for b in bars)
        folds = make_folds(first, max(int(b.timestamp[-1]) for b in bars) + interval, wf_spec)
    out_dir = Path(out) if out is not None else None
    if out_dir is not None:
        out_dir.mkdir(parents=True, exist_ok=True)
    setup = TrialSetup(tuple(str(p) for p in paths), dict(backtest_options))
    per_search = (sum(1 for _ in space.grid()) if method == "grid" else (trials or DEFAULT_TRIALS))
    total = per_search * (len(folds) if folds else 1)

    result = OptimizeResult(method, objective, [dataclasses.asdict(s) for s in space.specs], list(constraints),
                            seed, jobs, backend, min_trades, [],
                            data=[{"symbol": b.symbol, "source": b.source, "bars": len(b),
                                   "first": int(b.timestamp[0]), "last": int(b.timestamp[-1])} for b in bars])
    runner = make_backend(backend, bars, setup, jobs, ray_address)
    sweep = _Sweep(runner, obj, min_trades, progress, total)
    try:
        if folds is None:
            _search(sweep, space, method, trials, seed, None,
                    out_dir / "optuna.journal" if out_dir is not None and method == "optuna" else None)
        else:
            fold_rows = []
            for fold in folds:
                # Each fold's search gets its own seed so folds do not repeat one random sequence.
                found = _search(sweep, space, method, trials, seed + fold.index, fold, None)
                fold_rows.append((fold, best_of(found)))
    except KeyboardInterrupt:
        result.interrupted = True
    finally:
        result.worker_restarts = runner.restarts
        runner.close()
    result.trials = sorted(sweep.trials, key=lambda t: t.number)
    if folds is None:
        result.best = best_of(result.trials)
        if result.best is not None and not result.interrupted:
            best_run = run_backtest(bars, setup, result.best.params)
            result.best_curve = _curve(best_run)
            if monte_carlo:
                result.monte_carlo = bootstrap_trades(result.best_curve["pnls"], best_run.metrics.starting_cash,
                                                      monte_carlo, seed)
    elif not result.interrupted:
        assert wf_spec is not None
        result.walk_forward = _walk_forward_summary(bars, setup, obj, wf_spec, fold_rows)
        if monte_carlo:
            wf = result.walk_forward
            result.monte_carlo = bootstrap_trades(wf["oos_pnls"], wf["starting_cash"], monte_carlo, seed)
    result.seconds = time.perf_counter() - t0
    return result


_SUMMARY = ("total_return", "sharpe", "sortino", "calmar", "max_drawdown", "profit_factor", "n_trades")


def _walk_forward_summary(bars: list[Bars], setup: TrialSetup, obj: Objective, spec: WalkForwardSpec,
                          rows: list[tuple[Fold, Trial | None]]) -> dict[str, Any]:
    folds: list[dict] = []
    curves: list = []
    pnls: list[float] = []
    in_pos: list = []
    chosen: list[dict] = []
    cash = None
    for fold, best in rows:
        entry: dict[str, Any] = {**fold.to_dict(), "params": None, "is_objective": None, "oos_objective": None,
                                 "is": None, "oos": None, "efficiency": None, "oos_status": "no ranked trial"}
        if best is not None:
            entry.update(params=best.params, is_objective=best.objective,
                         **{"is": {k: best.metrics.get(k) for k in _SUMMARY}})
            chosen.append(best.params)
            try:
                res = run_backtest(bars, setup, best.params, fold.test_start, fold.test_end)
            except Exception as exc:
                entry["oos_status"] = f"failed: {type(exc).__name__}: {exc}"
            else:
                m = res.metrics.to_dict()
                oos_obj = obj(m)
                entry.update(oos_objective=oos_obj, oos={k: m.get(k) for k in _SUMMARY},
                             oos_status="failed" if res.failed_runs else "ok",
                             efficiency=(oos_obj / best.objective
                                         if best.objective and math.isfinite(oos_obj) else None))
                cash = res.metrics.starting_cash
                curves.append((res.timestamps, res.equity))
                in_pos.append(res.in_position)
                pnls.extend(t.pnl for t in res.trades)
        folds.append(entry)
    out: dict[str, Any] = {"spec": spec.describe(), "anchored": spec.anchored, "folds": folds,
                           "stability": parameter_stability(chosen), "oos_pnls": pnls, "starting_cash": cash,
                           "oos_metrics": None, "oos_curve": None, "degradation": None}
    if curves and cash:
        ts, eq = stitch_equity(curves, cash)
        interval = min(b.interval_ms or 60_000 for b in bars)
        order_ok = ts.size < 2 or bool((np.diff(ts) > 0).all())
        if order_ok:
            m = compute_metrics(eq, ts, [], interval_ms=interval, starting_cash=cash,
                                in_position=np.concatenate(in_pos))
            out["oos_metrics"] = {k: v for k, v in m.to_dict().items() if not k.startswith(("n_", "win", "avg",
                                                                                            "best", "worst",
                                                                                            "expect", "profit",
                                                                                            "total_fees"))}
            out["oos_metrics"]["n_trades"] = len(pnls)
        out["oos_curve"] = {"timestamps": ts, "equity": eq}
        is_vals = [f["is_objective"] for f in folds if f["is_objective"] is not None and f["oos_objective"] is not None
                   and math.isfinite(f["oos_objective"])]
        oos_vals = [f["oos_objective"] for f in folds if f["is_objective"] is not None
                    and f["oos_objective"] is not None and math.isfinite(f["oos_objective"])]
        if is_vals and np.mean(is_vals) != 0:
            out["degradation"] = float(np.mean(oos_vals) / np.mean(is_vals))
    return out
