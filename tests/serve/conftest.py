"""A real `tradesim serve` (engine + uvicorn on one loop) in a background thread, for API,
WebSocket and browser tests. Waits are on conditions with generous timeouts, never fixed sleeps."""

from __future__ import annotations

import asyncio
import shutil
import threading
import time
from pathlib import Path

import httpx
import pytest

from tradesim.engine.config import parse_config
from tradesim.serve.security import Tokens
from tradesim.serve.server import Server, build
from tradesim.serve.strategies import EXAMPLES, StrategyCatalog
from tradesim.strategy.examples import example_path

TOKEN = "control-token-for-tests-0123456789"


def wait_for(cond, timeout: float = 60.0, what: str = "condition"):
    """Poll `cond()` until truthy (returned) or fail after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        value = cond()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(0.05)


class LiveServer:
    """A `Server` running in a thread; `url`, `client(token)` and `stop()`."""

    def __init__(self, server: Server) -> None:
        self.server = server
        self.loop: asyncio.AbstractEventLoop | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        wait_for(lambda: server.started.is_set() or self.error is not None, 60, "server start")
        if self.error is not None:
            raise self.error

    def _run(self) -> None:
        async def main() -> None:
            self.loop = asyncio.get_running_loop()
            await self.server.run(install_signals=False)
        try:
            asyncio.run(main())
        except BaseException as exc:   # reported by the fixture
            self.error = exc

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.port}"

    def client(self, token: str | None = TOKEN, **kw) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30, **kw)

    def stop(self) -> None:
        if self.loop is not None and self.thread.is_alive():
            self.loop.call_soon_threadsafe(self.server.stop)
        self.thread.join(60)


def strategies_folder(tmp: Path) -> Path:
    """The examples copied into `tmp/strategies`, plus `escape.lua` (a symlink to a file outside it),
    `hostile_error.lua` and `hold.lua`."""
    folder = tmp / "strategies"
    folder.mkdir()
    for name in EXAMPLES:
        shutil.copy(example_path(name), folder / f"{name}.lua")
    outside = tmp / "outside.lua"
    outside.write_text(example_path("ema_crossover").read_text())
    (folder / "escape.lua").symlink_to(outside)
    # a strategy whose error text is markup (D9: shown escaped)
    (folder / "hostile_error.lua").write_text(
        '-- fails on every other bar (so it never stops) with an HTML error text\nname = "hostile_error"\n'
        'function detect_opportunity(md, ctx, ind)\n'
        '  if md.timestamp % 120000 == 0 then error("<img src=x id=pwned onerror=alert(1)>") end\n'
        'end\n'
        'function filter_commitment(md, ctx, ind) return nil end\n'
        'function manage_position(md, ctx, ind) return nil end\n')
    # enters at once and never exits by itself: a position the force-exit test can count on
    (folder / "hold.lua").write_text(
        '-- buys on the first bar and holds\nname = "hold"\n'
        'function detect_opportunity(md, ctx, ind) return {reason = "hold"} end\n'
        'function filter_commitment(md, ctx, ind) return {action = "enter_long", reason = "hold"} end\n'
        'function manage_position(md, ctx, ind) return nil end\n')
    return folder


def make_server(tmp: Path, *, bars_per_s: float = 20.0, record: bool = True, client_queue: int = 2000,
                runners: list | None = None, replay: int = 20_000,
                portfolio: dict | None = None) -> LiveServer:
    folder = strategies_folder(tmp)
    runners = runners or [
        {"symbol": "BTCUSDT", "strategy": str(folder / "ema_crossover.lua"), "feed": "sim",
         "params": {"fast": 2, "slow": 4}},
        {"symbol": "ETHUSDT", "strategy": str(folder / "rsi_mean_reversion.lua"), "feed": "sim"},
    ]
    config = parse_config({"feeds": {"sim": {"type": "simulated", "symbols": ["BTCUSDT", "ETHUSDT"],
                                             "bars": 0, "speed": 60.0 * bars_per_s}},
                           "runners": runners, "portfolio": portfolio or {}}, "test")
    engine, recorder, sessions = build(config, record_dir=str(tmp / "sessions") if record else None)
    server = Server(engine, host="127.0.0.1", port=0, tokens=Tokens(TOKEN),
                    catalog=StrategyCatalog([folder]), sessions_folder=sessions or tmp / "sessions",
                    recorder=recorder, say=lambda text: None, client_queue=client_queue,
                    replay=replay)
    return LiveServer(server)


@pytest.fixture(scope="module")
def live(tmp_path_factory):
    srv = make_server(tmp_path_factory.mktemp("serve"))
    yield srv
    srv.stop()
