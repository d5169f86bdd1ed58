"""A hostile HTTP server on 127.0.0.1: huge pages, endless streams, gzip bombs, trickles.

Every answer is generated while it is sent, so the test process itself stays small. The
answer to a path is chosen by `mode` (switchable while running) or by the path itself:

    /huge        a valid /metrics page of `huge_size` bytes (default 500 MB), sent as fast as possible
    /endless     a /metrics page that never ends (no Content-Length, close-delimited)
    /bomb        1 MB of gzip that expands to 1 GiB (Content-Encoding: gzip)
    /trickle     a 200 whose body arrives one byte every 0.5 s, for ever (/trickle500: a 500)
    /slowheaders a status line and headers trickled one byte every 0.5 s
    /series      a page with `series` (default 1,000,000) distinct series
    /counter     requests_total{status="error"} alternating -1e9 and 1, requests_total{status="ok"} growing
    /duplicate   the same series twice on one page
    /utf8        a page whose label value is `üñí`, served without a charset
    /metrics     the page of the current `mode` (one of the names above, or "ok")
    /rollback    POST: recorded in `rollbacks`, answered 200
"""

from __future__ import annotations

import json
import ssl
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable, Iterator

CHUNK = 64 * 1024
OK_PAGE = """\
# TYPE model_info gauge
model_info{version="v2"} 1
# TYPE requests_total counter
requests_total{status="ok"} %s
requests_total{status="error"} %s
"""


def _bomb() -> bytes:
    # Deflate 1 MiB of `#` with a full flush: every later block compresses to the same bytes,
    # so 1024 of them are written without compressing 1 GiB (seconds) each test run.
    block = b"#" * (1 << 20)
    z = zlib.compressobj(9, zlib.DEFLATED, -zlib.MAX_WBITS)
    first = z.compress(block) + z.flush(zlib.Z_FULL_FLUSH)
    middle = z.compress(block) + z.flush(zlib.Z_FULL_FLUSH)
    last = z.compress(block) + z.flush()
    crc = 0
    for _ in range(1024):
        crc = zlib.crc32(block, crc)
    header = b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x02\xff"
    return header + first + middle * 1022 + last + struct.pack("<II", crc, (1 << 30) & 0xFFFFFFFF)


_BOMB: bytes | None = None


def bomb() -> bytes:
    """About 1 MB of gzip that expands to 1 GiB of `#` (comment lines of the format, in effect)."""
    global _BOMB
    if _BOMB is None:
        _BOMB = _bomb()
    return _BOMB


class HostileServer:
    def __init__(self, huge_size: int = 500 * 1000 * 1000, series: int = 1_000_000,
                 tls: tuple[Path, Path] | None = None):
        self.mode = "ok"
        self.huge_size = huge_size
        self.series = series
        self.rollbacks: list[dict[str, Any]] = []
        self.scrapes: dict[str, int] = {}
        self._served = 0
        self._series_page: bytes | None = None
        self._lock = threading.Lock()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        self.scheme = "http"
        if tls is not None:  # (cert.pem, key.pem)
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
            self.scheme = "https"
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True, name="hostile-server")

    @property
    def url(self) -> str:
        return f"{self.scheme}://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "HostileServer":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()

    def count(self, mode: str) -> int:
        with self._lock:
            return self.scrapes.get(mode, 0)

    # -- pages ---------------------------------------------------------------------------------

    def _ok(self) -> Iterator[bytes]:
        with self._lock:
            self._served += 1
            n = self._served
        yield (OK_PAGE % (1000 * n, 1)).encode()

    def _huge(self) -> Iterator[bytes]:
        line = b'filler_gauge{pad="' + b"x" * 100 + b'"} 1\n'
        block = line * (CHUNK // len(line))
        sent = 0
        while sent < self.huge_size and not self._closing.is_set():
            part = block[:self.huge_size - sent]
            yield part
            sent += len(part)

    def _endless(self) -> Iterator[bytes]:
        block = b"# endless\n" * (CHUNK // 10)
        while not self._closing.is_set():
            yield block

    def _trickle(self) -> Iterator[bytes]:
        while not self._closing.is_set():
            yield b"#"
            self._closing.wait(0.5)

    def _series(self) -> Iterator[bytes]:
        if self._series_page is None:  # built once: generating it per request is slower than a scrape timeout
            self._series_page = b"# TYPE many gauge\n" + b"".join(b'many{i="%d"} 1\n' % i for i in range(self.series))
        page = self._series_page
        for start in range(0, len(page), CHUNK):
            yield page[start:start + CHUNK]

    def _counter(self) -> Iterator[bytes]:
        with self._lock:
            self._served += 1
            n = self._served
        error = "-1e9" if n % 2 else "1"
        yield (OK_PAGE % (1000 * n, error)).encode()

    def _duplicate(self) -> Iterator[bytes]:
        yield (OK_PAGE % (1000, 1) + 'requests_total{status="ok"} 5\n').encode()

    def _utf8(self) -> Iterator[bytes]:
        yield (OK_PAGE % (1000, 1) + '# TYPE label_probe gauge\nlabel_probe{name="üñí"} 1\n').encode("utf-8")

    # -- HTTP ----------------------------------------------------------------------------------

    def _page(self, name: str) -> tuple[dict[str, str], Callable[[], Iterator[bytes]]] | None:
        plain = {"Content-Type": "text/plain"}  # no charset, as many servers send
        pages: dict[str, tuple[dict[str, str], Callable[[], Iterator[bytes]]]] = {
            "ok": (plain, self._ok),
            "huge": ({**plain, "Content-Length": str(self.huge_size)}, self._huge),
            "endless": (plain, self._endless),
            "bomb": ({**plain, "Content-Encoding": "gzip", "Content-Length": str(len(bomb()))},
                     lambda: iter([bomb()])),
            "trickle": (plain, self._trickle),
            "trickle500": (plain, self._trickle),
            "series": (plain, self._series),
            "counter": (plain, self._counter),
            "duplicate": (plain, self._duplicate),
            "utf8": (plain, self._utf8),
        }
        return pages.get(name)

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        server = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.0"  # close-delimited bodies for the endless ones

            def do_GET(self) -> None:
                name = self.path.split("?")[0].strip("/").split("/")[0]
                if name == "metrics":
                    name = server.mode
                with server._lock:
                    server.scrapes[name] = server.scrapes.get(name, 0) + 1
                if name == "slowheaders":
                    return self._trickle_headers()
                page = server._page(name)
                if page is None:
                    self.send_error(404)
                    return
                headers, body = page
                self.send_response(500 if name.endswith("500") else 200)
                for key, value in headers.items():
                    self.send_header(key, value)
                self.end_headers()
                try:
                    for part in body():
                        self.wfile.write(part)
                        self.wfile.flush()
                except (OSError, ssl.SSLError):  # the client hung up (what the tests want)
                    pass

            def _trickle_headers(self) -> None:
                try:
                    for byte in b"HTTP/1.0 200 OK\r\nX-Slow: " + b"a" * 10_000:
                        if server._closing.wait(0.5):
                            return
                        self.wfile.write(bytes([byte]))
                        self.wfile.flush()
                except OSError:
                    pass

            def do_POST(self) -> None:
                if not self.path.startswith("/rollback"):
                    return self.do_GET()
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(min(length, 1 << 20))
                if self.path.startswith("/rollback"):
                    with server._lock:
                        server.rollbacks.append(json.loads(body or b"{}"))
                answer = b'{"ok": true}'
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler


def elapsed(fn: Callable[[], Any]) -> tuple[Any, float]:
    started = time.monotonic()
    return fn(), time.monotonic() - started
