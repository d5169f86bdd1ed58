"""A local HTTP receiver for tests: records what it is sent, answers as scripted.

    def test_retry(receiver):
        receiver.script(503, 503, 200)
        ...post to receiver.url("/hook")...
        assert [r.path for r in receiver.requests] == ["/hook"] * 3

Answers are taken from the script in order; when it runs out, `default` (200) is used.
A script entry is a status code, a `Reply` (status, body, headers, delay) or a callable
that receives the `Request` and returns a `Reply` (e.g. to echo a header back).
"""

from __future__ import annotations

import json
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable, Iterator, Union

import pytest
from requests.structures import CaseInsensitiveDict


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: CaseInsensitiveDict[str]
    body: bytes

    @property
    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: str | bytes | dict[str, Any] = b""
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds to wait before answering (cut short when the receiver closes)


Step = Union[int, Reply, Callable[[Request], Reply]]


class Receiver:
    def __init__(self, default: Step = 200):
        self.default = default
        self.requests: list[Request] = []
        self._script: list[Step] = []
        self._lock = threading.Condition()
        self._closing = threading.Event()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler_class())
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="http-receiver", daemon=True)

    @property
    def port(self) -> int:
        return self._server.server_address[1]

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def script(self, *steps: Step) -> None:
        """Answer the next requests with `steps`, in order (appended to what is left)."""
        with self._lock:
            self._script.extend(steps)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[Request]:
        """Block until at least `count` requests arrived; AssertionError after `timeout`."""
        with self._lock:
            if not self._lock.wait_for(lambda: len(self.requests) >= count, timeout):
                raise AssertionError(f"expected {count} requests within {timeout}s, got {len(self.requests)}")
            return list(self.requests)

    def start(self) -> "Receiver":
        self._thread.start()
        return self

    def close(self) -> None:
        self._closing.set()
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def __enter__(self) -> "Receiver":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _record(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            step = self._script.pop(0) if self._script else self.default
            self._lock.notify_all()
        if callable(step):
            return step(request)
        return step if isinstance(step, Reply) else Reply(status=step)

    def _handler_class(self) -> type[BaseHTTPRequestHandler]:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else b""
                headers = CaseInsensitiveDict(dict(self.headers.items()))
                reply = receiver._record(Request(self.command, self.path, headers, body))
                if reply.delay and receiver._closing.wait(reply.delay):
                    return
                payload = _encode(reply.body)
                try:
                    self.send_response(reply.status)
                    for name, value in reply.headers.items():
                        self.send_header(name, value)
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timed out); that is what some tests want

            do_GET = do_POST = do_PUT = do_DELETE = do_PATCH = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass  # keep pytest output clean

        return Handler


def _encode(body: str | bytes | dict[str, Any]) -> bytes:
    if isinstance(body, dict):
        return json.dumps(body).encode()
    return body.encode() if isinstance(body, str) else body


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    with Receiver() as r:
        yield r
