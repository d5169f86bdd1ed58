"""`model-watchdog reload` against a hostile or wedged endpoint on the daemon's port: one
deadline, a cap on the answer, and the API token never printed, even when echoed back.
In process (`main([...])`) against a raw-socket server on 127.0.0.1."""

from __future__ import annotations

import io
import json
import socket
import threading
import time
import tracemalloc
from typing import Callable

import pytest

from watchdog.cli import main

from tests.harness import Harness
from tests.raw_server import RawServer, read_head
from tests.test_engine import ERROR_RULE

pytestmark = pytest.mark.timeout(60)

TOKEN = "reload-cli-token-0123456789"


def answering(answer: Callable[[socket.socket, bytes], None]) -> RawServer:
    """A peer that answers each connection with `answer(sock, request head)`."""
    def talk(conn: socket.socket, _closing: threading.Event) -> None:
        request = read_head(conn)
        if request is not None:
            answer(conn, request)
    return RawServer(talk)


def config_for(tmp_path, port: int) -> str:  # type: ignore[no-untyped-def]
    Harness(tmp_path, ERROR_RULE).store.close()
    (tmp_path / "token").write_text(TOKEN + "\n")
    (tmp_path / "token").chmod(0o600)
    config = tmp_path / "watchdog.yaml"
    config.write_text(config.read_text().replace(
        "rule_files:", f"listen: 127.0.0.1:{port}\napi: {{token_file: token}}\nrule_files:", 1))
    return str(config)


def reload(tmp_path, answer, *extra: str) -> tuple[int, str, str, float]:  # type: ignore[no-untyped-def]
    peer = answering(answer)
    try:
        out, err = io.StringIO(), io.StringIO()
        started = time.monotonic()
        code = main(["reload", "-c", config_for(tmp_path, peer.port), *extra], out, err)
        return code, out.getvalue(), err.getvalue(), time.monotonic() - started
    finally:
        peer.close()


def respond(status: int, body: bytes, *, length: bool = True) -> Callable[[socket.socket, bytes], None]:
    def answer(conn: socket.socket, _request: bytes) -> None:
        head = f"HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n"
        head += f"Content-Length: {len(body)}\r\n" if length else "Connection: close\r\n"
        conn.sendall(head.encode() + b"\r\n" + body)
    return answer


def test_a_trickling_endpoint_is_cut_off_at_the_deadline(tmp_path):
    def trickle(conn: socket.socket, _request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n")
        for _ in range(200):  # one byte every 0.1 s: each read succeeds, the answer never ends
            conn.sendall(b" ")
            time.sleep(0.1)

    code, _, err, took = reload(tmp_path, trickle, "--timeout", "1")
    assert code == 2 and took < 5
    assert "no complete answer from 127.0.0.1:" in err and "within 1s" in err


def test_an_endpoint_that_never_answers_is_cut_off_at_the_deadline(tmp_path):
    code, _, err, took = reload(tmp_path, lambda conn, _r: time.sleep(20), "--timeout", "1")
    assert code == 2 and took < 5 and "no complete answer" in err


def test_an_endless_answer_is_refused_past_the_cap_without_using_its_memory(tmp_path):
    def endless(conn: socket.socket, _request: bytes) -> None:
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n\r\n")
        block = b'{"message": "' + b"x" * (1 << 20)
        for _ in range(2000):  # 2 GB if it were all read
            conn.sendall(block)

    tracemalloc.start()
    try:
        code, _, err, took = reload(tmp_path, endless)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert code == 2 and "larger than 65536 bytes" in err
    assert peak < 16 * 1024 * 1024, peak  # not the 2 GB offered


def test_the_token_is_never_printed_even_when_the_endpoint_echoes_it(tmp_path):
    def echo(conn: socket.socket, request: bytes) -> None:
        auth = next(line for line in request.decode().split("\r\n") if line.lower().startswith("authorization"))
        body = json.dumps({"message": f"reloaded; you sent {auth}\n\x1b[31mred\x1b[0m"}).encode()
        respond(200, body)(conn, request)

    code, out, err, _ = reload(tmp_path, echo)
    assert code == 0
    assert TOKEN not in out + err and "reloaded; you sent" in out
    assert "\x1b" not in out  # escape sequences from the peer are shown, not executed
    code, out, err, _ = reload(tmp_path, respond(422, json.dumps({"error": f"no, {TOKEN}"}).encode()))
    assert code == 1 and TOKEN not in out + err and err.startswith("no, ")


@pytest.mark.parametrize("body", [b"[1, 2, 3]", b"<html>login</html>", b"\xff\xfe garbage", b"[" * 60_000])
def test_an_answer_that_is_not_a_json_object_is_an_error_not_a_crash(tmp_path, body):
    code, _, err, _ = reload(tmp_path, respond(200, body))
    assert code == 2 and "is not a JSON object" in err


def test_a_good_answer_is_printed(tmp_path):
    code, out, _, _ = reload(tmp_path, respond(200, json.dumps({"reloaded": True, "message": "configuration reloaded: "
                                                                                            "1 rules"}).encode()))
    assert code == 0 and out == "configuration reloaded: 1 rules\n"


def test_reload_through_the_real_api_server(tmp_path):
    from watchdog.config.loader import load
    from watchdog.daemon import Daemon

    probe = socket.create_server(("127.0.0.1", 0))
    port = probe.getsockname()[1]
    probe.close()
    config = config_for(tmp_path, port)
    daemon = Daemon(load(config))
    server = daemon.api_server()
    server.start()
    try:
        out, err = io.StringIO(), io.StringIO()
        assert main(["reload", "-c", config], out, err) == 0, err.getvalue()
        assert out.getvalue().startswith("configuration reloaded: 1 rules")
    finally:
        server.stop()
        daemon.close()
