"""Where trials run: in this process, in local worker processes, or as Ray tasks.

Every backend runs the same `run_trial` on the same bars, so a trial's metrics do not depend
on the backend or the number of workers. The bars are shared, never copied per worker:

- local workers map one ``.npy`` file per column, written once to a temporary folder
  (`SharedBars`); the operating system keeps one copy in its page cache for every process;
- Ray gets the columns once through ``ray.put``; tasks read them zero-copy from the object store.

A worker process that dies (killed, out of memory) breaks the local pool: the trials that
were in flight are run again one at a time in a new pool, and a trial that kills its worker
again is marked failed ("worker process died"), so no trial is lost silently. Ray retries
tasks whose worker died (``max_retries``) and the same failure marking applies after that.
See docs/optimize.md.
"""

from __future__ import annotations

import gc
import multiprocessing
import os
import signal
import tempfile
import time
from collections import deque
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tradesim.data import Bars

__all__ = ["Task", "TrialSetup", "run_trial", "SharedBars", "InProcessBackend", "LocalBackend",
           "RayBackend", "make_backend"]

#: Test-only: ``name=value`` making a local worker exit abruptly (``os._exit``) on trials with that
#: parameter value, to exercise the dead-worker handling (tests/optimize/test_workers.py).
CRASH_ENV = "TRADESIM_OPTIMIZE_TEST_CRASH"

DIED = "worker process died while running this trial (killed or crashed), twice"


@dataclass(frozen=True)
class TrialSetup:
    """What every trial shares: strategy scripts and `Backtest` options (execution, risk-free rate...)."""

    strategies: tuple[str, ...]
    options: dict = field(default_factory=dict)


@dataclass(frozen=True)
class Task:
    """One trial to run: its number, parameters and time window ``[start, end)`` (ms, or None = all bars)."""

    number: int
    params: dict
    start: int | None = None
    end: int | None = None


def window_bars(bars: Sequence[Bars], start: int | None, end: int | None) -> list[Bars]:
    """The bars with ``start <= open time < end`` per symbol (views, no copy); empty symbols dropped."""
    if start is None and end is None:
        return list(bars)
    out = [b.slice(start, end) for b in bars]
    return [b for b in out if len(b)]


def run_backtest(bars: Sequence[Bars], setup: TrialSetup, params: dict, start: int | None = None,
                 end: int | None = None):
    """A standalone `Backtest` of `setup` with `params` on the window's bars; returns its `BacktestResult`.

    Raises
    ------
    ValueError
        No bar in the window.
    StrategyError
        From `Backtest` (a strategy fails to load, a parameter value it refuses).
    """
    from tradesim.backtest import Backtest

    data = window_bars(bars, start, end)
    if not data:
        raise ValueError(f"no bars between {start} and {end}")
    return Backtest(list(setup.strategies), data, params=params, **setup.options).run()


def run_trial(bars: Sequence[Bars], setup: TrialSetup, task: Task) -> dict[str, Any]:
    """Run one trial and summarise it (picklable, small: no per-bar curves).

    Returns
    -------
    dict
        ``number``, ``status`` ("ok" or "failed"), ``reason`` (why it failed: the exception or the
        runners' failure reasons), ``metrics`` (`Metrics.to_dict()` of the portfolio; {} when the
        backtest raised), ``errors`` (strategy errors counted), ``seconds`` (wall time), ``pid``.
    """
    t0 = time.perf_counter()
    out: dict[str, Any] = {"number": task.number, "status": "ok", "reason": "", "metrics": {}, "errors": 0,
                           "pid": os.getpid()}
    try:
        result = run_backtest(bars, setup, task.params, task.start, task.end)
    except Exception as exc:  # a failing trial is a result, not the end of the sweep
        out.update(status="failed", reason=f"{type(exc).__name__}: {exc}")
    else:
        out["metrics"] = result.metrics.to_dict()
        out["errors"] = int(result.ledger["strategy_errors"])
        failed = result.failed_runs
        if failed:
            out.update(status="failed", reason="; ".join(f"{r.symbol}/{r.strategy}: {r.status_reason}"
                                                         for r in failed))
    out["seconds"] = time.perf_counter() - t0
    return out


def _failed(task: Task, reason: str) -> dict[str, Any]:
    return {"number": task.number, "status": "failed", "reason": reason, "metrics": {}, "errors": 0,
            "seconds": 0.0, "pid": None}


# --------------------------------------------------------------------------- shared bars

class SharedBars:
    """Bars written once to memory-mapped ``.npy`` files that worker processes map read-only.

    Parameters
    ----------
    bars : sequence of Bars
        One per symbol.
    directory : path, optional
        Where to write the files (default: a new temporary folder, removed by `close`).

    Notes
    -----
    Per symbol: ``{i}-ts.npy`` (int64 open times, ms since epoch UTC) and ``{i}-px.npy`` (float64,
    shape (5, n): open, high, low, close, volume). Each row of the C-ordered price array is a
    contiguous read-only view, as `RunnerCore.run` wants.
    """

    def __init__(self, bars: Sequence[Bars], directory: str | Path | None = None) -> None:
        self._tmp = None if directory is not None else tempfile.TemporaryDirectory(prefix="tradesim-opt-")
        self.directory = Path(directory if directory is not None else self._tmp.name)  # type: ignore[union-attr]
        self.handle: list[dict[str, Any]] = []
        for i, b in enumerate(bars):
            ts_path, px_path = self.directory / f"{i}-ts.npy", self.directory / f"{i}-px.npy"
            np.save(ts_path, np.ascontiguousarray(b.timestamp, dtype=np.int64))
            np.save(px_path, np.stack([b.open, b.high, b.low, b.close, b.volume]).astype(np.float64))
            self.handle.append({"symbol": b.symbol, "source": b.source, "interval_ms": b.interval_ms,
                                "ts": str(ts_path), "px": str(px_path)})

    @staticmethod
    def attach(handle: Sequence[dict[str, Any]]) -> list[Bars]:
        """`Bars` whose columns are read-only memory maps of the files named in `handle`."""
        out = []
        for h in handle:
            ts = np.load(h["ts"], mmap_mode="r")
            px = np.load(h["px"], mmap_mode="r")
            out.append(Bars(h["symbol"], ts, px[0], px[1], px[2], px[3], px[4], h["source"], h["interval_ms"]))
        return out

    def close(self) -> None:
        if self._tmp is not None:
            self._tmp.cleanup()
            self._tmp = None


# --------------------------------------------------------------------------- backends

Callback = Callable[[Task, dict], None]


class InProcessBackend:
    """Runs trials one after another in this process (``jobs=1``)."""

    name = "in-process"

    def __init__(self, bars: Sequence[Bars], setup: TrialSetup) -> None:
        self.bars, self.setup = list(bars), setup
        self.restarts = 0
        self.workers = 1

    def run(self, tasks: Sequence[Task], on_result: Callback) -> None:
        for task in tasks:
            on_result(task, run_trial(self.bars, self.setup, task))

    def close(self) -> None:
        pass


# Worker-process state: the mapped bars and the setup, set once by the pool's initializer.
_WORKER: dict[str, Any] = {}


def _init_worker(handle: list[dict[str, Any]], setup: TrialSetup, crash: str | None) -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    _WORKER["bars"] = SharedBars.attach(handle)
    _WORKER["setup"] = setup
    _WORKER["crash"] = crash
    gc.freeze()  # what the worker has imported stays put: collections below only scan the trials' objects


def _worker_task(task: Task) -> dict[str, Any]:
    crash = _WORKER["crash"]
    if crash:
        name, _, value = crash.partition("=")
        if str(task.params.get(name)) == value:
            os._exit(70)
    result = run_trial(_WORKER["bars"], _WORKER["setup"], task)
    # A finished backtest's Lua runtime and runner sit in reference cycles: free them now, so a
    # worker's memory stays that of one trial instead of creeping with every trial it has run.
    gc.collect()
    return result


class LocalBackend:
    """Worker processes on this machine sharing the bars through `SharedBars`.

    Parameters
    ----------
    bars : sequence of Bars
    setup : TrialSetup
    jobs : int
        Worker processes (>= 1).
    start_method : str, optional
        multiprocessing start method. Default "forkserver" where available (Linux, macOS): a
        server process imports tradesim, numpy and lupa once and forks each worker from it, so the
        workers share those pages (less memory, faster start) yet inherit none of the parent's
        threads or open files; "spawn" elsewhere.
    """

    name = "local"

    def __init__(self, bars: Sequence[Bars], setup: TrialSetup, jobs: int, start_method: str | None = None) -> None:
        self.setup, self.workers = setup, int(jobs)
        self.shared = SharedBars(bars)
        if start_method is None:
            start_method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
        self._context = multiprocessing.get_context(start_method)
        if start_method == "forkserver":
            self._context.set_forkserver_preload(["tradesim.optimize.backends", "tradesim.backtest",
                                                  "tradesim.strategy"])
        self._pool: ProcessPoolExecutor | None = None
        self.restarts = 0

    def _executor(self) -> ProcessPoolExecutor:
        if self._pool is None:
            self._pool = ProcessPoolExecutor(self.workers, mp_context=self._context, initializer=_init_worker,
                                             initargs=(self.shared.handle, self.setup,
                                                       os.environ.get(CRASH_ENV)))
        return self._pool

    def _discard(self, kill: bool = False) -> None:
        pool, self._pool = self._pool, None
        if pool is None:
            return
        if kill:
            for proc in list(getattr(pool, "_processes", {}).values()):
                if proc.is_alive():
                    proc.terminate()
        pool.shutdown(wait=True, cancel_futures=True)

    def run(self, tasks: Sequence[Task], on_result: Callback) -> None:
        queue = deque(tasks)
        try:
            while queue:
                suspects = self._run_some(queue, on_result)
                if suspects:
                    # A worker died: run what was in flight one at a time, to find the trial that kills it.
                    self.restarts += 1
                    self._discard()
                    for task in suspects:
                        self._run_alone(task, on_result)
        except BaseException:
            self._discard(kill=True)
            raise

    def _run_some(self, queue: deque, on_result: Callback) -> list[Task]:
        """Run queued tasks (keeping 2 per worker in flight) until the queue is empty or the pool breaks;
        returns the tasks lost to a broken pool."""
        pool = self._executor()
        inflight: dict[Future, Task] = {}
        limit = 2 * self.workers
        while queue or inflight:
            try:
                while queue and len(inflight) < limit:
                    task = queue[0]
                    inflight[pool.submit(_worker_task, task)] = task
                    queue.popleft()
            except BrokenProcessPool:
                break
            done, _ = wait(list(inflight), return_when=FIRST_COMPLETED)
            broken = False
            for fut in sorted(done, key=lambda f: inflight[f].number):
                exc = fut.exception()
                if isinstance(exc, BrokenProcessPool):
                    broken = True
                    continue
                task = inflight.pop(fut)
                on_result(task, _failed(task, f"{type(exc).__name__}: {exc}") if exc else fut.result())
            if broken:
                break
        lost = []
        for fut, task in sorted(inflight.items(), key=lambda kv: kv[1].number):
            if fut.done() and fut.exception() is None:
                on_result(task, fut.result())
            else:
                lost.append(task)
        return lost

    def _run_alone(self, task: Task, on_result: Callback) -> None:
        fut = self._executor().submit(_worker_task, task)
        try:
            result = fut.result()
        except BrokenProcessPool:
            self.restarts += 1
            self._discard()
            result = _failed(task, DIED)
        on_result(task, result)

    def close(self) -> None:
        self._discard()
        self.shared.close()


def _ray_trial(columns: list[dict[str, Any]], setup: TrialSetup, task: Task) -> dict[str, Any]:
    bars = [Bars(c["symbol"], c["ts"], c["px"][0], c["px"][1], c["px"][2], c["px"][3], c["px"][4], c["source"],
                 c["interval_ms"]) for c in columns]
    return run_trial(bars, setup, task)


class RayBackend:
    """Trials as Ray tasks; the bars go once into Ray's object store.

    Parameters
    ----------
    bars : sequence of Bars
    setup : TrialSetup
    address : str, optional
        Ray cluster address (``ray.init(address=...)``); None starts a local Ray with `jobs` CPUs
        (unless Ray is already initialised in this process, which is then used as it is).
    jobs : int
        CPUs of the local Ray started when `address` is None.

    Raises
    ------
    ImportError
        Ray is not installed (``pip install 'tradesim[ray]'``).
    """

    name = "ray"

    def __init__(self, bars: Sequence[Bars], setup: TrialSetup, address: str | None = None, jobs: int = 2) -> None:
        try:
            import ray
        except ImportError:
            raise ImportError("--backend ray needs Ray: pip install 'tradesim[ray]'") from None
        self._ray = ray
        self._started = False
        if not ray.is_initialized():
            if address:
                ray.init(address=address, log_to_driver=False)
            else:
                ray.init(num_cpus=max(int(jobs), 1), include_dashboard=False, log_to_driver=False)
            self._started = True
        self.workers = int(ray.cluster_resources().get("CPU", jobs))
        self.setup = setup
        columns = [{"symbol": b.symbol, "source": b.source, "interval_ms": b.interval_ms,
                    "ts": np.ascontiguousarray(b.timestamp, dtype=np.int64),
                    "px": np.stack([b.open, b.high, b.low, b.close, b.volume]).astype(np.float64)}
                   for b in bars]
        self._bars_ref = ray.put(columns)
        self._setup_ref = ray.put(setup)
        self._remote = ray.remote(max_retries=2)(_ray_trial)
        self.restarts = 0

    def run(self, tasks: Sequence[Task], on_result: Callback) -> None:
        ray = self._ray
        queue = deque(tasks)
        inflight: dict[Any, Task] = {}
        limit = 4 * max(self.workers, 1)
        try:
            while queue or inflight:
                while queue and len(inflight) < limit:
                    task = queue.popleft()
                    inflight[self._remote.remote(self._bars_ref, self._setup_ref, task)] = task
                done, _ = ray.wait(list(inflight), num_returns=1)
                for ref in done:
                    task = inflight.pop(ref)
                    try:
                        result = ray.get(ref)
                    except ray.exceptions.WorkerCrashedError:
                        result = _failed(task, DIED)
                    except ray.exceptions.RayError as exc:
                        result = _failed(task, f"{type(exc).__name__}: {exc}")
                    on_result(task, result)
        except BaseException:
            for ref in inflight:
                ray.cancel(ref, force=True)
            raise

    def close(self) -> None:
        if self._started:
            self._ray.shutdown()


def make_backend(kind: str, bars: Sequence[Bars], setup: TrialSetup, jobs: int, address: str | None = None):
    """The backend for ``--backend kind`` and ``--jobs`` (local with 1 job runs in this process)."""
    if kind == "ray":
        return RayBackend(bars, setup, address, jobs)
    if kind != "local":
        raise ValueError(f"--backend must be local or ray, got {kind!r}")
    if jobs <= 1:
        return InProcessBackend(bars, setup)
    return LocalBackend(bars, setup, jobs)
