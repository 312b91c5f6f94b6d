"""The server's guards: tokens and scopes, Host and Origin checks, body limit, security headers.

The rules are those of docs/dashboard-security.md; docs/serve.md describes them for users.

* Two scopes: ``view`` (read everything, watch events) and ``control`` (also change
  runners). The control token is given (``--token``, ``$TRADESIM_TOKEN``) or random
  (`secrets.token_urlsafe`); the view token is derived from it
  (HMAC-SHA256(control, "tradesim view"), base64url), so one secret configures both.
* Credentials: an ``Authorization: Bearer`` header, or the ``tradesim_session`` cookie
  (HttpOnly, SameSite=Strict) that ``/login`` sets: from the one-time code of the printed
  dashboard link (valid once) or from a token posted as JSON. Tokens are never accepted in
  a URL. Compared with `hmac.compare_digest`.
* `Guard` (pure ASGI middleware, so it covers WebSockets too): Host allow-list (421), Origin
  check on state-changing requests and WebSocket upgrades (403), JSON-only bodies (415),
  body limit (413), authentication (401) and scope (403), a rate limit on state-changing
  requests (429), security headers and CSP on every response. No CORS headers are ever sent.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import secrets
import time
from dataclasses import dataclass, field
from typing import Any

import orjson

__all__ = ["COOKIE", "SECURITY_HEADERS", "Guard", "Tokens", "allowed_hosts", "refusal", "view_token_for"]

COOKIE = "tradesim_session"

#: Paths anyone may read: the liveness probe, the login endpoint and the dashboard's static files
#: (which hold no data; every API call they make is authenticated).
PUBLIC_PREFIXES = ("/static/",)
PUBLIC_PATHS = frozenset({"/health", "/login", "/", "/favicon.ico"})

#: Methods that change state: they need the control scope, a JSON body and (from a browser) a same-origin Origin.
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

#: No inline script, no eval. Style attributes are allowed (``style-src-attr``): the vendored chart
#: library positions its elements with them; style sheets still come only from the server.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; style-src-attr 'unsafe-inline'; "
       "img-src 'self' data:; "
       "connect-src 'self'; font-src 'self'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")

SECURITY_HEADERS: list[tuple[bytes, bytes]] = [
    (b"content-security-policy", CSP.encode()),
    (b"x-content-type-options", b"nosniff"),
    (b"x-frame-options", b"DENY"),
    (b"referrer-policy", b"no-referrer"),
    (b"cross-origin-opener-policy", b"same-origin"),
    (b"cross-origin-resource-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
]


def view_token_for(control_token: str) -> str:
    """The view-scope token derived from a control token (HMAC-SHA256, base64url, 43 chars)."""
    digest = hmac.new(control_token.encode(), b"tradesim view", hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


@dataclass
class Tokens:
    """The server's credentials: control and view tokens, one-time login codes, cookie sessions.

    Parameters
    ----------
    control : str, optional
        The control token (random when omitted). At least 16 characters.

    Raises
    ------
    ValueError
        A token shorter than 16 characters.
    """

    control: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    view: str = ""
    _codes: dict[str, str] = field(default_factory=dict)
    _sessions: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.control) < 16:
            raise ValueError("token: must be at least 16 characters (use a random one: "
                             "python -c 'import secrets; print(secrets.token_urlsafe(32))')")
        self.view = self.view or view_token_for(self.control)

    def scope_of_token(self, token: str) -> str | None:
        """``"control"``, ``"view"`` or None (constant-time comparisons)."""
        given = token.encode()
        if hmac.compare_digest(given, self.control.encode()):
            return "control"
        if hmac.compare_digest(given, self.view.encode()):
            return "view"
        return None

    def one_time_code(self, scope: str = "control") -> str:
        """A code for the dashboard link: exchanged once for a session cookie."""
        code = secrets.token_urlsafe(24)
        self._codes[code] = scope
        return code

    def redeem(self, code: str) -> str | None:
        """The scope of a one-time code, which is used up; None if unknown or used."""
        for known in list(self._codes):
            if hmac.compare_digest(known.encode(), code.encode()):
                return self._codes.pop(known)
        return None

    def new_session(self, scope: str) -> str:
        """A cookie value for `scope` (random; the server keeps the mapping)."""
        sid = secrets.token_urlsafe(32)
        self._sessions[sid] = scope
        return sid

    def scope_of_session(self, sid: str) -> str | None:
        for known, scope in list(self._sessions.items()):
            if hmac.compare_digest(known.encode(), sid.encode()):
                return scope
        return None


def allowed_hosts(host: str, port: int, extra: list[str] | None = None) -> frozenset[str]:
    """Host header values accepted: loopback names with the port, the bind address, and `extra`."""
    names = {"127.0.0.1", "localhost", "[::1]"}
    if host not in ("0.0.0.0", "::", ""):
        names.add(f"[{host}]" if ":" in host and not host.startswith("[") else host)
    out = {f"{n}:{port}" for n in names}
    if port == 80:
        out |= names
    for item in extra or ():
        out.add(item.lower())
    return frozenset(h.lower() for h in out)


def _headers(scope: dict[str, Any]) -> dict[bytes, bytes]:
    return {k.lower(): v for k, v in scope.get("headers", ())}


def _cookie(raw: bytes | None, name: str) -> str | None:
    if not raw:
        return None
    for part in raw.decode("latin-1").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


class Guard:
    """ASGI middleware enforcing the rules of the module docstring.

    Parameters
    ----------
    app : ASGI app
    tokens : Tokens
    hosts : frozenset of str
        Accepted Host headers (lower case, with port); see `allowed_hosts`.
    origins : frozenset of str
        Accepted Origin values for state-changing requests and WebSocket upgrades
        (default: ``http://`` + each host).
    max_body : int
        Largest request body in bytes (413 above).
    audit : callable, optional
        ``audit(refusal)`` for each refused request (a dict from `refusal`).
    rate, burst : float
        State-changing requests allowed per client address: `rate` per second on average,
        `burst` at once (429 above).
    """

    def __init__(self, app: Any, tokens: Tokens, hosts: frozenset[str], origins: frozenset[str] | None = None,
                 max_body: int = 64 * 1024, audit: Any = None, rate: float = 20.0, burst: float = 60.0) -> None:
        self.app = app
        self.tokens = tokens
        self.hosts = hosts
        self.origins = origins if origins is not None else frozenset(f"http://{h}" for h in hosts)
        self.max_body = max_body
        self.audit = audit   # audit(refusal dict): refused requests (see `refusal`; rate-limited by the caller)
        self.refused = 0
        self.rate, self.burst = rate, burst
        self._buckets: dict[str, tuple[float, float]] = {}   # client address -> (tokens, monotonic time)

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        kind = scope["type"]
        if kind not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        headers = _headers(scope)
        path: str = scope.get("path", "")
        method = scope.get("method", "GET") if kind == "http" else "GET"
        host = headers.get(b"host", b"").decode("latin-1").lower()
        if host not in self.hosts:
            return await self._refuse(scope, send, 421, "bad_host",
                                      "the Host header is not one this server answers to "
                                      "(DNS rebinding guard; see --allowed-host)", "Host")
        origin = headers.get(b"origin")
        if origin is not None and (kind == "websocket" or method in UNSAFE_METHODS):
            if origin.decode("latin-1").lower() not in self.origins:
                return await self._refuse(scope, send, 403, "bad_origin",
                                          "cross-origin request refused", "Origin")
        public = path in PUBLIC_PATHS or path.startswith(PUBLIC_PREFIXES)
        auth = self._scope(headers)
        if kind == "http" and method in UNSAFE_METHODS:
            length = headers.get(b"content-length")
            if length is not None and (not length.isdigit() or int(length) > self.max_body):
                return await self._refuse(scope, send, 413, "too_large",
                                          f"request body over {self.max_body} bytes", None)
            ctype = headers.get(b"content-type", b"").split(b";")[0].strip().lower()
            if (length not in (None, b"0") or b"transfer-encoding" in headers) and ctype != b"application/json":
                return await self._refuse(scope, send, 415, "unsupported_media_type",
                                          "request bodies must be application/json", "Content-Type")
        if not public:
            if auth is None:
                return await self._refuse(scope, send, 401, "unauthorized",
                                          "a token is needed (Authorization: Bearer TOKEN, or the "
                                          "dashboard link printed at start)", None)
            if method in UNSAFE_METHODS and auth != "control":
                return await self._refuse(scope, send, 403, "forbidden",
                                          "this action needs the control token (the view token is read-only)",
                                          None)
        if kind == "http" and method in UNSAFE_METHODS and not self._allow(scope):
            return await self._refuse(scope, send, 429, "rate_limited",
                                      f"more than {self.rate:g} state-changing requests per second", None)
        scope.setdefault("state", {})["auth"] = auth
        if kind == "http" and method in UNSAFE_METHODS:
            receive = self._limited(receive, send)
        await self.app(scope, receive, self._with_headers(send))

    def _allow(self, scope: dict[str, Any]) -> bool:
        """Token bucket per client address for state-changing requests (`rate` per s, `burst`)."""
        client = (scope.get("client") or ("?",))[0]
        now = time.monotonic()
        tokens, then = self._buckets.get(client, (self.burst, now))
        tokens = min(self.burst, tokens + (now - then) * self.rate)
        if tokens < 1.0:
            self._buckets[client] = (tokens, now)
            return False
        self._buckets[client] = (tokens - 1.0, now)
        if len(self._buckets) > 10_000:   # bounded: forget the oldest clients
            for key in list(self._buckets)[:5_000]:
                del self._buckets[key]
        return True

    def _scope(self, headers: dict[bytes, bytes]) -> str | None:
        bearer = headers.get(b"authorization", b"").decode("latin-1")
        if bearer[:7].lower() == "bearer ":
            return self.tokens.scope_of_token(bearer[7:].strip())
        sid = _cookie(headers.get(b"cookie"), COOKIE)
        return self.tokens.scope_of_session(sid) if sid else None

    def _limited(self, receive: Any, send: Any):
        seen = 0
        limit = self.max_body

        async def wrapped() -> dict[str, Any]:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise BodyTooLarge()
            return message
        return wrapped

    def _with_headers(self, send: Any):
        extra = SECURITY_HEADERS

        async def wrapped(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                headers = [(k, v) for k, v in message.get("headers", ())
                           if k.lower() not in {h for h, _ in SECURITY_HEADERS}]
                message = {**message, "headers": headers + extra}
            await send(message)
        return wrapped

    async def _refuse(self, scope: dict[str, Any], send: Any, status: int, code: str, message: str,
                      field_name: str | None) -> None:
        kind = scope["type"]
        self.refused += 1
        if self.audit is not None:
            self.audit(refusal(scope, status, code, message))
        if kind == "websocket":
            # Closing before accepting: the server answers the upgrade with 403.
            await send({"type": "websocket.close", "code": 1008, "reason": code})
            return
        body = orjson.dumps({"error": {"code": code, "message": message, "field": field_name}})
        await send({"type": "http.response.start", "status": status,
                    "headers": [(b"content-type", b"application/json"),
                                (b"content-length", str(len(body)).encode()),
                                (b"cache-control", b"no-store"), *SECURITY_HEADERS]})
        await send({"type": "http.response.body", "body": body})


def refusal(scope: dict[str, Any], status: int, code: str, message: str) -> dict[str, Any]:
    """What is reported of a refused request: status, code, route (method and path, no query string:
    nothing a client sends as a credential), reason and the client's address."""
    path = str(scope.get("path", ""))
    if len(path) > 200:
        path = path[:200] + "…"
    method = "WS" if scope["type"] == "websocket" else str(scope.get("method", "GET"))
    client = scope.get("client") or ("?", 0)
    return {"status": status, "code": code, "route": f"{method} {path}", "reason": f"{code}: {message}",
            "client": str(client[0])}


class BodyTooLarge(Exception):
    """A streamed request body went over the limit (the app answers 413)."""


def now_ms() -> int:
    return time.time_ns() // 1_000_000
