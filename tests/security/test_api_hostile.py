"""Hostile HTTP peers against the real `model-watchdog run` process (issue 11, "HTTP API").

Memory and threads are read from /proc/<pid>/status of the daemon process itself.
"""

from __future__ import annotations

import io
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import requests

from watchdog.cli import main
from watchdog.demo.model_server import SimulatedModelServer
from watchdog.state import open_store
from watchdog.state.base import HistoryEvent

from tests.http_receiver import Receiver
from tests.integration.daemon_process import ERROR_RATE_RULE, DaemonProcess, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

API_TOKEN = "single-api-token-0123456789"
ALICE_TOKEN = "alice-token-abcdefghijklmnop"
# The transport tests use only what the old daemon understood, so that they fail on it for
# the reason they name; named tokens get their own config.
API = "api: {token_file: api.token}\n"
NAMED = """\
api:
  token_file: api.token
  tokens:
    - {name: alice, token_file: alice.token}
"""


def proc_status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise AssertionError(f"no {key} in /proc/{pid}/status")


def write_tokens(directory: Path, mode: int = 0o600) -> None:
    for name, token in (("api.token", API_TOKEN), ("alice.token", ALICE_TOKEN)):
        (directory / name).write_text(token + "\n")
        (directory / name).chmod(mode)


def configure(d: DaemonProcess, api: str = API) -> DaemonProcess:
    d.config.write_text(d.config.read_text().replace("rule_files:", api + "rule_files:", 1))
    return d


@pytest.fixture
def start(tmp_path):
    made: list[DaemonProcess] = []
    with SimulatedModelServer(version="v2", previous_versions=("v1",)) as model, Receiver() as alerts:
        def make(api: str = API) -> DaemonProcess:
            write_tokens(tmp_path)
            made.append(configure(DaemonProcess(tmp_path, model.url, alerts.url("/alert"), ERROR_RATE_RULE), api))
            return made[-1].start()
        yield make
        for d in made:
            d.close()


@pytest.fixture
def daemon(start):
    return start()


def pid(d: DaemonProcess) -> int:
    assert d.proc is not None
    return d.proc.pid


def read_response(sock: socket.socket, timeout: float) -> bytes:
    sock.settimeout(timeout)
    data = b""
    try:
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(65536)
            if not chunk:
                break
            data += chunk
    except (socket.timeout, ConnectionError):
        pass
    return data


def send_forever(sock: socket.socket, total: int, sent: list[int]) -> None:
    chunk = b"x" * (1 << 20)
    try:
        while sent[0] < total:
            sock.sendall(chunk)
            sent[0] += len(chunk)
    except OSError:  # the daemon closed the connection: what we want
        pass


@pytest.mark.parametrize("length", ["-1", "abc", "1e9"])
def test_an_unauthenticated_endless_body_is_refused_before_it_is_read(daemon, length):
    rss_before = proc_status(pid(daemon), "VmRSS")
    sock = socket.create_connection(("127.0.0.1", daemon.port))
    sock.sendall(f"POST /api/v1/targets/fraud-model/pause HTTP/1.1\r\nHost: x\r\n"
                 f"Content-Length:{length}\r\n\r\n".encode())
    sent = [0]
    sender = threading.Thread(target=send_forever, args=(sock, 400 << 20, sent), daemon=True)
    started = time.monotonic()
    sender.start()
    answer = read_response(sock, timeout=10)
    elapsed = time.monotonic() - started
    sender.join(30)
    sock.close()
    assert answer[:9] in (b"HTTP/1.0 ", b"HTTP/1.1 ") and answer[9:13] in (b"400 ", b"401 "), answer[:200]
    assert elapsed < 5
    assert sent[0] < 400 << 20, "the daemon kept reading a body it had refused"
    assert proc_status(pid(daemon), "VmRSS") - rss_before < 50 * 1024  # kB
    assert requests.get(daemon.url + "/healthz", timeout=5).status_code == 200


def test_authentication_is_checked_before_the_body_and_large_bodies_get_413(daemon):
    def ask(headers: str) -> bytes:
        with socket.create_connection(("127.0.0.1", daemon.port)) as sock:
            sock.sendall(f"POST /api/v1/targets/fraud-model/pause HTTP/1.1\r\nHost: x\r\n{headers}\r\n".encode())
            return read_response(sock, timeout=5)  # no body byte is ever sent

    assert ask("Content-Length: 100\r\n")[9:13] == b"401 "
    assert ask(f"Content-Length: 500000000\r\nAuthorization: Bearer {API_TOKEN}\r\n")[9:13] == b"413 "
    big = requests.post(daemon.url + "/api/v1/targets/fraud-model/pause", data=b"{" + b" " * (2 << 20) + b"}",
                        headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=10)
    assert big.status_code == 413 and "api.max_body" in big.json()["error"]


def test_half_open_connections_neither_cost_threads_nor_lock_out_healthz(daemon):
    threads_before = proc_status(pid(daemon), "Threads")
    socks = []
    try:
        for _ in range(500):
            s = socket.create_connection(("127.0.0.1", daemon.port))
            s.sendall(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")  # and never the blank line
            socks.append(s)
        started = time.monotonic()
        healthz = requests.get(daemon.url + "/healthz", timeout=10)
        assert healthz.status_code == 200 and healthz.text == "ok\n"
        assert time.monotonic() - started < 5
        # The accept loop took the 500 before /healthz; a thread per connection would show now.
        assert proc_status(pid(daemon), "Threads") <= threads_before + 5
        # Beyond api.max_connections (256) the oldest half-open ones were closed to make room.
        socks[0].settimeout(10)
        assert socks[0].recv(1024) == b""
    finally:
        for s in socks:
            s.close()


def test_a_silent_connection_is_closed_after_the_idle_timeout(daemon):
    with socket.create_connection(("127.0.0.1", daemon.port)) as sock:
        sock.sendall(b"GET /healthz HTTP/1.1\r\n")
        started = time.monotonic()
        sock.settimeout(30)
        try:
            data = sock.recv(1024)
        except ConnectionError:
            data = b""
        assert data == b"" and time.monotonic() - started < 20  # api.idle_timeout: 10s by default


def test_history_limit_is_parsed_and_clamped(daemon):
    url = daemon.url + "/api/v1/history"
    for bad in ("abc", "-1", "1.5", "1e3", "99999999999999999999"):
        response = requests.get(url, params={"limit": bad}, timeout=5)
        assert response.status_code == 400, (bad, response.status_code)
        assert "limit" in response.json()["error"]
    store = open_store(str(daemon.dir / "state.db"))
    try:
        with store.transaction():
            for i in range(1100):
                store.append(HistoryEvent(None, 1.0 + i, "fraud-model", None, {}, "note", f"event {i}", {}))
    finally:
        store.close()
    assert len(requests.get(url, params={"limit": "5000"}, timeout=10).json()) == 1000
    assert len(requests.get(url, params={"limit": "3"}, timeout=5).json()) == 3
    assert requests.get(daemon.url + "/api/v1/targets/fraud-model/releases?limit=x", timeout=5).status_code == 400


def test_malformed_bodies_are_400_not_500(daemon):
    auth = {"Authorization": f"Bearer {API_TOKEN}"}
    target = daemon.url + "/api/v1/targets/fraud-model"
    for path, body in (("/pause", {"reason": "r", "for": "soon"}), ("/rollback", {"reason": "r", "to": {"x": 1}}),
                       ("/pause", ["not", "an", "object"])):
        response = requests.post(target + path, json=body, headers=auth, timeout=5)
        assert response.status_code == 400, (path, body, response.status_code, response.text)


def test_the_operator_is_the_name_of_the_token_and_by_is_only_a_note(start):
    daemon = start(NAMED)
    pause = daemon.url + "/api/v1/targets/fraud-model/pause"
    resume = daemon.url + "/api/v1/targets/fraud-model/resume"
    forged = {"reason": "maintenance", "by": "mallory"}
    ok = requests.post(pause, json=forged, headers={"Authorization": f"Bearer {ALICE_TOKEN}"}, timeout=5)
    assert ok.status_code == 200, ok.text
    ok = requests.post(resume, json={"by": "bob"}, headers={"Authorization": f"Bearer {API_TOKEN}"}, timeout=5)
    assert ok.status_code == 200, ok.text
    assert requests.post(pause, json=forged, headers={"Authorization": "Bearer " + ALICE_TOKEN[:-1] + "X"},
                         timeout=5).status_code == 401
    events = requests.get(daemon.url + "/api/v1/history", params={"limit": "20"}, timeout=5).json()
    paused = next(e for e in events if e["kind"] == "pause")
    resumed = next(e for e in events if e["kind"] == "resume")
    assert paused["data"]["operator"] == "alice" and "note: by mallory" in paused["message"]
    assert resumed["data"]["operator"] == "api" and "note: by bob" in resumed["message"]
    assert "mallory" not in str(paused["data"]) and "bob" not in str(resumed["data"])


def test_a_reload_re_reads_the_tokens_and_refuses_an_insecure_one(start):
    daemon = start(NAMED)
    carol = "carol-token-0123456789abcdef"
    (daemon.dir / "carol.token").write_text(carol)
    (daemon.dir / "carol.token").chmod(0o644)
    daemon.config.write_text(daemon.config.read_text().replace(
        "    - {name: alice, token_file: alice.token}\n",
        "    - {name: alice, token_file: alice.token}\n    - {name: carol, token_file: carol.token}\n"))
    reload = daemon.url + "/api/v1/reload"
    refused = requests.post(reload, headers={"Authorization": f"Bearer {ALICE_TOKEN}"}, timeout=30)
    assert refused.status_code == 422 and "carol.token" in refused.json()["message"]
    assert "chmod 600" in refused.json()["message"]
    (daemon.dir / "carol.token").chmod(0o600)
    assert requests.post(reload, headers={"Authorization": f"Bearer {ALICE_TOKEN}"}, timeout=30).status_code == 200
    paused = requests.post(daemon.url + "/api/v1/targets/fraud-model/pause", json={"reason": "r"},
                           headers={"Authorization": f"Bearer {carol}"}, timeout=5)
    assert paused.status_code == 200 and "paused by carol" in paused.json()["message"]


def _run(config: Path, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "watchdog.cli", "run", "-c", str(config)],
                          capture_output=True, text=True, timeout=timeout)


def _validate(config: Path) -> tuple[int, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(["validate", "-c", str(config)], out, err)
    return code, out.getvalue() + err.getvalue()


def test_a_token_file_others_can_read_is_refused_unless_allowed(tmp_path):
    with SimulatedModelServer() as model, Receiver() as alerts:
        write_tokens(tmp_path, mode=0o644)
        d = configure(DaemonProcess(tmp_path, model.url, alerts.url("/alert"), ERROR_RATE_RULE))
        refused = _run(d.config)
        assert refused.returncode == 1, refused.stdout + refused.stderr
        assert "chmod 600" in refused.stderr and "allow_insecure_token_file" in refused.stderr
        assert API_TOKEN not in refused.stdout + refused.stderr
        code, text = _validate(d.config)
        assert code == 1 and "api.token_file" in text and "mode 0644" in text

        d.config.write_text(d.config.read_text().replace(API, NAMED))
        code, text = _validate(d.config)
        assert code == 1 and "api.token_file" in text and "api.tokens[0] (alice).token_file" in text
        assert "mode 0644" in text

        d.config.write_text(d.config.read_text().replace("api:\n", "api:\n  allow_insecure_token_file: true\n"))
        code, text = _validate(d.config)
        assert code == 0 and "warning:" in text and "mode 0644" in text
        try:
            d.start()
            wait_until(lambda: "INSECURE" in d.log.read_text(), 10, what="the loud warning in the log")
        finally:
            d.close()


def test_validate_checks_that_token_files_exist_and_hold_a_real_token(tmp_path):
    (tmp_path / "rules.yaml").write_text("target: m\nrules: []\n")
    (tmp_path / "tiny.token").write_text("q7w8e9r0\n")  # distinctive: redaction is process-wide
    (tmp_path / "tiny.token").chmod(0o600)
    config = tmp_path / "watchdog.yaml"
    head = "rule_files: [rules.yaml]\nstate: s.db\ntargets: {m: {}}\n"
    config.write_text(head + "api:\n  token_file: missing.token\n")
    code, text = _validate(config)
    assert code == 1 and "watchdog.yaml:5:15: api.token_file: cannot read" in text
    config.write_text(head + "api: {token_file: tiny.token}\n")
    code, text = _validate(config)
    assert code == 1 and "api.token_file: the token in" in text and "than 16 characters" in text
    config.write_text(head + "api:\n  tokens:\n    - {name: bob, token_file: tiny.token}\n")
    code, text = _validate(config)
    assert code == 1 and "api.tokens[0] (bob).token_file: the token in" in text and "than 16 characters" in text
    config.write_text(head + "api: {token_file: /dev/zero}\n")  # never read to its (absent) end
    code, text = _validate(config)
    assert code == 1 and "api.token_file: /dev/zero is not a regular file" in text


# -- the server on its own, with small limits ---------------------------------------------------

def _server(**limits: object):  # type: ignore[no-untyped-def]
    from watchdog.web.server import ApiServer, AuthPolicy, Limits, Response, Route

    gate = threading.Event()

    def slow(_req):  # type: ignore[no-untyped-def]
        gate.wait(20)
        return Response(200, {"ok": True})

    def echo(req):  # type: ignore[no-untyped-def]
        return Response(200, {"body": req.body, "operator": req.operator})

    routes = [Route("GET", "/slow", slow), Route("POST", "/echo", echo, mutating=True)]
    server = ApiServer("127.0.0.1:0", routes, AuthPolicy(tokens=(("alice", ALICE_TOKEN),)), Limits(**limits))  # type: ignore[arg-type]
    server.start()
    return server, gate


def _port(server) -> int:  # type: ignore[no-untyped-def]
    return int(server.address.rsplit(":", 1)[1])


def test_a_trickling_client_is_cut_off_at_the_request_timeout():
    server, _ = _server(idle_timeout=2.0, request_timeout=3.0)
    try:
        with socket.create_connection(("127.0.0.1", _port(server))) as sock:
            started = time.monotonic()
            closed = False
            for byte in b"GET /slow HTTP/1.1\r\nHost: x\r\nX-Pad: " + b"a" * 40:
                try:
                    sock.sendall(bytes([byte]))  # one byte a second: never idle, never done
                    sock.settimeout(1.0)
                    if sock.recv(1) == b"":
                        closed = True
                        break
                except socket.timeout:
                    continue
                except ConnectionError:
                    closed = True
                    break
            assert closed and time.monotonic() - started < 10
    finally:
        server.stop()


def test_handler_threads_are_capped_and_requests_beyond_them_wait():
    server, gate = _server(handler_threads=2)
    try:
        before = threading.active_count()
        results: list[int] = []
        clients = [threading.Thread(target=lambda: results.append(
            requests.get(server.address + "/slow", timeout=30).status_code)) for _ in range(6)]
        for c in clients:
            c.start()
        assert threading.active_count() <= before + 6  # the 6 client threads; no handler threads on top
        gate.set()
        for c in clients:
            c.join(30)
        assert results == [200] * 6
    finally:
        gate.set()
        server.stop()


def test_expect_continue_head_and_malformed_heads():
    server, _ = _server()
    try:
        with socket.create_connection(("127.0.0.1", _port(server))) as sock:
            sock.sendall(f"POST /echo HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {ALICE_TOKEN}\r\n"
                         "Content-Length: 11\r\nExpect: 100-continue\r\n\r\n".encode())
            assert read_response(sock, 5).startswith(b"HTTP/1.1 100 Continue")
            sock.sendall(b'{"a": "b"}\n')
            sock.settimeout(5)
            answer = b""
            while chunk := sock.recv(65536):
                answer += chunk
            assert b"HTTP/1.1 200 OK" in answer and b'"operator": "alice"' in answer
        for head, status in ((b"GARBAGE\r\n\r\n", b"400"), (b"GET /slow HTTP/1.1\r\nbad header\r\n\r\n", b"400"),
                             (b"POST /echo HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", b"400"),
                             (b"POST /echo HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n", b"411"),
                             (b"GET /x HTTP/1.1\r\nX: " + b"a" * 70000 + b"\r\n\r\n", b"431")):
            with socket.create_connection(("127.0.0.1", _port(server))) as sock:
                sock.sendall(head)
                assert read_response(sock, 5)[9:12] == status, head[:40]
        head = requests.head(server.address + "/nope", timeout=5)
        assert head.status_code == 404 and head.content == b"" and int(head.headers["Content-Length"]) > 0
    finally:
        server.stop()
