"""`tradesim optimize` throughput and memory: jobs 2 vs jobs 1, per-trial cost vs a standalone backtest, Ray.

The full measurement (the issue's targets, see docs/optimize.md) is a script:

    python benches/bench_optimize.py --trials 1000 --bars 43000 [--rounds 2] [--ray]

It interleaves the runs (standalone, jobs 1, jobs 2, Ray) round by round so that load from
other processes on a shared machine hits all of them alike, prints the machine's load average,
and reports: trials/s per run, the jobs 2 / jobs 1 speed-up (target >= 1.8), the per-trial cost
of jobs 1 vs a loop of standalone `Backtest` runs (target within 10 %), the peak memory of the
2 workers (RSS, PSS and private bytes from /proc/PID/smaps_rollup; target <= one copy of the
bars + 2 x (runner + result) + 50 MB) and Ray's overhead per trial.

Under pytest (CI runs benches once with --benchmark-disable) a small sweep only checks it runs.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import threading
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
EMA = REPO / "lua-strategies" / "examples" / "ema_crossover.lua"
KLINES = REPO.parent / "shared" / "data" / "binance" / "klines" / "1m"
BTC = KLINES / "BTCUSDT-1m-2026-03-23_2026-04-22.csv.gz"


def _params(n: int) -> list[str]:
    # fast 2..41 (40 values) x slow 30..150 step 5 (25 values) = 1,000 combinations, all fast < slow.
    if n >= 1000:
        return ["fast=2:41", "slow=30:150:5"]
    side = max(int(np.sqrt(n)), 1)
    return [f"fast=2:{1 + side}", f"slow=30:{30 + 5 * (max(n // side, 1) - 1)}:5"]


def _smaps(pid: int) -> dict[str, int]:
    out = {}
    try:
        with open(f"/proc/{pid}/smaps_rollup") as fh:
            for line in fh:
                parts = line.split()
                if parts[0] in ("Rss:", "Pss:", "Private_Clean:", "Private_Dirty:"):
                    out[parts[0][:-1]] = int(parts[1]) * 1024
    except OSError:
        pass
    return out


class _MemorySampler(threading.Thread):
    """Polls the worker processes' memory every 50 ms and keeps the peak of their sums."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.stop = threading.Event()
        self.peak = {"Rss": 0, "Pss": 0, "Private": 0, "workers": 0}
        self.cpu_ticks: dict[int, int] = {}  # per worker: utime + stime last seen

    def run(self) -> None:
        while not self.stop.wait(0.05):
            kids = [p.pid for p in multiprocessing.active_children()]
            tot = {"Rss": 0, "Pss": 0, "Private": 0}
            for pid in kids:
                try:
                    with open(f"/proc/{pid}/stat") as fh:
                        fields = fh.read().rsplit(")", 1)[1].split()
                    self.cpu_ticks[pid] = int(fields[11]) + int(fields[12])
                except (OSError, IndexError, ValueError):
                    pass
                m = _smaps(pid)
                tot["Rss"] += m.get("Rss", 0)
                tot["Pss"] += m.get("Pss", 0)
                tot["Private"] += m.get("Private_Clean", 0) + m.get("Private_Dirty", 0)
            for k, v in tot.items():
                self.peak[k] = max(self.peak[k], v)
            self.peak["workers"] = max(self.peak["workers"], len(kids))


def _standalone(bars, combos) -> float:
    from tradesim.backtest import Backtest

    t0 = time.perf_counter()
    for p in combos:
        Backtest(str(EMA), bars, params=p).run()
    return time.perf_counter() - t0


def _runner_and_result_bytes(bars) -> int:
    """Memory one trial needs: the Python heap allocated by building and running one Backtest (tracemalloc)."""
    import tracemalloc

    from tradesim.backtest import Backtest

    tracemalloc.start()
    result = Backtest(str(EMA), bars, params={"fast": 10, "slow": 50}).run()
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    del result
    return peak


def measure(trials: int, n_bars: int, rounds: int, use_ray: bool, standalone_trials: int) -> dict:
    from tradesim.data import load_bars
    from tradesim.optimize import optimize

    bars = load_bars(BTC)
    bars = bars.slice(None, int(bars.timestamp[min(n_bars, len(bars) - 1)]))
    params = _params(trials)
    combos = [t.params for t in optimize(EMA, bars, params, jobs=1, method="random", trials=standalone_trials,
                                         seed=1).trials]
    if use_ray:
        import ray

        ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    runs: dict[str, list[float]] = {"standalone_per_trial": [], "sample_jobs1_per_trial": [], "jobs1": [],
                                    "jobs2": [], "ray": []}
    cores_used: list[float] = []  # jobs 2: the workers' CPU seconds / wall seconds
    cpu_jobs1: list[float] = []  # jobs 1: this process's CPU seconds
    cpu_jobs2: list[float] = []  # jobs 2: the workers' CPU seconds
    memory = None
    load = []
    n = None
    for _ in range(rounds):
        load.append(os.getloadavg())
        runs["standalone_per_trial"].append(_standalone(bars, combos) / len(combos))
        # The same combinations through optimize in this process: the machinery's cost per trial.
        t0 = time.perf_counter()
        optimize(EMA, bars, params, jobs=1, method="random", trials=standalone_trials, seed=1)
        runs["sample_jobs1_per_trial"].append((time.perf_counter() - t0) / len(combos))
        t0, c0 = time.perf_counter(), time.process_time()
        r1 = optimize(EMA, bars, params, jobs=1)
        runs["jobs1"].append(time.perf_counter() - t0)
        cpu_jobs1.append(time.process_time() - c0)
        n = len(r1.trials)
        sampler = _MemorySampler()
        sampler.start()
        t0 = time.perf_counter()
        r2 = optimize(EMA, bars, params, jobs=2)
        runs["jobs2"].append(time.perf_counter() - t0)
        sampler.stop.set()
        sampler.join()
        cpu_jobs2.append(sum(sampler.cpu_ticks.values()) / os.sysconf("SC_CLK_TCK"))
        cores_used.append(cpu_jobs2[-1] / runs["jobs2"][-1])
        memory = sampler.peak if memory is None else {k: max(v, sampler.peak[k]) for k, v in memory.items()}
        assert [t.params for t in r1.trials] == [t.params for t in r2.trials]
        if use_ray:
            t0 = time.perf_counter()
            optimize(EMA, bars, params, backend="ray", jobs=2)
            runs["ray"].append(time.perf_counter() - t0)
        load.append(os.getloadavg())
    if use_ray:
        import ray

        ray.shutdown()
    best = {k: min(v) for k, v in runs.items() if v}
    per_trial_1 = best["jobs1"] / n
    bars_bytes = len(bars) * 6 * 8
    trial_bytes = _runner_and_result_bytes(bars)
    out = {
        "trials": n, "bars": len(bars), "rounds": rounds, "cpus": os.cpu_count(),
        "loadavg_1m_during": [round(x[0], 2) for x in load],
        "seconds": {k: [round(x, 3) for x in v] for k, v in runs.items() if v},
        "trials_per_s": {"jobs1": round(n / best["jobs1"], 2), "jobs2": round(n / best["jobs2"], 2)},
        "speedup_jobs2_vs_jobs1": round(best["jobs1"] / best["jobs2"], 3),
        "speedup_per_round": [round(a / b, 3) for a, b in zip(runs["jobs1"], runs["jobs2"])],
        "standalone_ms_per_trial": round(1000 * best["standalone_per_trial"], 3),
        "jobs1_ms_per_trial_full_grid": round(1000 * per_trial_1, 3),
        "jobs1_ms_per_trial_same_combos": round(1000 * best["sample_jobs1_per_trial"], 3),
        "jobs1_vs_standalone_same_combos": round(best["sample_jobs1_per_trial"] / best["standalone_per_trial"], 3),
        "jobs1_vs_standalone_per_round": [round(a / b, 3) for a, b in zip(runs["sample_jobs1_per_trial"],
                                                                          runs["standalone_per_trial"])],
        "jobs2_cores_obtained_per_round": [round(x, 3) for x in cores_used],
        # CPU per trial does not depend on how many cores the machine gives us: with 2 free cores the
        # speed-up would be about 2 x (jobs 1 CPU per trial) / (jobs 2 workers' CPU per trial).
        "cpu_ms_per_trial_jobs1": [round(1000 * x / n, 3) for x in cpu_jobs1],
        "cpu_ms_per_trial_jobs2_workers": [round(1000 * x / n, 3) for x in cpu_jobs2],
        "projected_speedup_with_2_free_cores": round(2 * min(cpu_jobs1) / min(cpu_jobs2), 3),
        "memory_2_workers_peak_bytes": memory,
        "bars_bytes": bars_bytes,
        "runner_plus_result_bytes": trial_bytes,
        "memory_target_bytes": bars_bytes + 2 * trial_bytes + 50 * 2**20,
    }
    if use_ray:
        out["trials_per_s"]["ray"] = round(n / best["ray"], 2)
        out["ray_vs_jobs2"] = round(best["ray"] / best["jobs2"], 3)
        # Overhead per trial: the Ray sweep's CPU-seconds per trial (2 CPUs) minus a standalone trial's cost.
        out["ray_overhead_ms_per_trial"] = round(1000 * (2 * best["ray"] / n - best["standalone_per_trial"]), 3)
        out["jobs2_overhead_ms_per_trial"] = round(1000 * (2 * best["jobs2"] / n - best["standalone_per_trial"]), 3)
    return out


def test_optimize_sweep_runs(benchmark):
    """CI smoke: a 12-trial sweep over 5,000 real bars with 2 workers."""
    if not BTC.exists():
        import pytest

        pytest.skip(f"real data not found at {BTC}")
    from tradesim.data import load_bars
    from tradesim.optimize import optimize

    bars = load_bars(BTC)
    bars = bars.slice(None, int(bars.timestamp[5000]))
    result = benchmark.pedantic(lambda: optimize(EMA, bars, ["fast=5:20:5", "slow=30:50:10"], jobs=2),
                                rounds=1, iterations=1)
    assert len(result.trials) == 12 and all(t.status == "ok" for t in result.trials)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--trials", type=int, default=1000)
    ap.add_argument("--bars", type=int, default=43_000)
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--standalone-trials", type=int, default=100)
    ap.add_argument("--ray", action="store_true")
    args = ap.parse_args()
    print(json.dumps(measure(args.trials, args.bars, args.rounds, args.ray, args.standalone_trials), indent=2))


if __name__ == "__main__":
    main()
