"""The HTTP API and dashboard of ``tradesim serve`` (FastAPI), over a running `TradingEngine`.

Endpoints (docs/serve.md): ``GET /health``; ``/api/engine/health|summary``;
``/api/runners`` (list, add), ``/api/runners/{id}`` (remove) and its
``pause|resume|stop|reload|exit`` commands, ``snapshot``, ``history``, ``trades``;
``/api/strategies``, ``/api/symbols``; ``/api/sessions`` (recorded sessions) and
``WS /api/events``. JSON in and out; errors are ``{"error": {"code", "message", "field"}}``.
Control commands are applied by the runner's worker between two bars (202 Accepted).
Every route but ``/health``, ``/login`` and the static dashboard files needs a token
(`tradesim.serve.security.Guard`).
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import re
import time
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Annotated, Any

import numpy as np
import orjson
from fastapi import FastAPI, Query, Request, WebSocket, WebSocketDisconnect
from fastapi.exceptions import RequestValidationError
from fastapi.responses import FileResponse, JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.exceptions import HTTPException as StarletteHTTPException

from tradesim.engine import TradingEngine, UnknownRunner
from tradesim.engine.events import EVENT_TYPES, RequestRefused
from tradesim.engine.handle import price_history
from tradesim.jsonable import jsonable
from tradesim.recording.recorder import BAR_COLUMNS, bar_columns, default_sessions_folder
from tradesim.runner.execution import ExecutionConfig
from tradesim.serve.broadcast import Broadcaster, LogPages
from tradesim.serve.security import COOKIE, BodyTooLarge, Guard, Tokens, refusal
from tradesim.serve.strategies import StrategyCatalog, UnknownStrategy
from tradesim.strategy.errors import StrategyError, StrategyLoadError

__all__ = ["ApiError", "ServeState", "create_app"]

SYMBOL = r"^[A-Z0-9]{2,20}$"
RUNNER_ID = r"^[A-Za-z0-9_:#.\-]{1,80}$"
SESSION_ID = re.compile(r"^[A-Za-z0-9_.:\-]{1,128}$")
STATIC = resources.files("tradesim.serve").joinpath("static")
LWC = resources.files("tradesim.backtest").joinpath("static")   # vendored once, shared


class ORJSONResponse(JSONResponse):
    """JSON via orjson (NaN -> null, numpy values allowed)."""

    def render(self, content: Any) -> bytes:
        return orjson.dumps(content, option=orjson.OPT_SERIALIZE_NUMPY)


class ApiError(Exception):
    """An error answered as ``{"error": {"code", "message", "field"}}`` with `status`."""

    def __init__(self, status: int, code: str, message: str, field_name: str | None = None) -> None:
        super().__init__(message)
        self.status, self.code, self.message, self.field = status, code, message, field_name


def _error(status: int, code: str, message: str, field_name: str | None = None, **extra: Any) -> JSONResponse:
    return ORJSONResponse({"error": {"code": code, "message": message, "field": field_name, **extra}},
                          status_code=status, headers={"cache-control": "no-store"})


class AddRunner(BaseModel):
    """``POST /api/runners``: a runner to add (strategy by id from the configured folders)."""

    model_config = ConfigDict(extra="forbid")

    symbol: str = Field(pattern=SYMBOL, description="Instrument, e.g. BTCUSDT (upper case letters and digits)")
    strategy: str = Field(pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Strategy id (GET /api/strategies)")
    feed: str | None = Field(None, pattern=r"^[A-Za-z0-9_-]{1,64}$", description="Feed name (the only one if omitted)")
    id: str | None = Field(None, pattern=RUNNER_ID, description="Runner id (default SYMBOL:strategy)")
    params: dict[Annotated[str, Field(pattern=r"^[A-Za-z_][A-Za-z0-9_]{0,63}$")], float | int | str | bool] = \
        Field(default_factory=dict, max_length=64)
    window_size: int = Field(500, ge=10, le=100_000, description="Bars kept in the runner's window")
    execution: ExecutionConfig = Field(default_factory=ExecutionConfig)

    @field_validator("symbol", mode="before")
    @classmethod
    def _upper(cls, v: Any) -> Any:
        return v.strip().upper() if isinstance(v, str) else v

    @field_validator("params")
    @classmethod
    def _finite(cls, v: dict[str, Any]) -> dict[str, Any]:
        for key, value in v.items():
            if isinstance(value, float) and not math.isfinite(value):
                raise ValueError(f"params.{key}: must be a finite number")
            if isinstance(value, str) and len(value) > 256:
                raise ValueError(f"params.{key}: at most 256 characters")
        return v


class Login(BaseModel):
    """``POST /login``: a token exchanged for a session cookie."""

    model_config = ConfigDict(extra="forbid")
    token: str = Field(min_length=1, max_length=256)


#: A WebSocket client gets at most one message (a JSON array of events) per this many s.
BATCH_S = 0.025

#: Longest a runner table row's position and P&L may be cached (s); a control action refreshes at once.
ROWS_MAX_AGE_S = 0.5


class RowCache:
    """The runners' position / P&L details, refreshed in the background while someone looks."""

    def __init__(self) -> None:
        self.details: dict[str, dict[str, Any]] = {}
        self.at = 0.0
        self.stale = True
        self.wanted = 0.0
        self._refreshing: asyncio.Task | None = None

    def fresh(self, ids: list[str]) -> bool:
        return (not self.stale and time.monotonic() - self.at <= ROWS_MAX_AGE_S
                and all(rid in self.details for rid in ids))

    def usable(self, ids: list[str]) -> bool:
        """Good enough to answer while a refresh runs: no control action since, under 2 s old."""
        return (not self.stale and time.monotonic() - self.at <= 4 * ROWS_MAX_AGE_S
                and all(rid in self.details for rid in ids))

    async def refresh(self, ids: list[str], detail) -> None:
        if self._refreshing is None or self._refreshing.done():
            self.stale = False

            async def run() -> None:
                started = time.monotonic()
                values = await asyncio.gather(*(detail(rid) for rid in ids), return_exceptions=True)
                self.details = {rid: v for rid, v in zip(ids, values) if isinstance(v, dict)}
                self.at = started
            self._refreshing = asyncio.get_running_loop().create_task(run())
        await asyncio.shield(self._refreshing)

    async def keep_fresh(self, engine: TradingEngine, detail, period: float = ROWS_MAX_AGE_S / 2) -> None:
        """Refresh every `period` s while rows were asked for in the last 10 s."""
        while True:
            await asyncio.sleep(period)
            if time.monotonic() - self.wanted < 10.0:
                with contextlib.suppress(Exception):
                    await self.refresh(engine.runner_ids, detail)


@dataclass
class ServeState:
    """What the routes work on (one per server)."""

    engine: TradingEngine
    tokens: Tokens
    catalog: StrategyCatalog
    broadcaster: Broadcaster | None = None
    sessions_folder: Path | None = None
    session_id: str | None = None
    client_queue: int = 2000
    info: dict[str, Any] = field(default_factory=dict)
    rows: RowCache = field(default_factory=RowCache)
    background: list[Any] = field(default_factory=list)
    recorder: Any = None   # the SessionRecorder of this run, if recorded


class Refusals:
    """Refused requests into the event stream (``request_refused``): into the session log when one
    is recorded (the recorded stream is the log), else onto the engine's bus when someone listens.

    At most `rate` per second (`burst` at once) are reported one by one; the others are counted
    and the count goes with the next one reported (``suppressed``), so a flood cannot flood the
    log or the clients.
    """

    def __init__(self, engine: TradingEngine, recorder: Any = None, rate: float = 10.0, burst: float = 50.0) -> None:
        self.engine, self.recorder = engine, recorder
        self.rate, self.burst = rate, burst
        self.tokens, self.at = burst, time.monotonic()
        self.suppressed = 0
        self.total = 0   # every refusal, reported or not

    def __call__(self, refused: dict[str, Any]) -> None:
        self.total += 1
        now = time.monotonic()
        self.tokens = min(self.burst, self.tokens + (now - self.at) * self.rate)
        self.at = now
        if self.tokens < 1.0:
            self.suppressed += 1
            return
        self.tokens -= 1.0
        fields = {**refused, "suppressed": self.suppressed}
        self.suppressed = 0
        rec = self.recorder
        if rec is not None and rec.recording:
            rec.append({"type": "request_refused", "wall": time.time_ns() // 1_000_000, **fields})
        elif self.engine.bus.active:
            self.engine.bus.publish(RequestRefused, **fields)


def _row(runner) -> dict[str, Any]:
    """A runner table row (runs on the runner's worker): state, position, P&L, trades, errors."""
    pos = runner.machine.position
    equity = float(runner.equity)
    unrealized = float(pos.unrealized_pnl) if pos is not None else 0.0
    trades = runner.trade_count
    wins = runner.winning_trades
    return {
        "state": runner.machine.state.name,
        "position": jsonable(pos.to_dict()) if pos is not None else None,
        "pending_order": jsonable(runner.core.pending),
        "equity": _num(equity), "starting_cash": runner.execution.starting_cash,
        "unrealized_pnl": _num(unrealized),
        "realized_pnl": _num(equity - runner.execution.starting_cash - unrealized),
        "trades": trades, "wins": wins, "win_rate": (wins / trades) if trades else None,
        "errors": runner.error_count, "last_error": runner.errors[-1].message if runner.errors else None,
        "params": jsonable(dict(runner.strategy.params)),
    }


def _trades(runner, limit: int) -> list[dict[str, Any]]:
    return [jsonable(t.to_dict()) for t in list(runner.trades)[-limit:]]


#: Indicators drawn on the price scale (the others get their own pane).
PRICE_SCALE = frozenset({"sma", "ema", "bollinger", "vwap"})


def _indicator_series(data: dict[str, Any]) -> dict[str, Any]:
    from tradesim.indicators import compute, parse_spec

    cols = {k: np.asarray(data[k], dtype=np.float64) for k in ("open", "high", "low", "close", "volume")}
    series, overlay = {}, {}
    for key in data["keys"]:
        try:
            info, _ = parse_spec(key)
            values = compute(key, cols) if len(cols["close"]) else {}
        except (KeyError, ValueError):   # window statistics (high, low, ...) are not registry specs
            continue
        for label, arr in values.items():
            series[label] = arr
            overlay[label] = info.name in PRICE_SCALE
    return {"timestamp": data["timestamp"], "series": series, "overlay": overlay}


def _num(x: float) -> float | None:
    return x if math.isfinite(x) else None


def create_app(state: ServeState, *, hosts: frozenset[str], origins: frozenset[str] | None = None,
               docs: bool = False, max_body: int = 64 * 1024, cors_origins: list[str] | None = None) -> Guard:
    """The ASGI app: FastAPI routes behind the `Guard` (see the module docstring).

    Parameters
    ----------
    state : ServeState
    hosts : frozenset of str
        Accepted Host headers (`tradesim.serve.security.allowed_hosts`).
    origins : frozenset of str, optional
        Accepted Origins (default: ``http://`` + each host).
    docs : bool
        Serve Swagger UI (vendored, no CDN) at ``/docs`` (the OpenAPI schema is always at ``/openapi.json``).
    max_body : int
        Request body limit, bytes (413 above).
    cors_origins : list of str, optional
        Cross-origin callers allowed (none by default: no CORS headers at all).
    """
    engine = state.engine
    # /docs is our own page over the vendored Swagger UI (FastAPI's loads it from a CDN, inline script)
    app = FastAPI(title="tradesim", version="1", docs_url=None, redoc_url=None,
                  swagger_ui_oauth2_redirect_url=None, default_response_class=ORJSONResponse)
    app.state.serve = state

    if cors_origins:
        from fastapi.middleware.cors import CORSMiddleware

        app.add_middleware(CORSMiddleware, allow_origins=cors_origins, allow_methods=["GET", "POST", "DELETE"],
                           allow_headers=["Authorization", "Content-Type"])

    # -- errors ------------------------------------------------------------------------------

    @app.exception_handler(ApiError)
    async def _api_error(request: Request, exc: ApiError) -> Response:
        return _error(exc.status, exc.code, exc.message, exc.field)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> Response:
        errors = []
        for err in exc.errors():
            loc = [str(p) for p in err.get("loc", ()) if p not in ("body", "query", "path")]
            errors.append({"field": ".".join(loc) or None, "message": str(err.get("msg", "invalid")),
                           "code": str(err.get("type", "invalid"))})
        if not errors:
            errors = [{"field": None, "message": "invalid request", "code": "invalid"}]
        first = errors[0]
        return _error(422, "invalid", first["message"], first["field"], errors=errors)

    refusals = Refusals(engine, state.recorder)

    def too_large(request: Request) -> Response:
        message = f"request body over {max_body} bytes"
        refusals(refusal(request.scope, 413, "too_large", message))
        return _error(413, "too_large", message)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        if isinstance(exc.__cause__, BodyTooLarge):
            return too_large(request)
        codes = {400: "bad_request", 404: "not_found", 405: "method_not_allowed", 413: "too_large"}
        message = exc.detail if isinstance(exc.detail, str) and exc.status_code != 500 else "error"
        return _error(exc.status_code, codes.get(exc.status_code, "error"), message)

    @app.exception_handler(BodyTooLarge)
    async def _too_large(request: Request, exc: BodyTooLarge) -> Response:
        return too_large(request)

    @app.exception_handler(Exception)
    async def _internal(request: Request, exc: Exception) -> Response:
        return _error(500, "internal", "internal error (see the server log)")

    def audit_fields(request: Request) -> dict[str, str]:
        client = request.client.host if request.client else "?"
        return {"scope": request.state.auth or "", "origin": f"api {client}"}

    def handle_of(runner_id: str) -> str:
        if runner_id not in engine.runner_ids:
            raise ApiError(404, "not_found", f"no runner {runner_id!r}", "id")
        return runner_id

    async def detail(runner_id: str) -> dict[str, Any]:
        try:
            return await engine.query(runner_id, _row)
        except TimeoutError:
            return {"state": "?", "busy": True}

    def assemble(runner_id: str, extra: dict[str, Any]) -> dict[str, Any]:
        health = engine.runner_health(runner_id)   # counters: read live on the loop
        return {**health, **extra, "last_bar_wall": engine.last_bar_wall.get(health["symbol"])}

    async def row(runner_id: str) -> dict[str, Any]:
        return assemble(runner_id, await detail(runner_id))

    async def rows() -> list[dict[str, Any]]:
        # Positions and P&L come from each runner's worker (a round trip per runner); a table of
        # hundreds is kept fresh by `RowCache` (at most ROWS_MAX_AGE_S old) so a request does not
        # wait for them; status and counters are always read live.
        cache = state.rows
        cache.wanted = time.monotonic()
        if not state.background:
            state.background.append(asyncio.get_running_loop().create_task(cache.keep_fresh(engine, detail)))
        ids = engine.runner_ids
        if not cache.fresh(ids):
            if cache.usable(ids):   # a little old: answer now, refresh behind
                asyncio.get_running_loop().create_task(cache.refresh(ids, detail))
            else:
                await cache.refresh(ids, detail)
        return [assemble(rid, cache.details[rid]) for rid in ids if rid in cache.details and rid in engine.runner_ids]

    def changed() -> None:
        state.rows.stale = True

    # -- public ---------------------------------------------------------------------------

    @app.get("/health", tags=["engine"])
    async def health() -> dict[str, Any]:
        """Liveness (no token needed): ``{"status": "ok"}``."""
        return {"status": "ok"}

    @app.get("/login", include_in_schema=False)
    async def login_link(request: Request, code: str = "") -> Response:
        scope = state.tokens.redeem(code) if code else None
        if scope is None:
            message = "this dashboard link was used already or is wrong; open / and enter the token"
            refusals(refusal(request.scope, 401, "unauthorized", message))
            return _error(401, "unauthorized", message)
        resp = RedirectResponse("/", status_code=303)
        _set_cookie(resp, state.tokens.new_session(scope))
        return resp

    @app.post("/login", include_in_schema=False)
    async def login(body: Login, request: Request) -> Response:
        scope = state.tokens.scope_of_token(body.token)
        if scope is None:
            refusals(refusal(request.scope, 401, "unauthorized", "wrong token"))
            raise ApiError(401, "unauthorized", "wrong token", "token")
        resp = ORJSONResponse({"scope": scope})
        _set_cookie(resp, state.tokens.new_session(scope))
        return resp

    @app.get("/", include_in_schema=False)
    async def index() -> Response:
        return FileResponse(str(STATIC.joinpath("index.html")), headers={"cache-control": "no-store"})

    if docs:
        @app.get("/docs", include_in_schema=False)
        async def api_docs() -> Response:
            """Swagger UI over /openapi.json, served from the package (static/swagger-ui, vendored)."""
            return FileResponse(str(STATIC.joinpath("docs.html")), headers={"cache-control": "no-store"})

    @app.get("/static/vendor/lightweight-charts.js", include_in_schema=False)
    async def lwc() -> Response:
        return FileResponse(str(LWC.joinpath("lightweight-charts.standalone.production.js")),
                            media_type="text/javascript")

    @app.get("/static/vendor/{name}", include_in_schema=False)
    async def lwc_licence(name: str) -> Response:
        if name not in ("LICENSE", "NOTICE"):
            raise ApiError(404, "not_found", "no such file")
        return FileResponse(str(LWC.joinpath(name)), media_type="text/plain")

    app.mount("/static", StaticFiles(directory=str(STATIC)), name="static")

    # -- engine ----------------------------------------------------------------------------

    @app.get("/api/me", tags=["engine"])
    async def me(request: Request) -> dict[str, Any]:
        """The caller's scope (``view`` or ``control``) and the server's info."""
        return {"scope": request.state.auth, **state.info}

    @app.get("/api/engine/health", tags=["engine"])
    async def engine_health() -> dict[str, Any]:
        """Engine health: uptime, runners by status, symbols, feeds and their status, workers."""
        out = engine.health()
        b = state.broadcaster
        out["websocket"] = {"clients": len(b.clients) if b else 0, "dropped": b.dropped_clients if b else 0,
                            "numbering": b.numbering if b else None}
        out["refused_requests"] = refusals.total
        out["session"] = state.session_id
        return jsonable(out)

    @app.get("/api/engine/summary", tags=["engine"])
    async def engine_summary() -> dict[str, Any]:
        """Engine health plus totals over the runners (equity, P&L, trades, open positions)."""
        out = engine.health()
        table = await rows()
        out["totals"] = {
            "equity": sum(r.get("equity") or 0 for r in table),
            "unrealized_pnl": sum(r.get("unrealized_pnl") or 0 for r in table),
            "realized_pnl": sum(r.get("realized_pnl") or 0 for r in table),
            "trades": sum(r.get("trades") or 0 for r in table),
            "open_positions": sum(1 for r in table if r.get("position")),
            "errors": sum(r.get("errors") or 0 for r in table),
        }
        out["session"] = state.session_id
        out["portfolio"] = engine.portfolio_state()
        return jsonable(out)

    @app.get("/api/portfolio", tags=["engine"])
    async def portfolio(curve: Annotated[int, Query(ge=0, le=100_000)] = 0) -> dict[str, Any]:
        """The engine's portfolio (docs/orders.md, Risk limits): cash, equity, realised / unrealised
        P&L, exposure per symbol, open positions, blocks, halted, its settings and, with `curve` > 0,
        its newest `curve` points of equity, cash and P&L per bar time; 404 without one."""
        state_ = engine.portfolio_state(curve)
        if state_ is None:
            raise ApiError(404, "not_found", "this engine has no portfolio settings ([portfolio] in runners.toml)",
                           None)
        return state_

    @app.post("/api/portfolio/resume", tags=["engine"], status_code=202)
    async def portfolio_resume(request: Request) -> Response:
        """Lift the portfolio's blocks and resume the runners it halted (each between two of its bars)."""
        if engine.portfolio is None:
            raise ApiError(404, "not_found", "this engine has no portfolio settings ([portfolio] in runners.toml)",
                           None)
        engine.resume_portfolio(**audit_fields(request))
        changed()
        return ORJSONResponse({"command": "resume_portfolio", "accepted": True}, status_code=202)

    # -- runners -------------------------------------------------------------------------------

    @app.get("/api/runners", tags=["runners"])
    async def list_runners() -> list[dict[str, Any]]:
        """Every runner: status, state, position, P&L, trades, win rate, errors, last bar."""
        return jsonable(await rows())

    @app.post("/api/runners", status_code=201, tags=["runners"])
    async def add_runner(body: AddRunner, request: Request) -> dict[str, Any]:
        """Add a runner (its strategy by id from the configured folders); it gets the feed's next bar."""
        try:
            path = state.catalog.resolve(body.strategy)
        except UnknownStrategy as exc:
            raise ApiError(422, "invalid", str(exc), "strategy") from None
        feeds = engine.feeds
        feed = body.feed or (next(iter(feeds)) if len(feeds) == 1 else None)
        if feed is None or feed not in feeds:
            raise ApiError(422, "invalid", f"feed {body.feed!r}: known feeds {sorted(feeds)}", "feed")
        served = getattr(feeds[feed], "symbols", None)
        if served is not None and body.symbol not in served:
            raise ApiError(422, "invalid", f"feed {feed!r} does not serve {body.symbol} (it serves "
                           f"{', '.join(served)})", "symbol")
        if body.id is not None and body.id in engine.runner_ids:
            raise ApiError(409, "conflict", f"runner id {body.id!r} already used", "id")
        try:
            rid = engine.add_runner(body.symbol, path, feed=feed, runner_id=body.id, params=body.params or None,
                                    window_size=body.window_size, execution=body.execution,
                                    audit=audit_fields(request))
        except StrategyLoadError as exc:
            message = str(exc)
            name = re.search(r"parameter '([^']+)'", message)
            raise ApiError(422, "invalid", message[:500], f"params.{name.group(1)}" if name else "strategy") \
                from None
        except (StrategyError, ValueError) as exc:
            raise ApiError(422, "invalid", str(exc)[:500], None) from None
        engine.audit("add", rid, record=False, symbol=body.symbol, strategy=body.strategy, feed=feed,
                     **audit_fields(request))
        changed()
        return jsonable(await row(rid))

    @app.delete("/api/runners/{runner_id}", tags=["runners"])
    async def remove_runner(runner_id: str, request: Request) -> dict[str, Any]:
        """Stop a runner and forget it."""
        engine.remove_runner(handle_of(runner_id), **audit_fields(request))
        changed()
        return {"id": runner_id, "removed": True}

    def command(name: str, doc: str):
        async def run(runner_id: str, request: Request) -> Response:
            rid = handle_of(runner_id)
            audit = audit_fields(request)
            try:
                if name == "pause":
                    engine.pause(rid, **audit)
                elif name == "resume":
                    engine.resume(rid, **audit)
                elif name == "stop":
                    engine.stop_runner(rid, "stopped from the API", **audit)
                elif name == "reload":
                    engine.reload(rid, **audit)
                elif name == "halt":
                    engine.halt(rid, "halted from the API", **audit)
                else:
                    engine.force_exit(rid, "forced exit (API)", **audit)
            except UnknownRunner:
                raise ApiError(404, "not_found", f"no runner {runner_id!r}", "id") from None
            except (StrategyError, StrategyLoadError) as exc:
                raise ApiError(422, "invalid", str(exc)[:500], None) from None
            changed()
            return ORJSONResponse({"id": rid, "command": name, "accepted": True}, status_code=202)
        run.__doc__ = doc
        run.__name__ = f"runner_{name}"
        app.post(f"/api/runners/{{runner_id}}/{name}", tags=["runners"], status_code=202)(run)

    command("pause", "Pause deciding (window and indicators stay warm); applied between two bars.")
    command("resume", "Resume deciding after a pause, or trading after a risk halt.")
    command("halt", "Halt: close the open position at the newest close, drop orders, stop deciding until resume.")
    command("stop", "Stop the runner for good (it stays listed as stopped).")
    command("reload", "Hot-reload the strategy file (a version that fails to load is reported; the old one runs on).")
    command("exit", "Force exit: close the open position at the newest close and drop a pending order.")

    @app.get("/api/runners/{runner_id}/snapshot", tags=["runners"])
    async def runner_snapshot(runner_id: str) -> dict[str, Any]:
        """State, position, context, indicator values, equity and stats of one runner."""
        try:   # one round trip to the runner's worker
            snap = await engine.get_runner_snapshot(handle_of(runner_id), extra=_row)
        except TimeoutError:
            raise ApiError(503, "busy", "the runner is busy in a strategy call; try again") from None
        return jsonable(snap)

    @app.get("/api/runners/{runner_id}/history", tags=["runners"])
    async def runner_history(runner_id: str, n: Annotated[int, Query(ge=1, le=100_000)] = 500) -> dict[str, Any]:
        """The newest `n` bars the runner holds, as columns (timestamps ms UTC, prices in quote currency)."""
        return await engine.get_price_history(handle_of(runner_id), n)

    @app.get("/api/runners/{runner_id}/trades", tags=["runners"])
    async def runner_trades(runner_id: str,
                            limit: Annotated[int, Query(ge=1, le=100_000)] = 1000) -> list[dict[str, Any]]:
        """The runner's closed trades, oldest first (at most `limit`, the newest)."""
        return await engine.query(handle_of(runner_id), lambda r: _trades(r, limit))

    @app.get("/api/runners/{runner_id}/indicators", tags=["runners"])
    async def runner_indicators(runner_id: str,
                                n: Annotated[int, Query(ge=1, le=100_000)] = 500) -> dict[str, Any]:
        """The strategy's indicators as series over the newest `n` bars of the runner's window
        (batch-computed from those bars, so the first values warm up from the window's start;
        the runner's own values are in the snapshot). ``overlay`` marks those on the price scale."""
        def take(r) -> dict[str, Any]:
            return {"keys": [str(k) for k in r.bank.keys()], **price_history(r, n)}
        data = await engine.query(handle_of(runner_id), take)
        return jsonable(await asyncio.to_thread(_indicator_series, data))

    # -- catalog -------------------------------------------------------------------------------

    @app.get("/api/strategies", tags=["catalog"])
    async def strategies() -> list[dict[str, Any]]:
        """Strategies in the configured folders: id, name, default params, doc comment."""
        return jsonable(await asyncio.to_thread(state.catalog.all))

    @app.get("/api/symbols", tags=["catalog"])
    async def symbols() -> dict[str, Any]:
        """Symbols each feed serves (those a runner may be added on)."""
        feeds = {}
        for name, feed in engine.feeds.items():
            feeds[name] = {"symbols": list(getattr(feed, "symbols", None) or []),
                           "status": engine.health()["feeds"][name]["status"],
                           "interval": str(getattr(feed, "interval", "") or "")}
        return {"symbols": sorted({s for f in feeds.values() for s in f["symbols"]}), "feeds": feeds}

    # -- sessions -------------------------------------------------------------------------------

    def folder() -> Path:
        return state.sessions_folder or default_sessions_folder()

    def open_one(session_id: str):
        from tradesim.sessions import open_session

        base = folder().resolve()
        if not SESSION_ID.fullmatch(session_id) or session_id in (".", ".."):
            raise ApiError(404, "not_found", f"no session {session_id!r}", "id")
        path = (base / session_id).resolve()
        if not path.is_relative_to(base) or not (path / "manifest.json").is_file():
            raise ApiError(404, "not_found", f"no session {session_id!r}", "id")
        return open_session(path)

    @app.get("/api/sessions", tags=["sessions"])
    async def sessions() -> list[dict[str, Any]]:
        """Recorded sessions in the sessions folder, oldest first."""
        from tradesim.sessions import list_sessions

        def load() -> list[dict[str, Any]]:
            out = []
            for s in list_sessions(folder()):
                summary = s.summary()
                summary.pop("path", None)
                out.append(summary)
            return out
        return jsonable(await asyncio.to_thread(load))

    @app.get("/api/sessions/{session_id}", tags=["sessions"])
    async def session(session_id: str) -> dict[str, Any]:
        """One session: its summary and runners (key, symbol, strategy, params)."""
        s = open_one(session_id)

        def load() -> dict[str, Any]:
            summary = s.summary()
            summary.pop("path", None)
            summary["runners"] = [{"key": r.key, "symbol": r.symbol, "feed": r.feed, "strategy": r.strategy,
                                   "params": r.params, "window_size": r.window_size} for r in s.runners()]
            summary["live"] = s.id == state.session_id
            return summary
        return jsonable(await asyncio.to_thread(load))

    @app.get("/api/sessions/{session_id}/events", tags=["sessions"])
    async def session_events(session_id: str, from_seq: Annotated[int, Query(ge=1)] = 1,
                             types: str | None = None,
                             limit: Annotated[int, Query(ge=1, le=10_000)] = 1000) -> dict[str, Any]:
        """Logged events from `from_seq` (at most `limit`; ``next_seq`` continues), of `types` (comma list)."""
        s = open_one(session_id)
        wanted = {t for t in (types or "").split(",") if t} or None

        def load() -> dict[str, Any]:
            out, next_seq = [], None
            for event in s.events(from_seq=from_seq, types=wanted):
                # (a backtest's chunk of outcomes shares one seq: a page ends between seqs)
                if len(out) >= limit and event["seq"] != out[-1]["seq"]:
                    next_seq = event["seq"]
                    break
                out.append(_plain_event(event))
            return {"events": out, "next_seq": next_seq}
        return jsonable(await asyncio.to_thread(load))

    @app.get("/api/sessions/{session_id}/bars", tags=["sessions"])
    async def session_bars(session_id: str, runner: str) -> dict[str, Any]:
        """The bars runner `runner` received in the session (columns) and its closed trades."""
        from tradesim.sessions.session import event_trades

        s = open_one(session_id)

        def load() -> dict[str, Any]:
            try:
                bars = s.bars_for(runner)
            except KeyError as exc:
                raise ApiError(404, "not_found", str(exc.args[0] if exc.args else exc), "runner") from None
            trades = [t for e in s.outcomes(runner).get(runner, []) for t in event_trades(e)]
            return {"symbol": bars.symbol, "timestamp": bars.timestamp.tolist(), "open": bars.open.tolist(),
                    "high": bars.high.tolist(), "low": bars.low.tolist(), "close": bars.close.tolist(),
                    "trades": trades}
        return jsonable(await asyncio.to_thread(load))

    # -- events ----------------------------------------------------------------------------------

    @app.websocket("/api/events")
    async def events(ws: WebSocket) -> None:
        """Live engine events (JSON arrays of events, each with ``seq``); see docs/serve.md."""
        b = state.broadcaster
        raw_types = ws.query_params.get("types") or ""
        types = frozenset(t for t in raw_types.split(",") if t) or None
        unknown = (types or frozenset()) - EVENT_TYPES.keys()
        from_raw = ws.query_params.get("from_seq")
        await ws.accept()
        if unknown or (from_raw is not None and not from_raw.isdigit()) or b is None:
            what = f"unknown event types {sorted(unknown)}" if unknown else "from_seq: not a number"
            await ws.send_text(Broadcaster.notice("error", message=what).decode())
            await ws.close(code=1008)
            return
        from_seq = int(from_raw) if from_raw else None
        ignored = from_seq is not None and from_seq > b.seq + 1
        if ignored:   # from another stream (a restarted server, another numbering): start afresh
            from_seq = None
        client = None
        try:
            if from_seq is not None and b.log_dir is not None and from_seq < b.kept_from():
                # Missed more than is kept: the session log has it (same numbering). Send it from
                # disk until the kept events take over, then join live with no await in between.
                await ws.send_text(Broadcaster.notice("hello", seq=b.seq, gap_from=None, from_log=True,
                                                      from_seq_ignored=False, numbering=b.numbering,
                                                      session=state.session_id).decode())
                from_seq = await _send_from_log(ws, b, from_seq, types)
                client, gap_from = b.add(types, state.client_queue, from_seq)
            else:
                client, gap_from = b.add(types, state.client_queue, from_seq)
                await ws.send_text(Broadcaster.notice("hello", seq=b.seq, gap_from=gap_from, from_log=False,
                                                      from_seq_ignored=ignored, numbering=b.numbering,
                                                      session=state.session_id).decode())
            reader = asyncio.get_running_loop().create_task(_drain_incoming(ws))
            try:
                while not reader.done():
                    if not client.queue and client.dropped is None:
                        client.wake.clear()
                        waiter = asyncio.ensure_future(client.wake.wait())
                        await asyncio.wait([waiter, reader], return_when=asyncio.FIRST_COMPLETED)
                        waiter.cancel()
                        continue
                    if client.queue:
                        if len(client.queue) < 500:   # gather a batch: one message per 25 ms at most
                            await asyncio.sleep(BATCH_S)
                        await ws.send_text(Broadcaster.batch(client).decode())
                    elif client.dropped is not None:
                        await ws.send_text(Broadcaster.notice("subscriber_dropped", reason=client.dropped).decode())
                        await ws.close(code=4001)
                        return
            finally:
                reader.cancel()
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await reader
        except (WebSocketDisconnect, RuntimeError):
            pass
        finally:
            if client is not None:
                b.remove(client)

    return Guard(app, state.tokens, hosts, origins, max_body=max_body, audit=refusals)


async def _send_from_log(ws: WebSocket, b: Broadcaster, from_seq: int, types: frozenset[str] | None) -> int:
    """Send the recorded session's events from `from_seq` until the kept ones begin; returns where
    the kept ones take over. Pages are read on a thread; the log on disk trails the writer by at
    most its flush interval, so a page that is not there yet is waited for (the log is flushed)."""
    log_dir = b.log_dir
    assert log_dir is not None
    pages = LogPages(log_dir, from_seq, types)
    waits = 0
    try:
        while pages.next < (until := b.kept_from()):
            start = pages.next
            messages = await asyncio.to_thread(pages.read, until - 1)
            if pages.next == start:   # not on disk yet
                waits += 1
                if waits > 200 or b.recorder is None:
                    raise RuntimeError(f"session log does not reach seq {start}")
                await asyncio.to_thread(b.recorder.flush)
                await asyncio.sleep(0.01)
                continue
            waits = 0
            if messages:
                await ws.send_text((b"[" + b",".join(messages) + b"]").decode())
        return pages.next
    finally:
        await asyncio.to_thread(pages.close)


async def _drain_incoming(ws: WebSocket) -> None:
    """Read (and ignore) what the client sends until it disconnects; at most 64 KiB a message."""
    while True:
        message = await ws.receive()
        if message["type"] == "websocket.disconnect":
            return
        if len(message.get("text") or message.get("bytes") or b"") > 64 * 1024:
            await ws.close(code=1009)
            return


def _set_cookie(resp: Response, sid: str) -> None:
    resp.set_cookie(COOKIE, sid, httponly=True, samesite="strict", path="/")


def _plain_event(event: dict[str, Any]) -> dict[str, Any]:
    """A logged event as JSON-ready values (a backtest's bar chunks decoded to lists)."""
    out = {}
    dtypes = dict(BAR_COLUMNS)
    if event.get("type") == "bars" and event.get("shuffled"):
        event = {**event, **bar_columns(event)}   # (columns as arrays: listed below)
    for key, value in event.items():
        if isinstance(value, np.ndarray):
            out[key] = value.tolist()
            continue
        if isinstance(value, (bytes, bytearray)):
            dtype = dtypes.get(key)
            out[key] = np.frombuffer(value, dtype=dtype).tolist() if dtype else None
        else:
            out[key] = value
    return out
