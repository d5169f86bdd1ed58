"""Big answers cost memory only while they are written. `/metrics` is written piece by piece (DaemonMetrics.chunks through a streamed Response):
chunked for HTTP/1.1, to the connection's close for HTTP/1.0, headers only for HEAD; the bytes
are generate_latest's; and the whole page is never in memory at once; no
handler thread keeps its last answer. In process, 127.0.0.1."""

from __future__ import annotations

import asyncio
import gc
import socket
import tracemalloc
import weakref

import pytest
import requests
from prometheus_client.exposition import generate_latest

from watchdog.clock import FakeClock
from watchdog.daemon import wait_for
from watchdog.metrics import DaemonMetrics
from watchdog.web.api import routes
from watchdog.web.server import ApiServer, AuthPolicy, Limits, Response, Route, _Exchange

pytestmark = pytest.mark.timeout(60)


def fill(metrics: DaemonMetrics, targets: int, rules: int) -> None:
    r = metrics.rules
    for t in range(targets):
        for i in range(rules):
            r.set_value(f"model-{t}", f"rule-{i}", '{code="5xx"}', t * 0.001 + i)
            r.set_threshold(f"model-{t}", f"rule-{i}", "above", 0.05)
            r.set_phase(f"model-{t}", f"rule-{i}", '{code="5xx"}', "pending" if (t + i) % 7 == 0 else "inactive")
            r.count_outcome(f"model-{t}", f"rule-{i}", "ok")


@pytest.fixture
def served():
    class Daemon:
        metrics = DaemonMetrics()
        clock = FakeClock()
        health = ready = status = reload = drill_now = None

    fill(Daemon.metrics, 100, 10)
    metrics_route = next(r for r in routes(Daemon()) if r.pattern == "/metrics")  # type: ignore[arg-type]
    server = ApiServer("127.0.0.1:0", [metrics_route, Route("GET", "/small", lambda _: Response(200, "hello\n"))],
                       AuthPolicy())
    server.start()
    try:
        yield server, Daemon.metrics
    finally:
        server.stop()


def exchange(server: ApiServer, request: bytes) -> tuple[bytes, bytes]:
    with socket.create_connection(("127.0.0.1", int(server.address.rsplit(":", 1)[1])), timeout=10) as sock:
        sock.sendall(request)
        received = b""
        while data := sock.recv(65536):
            received += data
    head, _, body = received.partition(b"\r\n\r\n")
    return head, body


def dechunk(body: bytes) -> bytes:
    out, pieces = b"", 0
    while True:
        size_line, _, body = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            assert body == b"\r\n" and pieces > 1  # the end marker, after more than one piece
            return out
        out, body, pieces = out + body[:size], body[size + 2:], pieces + 1


def test_http11_gets_the_page_chunked_and_byte_equal_to_generate_latest(served):
    server, metrics = served
    head, body = exchange(server, b"GET /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n")
    assert b"\r\nTransfer-Encoding: chunked\r\n" in head and b"Content-Length" not in head
    assert b"\r\nContent-Type: text/plain;" in head
    assert dechunk(body) == generate_latest(metrics.registry)
    response = requests.get(f"{server.address}/metrics", timeout=10)  # what a client library sees
    assert response.status_code == 200 and response.content == generate_latest(metrics.registry)


def test_http10_gets_the_page_until_the_connection_closes_and_head_gets_no_body(served):
    server, metrics = served
    head, body = exchange(server, b"GET /metrics HTTP/1.0\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b"Transfer-Encoding" not in head
    assert body == generate_latest(metrics.registry)
    head, body = exchange(server, b"HEAD /metrics HTTP/1.1\r\nHost: x\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200 OK\r\n") and body == b""


def test_other_responses_keep_their_content_length(served):
    server, _ = served
    head, body = exchange(server, b"GET /small HTTP/1.1\r\nHost: x\r\n\r\n")
    assert b"\r\nContent-Length: 6\r\n" in head and b"chunked" not in head and body == b"hello\n"


def test_a_read_never_holds_the_whole_page():
    metrics = DaemonMetrics()
    fill(metrics, 1000, 10)  # the fleet's 10,000 rules: a 5.7 MB page
    page = len(generate_latest(metrics.registry))
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        tracemalloc.reset_peak()
        written = sum(len(piece) for piece in metrics.chunks())  # each piece dropped once "written"
        peak = tracemalloc.get_traced_memory()[1] - before
    finally:
        tracemalloc.stop()
    assert written == page
    assert peak < page / 2, (peak, page)  # built whole it was the page as str and as bytes: > 2 pages


def test_an_idle_handler_thread_keeps_nothing_of_its_last_answer():
    class Page:  # stands for a big answer; JSON-encoded through str()
        def __str__(self) -> str:
            return "page"

    pages: list[weakref.ref[Page]] = []

    def big(_req):  # type: ignore[no-untyped-def]
        page = Page()
        pages.append(weakref.ref(page))
        return Response(200, {"page": page})

    server = ApiServer("127.0.0.1:0", [Route("GET", "/big", big)], AuthPolicy(), Limits(handler_threads=2))
    server.start()
    try:
        for _ in range(2):
            head, body = exchange(server, b"GET /big HTTP/1.1\r\nHost: x\r\n\r\n")
            assert head.startswith(b"HTTP/1.1 200 OK\r\n") and b'"page"' in body
        gc.collect()
        assert wait_for(lambda: all(ref() is None for ref in pages), 5), "an idle handler thread holds its last answer"
    finally:
        server.stop()


def test_a_streamed_answer_must_be_taken_whole_within_request_timeout():
    """A reader that takes each piece in time but the whole too slowly is cut off at
    request_timeout (it would otherwise hold the body's source, a copy of the tables, for as
    many idle_timeouts as there are pieces)."""

    class Transport:
        def set_write_buffer_limits(self, high: int) -> None:
            pass

    class SlowWriter:
        transport = Transport()
        written: list[bytes] = []

        def write(self, data: bytes) -> None:
            self.written.append(data)

        async def drain(self) -> None:
            await asyncio.sleep(0.05)  # each piece taken well within idle_timeout

    class Server:
        limits = Limits(idle_timeout=1.0, request_timeout=0.3)

        async def _in_thread(self, call):  # type: ignore[no-untyped-def]
            return call()

    async def answer() -> float:
        exchange = _Exchange.__new__(_Exchange)
        exchange.server, exchange.writer, exchange.limits = Server(), SlowWriter(), Server.limits  # type: ignore[assignment]
        exchange.loop = asyncio.get_running_loop()
        started = exchange.loop.time()
        with pytest.raises(asyncio.TimeoutError):
            await exchange._stream(Response(200, iter([b"x" * 10] * 100), "text/plain"), chunked=True, head_only=False)
        return exchange.loop.time() - started

    took = asyncio.run(answer())
    assert 0.25 <= took < 1.0 and 4 <= len(SlowWriter.written) <= 8
