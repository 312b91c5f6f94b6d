"""``tradesim serve``: a `TradingEngine` and its HTTP API / dashboard (uvicorn) on one asyncio loop.

`demo_config` is what runs without ``--config``: the simulated feed, paced, with
the example strategies on a few symbols (no network needed). `serve` runs
until SIGINT/SIGTERM, then stops cleanly: the engine stops (every queued bar
processed), open positions are closed at the last close, the recording is
finished, and the HTTP server shuts down.
"""

from __future__ import annotations

import asyncio
import contextlib
import ipaddress
import logging
import signal
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tradesim.engine.config import EngineConfig, parse_config
from tradesim.engine.run import build_engine, record_session
from tradesim.engine.trading_engine import TradingEngine
from tradesim.recording import SessionRecorder
from tradesim.serve.app import ServeState, create_app
from tradesim.serve.broadcast import Broadcaster
from tradesim.serve.security import Tokens, allowed_hosts
from tradesim.serve.strategies import StrategyCatalog
from tradesim.strategy.examples import example_path

__all__ = ["DEMO_RUNNERS", "Server", "demo_config", "is_loopback"]

log = logging.getLogger(__name__)

#: Runners of the no-config demo: (symbol, example strategy, params).
DEMO_RUNNERS = [
    ("BTCUSDT", "ema_crossover", {"fast": 5, "slow": 13}),
    ("ETHUSDT", "rsi_mean_reversion", {}),
    ("SOLUSDT", "macd_trend", {}),
    ("BTCUSDT", "bollinger_reversion", {}),
]


def demo_config(bars_per_s: float = 1.0, seed: int = 0) -> EngineConfig:
    """The default engine: simulated 1m bars at `bars_per_s` per symbol, example strategies.

    Raises
    ------
    ConfigError
        A non-positive `bars_per_s`.
    """
    symbols = sorted({s for s, _, _ in DEMO_RUNNERS})
    runners = [{"symbol": s, "strategy": str(example_path(name)), "feed": "sim", "params": params,
                "window_size": 1000} for s, name, params in DEMO_RUNNERS]
    return parse_config({"feeds": {"sim": {"type": "simulated", "symbols": symbols, "interval": "1m",
                                            "bars": 0, "seed": seed, "speed": 60.0 * bars_per_s}},
                         "runners": runners}, "tradesim serve (demo)")


def is_loopback(host: str) -> bool:
    """True for 127.0.0.0/8, ::1 and ``localhost``."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class Server:
    """The engine and the web server of ``tradesim serve``.

    Parameters
    ----------
    engine : TradingEngine
        Built, not running.
    host, port : str, int
        Where to listen (port 0: any free port; see `port` once started).
    tokens : Tokens
    catalog : StrategyCatalog
    sessions_folder : path, optional
        Recorded sessions (``/api/sessions``).
    recorder : SessionRecorder, optional
        Records this run (attached already); finished on shutdown.
    docs : bool
        Serve ``/docs``.
    allowed_host : list of str
        Extra Host header values accepted (e.g. a reverse proxy's name).
    say : callable
        ``say(text)`` prints a line for the user.
    client_queue : int
        Events a WebSocket client may fall behind before it is dropped.
    replay : int
        Newest events kept in memory for clients that reconnect (older ones: from the session log
        when recording, else a ``gap_from`` notice).
    """

    def __init__(self, engine: TradingEngine, *, host: str = "127.0.0.1", port: int = 8000,
                 tokens: Tokens | None = None, catalog: StrategyCatalog | None = None,
                 sessions_folder: Path | None = None, recorder: SessionRecorder | None = None,
                 docs: bool = False, allowed_host: list[str] | None = None,
                 say: Callable[[str], Any] = print, client_queue: int = 2000, replay: int = 20_000) -> None:
        self.engine = engine
        self.host, self.port = host, port
        self.tokens = tokens or Tokens()
        self.catalog = catalog or StrategyCatalog()
        self.recorder = recorder
        self.docs = docs
        self.allowed_host = list(allowed_host or [])
        self.say = say
        self.replay = replay
        self.state = ServeState(engine, self.tokens, self.catalog, sessions_folder=sessions_folder,
                                session_id=recorder.path.name if recorder is not None and recorder.path else None,
                                client_queue=client_queue, recorder=recorder)
        self.started = asyncio.Event()
        self.uvicorn: Any = None
        self._stop: asyncio.Event | None = None

    def stop(self) -> None:
        """Ask `run` to shut down (safe from a signal handler on the loop)."""
        if self._stop is not None:
            self._stop.set()

    async def run(self, *, install_signals: bool = True) -> None:
        """Serve until `stop` (or SIGINT/SIGTERM); then shut everything down cleanly."""
        import uvicorn

        loop = asyncio.get_running_loop()
        self._stop = asyncio.Event()
        self.state.broadcaster = broadcaster = Broadcaster(self.engine, replay=self.replay, recorder=self.recorder)
        broadcaster.start()
        engine_task = loop.create_task(self.engine.run())

        sock = _bind(self.host, self.port)
        self.port = sock.getsockname()[1]
        hosts = allowed_hosts(self.host, self.port, self.allowed_host)
        self.state.info = {"host": self.host, "port": self.port}
        app = create_app(self.state, hosts=hosts, docs=self.docs)
        config = uvicorn.Config(app, log_level="warning", lifespan="off", ws="websockets-sansio",
                                access_log=False, timeout_graceful_shutdown=3, ws_max_size=64 * 1024)
        self.uvicorn = server = _uvicorn_server(config)
        http_task = loop.create_task(server.serve(sockets=[sock]))
        signals = []
        if install_signals:
            for sig in (signal.SIGINT, signal.SIGTERM):
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.add_signal_handler(sig, self._on_signal, sig)
                    signals.append(sig)
        while not server.started and not http_task.done():
            await asyncio.sleep(0.01)
        if http_task.done():
            self.engine.stop()
            await engine_task
            http_task.result()
            raise RuntimeError(f"could not serve on {self.host}:{self.port}")
        self.started.set()
        try:
            await self._stop.wait()
        finally:
            # Engine first (its last events still reach the clients), then the web server.
            self.engine.stop()
            with contextlib.suppress(Exception):
                await engine_task
            self.engine.close("server shut down")
            if self.recorder is not None:
                from tradesim.engine.run import engine_session_result

                self.recorder.finish("completed", engine_session_result(self.engine))
            await asyncio.sleep(0.05)   # let the broadcaster pass on the closing events
            server.should_exit = True
            with contextlib.suppress(Exception):
                await asyncio.wait_for(http_task, 10)
            for task in self.state.background:
                task.cancel()
            await broadcaster.stop()
            sock.close()
            for sig in signals:
                with contextlib.suppress(NotImplementedError, RuntimeError):
                    loop.remove_signal_handler(sig)

    def _on_signal(self, sig: int) -> None:
        self.say(f"{signal.Signals(sig).name}: stopping (runners stop, positions close)")
        self.stop()

    def url(self) -> str:
        host = self.host if is_loopback(self.host) else "127.0.0.1"
        if ":" in host:
            host = f"[{host}]"
        return f"http://{host}:{self.port}"


def _uvicorn_server(config: Any) -> Any:
    """A uvicorn server without its own signal handling (the `Server` owns SIGINT/SIGTERM)."""
    import uvicorn

    class NoSignals(uvicorn.Server):
        @contextlib.contextmanager
        def capture_signals(self):
            yield

    return NoSignals(config)


def _bind(host: str, port: int):
    import socket

    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP: asyncio sets TCP_NODELAY only on sockets that say so; without it a
    # response written in two parts (headers, body) waits for a delayed ACK (~40 ms) on keep-alive.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host.strip("[]"), port))
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def build(config: EngineConfig | None, *, bars_per_s: float = 1.0, record_dir: str | None = None,
          session_name: str | None = None) -> tuple[TradingEngine, SessionRecorder | None, Path | None]:
    """The engine (demo when `config` is None), its recorder (``--record`` or ``[sessions]``) and
    the sessions folder."""
    cfg = config or demo_config(bars_per_s)
    engine = build_engine(cfg)
    recorder = None
    folder = Path(record_dir) if record_dir else (Path(cfg.sessions.folder) if cfg.sessions.folder else None)
    if record_dir or cfg.sessions.record:
        from tradesim.recording import default_sessions_folder

        folder = folder or default_sessions_folder()
        recorder = SessionRecorder(folder, kind="run", name=session_name, command=["tradesim", *sys.argv[1:]],
                                   fsync=cfg.sessions.fsync, flush_interval=cfg.sessions.flush_interval,
                                   on_full="drop")
        record_session(engine, recorder, cfg)
    return engine, recorder, folder


def finish(server: Server, started: float) -> dict[str, Any]:
    """Finish the recording (if any); a summary of the run for the terminal."""
    engine = server.engine
    result = {"runners": len(engine.runner_ids), "seconds": round(time.monotonic() - started, 1)}
    if server.recorder is not None:
        from tradesim.engine.run import engine_session_result

        server.recorder.finish("completed", engine_session_result(engine))   # (idempotent: run finished it)
        result["session"] = str(server.recorder.path)
    return result
