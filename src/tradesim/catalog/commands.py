"""``tradesim download`` and ``tradesim catalog list|gaps|verify|import`` (see docs/catalog.md)."""

from __future__ import annotations

import json

import click

from tradesim.cli_support import console as _console

__all__ = ["COMMANDS", "bar_source_options", "bars_option_values", "catalog_group", "download_command"]

_CATALOG_HELP = "Catalog folder (default $TRADESIM_CATALOG or ~/.local/share/tradesim)."


def _fmt(ms: int) -> str:
    from tradesim.timeframes import format_time

    return format_time(ms, "%Y-%m-%d %H:%M")


def _time(value: str | None, option: str) -> int | None:
    from tradesim.timeframes import parse_time

    try:
        return parse_time(value)
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint=option) from None


def bar_source_options(fn):
    """The options naming a command's bars, the same for every command that reads them:
    ``--data FILE...`` or ``--symbol S... [--interval I] [--catalog DIR]``, and ``--from / --to``
    (parameters data, symbols, interval, catalog_dir, start, end; see `bars_option_values`)."""
    options = [
        click.option("--data", "data", multiple=True, type=click.Path(dir_okay=False),
                     help="Bar file: Binance kline CSV(.gz), OHLCV CSV or Parquet (repeatable: one per symbol)."),
        click.option("--symbol", "symbols", multiple=True,
                     help="Instead of --data: this symbol's bars from the catalog (repeatable; see "
                          "`tradesim download`)."),
        click.option("--interval", default=None, help="With --symbol: bar interval in the catalog (default 1m)."),
        click.option("--catalog", "catalog_dir", default=None, type=click.Path(file_okay=False),
                     help="With --symbol: catalog folder (default $TRADESIM_CATALOG or ~/.local/share/tradesim)."),
        click.option("--from", "start", default=None,
                     help="First bar open time to include (ISO date/time UTC or ms)."),
        click.option("--to", "end", default=None, help="Exclude bars opening at or after this time (ISO or ms)."),
    ]
    for option in reversed(options):
        fn = option(fn)
    return fn


def bars_option_values(data, symbols, interval, start, end, catalog) -> list:
    """`tradesim.catalog.resolve_bars` for a click command: ``--data FILE`` or ``--symbol S
    [--interval I --from --to --catalog DIR]``; both/neither is a usage error (exit 2), missing
    bars in the catalog a `click.ClickException` (exit 1).

    One line in a command: ``data = bars_option_values(data, symbols, interval, start, end, catalog)``.
    """
    from tradesim.catalog import CatalogError, SourceChoiceError, resolve_bars

    try:
        return resolve_bars(data, symbols, interval, start, end, catalog)
    except SourceChoiceError as exc:
        raise click.UsageError(str(exc)) from None
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from None


@click.command("download")
@click.option("--symbol", "symbols", multiple=True, required=True, help="Symbol, e.g. BTCUSDT (repeatable).")
@click.option("--interval", default="1m", show_default=True, help="Kline interval (1s ... 1w).")
@click.option("--start", required=True, help="First open time (ISO date/time UTC or ms).")
@click.option("--end", default=None, help="Stop before this open time (ISO or ms; default: now).")
@click.option("--region", type=click.Choice(["com", "us"]), default="com", show_default=True,
              help="api.binance.com or api.binance.us.")
@click.option("--rest-url", default=None, help="REST base URL (overrides --region; e.g. a test server).")
@click.option("--catalog", "catalog_dir", type=click.Path(file_okay=False), default=None, help=_CATALOG_HELP)
@click.option("--timeout", type=click.FloatRange(min=0.001), default=10.0, show_default=True,
              help="Seconds to wait for one response before retrying.")
@click.option("--json", "as_json", is_flag=True, help="Print what was done as JSON.")
def download_command(symbols, interval, start, end, region, rest_url, catalog_dir, timeout, as_json):
    """Download klines from Binance REST into the local catalog (resumable; only what is missing).

    \b
    Example:
      tradesim download --symbol BTCUSDT --interval 1m --start 2024-01-01 --end 2024-07-01
    """
    from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn

    from tradesim.catalog import Catalog, CatalogError
    from tradesim.catalog.download import Downloader, DownloadError
    from tradesim.catalog.store import interval_ms

    start_ms, end_ms = _time(start, "--start"), _time(end, "--end")
    try:
        step = interval_ms(interval)
    except CatalogError as exc:
        raise click.BadParameter(str(exc), param_hint="--interval") from None
    if end_ms is not None and end_ms <= start_ms:
        raise click.BadParameter(f"{end!r} is not after --start {start!r}", param_hint="--end")
    catalog = Catalog(catalog_dir)
    err = _console(stderr=True)
    results = []
    with Progress(TextColumn("{task.description}"), BarColumn(), TextColumn("{task.completed:,.0f} bars"),
                  TimeElapsedColumn(), console=err, transient=True,
                  disable=as_json or not err.is_terminal) as progress:
        import time

        horizon = end_ms if end_ms is not None else int(time.time() * 1000)
        tasks = {s.upper(): progress.add_task(s.upper(), total=max(1, (horizon - start_ms) // step))
                 for s in symbols}
        with Downloader(catalog, region=region, rest_url=rest_url, timeout=timeout,
                        progress=lambda s, n: progress.advance(tasks[s], n)) as dl:
            for s in symbols:
                try:
                    results.append(dl.download(s, interval, start_ms, end_ms))
                except (DownloadError, CatalogError) as exc:
                    raise click.ClickException(f"{s.upper()}: {exc}") from None
    gaps = {s.upper(): [g for g in catalog.gaps(s, interval) if g.end > start_ms and
                        (end_ms is None or g.start < end_ms)] for s in symbols}
    if as_json:
        click.echo(json.dumps({"catalog": str(catalog.root), "results": [
            {"symbol": r.symbol, "interval": r.interval, "requests": r.requests, "bars": r.bars,
             "months_written": r.months_written, "months_skipped": r.months_skipped, "retries": r.retries,
             "rate_limited": r.rate_limited,
             "gaps": [[g.start, g.end, g.bars] for g in gaps[r.symbol]]} for r in results]}))
        return
    out = _console()
    for r in results:
        g = gaps[r.symbol]
        out.print(f"{r.symbol} {r.interval}: {r.bars:,} bars in {r.requests} requests, "
                  f"{len(r.months_written)} month(s) written, {len(r.months_skipped)} already complete"
                  + (f", {r.retries} retries" if r.retries else "")
                  + (f", {r.rate_limited} rate-limit waits" if r.rate_limited else "")
                  + (f"; {len(g)} exchange gap(s), {sum(x.bars for x in g):,} bars missing "
                     "(`tradesim catalog gaps`)" if g else ""))
    out.print(f"catalog: {catalog.root}")


@click.group("catalog")
def catalog_group():
    """The local bar catalog: what is stored, its gaps, checks, imports (docs/catalog.md)."""


@catalog_group.command("list")
@click.option("--catalog", "catalog_dir", type=click.Path(file_okay=False), default=None, help=_CATALOG_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def catalog_list(catalog_dir, as_json):
    """Stored series and their covered months."""
    from rich.table import Table

    from tradesim.catalog import Catalog, CatalogError

    catalog = Catalog(catalog_dir)
    try:
        cov = catalog.coverage()
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"catalog": str(catalog.root), "months": [
            {"venue": c.venue, "symbol": c.symbol, "interval": c.interval, "month": c.month, "start": c.start,
             "end": c.end, "rows": c.rows, "missing": c.missing, "complete": c.complete} for c in cov]}))
        return
    out = _console()
    if not cov:
        out.print(f"catalog {catalog.root} is empty (`tradesim download` or `tradesim catalog import`)")
        return
    table = Table(title=f"catalog {catalog.root}")
    for name, justify in (("series", "left"), ("month", "left"), ("from", "left"), ("to", "left"),
                          ("bars", "right"), ("missing", "right")):
        table.add_column(name, justify=justify, no_wrap=True)
    for c in cov:
        table.add_row(f"{c.venue}/{c.symbol}/{c.interval}", c.month + ("" if c.complete else " (part)"),
                      _fmt(c.start), _fmt(c.end), f"{c.rows:,}", f"{c.missing:,}")
    out.print(table)


@catalog_group.command("gaps")
@click.option("--symbol", default=None, help="Only this symbol.")
@click.option("--interval", default=None, help="Only this interval.")
@click.option("--catalog", "catalog_dir", type=click.Path(file_okay=False), default=None, help=_CATALOG_HELP)
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
def catalog_gaps(symbol, interval, catalog_dir, as_json):
    """Real exchange gaps inside the stored ranges (no bar was published; none is invented)."""
    from rich.table import Table

    from tradesim.catalog import Catalog, CatalogError

    catalog = Catalog(catalog_dir)
    try:
        gaps = catalog.gaps(symbol, interval)
    except CatalogError as exc:
        raise click.ClickException(str(exc)) from None
    if as_json:
        click.echo(json.dumps({"catalog": str(catalog.root), "gaps": [
            {"symbol": g.symbol, "interval": g.interval, "start": g.start, "end": g.end, "bars": g.bars}
            for g in gaps]}))
        return
    out = _console()
    if not gaps:
        out.print("no gaps")
        return
    table = Table(title="exchange gaps (open times [from, to) with no bar)")
    for name in ("series", "from", "to", "bars missing"):
        table.add_column(name, no_wrap=True)
    for g in gaps:
        table.add_row(f"{g.symbol}/{g.interval}", _fmt(g.start), _fmt(g.end), f"{g.bars:,}")
    out.print(table)


@catalog_group.command("verify")
@click.option("--catalog", "catalog_dir", type=click.Path(file_okay=False), default=None, help=_CATALOG_HELP)
def catalog_verify(catalog_dir):
    """Check files against the index (checksums, counts, bar rules, gaps); exit 1 on a problem."""
    from tradesim.catalog import Catalog

    catalog = Catalog(catalog_dir)
    problems = catalog.verify()
    out = _console()
    months = len(catalog.coverage())
    for p in problems:
        out.print(f"[red]PROBLEM[/red] {p.where}: {p.message}")
    out.print(f"{months} month file(s) checked in {catalog.root}: "
              + ("all OK" if not problems else f"{len(problems)} problem(s)"))
    if problems:
        raise SystemExit(1)


@catalog_group.command("import")
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, dir_okay=False))
@click.option("--symbol", default=None, help="Symbol (default: from the file name, SYMBOL-INTERVAL-...).")
@click.option("--interval", default=None, help="Interval (default: from the file name or the bar spacing).")
@click.option("--catalog", "catalog_dir", type=click.Path(file_okay=False), default=None, help=_CATALOG_HELP)
def catalog_import(files, symbol, interval, catalog_dir):
    """Add Binance kline CSV(.gz) files (the layout of data.binance.vision) to the catalog."""
    from tradesim.catalog import Catalog, CatalogError
    from tradesim.data import DataFileError

    catalog = Catalog(catalog_dir)
    out = _console()
    for f in files:
        try:
            bars = catalog.import_file(f, symbol, interval)
        except (CatalogError, DataFileError) as exc:
            raise click.ClickException(str(exc)) from None
        out.print(f"{f}: {len(bars):,} {bars.symbol} bars, {_fmt(int(bars.timestamp[0]))} .. "
                  f"{_fmt(int(bars.timestamp[-1]))}")
    out.print(f"catalog: {catalog.root}")


COMMANDS = [download_command, catalog_group]
