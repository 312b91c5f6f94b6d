"""``tradesim optimize``: the command around `tradesim.optimize.optimize` (see docs/optimize.md)."""

from __future__ import annotations

import json
import math
import os

import click

from tradesim.catalog.commands import bar_source_options
from tradesim.cli_support import console

__all__ = ["optimize_command", "load_command_data"]


def load_command_data(data, symbols=(), interval=None, start=None, end=None, catalog=None):
    """The bars the command optimises on: ``--data FILE...`` or ``--symbol S [--interval --from --to
    --catalog]`` from the local catalog (`tradesim.catalog.commands.bars_option_values`); every data
    option goes through here."""
    from tradesim.catalog.commands import bars_option_values
    from tradesim.optimize.search import load_data

    return load_data(list(bars_option_values(data, symbols, interval, start, end, catalog)), start, end)


def _progress(con, enabled):
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    progress = Progress(TextColumn("optimize"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                        TextColumn("ETA"), TimeRemainingColumn(), TextColumn("{task.fields[best]}"),
                        console=con, transient=True, disable=not enabled)
    return progress


def _fmt(v):
    from tradesim.display import format_number

    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "-"
    return format_number(v, ".4g") if isinstance(v, float) else str(v)


@click.command("optimize")
@click.option("--strategy", "strategies", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Lua strategy script (repeatable, as for backtest).")
@bar_source_options
@click.option("--param", "params", multiple=True, required=True, metavar="NAME=SPEC",
              help="Values to search: lo:hi[:step] (inclusive) or v1,v2,... (repeatable).")
@click.option("--constraint", "constraints", multiple=True, metavar="EXPR",
              help='Keep only combinations where EXPR holds, e.g. "fast < slow" (repeatable).')
@click.option("--objective", default="sharpe", show_default=True,
              help="sharpe|sortino|calmar|return|profit_factor, a metric name or an expression over metrics.")
@click.option("--method", type=click.Choice(["grid", "random", "optuna"]), default="grid", show_default=True)
@click.option("--trials", type=int, default=None, help="Trials for random/optuna (per fold; default 100).")
@click.option("--seed", default=0, show_default=True, help="Seed of random and optuna search (and Monte Carlo).")
@click.option("--min-trades", default=0, show_default=True, help="Trials with fewer trades are not ranked.")
@click.option("--jobs", type=int, default=None, help="Worker processes (default: CPUs); 1 = this process.")
@click.option("--backend", type=click.Choice(["local", "ray"]), default="local", show_default=True)
@click.option("--ray-address", default=None, help="Ray cluster address (default: start a local Ray).")
@click.option("--walk-forward", "walk_forward", default=None, metavar="train=30d,test=7d[,anchored]",
              help="Walk-forward analysis: search each train window, test on the next.")
@click.option("--monte-carlo", default=0, show_default=True,
              help="Bootstrap simulations of the best (or out-of-sample) trade sequence.")
@click.option("--fill", type=click.Choice(["next_open", "close"]), default="next_open", show_default=True)
@click.option("--slippage-bps", default=0.0, show_default=True, help="Slippage against the trader, bps.")
@click.option("--commission-bps", default=0.0, show_default=True, help="Commission per side, bps of notional.")
@click.option("--cash", default=10_000.0, show_default=True, help="Starting cash, quote currency.")
@click.option("--top", default=10, show_default=True, help="Rows of the top-trials table.")
@click.option("--out", "out_dir", type=click.Path(file_okay=False), default=None,
              help="Folder for trials.csv, results.json (and the Optuna journal, to resume).")
@click.option("--report", type=click.Path(dir_okay=False), default=None, help="Write an offline HTML report here.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def optimize_command(strategies, data, symbols, interval, catalog_dir, start, end, params, constraints, objective,
                     method, trials, seed, min_trades, jobs, backend, ray_address, walk_forward, monte_carlo, fill,
                     slippage_bps, commission_bps, cash, top, out_dir, report, as_json):
    """Search strategy parameters (grid, random, Optuna), optionally walk-forward, in parallel.

    \b
    Example:
      tradesim optimize --strategy lua-strategies/examples/ema_crossover.lua \\
          --data BTCUSDT-1m.csv.gz --param fast=5:40:5 --param slow=20,30,50 \\
          --constraint "fast < slow" --objective sharpe --jobs 2 --out opt --report opt.html
    """
    from tradesim.data import DataFileError
    from tradesim.optimize.output import write_optimize_report, write_results
    from tradesim.optimize.search import optimize
    from tradesim.optimize.space import OptimizeInputError
    from tradesim.strategy import StrategyError

    err = console(stderr=True)
    jobs = jobs or os.cpu_count() or 1
    try:
        bars = load_command_data(data, symbols, interval, start, end, catalog_dir)
        with _progress(err, not as_json and err.is_terminal) as progress:
            task = progress.add_task("optimize", total=None, best="")

            def on_trial(done, total, trial, best):
                text = "" if best is None else (
                    f"best {best.objective:.4g} ({', '.join(f'{k}={v}' for k, v in best.params.items())})")
                progress.update(task, completed=done, total=total, best=text)

            result = optimize(list(strategies), bars, list(params), constraints=list(constraints), objective=objective,
                              method=method, trials=trials, seed=seed, min_trades=min_trades, jobs=jobs,
                              backend=backend, ray_address=ray_address, walk_forward=walk_forward,
                              monte_carlo=monte_carlo, out=out_dir, progress=on_trial, fill=fill,
                              slippage_bps=slippage_bps, commission_bps=commission_bps, starting_cash=cash)
    except OptimizeInputError as exc:
        raise click.BadParameter(str(exc), param_hint=exc.field or None) from None
    except (StrategyError, DataFileError, ValueError, ImportError) as exc:
        raise click.ClickException(str(exc)) from None
    files = write_results(result, out_dir) if out_dir else {}
    if report:
        write_optimize_report(report, result)
    if as_json:
        click.echo(json.dumps(result.to_dict(), allow_nan=False))
    else:
        _print(result, top, files, report)
    if result.interrupted:
        raise SystemExit(1)
    if not any(t.ranked for t in result.trials) and result.walk_forward is None:
        raise SystemExit(1)


def _print(result, top, files, report) -> None:
    from rich.markup import escape
    from rich.table import Table

    con = console()
    names = [s["name"] for s in result.space]
    table = Table(title=f"Top {top} trials by {result.objective} ({result.method})")
    for col in ("#", *names, "objective", "return", "sharpe", "max dd", "trades"):
        table.add_column(col, justify="right")
    for t in result.top(top):
        m = t.metrics
        table.add_row(str(t.number), *(str(t.params[n]) for n in names), _fmt(t.objective), _fmt(m.get("total_return")),
                      _fmt(m.get("sharpe")), _fmt(m.get("max_drawdown")), str(m.get("n_trades")))
    if result.walk_forward is None:
        con.print(table)
    counts = {s: sum(t.status == s for t in result.trials) for s in ("ok", "failed", "excluded", "skipped")}
    con.print(f"{len(result.trials):,} trials ({', '.join(f'{v:,} {k}' for k, v in counts.items() if v)}) in "
              f"{result.seconds:.1f} s, {result.backend} backend, {result.jobs} job(s)"
              + (f", {result.worker_restarts} worker restart(s)" if result.worker_restarts else ""), soft_wrap=True)
    failed = [t for t in result.trials if t.status == "failed"]
    for t in failed[:5]:
        con.print(f"[red]trial {t.number} {escape(str(t.params))} failed:[/red] {escape(t.reason)}", soft_wrap=True)
    wf = result.walk_forward
    if wf:
        ft = Table(title=f"Walk-forward {wf['spec']}")
        for col in ("fold", "test from", "params", "IS objective", "OOS objective", "OOS/IS", "OOS return"):
            ft.add_column(col, justify="right")
        from tradesim.timeframes import format_time

        for f in wf["folds"]:
            ft.add_row(str(f["index"]), format_time(f["test_start"], "%Y-%m-%d %H:%M"),
                       ", ".join(f"{k}={v}" for k, v in (f["params"] or {}).items()), _fmt(f["is_objective"]),
                       _fmt(f["oos_objective"]), _fmt(f["efficiency"]), _fmt((f["oos"] or {}).get("total_return")))
        con.print(ft)
        oos = wf["oos_metrics"] or {}
        con.print(f"stitched out-of-sample: return {_fmt(oos.get('total_return'))}, sharpe {_fmt(oos.get('sharpe'))}, "
                  f"max drawdown {_fmt(oos.get('max_drawdown'))}; degradation OOS/IS {_fmt(wf['degradation'])}")
    if result.monte_carlo and result.monte_carlo["total_return"]:
        mc = result.monte_carlo
        con.print(f"Monte Carlo ({mc['simulations']:,} bootstraps of {mc['trades']:,} trades): return 5/50/95 % "
                  f"{' / '.join(_fmt(v) for v in mc['total_return'].values())}; max drawdown "
                  f"{' / '.join(_fmt(v) for v in mc['max_drawdown'].values())}; P(loss) {_fmt(mc['prob_loss'])}")
    if result.interrupted:
        con.print("[yellow]interrupted: the finished trials are kept[/yellow]")
    for kind, path in files.items():
        con.print(f"{kind}: {path}")
    if report:
        con.print(f"report: {report}")
