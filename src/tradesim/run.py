"""Paper trading from the command line: runners fed by a simulated or replayed feed.

`run_paper` drives one `SymbolRunner` per symbol through the feed's async
iterator (paced by ``speed``), shows a live status line and ends with a
summary table. Ctrl-C stops cleanly and still prints the summary. The live
multi-runner engine (Binance feed, events) builds on the same runners.
"""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

from tradesim.execution import ExecutionConfig
from tradesim.runner import SymbolRunner

__all__ = ["run_paper"]


def _make_feed(feed: str, symbols: list[str] | None, data: list[str], speed: float, bars: int,
               interval: str, seed: int):
    if feed == "simulated":
        from tradesim.feeds.simulated import SimulatedFeed

        return SimulatedFeed(tuple(symbols or ["BTCUSDT"]), interval=interval, seed=seed,
                             bars=bars or None, speed=speed)
    from tradesim.feeds.historical import HistoricalFeed

    return HistoricalFeed(data, symbols=symbols or None, speed=speed)


def run_paper(strategy: str | Path, *, symbols: list[str] | None = None, feed: str = "simulated",
              data: list[str] | None = None, speed: float = 0.0, bars: int = 5000,
              interval: str = "1m", seed: int = 0, cash: float = 10_000.0,
              params: dict[str, Any] | None = None, console=None) -> list[SymbolRunner]:
    """Run `strategy` on each symbol of the feed until the feed ends or Ctrl-C; return the runners."""
    from rich.console import Console
    from rich.live import Live

    console = console or Console()
    source = _make_feed(feed, symbols, list(data or []), speed, bars, interval, seed)
    execution = ExecutionConfig(starting_cash=cash)
    runners = {sym: SymbolRunner(sym, strategy, params=params, execution=execution)
               for sym in source.symbols}
    started = time.monotonic()

    async def consume(live: Live) -> None:
        last = 0.0
        async for bar in source:
            runner = runners[bar.symbol]
            runner.process(bar)
            now = time.monotonic()
            if now - last > 0.2:
                live.update(_status_line(runners, now - started))
                last = now

    with Live(_status_line(runners, 0.0), console=console, refresh_per_second=5, transient=True) as live:
        try:
            asyncio.run(consume(live))
        except KeyboardInterrupt:
            console.print("[yellow]interrupted: stopping runners[/yellow]")
        finally:
            source.close()
    for runner in runners.values():
        runner.close_position("end_of_run")
        runner.stop("end of run")
    console.print(_summary(runners, time.monotonic() - started))
    return list(runners.values())


def _status_line(runners: dict[str, SymbolRunner], elapsed: float):
    from rich.text import Text

    parts = []
    for sym, r in runners.items():
        pos = r.machine.position
        held = f"{pos.side.name.lower()} {pos.quantity:g}@{pos.entry_price:.2f}" if pos else "flat"
        pnl = r.equity - r.execution.starting_cash
        parts.append(f"{sym}: {r.core.bars:,} bars {r.machine.state.name} {held} P&L {pnl:+,.2f}")
    return Text(f"[{elapsed:6.1f}s] " + " | ".join(parts))


def _summary(runners: dict[str, SymbolRunner], elapsed: float):
    from rich.table import Table

    table = Table(title=f"tradesim run: {elapsed:.1f} s")
    for col in ("symbol", "strategy", "bars", "trades", "wins", "P&L", "equity", "errors", "status"):
        table.add_column(col, justify="right" if col not in ("symbol", "strategy", "status") else "left")
    for sym, r in runners.items():
        wins = sum(t.pnl > 0 for t in r.trades)
        pnl = r.equity - r.execution.starting_cash
        table.add_row(sym, r.strategy.name, f"{r.core.bars:,}", str(len(r.trades)), str(wins),
                      f"{pnl:+,.2f}", f"{r.equity:,.2f}", str(len(r.errors)),
                      f"{r.status.value}" + (f" ({r.status_reason})" if r.status_reason else ""))
    return table
