"""The ``tradesim serve`` command (docs/serve.md)."""

from __future__ import annotations

import asyncio
import os
import time

import click

from tradesim.cli_support import console

__all__ = ["serve"]

TOKEN_ENV = "TRADESIM_TOKEN"


@click.command()
@click.option("--config", "config_path", type=click.Path(dir_okay=False), default=None,
              help="runners.toml (feeds, runners, [sessions]); default: a simulated feed with the example "
                   "strategies.")
@click.option("--host", default="127.0.0.1", show_default=True,
              help="Address to listen on; anything but loopback needs --allow-remote.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(0, 65535),
              help="Port (0: any free port).")
@click.option("--allow-remote", is_flag=True, help="Allow listening on a non-loopback address (prints a warning).")
@click.option("--allowed-host", multiple=True,
              help="Extra Host header value accepted, e.g. 'myhost:8000' behind a proxy (repeatable).")
@click.option("--token", default=None,
              help=f"Control token (at least 16 characters; default ${TOKEN_ENV}, else a random one).")
@click.option("--record", "record_dir", type=click.Path(file_okay=False), default=None,
              help="Record the run as a session in this folder (also served at /api/sessions).")
@click.option("--sessions", "sessions_dir", type=click.Path(file_okay=False), default=None,
              help="Sessions folder browsed at /api/sessions (default: --record, [sessions] folder, "
                   "$TRADESIM_SESSIONS or ./sessions).")
@click.option("--strategies", "strategy_dirs", multiple=True, type=click.Path(file_okay=False, exists=True),
              help="Folder of strategies runners may be added from (repeatable; default: the examples).")
@click.option("--speed", default=1.0, show_default=True, type=click.FloatRange(min=0.01, max=10_000),
              help="Without --config: simulated bars per second per symbol.")
@click.option("--docs", is_flag=True, help="Serve the interactive API docs at /docs.")
def serve(config_path, host, port, allow_remote, allowed_host, token, record_dir, sessions_dir, strategy_dirs,
          speed, docs):
    """Run the engine behind an HTTP API, a live WebSocket event stream and a web dashboard.

    \b
      tradesim serve                         # simulated feed, example strategies, 127.0.0.1:8000
      tradesim serve --config runners.toml --record sessions
    Open the one-time link it prints. Ctrl-C stops it (positions closed, recording finished).
    """
    from pathlib import Path

    from tradesim.engine.config import ConfigError, load_config
    from tradesim.serve.security import Tokens
    from tradesim.serve.server import Server, build, finish, is_loopback
    from tradesim.serve.strategies import StrategyCatalog
    from tradesim.strategy.errors import StrategyLoadError

    out, err = console(), console(stderr=True)
    if not is_loopback(host) and not allow_remote:
        raise click.UsageError(f"--host {host}: not a loopback address; add --allow-remote to listen there "
                               f"(anyone who can reach it and has the token controls the engine)")
    given = token or os.environ.get(TOKEN_ENV)
    try:
        tokens = Tokens(given) if given else Tokens()
    except ValueError as exc:
        raise click.BadParameter(str(exc), param_hint="--token") from None
    try:
        config = load_config(config_path) if config_path else None
        catalog = StrategyCatalog(list(strategy_dirs) or None)
        engine, recorder, folder = build(config, bars_per_s=speed, record_dir=record_dir)
    except (ConfigError, StrategyLoadError, ValueError, OSError) as exc:
        err.print(f"[red]error:[/red] {exc}", soft_wrap=True, markup=True)
        raise SystemExit(1) from None
    server = Server(engine, host=host, port=port, tokens=tokens, catalog=catalog,
                    sessions_folder=Path(sessions_dir) if sessions_dir else folder, recorder=recorder, docs=docs,
                    allowed_host=list(allowed_host), say=lambda text: err.print(text, soft_wrap=True, markup=False))
    started = time.monotonic()

    async def main() -> None:
        task = asyncio.get_running_loop().create_task(server.run())
        waiter = asyncio.ensure_future(server.started.wait())
        await asyncio.wait([task, waiter], return_when=asyncio.FIRST_COMPLETED)
        if server.started.is_set():
            url = server.url()
            code = tokens.one_time_code("control")
            if not is_loopback(host):
                err.print(f"WARNING: listening on {host}:{server.port}, reachable from other machines; "
                          f"HTTP is not encrypted (put a TLS proxy in front)", soft_wrap=True, markup=False)
            out.print(f"tradesim serve: {len(engine.runner_ids)} runners on {len(engine.feeds)} feed(s), "
                      f"listening on {host}:{server.port}", soft_wrap=True, markup=False)
            out.print(f"  dashboard (one-time link): {url}/login?code={code}", soft_wrap=True, markup=False)
            if not given:
                out.print(f"  control token: {tokens.control}", soft_wrap=True, markup=False)
            out.print(f"  view token:    {tokens.view}", soft_wrap=True, markup=False)
            if docs:
                out.print(f"  API docs: {url}/docs", soft_wrap=True, markup=False)
            out.print("  Ctrl-C to stop", soft_wrap=True, markup=False)
        waiter.cancel()
        await task

    try:
        asyncio.run(main())
    except OSError as exc:
        err.print(f"error: cannot listen on {host}:{port}: {exc.strerror or exc}", soft_wrap=True, markup=False)
        raise SystemExit(1) from None
    except KeyboardInterrupt:   # a second Ctrl-C while shutting down
        engine.close("interrupted")
    summary = finish(server, started)
    out.print(f"stopped after {summary['seconds']} s"
              + (f"; session recorded: {summary['session']}" if "session" in summary else ""),
              soft_wrap=True, markup=False)
