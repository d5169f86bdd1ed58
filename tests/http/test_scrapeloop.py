"""The scrape loop's client against hostile and forgetful servers on 127.0.0.1 (raw sockets)."""

from __future__ import annotations

import gzip
import socket
import ssl
import struct
import threading
import time
from pathlib import Path
from typing import Callable, Iterator

import pytest

from tests.cycles import cyclic_garbage
from tests.fakes.kube_api import self_signed_cert
from watchdog.http import body as httpbody
from watchdog.http.scrapeloop import ScrapeClient
from watchdog.http.transport import Fetched, HttpFailure

pytestmark = pytest.mark.timeout(30)

PAGE = b"up_metric 1\n"
ANSWER = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(PAGE), PAGE)

Handler = Callable[[socket.socket, int], None]


class RawServer:
    """Each accepted connection is handed to `handler(connection, index)` in its own thread."""

    def __init__(self, handler: Handler, tls: ssl.SSLContext | None = None):
        self.handler = handler
        self.accepted = 0
        self.requests: list[bytes] = []
        self.stop = threading.Event()
        self._tls = tls
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = self._sock.getsockname()[1]
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, path: str = "/metrics", userinfo: str = "") -> str:
        scheme = "https" if self._tls else "http"
        return f"{scheme}://{userinfo}127.0.0.1:{self.port}{path}"

    def _accept(self) -> None:
        while True:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            index, self.accepted = self.accepted, self.accepted + 1
            threading.Thread(target=self._serve, args=(conn, index), daemon=True).start()

    def _serve(self, conn: socket.socket, index: int) -> None:
        try:
            if self._tls is not None:
                conn = self._tls.wrap_socket(conn, server_side=True)
            self.handler(conn, index)
        except (OSError, ssl.SSLError):
            pass
        finally:
            conn.close()

    def read_request(self, conn: socket.socket) -> bytes:
        data = b""
        while b"\r\n\r\n" not in data:
            piece = conn.recv(4096)
            if not piece:
                return b""
            data += piece
        self.requests.append(data)
        return data

    def close(self) -> None:
        self.stop.set()
        self._sock.close()


@pytest.fixture
def serve() -> Iterator[Callable[..., RawServer]]:
    servers: list[RawServer] = []

    def make(handler: Callable[[RawServer, socket.socket, int], None], tls: ssl.SSLContext | None = None) -> RawServer:
        server = RawServer(lambda conn, i: handler(server, conn, i), tls)
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.close()


def fetch(client: ScrapeClient, url: str, timeout: float = 2.0, max_body: int = 1 << 20) -> Fetched | HttpFailure:
    [answer] = client.fetch_all([client.target(url)], timeout=timeout, deadline=time.monotonic() + 10,
                                concurrency=4, max_body=max_body)
    assert answer is not None
    return answer


def keep_alive(server: RawServer, conn: socket.socket, index: int) -> None:
    while server.read_request(conn):
        conn.sendall(ANSWER)


def test_one_connection_is_kept_alive_across_scrapes(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(keep_alive)
    client = ScrapeClient()
    target = client.target(server.url())
    for _ in range(3):
        [answer] = client.fetch_all([target], timeout=2, deadline=time.monotonic() + 5, concurrency=1, max_body=1000)
        assert isinstance(answer, Fetched) and answer.status_code == 200 and answer.content == PAGE
    client.close()
    assert server.accepted == 1


def test_a_server_that_closes_between_scrapes_is_reconnected_not_an_error(serve) -> None:  # type: ignore[no-untyped-def]
    def one_then_close(server: RawServer, conn: socket.socket, index: int) -> None:
        server.read_request(conn)
        conn.sendall(ANSWER)  # keep-alive by default in HTTP/1.1, then closed anyway

    server = serve(one_then_close)
    client = ScrapeClient()
    target = client.target(server.url())
    for _ in range(3):
        [answer] = client.fetch_all([target], timeout=2, deadline=time.monotonic() + 5, concurrency=1, max_body=1000)
        assert isinstance(answer, Fetched) and answer.content == PAGE, answer
        time.sleep(0.05)  # the close arrives while the connection is idle
    client.close()
    assert server.accepted == 3


def test_a_connection_closed_as_the_request_is_sent_is_retried_once(serve) -> None:  # type: ignore[no-untyped-def]
    def answers_once(server: RawServer, conn: socket.socket, index: int) -> None:
        server.read_request(conn)
        conn.sendall(ANSWER)
        if index == 0:
            server.read_request(conn)  # the second request on this connection: closed unanswered
            return
        keep_alive(server, conn, index)

    server = serve(answers_once)
    client = ScrapeClient()
    target = client.target(server.url())
    for _ in range(2):
        [answer] = client.fetch_all([target], timeout=2, deadline=time.monotonic() + 5, concurrency=1, max_body=1000)
        assert isinstance(answer, Fetched) and answer.content == PAGE, answer
    client.close()
    assert server.accepted == 2 and len(server.requests) == 3


def test_a_new_connection_closed_without_an_answer_is_an_error(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(lambda server, conn, i: server.read_request(conn))
    answer = fetch(ScrapeClient(), server.url())
    assert isinstance(answer, HttpFailure) and answer.kind == "connection"
    assert "without an answer" in str(answer)
    assert server.accepted == 1  # no retry on a fresh connection


def test_a_stalled_body_ends_at_the_deadline(serve) -> None:  # type: ignore[no-untyped-def]
    def stall(server: RawServer, conn: socket.socket, index: int) -> None:
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nup_metric")
        server.stop.wait(10)

    server = serve(stall)
    started = time.monotonic()
    answer = fetch(ScrapeClient(), server.url(), timeout=0.3)
    assert isinstance(answer, HttpFailure) and answer.kind == "timeout"
    assert time.monotonic() - started < 2


def test_a_connection_reset_mid_body_is_a_connection_error(serve) -> None:  # type: ignore[no-untyped-def]
    def reset(server: RawServer, conn: socket.socket, index: int) -> None:
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\nup_metric 1\n")
        time.sleep(0.05)
        conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))  # RST on close

    server = serve(reset)
    answer = fetch(ScrapeClient(headers={"Authorization": "Bearer s3cr3t-t0ken"}), server.url())
    assert isinstance(answer, HttpFailure) and answer.kind == "connection"
    assert "while reading the body" in str(answer) and "s3cr3t" not in str(answer)


@pytest.mark.parametrize("answer, kind, words", [
    (b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(500)) + b"\r\n", "connection",
     "more than 100 header fields"),
    (b"SSH-2.0-OpenSSH_9.2\r\n", "connection", "not HTTP/1.x"),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: %d\r\n\r\n%s" % (
        len(gzip.compress(b"\0" * (4 << 20), mtime=0)), gzip.compress(b"\0" * (4 << 20), mtime=0)), "too_large",
     "larger than 1048576 bytes after gzip decompression"),
    (b"HTTP/1.1 200 OK\r\nContent-Encoding: br\r\nContent-Length: 3\r\n\r\nabc", "parse", "unsupported Content-Encoding"),
])
def test_hostile_answers_are_refused(serve, answer: bytes, kind: str, words: str) -> None:  # type: ignore[no-untyped-def]
    def hostile(server: RawServer, conn: socket.socket, index: int) -> None:
        server.read_request(conn)
        conn.sendall(answer)
        server.stop.wait(5)

    result = fetch(ScrapeClient(), serve(hostile).url())
    assert isinstance(result, HttpFailure) and result.kind == kind and words in str(result), result


def test_an_endless_chunked_body_stops_at_max_body(serve) -> None:  # type: ignore[no-untyped-def]
    def endless(server: RawServer, conn: socket.socket, index: int) -> None:
        server.read_request(conn)
        conn.sendall(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
        while not server.stop.is_set():
            conn.sendall(b"1000\r\n" + b"#" * 4096 + b"\r\n")

    result = fetch(ScrapeClient(), serve(endless).url(), max_body=64 * 1024)
    assert isinstance(result, HttpFailure) and result.kind == "too_large"


def test_credentials_are_sent_as_configured(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(keep_alive)
    client = ScrapeClient(headers={"X-Token": "abc"}, accept="text/plain")
    assert isinstance(fetch(client, server.url("/m?x=1", userinfo="user:p%40ss@")), Fetched)
    request = server.requests[-1].decode()
    assert request.startswith("GET /m?x=1 HTTP/1.1\r\n")
    assert f"\r\nHost: 127.0.0.1:{server.port}\r\n" in request
    assert "\r\nAuthorization: Basic dXNlcjpwQHNz\r\n" in request  # user:p@ss
    assert "\r\nX-Token: abc\r\n" in request and "\r\nAccept: text/plain\r\n" in request
    assert "\r\nAccept-Encoding: gzip, deflate\r\n" in request
    with pytest.raises(ValueError, match="cannot be sent"):
        ScrapeClient(headers={"X-Bad": "a\r\nInjected: 1"}).target(server.url())


@pytest.fixture(scope="module")
def tls_files(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    return self_signed_cert(tmp_path_factory.mktemp("tls"))


def test_tls_is_verified_by_default_and_ca_file_is_trusted(serve, tls_files: tuple[Path, Path]) -> None:  # type: ignore[no-untyped-def]
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(*tls_files)
    server = serve(keep_alive, tls=context)

    refused = fetch(ScrapeClient(), server.url())
    assert isinstance(refused, HttpFailure) and refused.kind == "tls" and "ca_file" in str(refused)
    trusted = fetch(ScrapeClient(ca_file=str(tls_files[0])), server.url())
    assert isinstance(trusted, Fetched) and trusted.content == PAGE
    unverified = fetch(ScrapeClient(verify_tls=False), server.url())
    assert isinstance(unverified, Fetched)


def never_answer(server: RawServer, conn: socket.socket, index: int) -> None:
    """Reads the request and answers nothing until the test ends."""
    server.read_request(conn)
    server.stop.wait(10)


def test_abort_all_ends_scrapes_in_flight_at_once(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(never_answer)
    client = ScrapeClient()
    timer = threading.Timer(0.3, httpbody.abort_all)
    timer.start()
    started = time.monotonic()
    answer = fetch(client, server.url(), timeout=20)
    assert isinstance(answer, HttpFailure) and answer.kind == "timeout"
    assert time.monotonic() - started < 3


def test_targets_not_started_by_the_deadline_are_none(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(never_answer)
    client = ScrapeClient()
    targets = [client.target(server.url(f"/{i}")) for i in range(2)]
    assert client.fetch_all(targets, timeout=5, deadline=time.monotonic() - 0.01, concurrency=1,
                            max_body=1000) == [None, None]


def test_every_scrape_ends_by_the_deadline_even_those_that_gave_their_lane_up(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(never_answer)
    client = ScrapeClient()
    targets = [client.target(server.url(f"/{i}")) for i in range(2)]
    started = time.monotonic()
    answers = client.fetch_all(targets, timeout=5, deadline=time.monotonic() + 0.3, concurrency=1, max_body=1000)
    assert [isinstance(a, HttpFailure) and a.kind for a in answers] == ["timeout", "timeout"]
    assert time.monotonic() - started < 1.5


@pytest.mark.parametrize("prefix", [b"", b"HTTP/1.1 200 OK\r\n"], ids=["as-status-line", "as-header-line"])
def test_a_target_echoing_the_request_line_shows_no_part_of_the_query(serve, prefix: bytes) -> None:  # type: ignore[no-untyped-def]
    """The reader quotes the first 40 characters of a line that is not HTTP; the query was masked
    only when it was there whole, so an echoed `GET /metrics?token=…` showed the token's start
    in the scrape error (the log, the health API)."""
    token = "T0k3n" + "x9" * 20

    def echo(server: RawServer, conn: socket.socket, index: int) -> None:
        request = server.read_request(conn)
        conn.sendall(prefix + request)
        server.stop.wait(5)

    result = fetch(ScrapeClient(), serve(echo).url(f"/metrics?token={token}"))
    assert isinstance(result, HttpFailure) and result.kind == "connection", result
    assert "GET /metrics" in str(result) and "T0k3n" not in str(result), result


def slow_until(release: threading.Event):  # type: ignore[no-untyped-def]
    """A handler that answers `/slow` only once RELEASE is set, any other path at once."""
    def handler(server: RawServer, conn: socket.socket, index: int) -> None:
        request = server.read_request(conn)
        if b"/slow" in request:
            release.wait(10)
        conn.sendall(ANSWER)
        server.stop.wait(10)

    return handler


def test_fetch_each_hands_over_each_answer_while_others_are_in_flight(serve) -> None:  # type: ignore[no-untyped-def]
    """The scrape source reads a page while the loop still waits on slower targets."""
    release = threading.Event()
    server = serve(slow_until(release))
    client = ScrapeClient()
    targets = [client.target(server.url("/slow")), client.target(server.url("/fast"))]
    got: list[tuple[int, Fetched | HttpFailure]] = []
    for index, answer in client.fetch_each(targets, timeout=5, deadline=time.monotonic() + 10, concurrency=2,
                                           max_body=1000):
        got.append((index, answer))
        release.set()  # the slow one answers only once the fast one's answer is in our hands
    assert [index for index, _ in got] == [1, 0]
    assert all(isinstance(a, Fetched) and a.status_code == 200 and a.content == PAGE for _, a in got)


def test_fetch_each_leaves_out_targets_not_started_by_the_deadline(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(never_answer)
    client = ScrapeClient()
    targets = [client.target(server.url(f"/{i}")) for i in range(2)]
    got = list(client.fetch_each(targets, timeout=5, deadline=time.monotonic() - 0.01, concurrency=1, max_body=1000))
    assert got == []


def test_fetch_each_hands_over_an_aborted_scrape_as_a_timeout(serve) -> None:  # type: ignore[no-untyped-def]
    server = serve(never_answer)
    client = ScrapeClient()
    timer = threading.Timer(0.3, httpbody.abort_all)
    timer.start()
    got = list(client.fetch_each([client.target(server.url())], timeout=20, deadline=time.monotonic() + 20,
                                 concurrency=1, max_body=1000))
    assert len(got) == 1 and type(got[0][1]) is HttpFailure and got[0][1].kind == "timeout"


def test_fetch_each_closed_early_waits_for_the_round_to_end(serve) -> None:  # type: ignore[no-untyped-def]
    """The next round uses the same connections: a reader that stops early (a failure while
    reading a page) must not let it start while this one is in flight."""
    release = threading.Event()
    server = serve(slow_until(release))
    client = ScrapeClient()
    answers = client.fetch_each([client.target(server.url("/slow")), client.target(server.url("/fast"))],
                                timeout=5, deadline=time.monotonic() + 10, concurrency=2, max_body=1000)
    assert next(answers)[0] == 1
    threading.Timer(0.3, release.set).start()
    started = time.monotonic()
    answers.close()
    assert release.is_set() and time.monotonic() - started >= 0.25


def test_a_target_prepared_from_its_split_url_is_the_one_prepared_from_the_url() -> None:
    """Differential: `target(url, urlsplit(url))` (the scrape source splits each URL once) and
    `target(url)` build the same request, and refuse the same URLs and headers, every time."""
    import random
    from urllib.parse import urlsplit

    rng = random.Random(13)
    hosts = ["127.0.0.1", "localhost", "[::1]", "model.example", "user:pa%20ss@host.example", "u@h"]
    paths = ["", "/", "/metrics", "/a b/metrics", "/m?x=1&y=a b", "/p#frag", "/%7Euser"]
    ports = ["", ":80", ":9100", ":443"]
    clients = [ScrapeClient(), ScrapeClient(headers={"X-Token": "t0k3n", "Host": "fixed.example"}),
               ScrapeClient(headers={"X-Bad": "a\r\nb"}), ScrapeClient(headers={"Bad Name": "v"})]
    for _ in range(300):
        url = f"{rng.choice(['http', 'https', 'ftp'])}://{rng.choice(hosts)}{rng.choice(ports)}{rng.choice(paths)}"
        for client in clients:
            outcomes = []
            for parts in (None, urlsplit(url), None):  # the header check is remembered: asked again, the same
                try:
                    made = client.target(url, parts)
                    outcomes.append((made.url, made.host, made.port, made.tls, made.request))
                except ValueError as exc:
                    outcomes.append(("refused", str(exc)))
            assert outcomes[0] == outcomes[1] == outcomes[2], url


def test_scrapes_that_make_progress_keep_their_lane_concurrency_bounds_them(serve) -> None:  # type: ignore[no-untyped-def]
    """A lane is given up by a scrape that stalls, not by one that takes long because its page
    is large: were it given up, `concurrency` bounded nothing but the first moments of a round,
    and every target of a fleet of large pages read its body at once (memory: targets × max_body,
    not concurrency × max_body)."""
    chunk, chunks = b"x 1\n" * 16384, 16  # 64 KiB every 25 ms: about 0.38 s a page
    spans: list[tuple[float, float]] = []  # each page's time on the wire, from request to last byte

    def stream(server: RawServer, conn: socket.socket, index: int) -> None:
        while server.read_request(conn):
            began = time.monotonic()
            conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n" % (len(chunk) * chunks))
            for i in range(chunks):
                if i:
                    time.sleep(0.025)
                conn.sendall(chunk)
            spans.append((began, time.monotonic()))

    server = serve(stream)
    client = ScrapeClient()
    targets = [client.target(server.url(f"/{i}")) for i in range(3)]
    # a lane's patience here: 1 s × 1 lane / 3 targets / 2 ≈ 0.17 s, less than half a page's time
    answers = client.fetch_all(targets, timeout=1, deadline=time.monotonic() + 5, concurrency=1, max_body=1 << 21)
    assert all(isinstance(a, Fetched) and len(a.content) == len(chunk) * chunks for a in answers), \
        [a if isinstance(a, HttpFailure) else len(a.content) for a in answers if a is not None]
    spans.sort()
    overlaps = [max(0.0, first[1] - second[0]) for first, second in zip(spans, spans[1:])]
    assert len(spans) == 3 and max(overlaps) < 0.1, overlaps  # one page at a time (given up: ≈ 0.2 s each)


@pytest.mark.parametrize("tls", [False, True], ids=["http", "https"])
def test_connections_the_server_closes_leave_no_cyclic_garbage(serve, tls_files, tls: bool) -> None:  # type: ignore[no-untyped-def]
    """A server that closes after each answer (the demo model server, HTTP/1.0 exporters) costs
    one new connection per scrape. On Python 3.11 each closed asyncio socket transport kept a
    bound method of itself (python/cpython#100348, fixed in 3.12): a cycle of 7 objects per
    scrape, ≈ 1.2 KB a tick that the daemon's collector thresholds left for hours (bench/soak.py)."""
    def answer_then_close(server: RawServer, conn: socket.socket, index: int) -> None:
        server.read_request(conn)
        conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(PAGE), PAGE))

    context = None
    if tls:
        context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        context.load_cert_chain(*tls_files)
    server = serve(answer_then_close, tls=context)
    client = ScrapeClient(ca_file=str(tls_files[0]) if tls else None)
    target = client.target(server.url())

    def scrapes() -> None:
        for _ in range(10):
            [answer] = client.fetch_all([target], timeout=2, deadline=time.monotonic() + 5, concurrency=1,
                                        max_body=1000)
            assert isinstance(answer, Fetched) and answer.content == PAGE, answer
        client.close()

    garbage = cyclic_garbage(scrapes)
    assert server.accepted == 10
    assert garbage == {}
