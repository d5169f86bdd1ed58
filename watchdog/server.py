"""The daemon's HTTP server: a small routing table over the standard library's server.

Reads (/metrics, /healthz, /readyz, GET /api/v1/...) are open unless configured otherwise;
every mutating endpoint needs `Authorization: Bearer <token>` with the token read from
`api.token_file`, compared in constant time. Without a configured token, mutating endpoints
are refused. Binds to 127.0.0.1 by default.
"""

from __future__ import annotations

import hmac
import json
import logging
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable
from urllib.parse import parse_qs, unquote, urlsplit

from watchdog.errors import WatchdogError
from watchdog.redact import redact

log = logging.getLogger("watchdog.server")
MAX_BODY = 1024 * 1024


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    headers: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Response:
    status: int
    body: Any  # dict/list → JSON; str/bytes as is
    content_type: str = "application/json"

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if isinstance(self.body, str):
            return redact(self.body).encode()
        return redact(json.dumps(self.body, indent=2, sort_keys=True, default=str)).encode()


Handler = Callable[[Request], Response]


@dataclass(frozen=True)
class Route:
    method: str
    pattern: str  # e.g. /api/v1/targets/{target}/pause
    handler: Handler
    mutating: bool = False

    def match(self, method: str, path: str) -> dict[str, str] | None:
        if method != self.method:
            return None
        regex = "^" + re.sub(r"\{(\w+)\}", r"(?P<\1>[^/]+)", self.pattern) + "$"
        m = re.match(regex, path)
        return {k: unquote(v) for k, v in m.groupdict().items()} if m else None


@dataclass(frozen=True)
class AuthPolicy:
    token: str | None
    read_requires_token: bool = False

    def allows(self, route: Route, authorization: str) -> tuple[bool, int, str]:
        if not route.mutating and not self.read_requires_token:
            return True, 200, ""
        if self.token is None:
            return False, 403, "this endpoint needs api.token_file in the config; none is configured"
        scheme, _, given = authorization.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), self.token.encode()):
            return False, 401, "missing or wrong bearer token"
        return True, 200, ""


class ApiServer:
    def __init__(self, listen: str, routes: list[Route], auth: AuthPolicy):
        host, port = parse_listen(listen)
        self.routes = routes
        self.auth = auth
        self._httpd = ThreadingHTTPServer((host, port), _handler_class(self))
        self._httpd.daemon_threads = True
        self._thread: threading.Thread | None = None

    @property
    def address(self) -> str:
        host, port = self._httpd.server_address[:2]
        return f"http://{host}:{port}"

    def start(self) -> None:
        self._thread = threading.Thread(target=self._httpd.serve_forever, name="http", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()

    def dispatch(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Response:
        parts = urlsplit(raw_path)
        path = parts.path.rstrip("/") or "/"
        allowed_methods = set()
        for route in self.routes:
            params = route.match(method, path)
            if params is None:
                if route.match(route.method, path) is not None:
                    allowed_methods.add(route.method)
                continue
            ok, status, reason = self.auth.allows(route, headers.get("authorization", ""))
            if not ok:
                return Response(status, {"error": reason})
            try:
                data = json.loads(body) if body.strip() else {}
            except ValueError as exc:
                return Response(400, {"error": f"request body is not JSON: {exc}"})
            query = {k: v[-1] for k, v in parse_qs(parts.query).items()}
            try:
                return route.handler(Request(method, path, params, query, data, headers))
            except WatchdogError as exc:
                return Response(400 if exc.exit_code in (1, 2) else 500, {"error": redact(str(exc))})
            except Exception as exc:  # a handler bug must not take the server down
                log.exception("HTTP %s %s failed", method, path)
                return Response(500, {"error": redact(f"{type(exc).__name__}: {exc}")})
        if allowed_methods:
            return Response(405, {"error": f"method {method} not allowed; use {', '.join(sorted(allowed_methods))}"})
        return Response(404, {"error": "not found", "endpoints": sorted({f"{r.method} {r.pattern}" for r in self.routes})})


def _handler_class(server: ApiServer) -> type:
    class HttpHandler(BaseHTTPRequestHandler):
        server_version = "model-watchdog"

        def _serve(self, method: str) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            if length > MAX_BODY:
                response = Response(413, {"error": f"request body larger than {MAX_BODY} bytes"})
            else:
                body = self.rfile.read(length) if length else b""
                headers = {k.lower(): v for k, v in self.headers.items()}
                response = server.dispatch(method, self.path, headers, body)
            payload = response.encoded()
            self.send_response(response.status)
            self.send_header("Content-Type", response.content_type)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            if method != "HEAD":
                self.wfile.write(payload)

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            self._serve("GET")

        def do_POST(self) -> None:  # noqa: N802
            self._serve("POST")

        def do_HEAD(self) -> None:  # noqa: N802
            self._serve("GET")

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

    return HttpHandler
