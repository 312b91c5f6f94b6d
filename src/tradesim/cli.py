"""The `tradesim` command line (click).

Commands parse options, call library code and map domain errors to exit codes:
0 success, 1 runtime failure (a `click.ClickException`), 2 usage error.
Heavy imports happen inside the command that needs them.
"""

from __future__ import annotations

import sys

import click

from tradesim import __version__


@click.group(context_settings={"help_option_names": ["-h", "--help"], "show_default": True})
@click.version_option(__version__, prog_name="tradesim")
def main():
    """tradesim: backtest and run scripted trading strategies.

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
    from rich.console import Console
    from rich.table import Table

    table = Table(title="tradesim indicators")
    for col in ("spec (defaults)", "inputs", "outputs", "description"):
        table.add_column(col)
    for i in infos:
        spec = f"{i.name}:" + ",".join(f"{p.name}={p.default:g}" for p in i.params)
        table.add_row(spec, ", ".join(i.inputs), ", ".join(i.outputs), i.summary)
    Console().print(table)


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
    from rich.console import Console
    from rich.table import Table

    table = Table(title=f"{bars.symbol}: last {min(tail, len(bars))} of {len(bars)} bars")
    table.add_column("time (UTC)")
    table.add_column("close", justify="right")
    for name in columns:
        table.add_column(name, justify="right")
    from datetime import datetime, timezone

    for i in range(max(0, len(bars) - tail), len(bars)):
        when = datetime.fromtimestamp(bars.timestamp[i] / 1000, tz=timezone.utc)
        table.add_row(when.strftime("%Y-%m-%d %H:%M"), f"{bars.close[i]:.8g}",
                      *(("" if np.isnan(v := col[i]) else f"{v:.6f}") for col in columns.values()))
    Console().print(table)


def _register_optional_commands() -> None:
    # `verify` lives beside its bridge code; importing it is cheap (no OCaml run).
    from tradesim.verify import verify

    main.add_command(verify)


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
