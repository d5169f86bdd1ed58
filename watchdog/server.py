"""The daemon's HTTP endpoints: /metrics, /healthz, /readyz and the read-only status API.

Served by the standard library in a background thread; handlers only read (the status
callable builds a JSON-able snapshot), so the evaluation path never waits on HTTP.
"""

from __future__ import annotations

import json
import logging
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

from prometheus_client import CollectorRegistry
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest

from watchdog.redact import redact

log = logging.getLogger("watchdog.server")


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


class ApiServer:
    def __init__(self, listen: str, registry: CollectorRegistry, status: Callable[[], dict[str, Any]],
                 health: Callable[[], tuple[bool, str]], ready: Callable[[], tuple[bool, str]]):
        host, port = parse_listen(listen)
        handler = _make_handler(registry, status, health, ready)
        self._httpd = ThreadingHTTPServer((host, port), handler)
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


def _make_handler(registry: CollectorRegistry, status: Callable[[], dict[str, Any]],
                  health: Callable[[], tuple[bool, str]], ready: Callable[[], tuple[bool, str]]) -> type:
    class Handler(BaseHTTPRequestHandler):
        server_version = "model-watchdog"

        def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, CONTENT_TYPE_LATEST, generate_latest(registry))
            elif path in ("/healthz", "/readyz"):
                ok, reason = (health if path == "/healthz" else ready)()
                self._send(200 if ok else 503, "text/plain; charset=utf-8", (reason + "\n").encode())
            elif path == "/api/v1/status":
                body = redact(json.dumps(status(), indent=2, sort_keys=True, default=str))
                self._send(200, "application/json", body.encode())
            else:
                self._send(404, "text/plain; charset=utf-8", b"not found: try /metrics, /healthz, /readyz, /api/v1/status\n")

        def _send(self, code: int, content_type: str, body: bytes) -> None:
            self.send_response(code)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            log.debug("http: " + format, *args)

    return Handler
