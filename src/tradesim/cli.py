"""The `tradesim` command line (click).

Commands parse options, call library code and map domain errors to exit codes:
0 success; 1 a runner failed, bad input or another runtime failure (a
`click.ClickException`); 2 usage error. Heavy imports happen inside the command
that needs them.
"""

from __future__ import annotations

import sys

import click

from tradesim import __version__
from tradesim.catalog.commands import bar_source_options
from tradesim.catalog.commands import bars_option_values as _bars_option_values
from tradesim.cli_support import console as _console
from tradesim.cli_support import parse_params as _parse_params
from tradesim.portfolio.options import risk_options

#: Exit status when the command ran but a runner FAILED (or the input was bad).
EXIT_FAILED = 1


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="tradesim")
def main():
    """tradesim: backtest and run scripted trading strategies.

    Exit status: 0 ok, 1 a runner failed or bad input, 2 usage error.

    \b
    Examples:
      tradesim indicators list
      tradesim indicators compute --data BTCUSDT-1m.csv.gz --indicator rsi:14
    """


@main.group()
def indicators():
    """List indicators or compute them over a bar file."""


@indicators.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print the registry as JSON.")
def indicators_list(as_json):
    """List the available indicators with their parameters and outputs.

    \b
    Example:
      tradesim indicators list
    """
    from tradesim.indicators import available

    infos = available()
    if as_json:
        import json

        click.echo(json.dumps([
            {"name": i.name, "summary": i.summary, "inputs": list(i.inputs),
             "outputs": list(i.outputs),
             "params": [{"name": p.name, "type": p.type.__name__, "default": p.default,
                         "minimum": p.minimum} for p in i.params]}
            for i in infos], indent=2))
        return
    from rich.table import Table

    table = Table(title="tradesim indicators")
    for col in ("spec (defaults)", "inputs", "outputs", "description"):
        table.add_column(col)
    for i in infos:
        spec = f"{i.name}:" + ",".join(f"{p.name}={p.default:g}" for p in i.params)
        table.add_row(spec, ", ".join(i.inputs), ", ".join(i.outputs), i.summary)
    _console().print(table)


@indicators.command("compute")
@click.option("--data", "data_path", required=True, type=click.Path(dir_okay=False),
              help="Bar file: Binance kline CSV (.csv/.csv.gz) or timestamp,open,high,low,close,volume CSV.")
@click.option("--indicator", "specs", multiple=True, required=True, metavar="SPEC",
              help="Indicator spec name[:p1,p2,...], e.g. rsi:14 or macd:12,26,9. Repeatable.")
@click.option("--out", "out_path", type=click.Path(dir_okay=False, writable=True),
              help="Write every bar with its indicator values to this CSV (NaN cells empty).")
@click.option("--tail", default=10, show_default=True,
              help="Rows shown in the terminal table when --out is not given.")
def indicators_compute(data_path, specs, out_path, tail):
    """Compute indicators over a bar file.

    Writes a CSV (timestamp in ms since epoch UTC, close, then one column per
    indicator output) with --out, or prints the last --tail rows as a table.

    \b
    Example:
      tradesim indicators compute --data BTCUSDT-1m.csv.gz \\
          --indicator rsi:14 --indicator macd:12,26,9 --out out.csv
    """
    import numpy as np

    from tradesim.data import DataFileError, load_bars
    from tradesim.indicators import compute, parse_spec

    for spec in specs:  # validate specs before the (slower) file read
        try:
            parse_spec(spec)
        except (KeyError, ValueError) as exc:
            raise click.BadParameter(str(exc).strip('"'), param_hint="--indicator") from None
    try:
        bars = load_bars(data_path)
    except DataFileError as exc:
        raise click.ClickException(str(exc)) from None
    columns: dict[str, np.ndarray] = {}
    for spec in specs:
        columns.update(compute(spec, bars.columns()))

    if out_path:
        _write_csv(out_path, bars, columns)
        click.echo(f"wrote {len(bars)} rows x {len(columns)} indicator columns to {out_path}",
                   err=True)
        return
    from rich.table import Table

    table = Table(title=f"{bars.symbol}: last {min(tail, len(bars))} of {len(bars)} bars")
    table.add_column("time (UTC)")
    table.add_column("close", justify="right")
    for name in columns:
        table.add_column(name, justify="right")
    from tradesim.timeframes import format_time

    for i in range(max(0, len(bars) - tail), len(bars)):
        table.add_row(format_time(int(bars.timestamp[i]), "%Y-%m-%d %H:%M"), f"{bars.close[i]:.8g}",
                      *(("" if np.isnan(v := col[i]) else f"{v:.6f}") for col in columns.values()))
    _console().print(table)


def _strategy_error(exc: Exception) -> click.ClickException:
    return click.ClickException(f"strategy error: {exc}")


@main.command("validate")
@click.argument("strategy", type=click.Path(dir_okay=False))
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Override a strategy parameter.")
@click.option("--bars", default=2000, show_default=True, help="Synthetic 1m bars to run the strategy over.")
@click.option("--strict", is_flag=True, help="Exit 1 on warnings too (e.g. every action was rejected).")
def validate_command(strategy, params, bars, strict):
    """Load a strategy, check it and run it over synthetic bars.

    Prints OK with a short summary, or the error with file and line (exit 1).
    Warns when the strategy asked for actions but none was carried out (every
    one rejected), naming the reasons; with --strict that is an error (exit 1).

    \b
    Example:
      tradesim validate lua-strategies/examples/ema_crossover.lua
    """
    from tradesim.feeds.simulated import SimulatedFeed
    from tradesim.runner import SymbolRunner
    from tradesim.runner.execution import ExecutionConfig
    from tradesim.strategy import LuaStrategy, StrategyError

    try:
        lua = LuaStrategy(strategy, _parse_params(params))
    except StrategyError as exc:
        raise _strategy_error(exc) from None
    feed = SimulatedFeed(("SIMUSDT",), seed=7, volatility=0.8)
    sim = feed.bars("SIMUSDT", bars)
    runner = SymbolRunner("SIMUSDT", lua, execution=ExecutionConfig(), max_consecutive_errors=1)
    import numpy as np

    nan = np.full(len(sim), np.nan)
    equity = np.empty(len(sim))
    in_pos = np.zeros(len(sim), dtype=np.uint8)
    runner.core.run(sim.timestamp, sim.open, sim.high, sim.low, sim.close, sim.volume, nan, nan,
                    equity, in_pos, 0, len(sim))
    if runner.errors:
        raise click.ClickException(f"strategy error: {runner.errors[0].message}")
    carried_out = len(runner.trades) + (runner.machine.position is not None)
    runner.close_position()
    if runner.rejection_count and not carried_out:
        reasons = sorted({f"{r.action}: {r.reason}" for r in runner.rejections})
        click.echo(f"warning: every action was rejected ({runner.rejection_count:,} of them) over "
                   f"{len(sim):,} synthetic bars: " + "; ".join(reasons[:5]), err=True)
        if strict:
            raise SystemExit(EXIT_FAILED)
    click.echo(f"OK  {lua.name} ({lua.path}): {len(sim)} synthetic bars, "
               f"{len(runner.trades)} trades, {len(runner.rejections)} rejected actions, "
               f"indicators used: {', '.join(runner.bank.keys()) or 'none'}; "
               f"params: {lua.params}")


@main.command("run")
@click.option("--strategy", "strategy", type=click.Path(dir_okay=False),
              help="Lua strategy script (required unless --config).")
@click.option("--config", "config_path", type=click.Path(dir_okay=False),
              help="runners.toml: feeds and runners (symbol, strategy, params, feed, execution).")
@click.option("--symbol", "symbols", multiple=True, help="Symbol to trade (repeatable). Default BTCUSDT.")
@click.option("--feed", type=click.Choice(["simulated", "replay", "binance"]), default="simulated",
              show_default=True,
              help="simulated: seeded random walk (no network, no files); replay: bars or a "
                   "recorded Binance stream from --data; binance: live klines (paper trading).")
@click.option("--data", "data", multiple=True, type=click.Path(dir_okay=False),
              help="Bar file(s) or recording(s) (.txt/.txt.gz) for --feed replay.")
@click.option("--from", "start", default=None,
              help="--feed replay without --data: bars of --symbol from the catalog from this open time.")
@click.option("--to", "end", default=None, help="--feed replay without --data: up to (excluding) this open time.")
@click.option("--catalog", "catalog_dir", default=None, type=click.Path(file_okay=False),
              help="--feed replay without --data: catalog folder (default $TRADESIM_CATALOG or "
                   "~/.local/share/tradesim).")
@click.option("--speed", default=0.0, show_default=True,
              help="Pace: 0 = as fast as possible, 1 = real time, N = N times real time.")
@click.option("--bars-from", type=click.Choice(["auto", "klines", "trades"]), default="auto", show_default=True,
              help="Recordings (--feed replay, .txt/.txt.gz): replay their @kline stream or build bars from "
                   "@trade; auto takes klines when recorded, else trades.")
@click.option("--bars", default=5000, show_default=True,
              help="Bars per symbol for the simulated feed (0 = run until Ctrl-C).")
@click.option("--interval", default="1m", show_default=True, help="Bar interval (1s ... 1d, 1M).")
@click.option("--seed", default=0, show_default=True, help="Simulated feed seed.")
@click.option("--cash", default=10_000.0, show_default=True, help="Starting cash per runner, quote currency.")
@click.option("--fill", type=click.Choice(["next_open", "close"]), default="next_open", show_default=True,
              help="Market orders fill at the next bar's open or the signal bar's close.")
@click.option("--slippage-bps", default=0.0, show_default=True, help="Slippage against the trader, bps.")
@click.option("--commission-bps", default=0.0, show_default=True, help="Commission per side, bps of notional.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Override a strategy parameter.")
@click.option("--region", type=click.Choice(["com", "us"]), default="com", show_default=True,
              help="Binance region for --feed binance.")
@click.option("--base-url", default=None, help="WebSocket base URL for --feed binance (e.g. a test server).")
@click.option("--rest-url", default=None, help="REST base URL for backfill with --feed binance.")
@click.option("--duration", type=float, default=None, help="Stop after this many seconds.")
@click.option("--events", "events_path", type=click.Path(dir_okay=False),
              help="Write every event as a JSON line to this file.")
@click.option("--max-offline", type=click.FloatRange(min=0), default=120.0, show_default=True,
              help="Give up (exit 1) when a live feed has had no connection for this many seconds "
                   "(0 = retry for ever).")
@click.option("--busy-poll-us", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="Low-latency mode: µs the event loop and idle workers spin before sleeping "
                   "(each spinning thread keeps a core busy; 0 = sleep at once).")
@click.option("--record", "record_dir", type=click.Path(file_okay=False), default=None,
              help="Record the run as a session in this sessions folder (see `tradesim sessions`).")
@click.option("--session-name", default=None, help="The recorded session's id (default: UTC time and kind).")
@risk_options
def run_command(strategy, config_path, symbols, feed, data, start, end, catalog_dir, speed, bars_from, bars,
                interval, seed, cash, fill,
                slippage_bps, commission_bps, params, region, base_url, rest_url, duration, events_path,
                max_offline, busy_poll_us, record_dir, session_name, limits):
    """Run strategies on a feed with paper trading; Ctrl-C or SIGTERM stops with a summary.

    \b
    Examples:
      tradesim run --strategy lua-strategies/examples/ema_crossover.lua
      tradesim run --strategy s.lua --feed replay --data BTCUSDT-1m.csv.gz --speed 60
      tradesim run --strategy s.lua --feed replay --symbol BTCUSDT --from 2024-01-01 --to 2024-02-01
      tradesim run --strategy s.lua --feed binance --symbol BTCUSDT --symbol ETHUSDT --interval 1m
      tradesim run --config runners.toml
      tradesim run --strategy s.lua --record sessions    # then: tradesim sessions list
    """
    from tradesim.data import DataFileError
    from tradesim.engine.config import ConfigError
    from tradesim.engine.feed_watch import FeedOffline
    from tradesim.recording import RecordingError
    from tradesim.strategy import StrategyError

    if config_path is None and strategy is None:
        raise click.UsageError("give --strategy PATH (or --config runners.toml)")
    if config_path is not None and strategy is not None:
        raise click.UsageError("--config lists the strategies: drop --strategy")
    if config_path is not None and (limits.execution or limits.risk or limits.portfolio):
        raise click.UsageError("with --config, set lot sizes, risk and portfolio limits in runners.toml "
                               "([risk], [portfolio], a runner's execution table)")
    if data and (start or end or catalog_dir):
        raise click.UsageError("--from/--to/--catalog take bars from the catalog: drop them or --data")
    if config_path is None and feed == "replay" and not data:
        data = _bars_option_values(data, symbols, interval, start, end, catalog_dir)
    events_file = open(events_path, "wb") if events_path else None  # noqa: SIM115 (closed below)
    try:
        if config_path is not None:
            from tradesim.engine.config import load_config
            from tradesim.engine.run import build_engine, record_session, run_engine

            config = load_config(config_path)
            if busy_poll_us:  # the command line wins over [engine] busy_poll_us
                config = config.model_copy(update={
                    "engine": config.engine.model_copy(update={"busy_poll_us": busy_poll_us})})
            sessions = config.sessions
            engine = build_engine(config)
            recorder = None
            if record_dir is not None or sessions.record:
                recorder = _recorder(record_dir or sessions.folder, session_name, "run",
                                     fsync=sessions.fsync, flush_interval=sessions.flush_interval,
                                     on_full=sessions.on_full)
                record_session(engine, recorder, config)
            engine = run_engine(engine, duration=duration, events_file=events_file,
                                max_offline=max_offline, console=_console(),
                                err_console=_console(stderr=True), recorder=recorder)
            runners = [engine.runner(rid) for rid in engine.runner_ids]
        else:
            from tradesim.engine.run import run_paper

            runners = run_paper(strategy, symbols=list(symbols) or None, feed=feed, data=list(data),
                      speed=speed, bars=bars, interval=interval, seed=seed, cash=cash,
                      params=_parse_params(params), region=region, base_url=base_url,
                      rest_url=rest_url, duration=duration, events_file=events_file,
                      execution={"fill": fill, "slippage_bps": slippage_bps,
                                 "commission_bps": commission_bps, **limits.execution},
                      risk=limits.risk, portfolio=limits.portfolio,
                      busy_poll_us=busy_poll_us, bars_from=bars_from, max_offline=max_offline,
                      console=_console(), err_console=_console(stderr=True),
                      recorder=_recorder(record_dir, session_name, "run", on_full="drop") if record_dir else None)
    except (StrategyError, DataFileError, ConfigError, FeedOffline, ValueError, RecordingError) as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        if events_file is not None:
            events_file.close()
    if any(r.status.value == "failed" for r in runners):
        raise SystemExit(EXIT_FAILED)


def _recorder(folder, name, kind, **options):
    """A `SessionRecorder` for this command (its command line kept in the manifest)."""
    from tradesim.recording import SessionRecorder

    return SessionRecorder(folder, kind=kind, name=name, command=["tradesim", *sys.argv[1:]], **options)


@main.command("backtest")
@click.option("--strategy", "strategies", multiple=True, required=True, type=click.Path(dir_okay=False),
              help="Lua strategy script (repeatable: every strategy runs on every symbol).")
@bar_source_options
@click.option("--fill", type=click.Choice(["next_open", "close"]), default="next_open",
              help="Market orders fill at the next bar's open or at the signal bar's close.")
@click.option("--slippage-bps", default=0.0, show_default=True, help="Slippage against the trader, bps.")
@click.option("--commission-bps", default=0.0, show_default=True, help="Commission per side, bps of notional.")
@click.option("--fee", default=0.0, show_default=True, help="Fixed fee per order, quote currency.")
@click.option("--cash", default=10_000.0, show_default=True, help="Starting cash, quote currency.")
@click.option("--risk-free", default=0.0, show_default=True, help="Annual risk-free rate for Sharpe/Sortino.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Override a strategy parameter.")
@click.option("--report", type=click.Path(dir_okay=False), help="Write a self-contained HTML report here.")
@click.option("--trades", "trades_path", type=click.Path(dir_okay=False), help="Write the trade list CSV here.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON instead of tables.")
@click.option("--record", "record_dir", type=click.Path(file_okay=False), default=None,
              help="Record the backtest as a session in this sessions folder (see `tradesim sessions`).")
@click.option("--session-name", default=None, help="The recorded session's id (default: UTC time and kind).")
@risk_options
def backtest_command(strategies, data, symbols, interval, catalog_dir, start, end, fill, slippage_bps,
                     commission_bps, fee, cash,
                     risk_free, params, report, trades_path, as_json, record_dir, session_name, limits):
    """Backtest strategies over bar files with simulated execution.

    \b
    Example:
      tradesim backtest --strategy lua-strategies/examples/ema_crossover.lua \\
          --data BTCUSDT-1m.csv.gz --commission-bps 10 --report report.html
      tradesim backtest --strategy s.lua --symbol BTCUSDT --interval 1m --from 2024-01-01 --to 2024-07-01
      tradesim backtest --strategy s.lua --data BTC.csv --data ETH.csv --portfolio-cash shared \\
          --max-open-positions 1 --portfolio-max-drawdown-pct 20 --risk-max-position-notional 5000

    Risk limits and portfolio settings: docs/orders.md (Risk limits).
    """
    from rich.console import Console
    from rich.progress import BarColumn, Progress, TextColumn, TimeRemainingColumn

    from tradesim.backtest import Backtest
    from tradesim.data import DataFileError
    from tradesim.recording import RecordingError
    from tradesim.strategy import StrategyError

    data = _bars_option_values(data, symbols, interval, start, end, catalog_dir)
    console = Console(stderr=True)
    try:
        recorder = _recorder(record_dir, session_name, "backtest") if record_dir else None
        bt = Backtest(list(strategies), list(data), params=_parse_params(params), start=start, end=end,
                      fill=fill, slippage_bps=slippage_bps, commission_bps=commission_bps,
                      fixed_fee=fee, starting_cash=cash, risk_free_rate=risk_free, **limits.execution,
                      risk=limits.risk_config(), portfolio=limits.portfolio_config())
        with Progress(TextColumn("backtest"), BarColumn(), TextColumn("{task.completed:,}/{task.total:,} bars"),
                      TimeRemainingColumn(), console=console, transient=True,
                      disable=as_json or not console.is_terminal) as progress:
            task = progress.add_task("run", total=sum(len(b) for _, b in bt.runners))
            bt.progress = lambda done, total: progress.update(task, completed=done)
            result = bt.run(recorder)
    except (StrategyError, DataFileError, ValueError, RecordingError) as exc:
        raise click.ClickException(str(exc)) from None
    if trades_path:
        from tradesim.backtest import trades_to_csv

        trades_to_csv(result.trades, trades_path)
    if report:
        from tradesim.backtest import write_report

        write_report(report, symbol_bars=result.bars, trades=result.trades, equity=result.equity,
                     timestamps=result.timestamps, metrics=result.metrics, ledger=result.ledger,
                     title=f"tradesim backtest: {', '.join(r.strategy for r in result.runs[:3])}",
                     problems=[(f"{r.symbol}/{r.strategy}", r.problems()) for r in result.runs],
                     portfolio=result.portfolio)
    if as_json:
        import json

        click.echo(json.dumps(result.to_dict(), allow_nan=False))
    else:
        _print_backtest(result, report, trades_path)
    if result.failed_runs:
        raise SystemExit(EXIT_FAILED)


def _print_backtest(result, report, trades_path) -> None:
    from rich.table import Table

    from tradesim.backtest.metric_format import metric_rows
    from tradesim.display import format_percent

    console = _console()
    table = Table(title="Backtest metrics (portfolio)")
    table.add_column("section")
    table.add_column("metric")
    table.add_column("value", justify="right")
    heading = None
    for section, label, _, text in metric_rows(result.metrics):
        table.add_row(section if section != heading else "", label, text)
        heading = section
    console.print(table)
    runs = Table(title="Runners")
    for col in ("symbol", "strategy", "trades", "win rate", "fees", "final equity", "return", "status"):
        runs.add_column(col, no_wrap=True, justify="left" if col in ("symbol", "strategy", "status") else "right")
    for r in result.runs:
        m = r.metrics
        runs.add_row(r.symbol, r.strategy, f"{len(r.trades):,}", format_percent(m.win_rate),
                     f"{m.total_fees:,.2f}", f"{m.final_equity:,.2f}", format_percent(m.total_return), r.status)
    console.print(runs)
    if result.portfolio is not None:
        _print_portfolio(console, result.portfolio.summary())
    ledger = result.ledger
    console.print(f"[dim]{ledger['bars_processed']:,} bars in {ledger['run_seconds']:.2f} s "
                  f"({ledger['bars_per_second']:,} bars/s; load {ledger['load_seconds']:.2f} s); "
                  f"fill {ledger['fill_rule']}, slippage {ledger['slippage_bps']} bps, "
                  f"commission {ledger['commission_bps']} bps; ambiguous exits {ledger['ambiguous_exits']}, "
                  f"strategy errors {ledger['strategy_errors']}, rejected actions {ledger['rejected_actions']}[/dim]",
                  soft_wrap=True)
    _print_problems(console, result.runs)
    session = ledger.get("session")
    if session:
        if session["error"]:
            console.print(f"[red]session {session['path']}: {session['error']}[/red]", soft_wrap=True)
        else:
            console.print(f"session recorded: {session['path']}", soft_wrap=True)
    if report:
        console.print(f"report: {report}")
    if trades_path:
        console.print(f"trades: {trades_path}")


def _print_portfolio(console, p: dict) -> None:
    """Portfolio cash, P&L, exposure per symbol and the risk_limit events (the first few)."""
    from rich.markup import escape
    from rich.table import Table

    from tradesim.timeframes import format_time

    table = Table(title="Portfolio")
    for col in ("symbol", "final exposure", "largest exposure", "time in market"):
        table.add_column(col, justify="left" if col == "symbol" else "right", no_wrap=True)
    for symbol, x in p["exposure"].items():
        table.add_row(symbol, f"{x['final']:,.2f}", f"{x['max_abs']:,.2f}", f"{100 * x['time_in_market']:.1f} %")
    console.print(table)
    settings = ", ".join(f"{k} {v}" for k, v in p["config"].items())
    console.print(f"cash {p['cash']:,.2f}, equity {p['equity']:,.2f}: realised P&L {p['realised_pnl']:+,.2f}, "
                  f"unrealised {p['unrealised_pnl']:+,.2f} [dim]({settings}"
                  f"{'; runners interleaved' if p['interleaved'] else ''})[/dim]", soft_wrap=True)
    events = p["risk_events"]
    if events:
        console.print(f"[yellow]{p['risk_event_count']:,} risk limit events[/yellow]; first:")
        for e in events[:5]:
            who = f"{e.get('symbol')}/{e.get('strategy')}" if e.get("symbol") else "portfolio"
            console.print(f"  bar {format_time(e['timestamp'])} UTC  {escape(who)}: {e['limit']} "
                          f"{e['value']:.4g} (limit {e['threshold']:g}) -> {e['action']}", soft_wrap=True)


def _print_problems(console, runs) -> None:
    """Each runner's failure reason and its first distinct errors and rejections, in plain words."""
    from rich.markup import escape

    from tradesim.timeframes import format_time

    for r in runs:
        p = r.problems()
        if not (p["failed"] or p["errors"] or p["rejections"]):
            continue
        head = f"{r.symbol}/{r.strategy}"
        if p["failed"]:
            console.print(f"[bold red]{escape(head)} FAILED[/bold red] after {r.bars_processed:,} bars: "
                          f"{escape(p['reason'])}", soft_wrap=True)
        if p["errors"]:
            console.print(f"[red]{escape(head)}: {p['error_count']:,} strategy errors[/red]; first distinct:")
            for e in p["errors"]:
                console.print(f"  bar {format_time(e['time'])} UTC  {escape(e['kind'])}: {escape(e['message'])}",
                              soft_wrap=True)
        if p["rejections"]:
            console.print(f"[yellow]{escape(head)}: {p['rejection_count']:,} rejected actions[/yellow]; "
                          "by reason:")
            for x in p["rejections"]:
                console.print(f"  {x['count']:,} x {escape(x['action'])}: {escape(x['reason'])} "
                              f"(first at bar {format_time(x['first_time'])} UTC)", soft_wrap=True)


@main.command("bench")
@click.option("--filter", "filters", multiple=True, metavar="NAME",
              help="Run only these groups (repeatable): window, indicators, batch, state_machine, lua, "
                   "bar_to_decision, kline, backtest, live_latency, engine_scale, runner_memory.")
@click.option("--quick", is_flag=True, help="Smoke run: fewer samples, smaller series.")
@click.option("--json", "as_json", is_flag=True, help="Print results and environment as JSON.")
def bench_command(filters, quick, as_json):
    """Measure the hot paths against the speed budgets (exit 1 if any budget is missed).

    \b
    Examples:
      tradesim bench
      tradesim bench --filter indicators --filter bar_to_decision --json
    """
    import json

    from tradesim.bench.suite import OPERATIONS, environment, run_benchmarks

    unknown = [f for f in filters if f not in OPERATIONS]
    if unknown:
        raise click.BadParameter(f"unknown group(s) {', '.join(unknown)}; choose from {', '.join(OPERATIONS)}",
                                 param_hint="--filter")
    say = (lambda name: None) if as_json else (lambda name: click.echo(f"measuring {name} ...", err=True))
    results = run_benchmarks(list(filters) or None, quick=quick, progress=say)
    failed = [r for r in results if r.passed is False]
    if as_json:
        click.echo(json.dumps({"environment": environment(), "quick": quick,
                               "results": [r.as_dict() for r in results], "passed": not failed}))
    else:
        from rich.table import Table

        env = environment()
        table = Table(title="tradesim bench" + (" (quick)" if quick else ""),
                      caption=f"Python {env['python']}, Cython {env['cython']}, numpy {env['numpy']}, "
                              f"lupa {env['lupa']}; {env['cpus']} CPUs {env['processor']}")
        for col in ("operation", "p50", "p99", "max", "ops/s", "budget", "result"):
            table.add_column(col, justify="left" if col == "operation" else "right")

        def fmt(value, unit):
            if unit == "bars/s":
                return f"{value:,.0f} bars/s"
            if unit in ("% core", "%", "KB", "ms"):
                return f"{value:,.1f} {unit}"
            return f"{value / 1000:,.2f} µs" if value >= 1000 else f"{value:,.1f} ns"

        for r in results:
            budget = "" if r.budget is None else (f">= {r.budget:,.0f} bars/s" if r.unit == "bars/s"
                                                  else f"<= {fmt(r.budget, r.unit)}")
            verdict = "" if r.passed is None else ("[green]pass[/green]" if r.passed else "[red]FAIL[/red]")
            table.add_row(r.name, fmt(r.p50, r.unit), fmt(r.p99, r.unit), fmt(r.max, r.unit),
                          f"{r.ops_per_s:,.0f}", budget, verdict)
        _console().print(table)
    if failed:
        raise SystemExit(1)


def _register_optional_commands() -> None:
    # `verify` lives beside its bridge code; importing it is cheap (no OCaml run).
    from tradesim.catalog.commands import COMMANDS as catalog_commands
    from tradesim.optimize.commands import optimize_command
    from tradesim.serve.commands import serve
    from tradesim.sessions.commands import COMMANDS as session_commands
    from tradesim.verify import verify

    main.add_command(verify)
    main.add_command(optimize_command)
    main.add_command(serve)
    for command in (*session_commands, *catalog_commands):
        main.add_command(command)


_register_optional_commands()


def _write_csv(path, bars, columns) -> None:
    import csv

    import numpy as np

    names = list(columns)
    stacked = np.column_stack([columns[n] for n in names]) if names else np.empty((len(bars), 0))
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["timestamp", "close", *names])
        for i in range(len(bars)):
            writer.writerow([int(bars.timestamp[i]), repr(float(bars.close[i])),
                             *("" if v != v else repr(float(v)) for v in stacked[i])])


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
