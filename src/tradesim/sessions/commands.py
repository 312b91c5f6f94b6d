"""``tradesim sessions list|show|verify``, ``inspect``, ``replay``, ``compare`` and ``diff-live``.

Exit codes: 0 ok (verified, identical, no divergence), 1 a corrupt log, a
divergence, or bad input, 2 usage. A SESSION is a session folder or an id in
the sessions folder (``--sessions``, else $TRADESIM_SESSIONS, else ./sessions).
"""

from __future__ import annotations

import csv
import io
import json
from typing import Any

import click

from tradesim.cli_support import console as _console
from tradesim.cli_support import parse_params
from tradesim.jsonable import jsonable

__all__ = ["COMMANDS"]

EXIT_FAILED = 1

_sessions_option = click.option("--sessions", "sessions_dir", type=click.Path(file_okay=False), default=None,
                                help="Sessions folder for ids (default: $TRADESIM_SESSIONS or ./sessions).")


def _open(ref: str, folder: str | None):
    from tradesim.recording import ManifestError
    from tradesim.sessions import SessionNotFound, open_session

    try:
        return open_session(ref, folder)
    except (SessionNotFound, ManifestError) as exc:
        raise click.ClickException(str(exc)) from None


def _fail_on_corrupt(fn):
    """Run `fn`; a corrupt log is a clean error (exit 1) naming the segment and offset."""
    from tradesim.eventlog import LogCorrupt

    try:
        return fn()
    except LogCorrupt as exc:
        raise click.ClickException(f"corrupt session log: {exc}") from None


def _echo_json(value: Any) -> None:
    click.echo(json.dumps(jsonable(value), allow_nan=False))


def _size(n: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,.0f} {unit}" if unit == "B" else f"{n:,.1f} {unit}"
        n /= 1024
    return str(n)


# -- tradesim sessions -------------------------------------------------------------------------

@click.group("sessions")
def sessions_group():
    """Recorded sessions (record with `tradesim run|backtest --record DIR`)."""


@sessions_group.command("list")
@_sessions_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sessions_list(sessions_dir, as_json):
    """List the sessions in the sessions folder, oldest first."""
    from rich.table import Table

    from tradesim.sessions import list_sessions

    rows = [s.summary() for s in list_sessions(sessions_dir)]
    if as_json:
        _echo_json(rows)
        return
    table = Table(title=f"sessions ({len(rows)})")
    for col in ("id", "kind", "status", "created (UTC)", "runners", "bars", "trades", "net P&L", "size"):
        table.add_column(col, no_wrap=True,
                         justify="right" if col in ("bars", "trades", "net P&L", "size") else "left")
    for r in rows:
        status = r["status"] + (" (recording error)" if r["error"] else "") + \
            (f" ({r['dropped']:,} events dropped)" if r["dropped"] else "")
        table.add_row(r["id"], r["kind"], status,
                      (r["created"] or "")[:19].replace("T", " "), ", ".join(r["runners"][:3]) +
                      (f" +{len(r['runners']) - 3}" if len(r["runners"]) > 3 else ""),
                      f"{r['bars']:,}" if r["bars"] is not None else "—",
                      f"{r['trades']:,}" if r["trades"] is not None else "—",
                      f"{r['net_profit']:+,.2f}" if r["net_profit"] is not None else "—", _size(r["size_bytes"]))
    _console().print(table)


@sessions_group.command("show")
@click.argument("session")
@_sessions_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sessions_show(session, sessions_dir, as_json):
    """A session's manifest, runners, result and event counts."""
    from collections import Counter

    s = _open(session, sessions_dir)

    def count():
        return Counter(e["type"] for e in s.events())
    counts = _fail_on_corrupt(count)
    m = s.manifest
    out = {**s.summary(), "tradesim": m.get("tradesim"), "ended": m.get("ended"), "command": m.get("command"),
           "config": m.get("config"), "seeds": m.get("seeds"), "files": m.get("files", []),
           "runner_details": [{k: v for k, v in r.items()} for r in m.get("runners", [])],
           "result": m.get("result"), "log": m.get("log"), "event_counts": dict(counts),
           "stopped_at": s.log.stopped_at, "warnings": s.warnings()}
    if as_json:
        _echo_json(out)
        return
    console = _console()
    console.print(f"[bold]{s.id}[/bold]  {s.kind}, {out['status']}, created {out['created']}, "
                  f"ended {out['ended'] or '—'}, tradesim {out['tradesim']}, {_size(out['size_bytes'])}")
    if out["command"]:
        console.print("command: " + " ".join(out["command"]), soft_wrap=True)
    for r in out["runner_details"]:
        console.print(f"runner {r['key']}: {r['strategy']} ({r['script']}, sha256 {r['sha256'][:12]}), "
                      f"params {r['params']}, feed {r.get('feed') or '—'}", soft_wrap=True)
    for f in out["files"]:
        console.print(f"data {f['path']} (sha256 {f['sha256'][:12]})", soft_wrap=True)
    console.print("events: " + ", ".join(f"{k} {v:,}" for k, v in sorted(counts.items())), soft_wrap=True)
    if out["result"]:
        res = out["result"]
        console.print(f"result: {res.get('bars', 0):,} bars, {res.get('trades', 0):,} trades, "
                      f"net P&L {res.get('net_profit', 0.0):+,.2f}")
    for warning in s.warnings():
        console.print(f"[yellow]{warning}[/yellow]", soft_wrap=True)
    if out["stopped_at"]:
        console.print(f"[yellow]log cut short: {out['stopped_at']}[/yellow]", soft_wrap=True)


@sessions_group.command("verify")
@click.argument("session")
@_sessions_option
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
def sessions_verify(session, sessions_dir, as_json):
    """Check a session's log block by block (CRC, sequence) and its manifest's strategy hashes.

    Exit 0 when every block is sound (a log cut short by a crash still verifies
    up to its last complete block, and says where it stops), 1 when a block is
    corrupt or a strategy's source does not match its hash.
    """
    from tradesim.eventlog import verify_log
    from tradesim.recording import LOG_DIR
    from tradesim.recording.recorder import strategy_sha256

    s = _open(session, sessions_dir)
    report = verify_log(s.path / LOG_DIR)
    problems = list(report.problems)
    for sha, source in s.manifest.get("strategies", {}).items():
        if strategy_sha256(source) != sha:
            problems.append(f"manifest: strategy source does not match its sha256 {sha[:12]}")
    ok = report.ok and not problems
    out = {"session": s.id, "ok": ok, "events": report.events, "last_seq": report.last_seq,
           "segments": report.segments, "stopped_at": report.stopped_at, "problems": problems,
           "status": s.manifest.get("status"), "warnings": s.warnings()}
    if as_json:
        _echo_json(out)
    else:
        console = _console()
        verdict = "[green]ok[/green]" if ok else "[red]CORRUPT[/red]"
        console.print(f"{s.id}: {verdict}: {report.events:,} events (seq 1 .. {report.last_seq:,}) in "
                      f"{report.segments} segment(s); recording status {out['status']}", soft_wrap=True)
        if report.stopped_at:
            console.print(f"[yellow]ends early: {report.stopped_at}[/yellow]", soft_wrap=True)
        for warning in out["warnings"]:
            console.print(f"[yellow]{warning}[/yellow]", soft_wrap=True)
        for p in problems:
            console.print(f"[red]{p}[/red]", soft_wrap=True)
    if not ok:
        raise SystemExit(EXIT_FAILED)


# -- tradesim inspect ---------------------------------------------------------------------------

@click.command("inspect")
@click.argument("session")
@click.option("--seq", type=click.IntRange(min=1), default=None, help="The event's sequence number.")
@click.option("--sub", type=click.IntRange(min=0), default=None,
              help="With --seq naming a backtest's chunk of outcomes: after its SUB-th event (0-based).")
@click.option("--time", "when", default=None, help="A time (ISO UTC or ms): the last event at or before it.")
@click.option("--events", "types", default=None, metavar="TYPE,...",
              help="Also list the events of these types around the point (e.g. decision,position_opened).")
@click.option("--around", type=click.IntRange(min=0), default=10, show_default=True,
              help="Events listed before and after the point with --events.")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "csv"]), default="table", show_default=True)
@_sessions_option
def inspect_command(session, seq, sub, when, types, around, fmt, sessions_dir):
    """The state at one point of a session: position, working order, context, indicators, last decision.

    \b
    Examples:
      tradesim inspect 20261204-063000-backtest --seq 5000
      tradesim inspect SESSION --time 2025-06-01T12:00 --events decision,position_closed --format json
    """
    from tradesim.sessions.inspect import resolve_point, state_at
    from tradesim.timeframes import parse_time

    s = _open(session, sessions_dir)
    if (seq is None) == (when is None):
        raise click.UsageError("give --seq N or --time T")
    try:
        time_ms = parse_time(when) if when is not None else None
        point = _fail_on_corrupt(lambda: resolve_point(s, seq=seq, time_ms=time_ms))
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--seq" if seq is not None else "--time") from None
    if sub is not None and seq is None:
        raise click.UsageError("--sub goes with --seq")
    result = _fail_on_corrupt(lambda: state_at(s, point, sub, until_time=time_ms))
    listed: list[dict[str, Any]] = []
    if types:
        wanted = {t.strip() for t in types.split(",") if t.strip()}
        listed = _fail_on_corrupt(lambda: [
            _brief(e) for e in s.events(from_seq=max(1, point - around), to_seq=point + around)
            if e["type"] in wanted])
        result["events"] = listed
    if fmt == "json":
        _echo_json({"session": s.id, **{k: (_brief(v) if k == "event" else v) for k, v in result.items()}})
        return
    if fmt == "csv":
        buf = io.StringIO()
        writer = csv.writer(buf)
        writer.writerow(["runner", "field", "value"])
        for key, st in result["runners"].items():
            for name, value in st.items():
                writer.writerow([key, name, json.dumps(jsonable(value))])
        for e in listed:
            writer.writerow(["", f"event {e['seq']}", json.dumps(jsonable(e))])
        click.echo(buf.getvalue(), nl=False)
        return
    _print_state(s, result, listed)


def _brief(event: dict[str, Any]) -> dict[str, Any]:
    """An event for display: a ``bars`` chunk's columns become its first and last open times."""
    if event.get("type") != "bars":
        return event
    from tradesim.sessions.session import chunk_span

    first, last = chunk_span(event)
    return {k: v for k, v in event.items() if not isinstance(v, bytes)} | {"first": first, "last": last}


def _print_state(s, result: dict[str, Any], listed: list[dict[str, Any]]) -> None:
    from rich.table import Table

    from tradesim.timeframes import format_time

    console = _console()
    event = _brief(result["event"])
    console.print(f"[bold]{s.id}[/bold] at seq {result['seq']:,}: {event.get('type')} "
                  + (f"(bar {format_time(event['timestamp'])})" if isinstance(event.get("timestamp"), int) else ""),
                  soft_wrap=True)
    for key, st in result["runners"].items():
        table = Table(title=key, show_header=False)
        table.add_column("field")
        table.add_column("value", overflow="fold")
        for name in ("at_bar", "status", "state", "position", "working_order", "context", "indicators", "last_decision",
                     "last_input_bar", "cash", "equity", "trades", "trades_since_snapshot",
                     "realized_pnl_since_snapshot", "last_rejection", "last_error", "from_seq"):
            if name in st:
                table.add_row(name, json.dumps(jsonable(st[name])))
        console.print(table)
    for e in listed:
        console.print(json.dumps(jsonable(e)), soft_wrap=True)


# -- tradesim replay / compare / diff-live ------------------------------------------------------------

def _print_comparison(console, comparison, label: str) -> None:
    first = comparison.first
    if first is None and not comparison.unpaired:
        console.print(f"[green]{label}: identical[/green]: {comparison.compared:,} events compared "
                      f"({comparison.decisions:,} decisions) over {len(comparison.pairs)} runner(s)")
        return
    if comparison.unpaired:
        console.print(f"[yellow]runners only one side has: {', '.join(comparison.unpaired)}[/yellow]")
    if first is None:
        return
    from tradesim.timeframes import format_time

    when = format_time(first.timestamp) if first.timestamp is not None else "—"
    console.print(f"[red]{label}: first divergence[/red] in {first.runner} at bar {when} "
                  f"({first.timestamp}), outcome #{first.index + 1}; {comparison.compared:,} events "
                  f"({comparison.decisions:,} decisions) agreed before it", soft_wrap=True)
    sides = (("A " + comparison.label_a, first.a, first.bar_a, first.state_a, first.after_a),
             ("B " + comparison.label_b, first.b, first.bar_b, first.state_b, first.after_b))
    for side, ev, bar, state, after in sides:
        console.print(f"[bold]{side}[/bold]", soft_wrap=True)
        console.print(f"  event: {json.dumps(jsonable(_strip(ev)))}", soft_wrap=True)
        console.print(f"  bar: {json.dumps(jsonable(bar))}", soft_wrap=True)
        console.print(f"  last decision before: {json.dumps(jsonable(state))}", soft_wrap=True)
        console.print(f"  from there on: {after['trades']} trades, net P&L {after['net_profit']:+,.2f}, "
                      f"events {after['events']}", soft_wrap=True)
    if len(comparison.divergences) > 1:
        console.print(f"{len(comparison.divergences)} runners diverge: " +
                      ", ".join(f"{d.runner} at {d.timestamp}" for d in comparison.divergences), soft_wrap=True)


def _strip(event: dict[str, Any] | None) -> dict[str, Any] | None:
    if event is None:
        return None
    return {k: v for k, v in event.items() if k not in ("runner", "symbol", "strategy")}


@click.command("replay")
@click.argument("session")
@click.option("--speed", type=click.FloatRange(min=0), default=0.0, show_default=True,
              help="0 = as fast as possible; N = N times the recorded pace.")
@click.option("--strategy", type=click.Path(exists=True, dir_okay=False), default=None,
              help="Another strategy for every runner: a what-if run on the recorded inputs.")
@click.option("--param", "params", multiple=True, metavar="NAME=VALUE", help="Override a parameter (what-if).")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_sessions_option
def replay_command(session, speed, strategy, params, as_json, sessions_dir):
    """Re-run a session's recorded inputs through its strategies (or another: a what-if run).

    With the recorded strategy and parameters, decisions, fills and trades must
    be identical: exit 0 when they are, 1 (with the first divergence) when not.
    A what-if run (--strategy / --param) reports how it differs and exits 0.
    """
    from tradesim.sessions import replay
    from tradesim.strategy import StrategyError

    s = _open(session, sessions_dir)
    try:
        result = _fail_on_corrupt(lambda: replay(s, strategy=strategy, params=parse_params(params) or None,
                                                 speed=speed))
    except StrategyError as exc:
        raise click.ClickException(str(exc)) from None
    _report_replay(result, as_json, "what-if replay vs recording" if result.what_if else "replay vs recording")
    if not result.what_if and not result.identical:
        raise SystemExit(EXIT_FAILED)


def _report_replay(result, as_json: bool, label: str) -> None:
    runners = {key: {"trades": r.trade_count, "bars": int(r.core.bars),
                     "net_profit": r.equity - r.execution.starting_cash, "status": r.status.value}
               for key, r in result.runners.items()}
    if as_json:
        _echo_json({"session": result.session.id, "what_if": result.what_if, "identical": result.identical,
                    "bars": result.bars, "seconds": round(result.seconds, 4), "runners": runners,
                    "notes": result.notes, "comparison": result.comparison.to_dict()})
        return
    console = _console()
    for key, r in runners.items():
        console.print(f"{key}: {r['bars']:,} bars, {r['trades']:,} trades, net P&L {r['net_profit']:+,.2f}, "
                      f"{r['status']}", soft_wrap=True)
    for note in result.notes:
        console.print(f"[yellow]note: {note}[/yellow]", soft_wrap=True)
    _print_comparison(console, result.comparison, label)


@click.command("compare")
@click.argument("a")
@click.argument("b")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_sessions_option
def compare_command(a, b, as_json, sessions_dir):
    """Where two sessions' decisions or fills first differ (exit 0 identical, 1 they differ).

    Runners are paired by key, else by symbol. Shows the bar where they part,
    the inputs at that bar in both, each side's last decision (context and
    indicator values) and what each did from there on.
    """
    from tradesim.sessions import compare_sessions

    sa, sb = _open(a, sessions_dir), _open(b, sessions_dir)
    comparison = _fail_on_corrupt(lambda: compare_sessions(sa, sb))
    if as_json:
        _echo_json(comparison.to_dict())
    else:
        _print_comparison(_console(), comparison, f"{sa.id} vs {sb.id}")
    if comparison.first is not None or comparison.unpaired:
        raise SystemExit(EXIT_FAILED)


@click.command("diff-live")
@click.argument("session")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@_sessions_option
def diff_live_command(session, as_json, sessions_dir):
    """Run a recorded live or paper session's bars through the backtest engine; report the first divergence.

    Exit 0 when every decision, fill and trade matches (the number compared is
    shown), 1 with the first divergent bar, both sides' inputs, context and
    indicator values when not.
    """
    from tradesim.sessions import backtest_session
    from tradesim.strategy import StrategyError

    s = _open(session, sessions_dir)
    try:
        result = _fail_on_corrupt(lambda: backtest_session(s))
    except StrategyError as exc:
        raise click.ClickException(str(exc)) from None
    _report_replay(result, as_json, "live vs backtest")
    if not result.identical:
        raise SystemExit(EXIT_FAILED)


#: What `tradesim.cli` registers.
COMMANDS = (sessions_group, inspect_command, replay_command, compare_command, diff_live_command)
