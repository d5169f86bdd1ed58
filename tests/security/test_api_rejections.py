"""Connections the API ends by a limit are counted by reason:
`model_watchdog_api_connections_rejected_total{reason}`. In process (ApiServer on 127.0.0.1
with small limits); each case waits for its count, not for a fixed time."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from watchdog.daemon import wait_for
from watchdog.metrics import DaemonMetrics
from watchdog.web.server import REJECT_REASONS, ApiServer, AuthPolicy, Limits, Response, Route

pytestmark = pytest.mark.timeout(60)

TOKEN = "rejections-token-0123456789"
METRIC = "model_watchdog_api_connections_rejected_total"


@pytest.fixture
def api():
    metrics = DaemonMetrics()
    gate = threading.Event()

    def slow(_req):  # type: ignore[no-untyped-def]
        gate.wait(20)
        return Response(200, {"ok": True})

    routes = [Route("GET", "/slow", slow), Route("POST", "/echo", lambda req: Response(200, req.body), mutating=True)]
    counter = metrics.api_connections_rejected
    server = ApiServer("127.0.0.1:0", routes, AuthPolicy(tokens=(("ci", TOKEN),)),
                       Limits(max_body=100, idle_timeout=0.4, request_timeout=1.2, max_connections=3, handler_threads=3),
                       on_reject=lambda reason: counter.labels(reason).inc())
    server.start()
    try:
        yield server, metrics, gate
    finally:
        gate.set()
        server.stop()


def count(metrics: DaemonMetrics, reason: str) -> float:
    return metrics.registry.get_sample_value(METRIC, {"reason": reason}) or 0.0


def connect(server: ApiServer) -> socket.socket:
    return socket.create_connection(("127.0.0.1", int(server.address.rsplit(":", 1)[1])), timeout=5)


def closed(sock: socket.socket) -> bool:
    try:
        while sock.recv(65536):
            pass
    except ConnectionError:
        pass
    return True


def test_refused_heads_and_bodies_are_counted_by_reason(api):
    server, metrics, _ = api
    for data, reason in ((b"GARBAGE\r\n\r\n", "malformed"),
                         (b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", "malformed"),
                         (b"GET /x HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n", "head_too_large"),
                         (f"POST /echo HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 101\r\n\r\n"
                          .encode(), "body_too_large")):
        before = count(metrics, reason)
        with connect(server) as sock:
            sock.sendall(data)
            assert closed(sock)
        assert wait_for(lambda r=reason, b=before: count(metrics, r) == b + 1, 5), reason
    # An ordinary request and a wrong token (authentication, not a limit) are not counted.
    with connect(server) as sock:
        sock.sendall(f"POST /echo HTTP/1.1\r\nAuthorization: Bearer {TOKEN}\r\nContent-Length: 2\r\n\r\n{{}}".encode())
        assert closed(sock)
    with connect(server) as sock:
        sock.sendall(b"POST /echo HTTP/1.1\r\nAuthorization: Bearer nope\r\nContent-Length: 2\r\n\r\n{}")
        assert closed(sock)
    assert sum(count(metrics, r) for r in REJECT_REASONS) == 4


def test_silent_and_trickling_clients_are_counted_apart(api):
    server, metrics, _ = api
    with connect(server) as sock:
        sock.sendall(b"GET /slow HTTP/1.1\r\n")  # then silence
        assert closed(sock)
    assert wait_for(lambda: count(metrics, "idle_timeout") == 1, 5)
    with connect(server) as sock:
        started = time.monotonic()
        try:
            for byte in b"GET /slow HTTP/1.1\r\nX-Pad: " + b"a" * 40:  # never idle 0.4 s, never done
                sock.sendall(bytes([byte]))
                time.sleep(0.1)
        except ConnectionError:
            pass
        assert closed(sock) and time.monotonic() - started < 5
    assert wait_for(lambda: count(metrics, "request_timeout") == 1, 5)
    assert count(metrics, "idle_timeout") == 1


def test_the_connection_limit_counts_evictions_and_refusals(api):
    server, metrics, gate = api
    half_open = [connect(server) for _ in range(3)]
    for sock in half_open:
        sock.sendall(b"GET /slow HTTP/1.1\r\n")  # still sending: may be evicted
    newest = connect(server)  # the limit is 3: the oldest half-open one makes room
    assert wait_for(lambda: count(metrics, "evicted") == 1, 5)
    assert closed(half_open[0])
    for sock in half_open:
        sock.close()
    newest.close()
    assert wait_for(lambda: len(server._open) == 0, 5)

    answering = [connect(server) for _ in range(3)]  # complete requests, held in the handlers
    for sock in answering:
        sock.sendall(b"GET /slow HTTP/1.1\r\n\r\n")
    assert wait_for(lambda: len(server._open) == 3 and not any(server._open.values()), 5)
    with connect(server) as refused:
        assert closed(refused)
    assert wait_for(lambda: count(metrics, "refused") == 1, 5)
    gate.set()
    for sock in answering:
        assert closed(sock)
        sock.close()
    assert count(metrics, "evicted") == 1


@pytest.fixture
def daemon(tmp_path):  # type: ignore[no-untyped-def]
    """The real daemon (on the harness's config, listening on an ephemeral port) and its API
    server, bound but not yet serving."""
    from watchdog.config.loader import load
    from watchdog.daemon import Daemon

    from tests.harness import Harness
    from tests.test_engine import ERROR_RULE

    h = Harness(tmp_path, ERROR_RULE)
    h.store.close()
    config = tmp_path / "watchdog.yaml"
    config.write_text(config.read_text().replace("rule_files:", "listen: 127.0.0.1:0\nrule_files:", 1))
    daemon = Daemon(load(config), clock=h.clock)
    server = daemon.api_server()
    try:
        yield daemon, server
    finally:
        server.stop()
        daemon.close()


def test_the_daemon_counts_its_api_rejections_on_metrics(daemon):  # type: ignore[no-untyped-def]
    daemon, server = daemon
    server.start()
    with connect(server) as sock:
        sock.sendall(b"GARBAGE\r\n\r\n")
        assert closed(sock)
    assert wait_for(lambda: count(daemon.metrics, "malformed") == 1, 5)
    with connect(server) as sock:
        sock.sendall(b"GET /metrics HTTP/1.1\r\n\r\n")
        sock.settimeout(5)
        page = b""
        while chunk := sock.recv(65536):
            page += chunk
    assert f'{METRIC}{{reason="malformed"}} 1.0'.encode() in page


def test_every_reason_is_on_metrics_at_zero_before_anything_happens(daemon):  # type: ignore[no-untyped-def]
    daemon, _server = daemon
    assert {r: count(daemon.metrics, r) for r in REJECT_REASONS} == dict.fromkeys(REJECT_REASONS, 0.0)
    assert all(daemon.metrics.registry.get_sample_value(METRIC, {"reason": r}) == 0.0 for r in REJECT_REASONS)
