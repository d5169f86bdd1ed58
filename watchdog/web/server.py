"""The daemon's HTTP server: a small routing table over an asyncio connection loop.

Reads (/metrics, /healthz, /readyz, GET /api/v1/...) are open unless configured otherwise;
every mutating endpoint needs `Authorization: Bearer <token>` with a token from `api.tokens`
or `api.token_file`, compared in constant time; the token's name is the request's operator.
Without a configured token, mutating endpoints are refused. Binds to 127.0.0.1 by default.

Every peer is treated as hostile (see docs/security.md):
- one event-loop thread owns all sockets; a request costs a handler thread only once it has
  fully arrived, and there are `handler_threads` of those, so half-open connections cost a
  socket and a small buffer, never a thread;
- at most `max_connections` are open; at the limit the oldest connection still sending its
  request is closed to make room (a slow client cannot lock the others out);
- the request head is capped (64 KiB); `Content-Length` must be a plain decimal; the route
  and the token are checked *before* any body byte is read; a body beyond `max_body` is 413;
- each read waits at most `idle_timeout`; the whole request must arrive within
  `request_timeout`; one request per connection (`Connection: close`);
- an answer written as it is produced (`/metrics`) must be taken piece by piece within
  `idle_timeout` and whole within `request_timeout`.
Each connection closed or refused by one of these limits is reported to `on_reject(reason)`
(the daemon counts them in `model_watchdog_api_connections_rejected_total{reason}`), with
the reasons in REJECT_REASONS.

While `writes_refused()` names a reason (the daemon's state store is lost), every mutating
route answers 503 with that reason and its handler is not called.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import logging
import queue
import re
import socket
import threading
import time
from dataclasses import dataclass, field
from email.utils import formatdate
from http import HTTPStatus
from typing import Any, Callable, Iterator, NoReturn
from urllib.parse import parse_qs, unquote, urlsplit

from watchdog.errors import WatchdogError
from watchdog.redact import redact

log = logging.getLogger("watchdog.server")
MAX_BODY = 1024 * 1024
MAX_HEAD = 64 * 1024
_LENGTH = re.compile(r"[0-9]{1,15}")
_TOKEN_CHARS = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
#: why a connection was closed or refused by a limit (the `reason` label of the daemon's counter)
REJECT_REASONS = ("evicted", "refused", "idle_timeout", "request_timeout", "head_too_large", "body_too_large",
                  "malformed")


def parse_listen(listen: str) -> tuple[str, int]:
    host, sep, port = listen.rpartition(":")
    if not sep or not port.isdigit():
        raise ValueError(f"listen must be HOST:PORT, got {listen!r}")
    return host.strip("[]") or "127.0.0.1", int(port)


@dataclass(frozen=True)
class Limits:
    """What one peer may cost the daemon (the `api.*` options of the same names)."""

    max_body: int = MAX_BODY
    idle_timeout: float = 10.0
    request_timeout: float = 30.0
    max_connections: int = 256
    handler_threads: int = 8


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    params: dict[str, str]
    query: dict[str, str]
    body: Any
    headers: dict[str, str] = field(default_factory=dict)
    operator: str | None = None  # the name of the token that authenticated the request


@dataclass(frozen=True)
class Response:
    status: int
    body: Any  # dict/list → JSON; str/bytes as is; an iterator of bytes is streamed (`streamed`)
    content_type: str = "application/json"

    @property
    def streamed(self) -> bool:
        """Is the body an iterator of bytes pieces, written as they come (chunked for HTTP/1.1,
        to the connection's close for HTTP/1.0), for pages too big to hold whole (/metrics)?"""
        return isinstance(self.body, Iterator)

    def encoded(self) -> bytes:
        if isinstance(self.body, bytes):
            return self.body
        if self.streamed:
            return b"".join(self.body)
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


SINGLE_TOKEN_NAME = "api"  # the operator name of the one token in `api.token_file`


@dataclass(frozen=True)
class AuthPolicy:
    token: str | None = None  # `api.token_file`, recorded as operator "api"
    read_requires_token: bool = False
    tokens: tuple[tuple[str, str], ...] = ()  # (name, token) from `api.tokens`

    def named(self) -> list[tuple[str, str]]:
        return ([(SINGLE_TOKEN_NAME, self.token)] if self.token else []) + list(self.tokens)

    def authenticate(self, route: Route, authorization: str) -> tuple[int, str, str | None]:
        """(200, "", token name or None) if the request may go on, else (status, reason, None)."""
        if not route.mutating and not self.read_requires_token:
            return 200, "", None
        known = self.named()
        if not known:
            return 403, "this endpoint needs api.tokens or api.token_file in the config; none is configured", None
        scheme, _, given = authorization.partition(" ")
        given_bytes = given.strip().encode("utf-8", "replace")
        found = None
        for name, token in known:  # every token is compared: the time does not tell which one matched
            if hmac.compare_digest(given_bytes, token.encode()) and found is None:
                found = name
        if scheme.lower() != "bearer" or found is None:
            return 401, "missing or wrong bearer token", None
        return 200, "", found


@dataclass(frozen=True)
class _Resolved:
    route: Route
    params: dict[str, str]
    path: str
    query: str
    operator: str | None


class _Rejected(WatchdogError):
    """A connection ended by a limit (one of REJECT_REASONS)."""

    def __init__(self, reason: str):
        super().__init__(reason)
        self.reason = reason


class ApiServer:
    def __init__(self, listen: str, routes: list[Route], auth: AuthPolicy, limits: Limits | None = None, *,
                 on_reject: Callable[[str], None] | None = None, writes_refused: Callable[[], str] | None = None):
        host, port = parse_listen(listen)
        self.routes = routes
        self.auth = auth
        self.limits = limits or Limits()
        self.on_reject = on_reject
        self.writes_refused = writes_refused
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        self._sock = socket.create_server((host, port), family=family, backlog=128)
        self._sock.setblocking(False)
        self._loop = asyncio.new_event_loop()
        self._jobs: queue.SimpleQueue[tuple[Callable[[], Any], asyncio.Future[Any]] | None] = queue.SimpleQueue()
        self._open: dict[asyncio.Transport, bool] = {}  # open connections, oldest first → still receiving?
        self._tasks: set[asyncio.Task[None]] = set()
        self._thread: threading.Thread | None = None
        self._workers: list[threading.Thread] = []
        self._last_limit_warning = 0.0

    @property
    def address(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"

    def start(self) -> None:
        self._workers = [threading.Thread(target=self._work, name=f"http-handler-{i}", daemon=True)
                         for i in range(max(1, self.limits.handler_threads))]
        for worker in self._workers:
            worker.start()
        started = threading.Event()
        self._thread = threading.Thread(target=self._run, args=(started,), name="http", daemon=True)
        self._thread.start()
        started.wait(10)

    def _run(self, started: threading.Event) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._connection, sock=self._sock, limit=MAX_HEAD))
        started.set()
        self._loop.run_forever()

    def stop(self) -> None:
        if self._thread is not None and self._loop.is_running():
            try:
                asyncio.run_coroutine_threadsafe(self._close_all(), self._loop).result(5)
            except Exception:  # closing is best effort
                log.debug("closing the HTTP connections failed", exc_info=True)
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(5)
        for _ in self._workers:
            self._jobs.put(None)
        if not self._loop.is_running():
            self._loop.close()
        self._sock.close()

    async def _close_all(self) -> None:
        self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    # -- routing and authentication (no I/O) ------------------------------------------------------

    def resolve(self, method: str, raw_path: str, headers: dict[str, str]) -> _Resolved | Response:
        """The route for a request and the operator its token names, or the refusal to send.
        Called before any body byte is read."""
        parts = urlsplit(raw_path)
        path = parts.path.rstrip("/") or "/"
        allowed_methods = set()
        for route in self.routes:
            params = route.match(method, path)
            if params is None:
                if route.match(route.method, path) is not None:
                    allowed_methods.add(route.method)
                continue
            status, reason, operator = self.auth.authenticate(route, headers.get("authorization", ""))
            if status != 200:
                return Response(status, {"error": reason})
            return _Resolved(route, params, path, parts.query, operator)
        if allowed_methods:
            return Response(405, {"error": f"method {method} not allowed; use {', '.join(sorted(allowed_methods))}"})
        return Response(404, {"error": "not found", "endpoints": sorted({f"{r.method} {r.pattern}" for r in self.routes})})

    def handle(self, method: str, resolved: _Resolved, headers: dict[str, str], body: bytes) -> Response:
        try:
            data = json.loads(body) if body.strip() else {}
        except ValueError as exc:
            return Response(400, {"error": f"request body is not JSON: {exc}"})
        except RecursionError:  # "[[[[…" a megabyte deep: the parser's recursion limit, not a server error
            return Response(400, {"error": "request body is not JSON we accept: nested too deeply"})
        if not isinstance(data, dict):
            return Response(400, {"error": "request body must be a JSON object"})
        query = {k: v[-1] for k, v in parse_qs(resolved.query).items()}
        request = Request(method, resolved.path, resolved.params, query, data, headers, resolved.operator)
        try:
            if resolved.route.mutating and self.writes_refused is not None and (why := self.writes_refused()):
                return Response(503, {"error": f"refused, nothing was changed: {redact(why)}", "state_lost": True})
            return resolved.route.handler(request)
        except WatchdogError as exc:
            return Response(400 if exc.exit_code in (1, 2) else 500, {"error": redact(str(exc))})
        except Exception as exc:  # a handler bug must not take the server down
            log.exception("HTTP %s %s failed", method, resolved.path)
            return Response(500, {"error": redact(f"{type(exc).__name__}: {exc}")})

    def dispatch(self, method: str, raw_path: str, headers: dict[str, str], body: bytes) -> Response:
        resolved = self.resolve(method, raw_path, headers)
        return resolved if isinstance(resolved, Response) else self.handle(method, resolved, headers, body)

    # -- handler threads ----------------------------------------------------------------------------

    def _work(self) -> None:
        # One job per call of _do: its locals (the job, its future, the answer) are gone before
        # the thread waits for the next one. Kept in this loop's frame, each idle handler thread
        # held its last answer alive: up to `handler_threads` /metrics pages (≈ 45 MB on the fleet).
        while self._do(self._jobs.get()):
            pass

    def _do(self, job: tuple[Callable[[], Any], asyncio.Future[Any]] | None) -> bool:
        """Do one job and hand its result to the loop; False when the thread should end."""
        if job is None:
            return False
        call, future = job
        try:
            done = _settle(future, call(), None)
        except BaseException as exc:  # handed to the connection, which answers 500
            done = _settle(future, None, exc)
        try:
            self._loop.call_soon_threadsafe(done)
        except RuntimeError:  # the loop is closed: the server stopped meanwhile
            return False
        return True

    async def _in_thread(self, call: Callable[[], Any]) -> Any:
        future: asyncio.Future[Any] = self._loop.create_future()
        self._jobs.put((call, future))
        return await future

    # -- connections --------------------------------------------------------------------------------

    async def _connection(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        transport = writer.transport
        if not self._admit(transport):
            transport.abort()
            return
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await _Exchange(self, reader, writer).run()
        except _Rejected as exc:
            self._rejected(exc.reason)
        except asyncio.TimeoutError:  # the client did not read the answer within idle_timeout
            self._rejected("idle_timeout")
        except (ConnectionError, asyncio.IncompleteReadError, asyncio.CancelledError):
            pass
        except Exception:
            log.exception("HTTP connection failed")
        finally:
            self._tasks.discard(task)
            self._open.pop(transport, None)
            transport.abort()

    def _admit(self, transport: asyncio.Transport) -> bool:
        """Make room for a new connection by closing the oldest one still sending its request;
        refuse the new one only if every open connection is being answered."""
        if len(self._open) >= self.limits.max_connections:
            oldest = next((t for t, receiving in self._open.items() if receiving), None)
            if oldest is None:
                self._warn_limit("refusing a new connection")
                self._rejected("refused")
                return False
            self._warn_limit("closing the oldest connection that is still sending its request")
            del self._open[oldest]
            oldest.abort()
            self._rejected("evicted")
        self._open[transport] = True
        return True

    def _received(self, transport: asyncio.Transport) -> None:
        if transport in self._open:
            self._open[transport] = False

    def _rejected(self, reason: str) -> None:
        if self.on_reject is not None:
            try:
                self.on_reject(reason)
            except Exception:  # counting must never break serving
                log.debug("on_reject failed", exc_info=True)

    def _warn_limit(self, what: str) -> None:
        now = time.monotonic()
        if now - self._last_limit_warning >= 60:
            self._last_limit_warning = now
            log.warning("HTTP: %d connections open (api.max_connections); %s", len(self._open), what)


def _settle(future: asyncio.Future[Any], result: Any, exc: BaseException | None) -> Callable[[], None]:
    def done() -> None:
        if future.done():
            return
        if exc is not None:
            future.set_exception(exc)
        else:
            future.set_result(result)
    return done


class _Exchange:
    """One request and its response on one connection."""

    def __init__(self, server: ApiServer, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.server, self.reader, self.writer = server, reader, writer
        self.limits = server.limits
        self.loop = asyncio.get_running_loop()
        self.deadline = self.loop.time() + self.limits.request_timeout
        self.buffer = b""

    async def run(self) -> None:
        head = await self._read_head()
        parsed = _parse_head(head)
        if isinstance(parsed, Response):
            return await self._refuse(parsed, "malformed")
        method, target, headers = parsed
        routed = "GET" if method == "HEAD" else method
        length = _body_length(headers)
        if isinstance(length, Response):
            return await self._refuse(length, "malformed", head_only=method == "HEAD")
        resolved = self.server.resolve(routed, target, headers)
        if isinstance(resolved, Response):
            return await self._reply(resolved, linger=length > 0, head_only=method == "HEAD")
        if length > self.limits.max_body:
            return await self._refuse(Response(413, {"error": f"request body larger than {self.limits.max_body} "
                                                              "bytes (api.max_body)"}), "body_too_large")
        if length and headers.get("expect", "").lower() == "100-continue":
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await self._read_body(length)
        self.server._received(self.writer.transport)
        def work() -> tuple[Response, bytes | None]:  # in a handler thread: encoding a big page is work too
            response = self.server.handle(routed, resolved, headers, body)
            return response, None if response.streamed else response.encoded()

        response, payload = await self.server._in_thread(work)
        if payload is None:
            chunked = not head.partition(b"\r\n")[0].endswith(b"HTTP/1.0")
            return await self._stream(response, chunked, head_only=method == "HEAD")
        await self._reply(response, head_only=method == "HEAD", payload=payload)

    async def _refuse(self, response: Response, reason: str, head_only: bool = False) -> NoReturn:
        """Answer a request refused by a limit (best effort), then end the connection as `reason`."""
        try:
            await self._reply(response, linger=True, head_only=head_only)
        except (ConnectionError, asyncio.TimeoutError):
            pass
        raise _Rejected(reason)

    async def _read_chunk(self) -> bytes:
        left = self.deadline - self.loop.time()
        if left <= 0:
            raise _Rejected("request_timeout")
        wait = min(self.limits.idle_timeout, left)
        try:
            chunk = await asyncio.wait_for(self.reader.read(16384), wait)
        except asyncio.TimeoutError:
            raise _Rejected("request_timeout" if wait < self.limits.idle_timeout else "idle_timeout") from None
        if not chunk:
            raise asyncio.IncompleteReadError(self.buffer, None)
        return chunk

    async def _read_head(self) -> bytes:
        while (end := self.buffer.find(b"\r\n\r\n", 0, MAX_HEAD + 4)) < 0:
            if len(self.buffer) > MAX_HEAD:
                await self._refuse(Response(431, {"error": f"request head larger than {MAX_HEAD} bytes"}),
                                   "head_too_large")
            self.buffer += await self._read_chunk()
        head, self.buffer = self.buffer[:end], self.buffer[end + 4:]
        return head

    async def _read_body(self, length: int) -> bytes:
        parts, have = [self.buffer[:length]], min(len(self.buffer), length)
        while have < length:
            chunk = await self._read_chunk()
            parts.append(chunk[:length - have])
            have += len(parts[-1])
        return b"".join(parts)

    async def _reply(self, response: Response, linger: bool = False, head_only: bool = False,
                     payload: bytes | None = None) -> None:
        payload = response.encoded() if payload is None else payload
        self.writer.transport.set_write_buffer_limits(high=0)  # drain() returns once the kernel has everything
        head = _response_head(response, f"Content-Length: {len(payload)}")
        self.writer.write(head if head_only else head + payload)
        await asyncio.wait_for(self.writer.drain(), self.limits.idle_timeout)
        if linger:
            await self._discard_rest()

    async def _stream(self, response: Response, chunked: bool, head_only: bool) -> None:
        """Write a streamed body piece by piece, each formatted in a handler thread once the
        kernel took the one before: at most one piece of the page is in memory at a time. The
        client takes each piece within idle_timeout and the whole answer within request_timeout
        (asyncio.TimeoutError otherwise): a slow reader holds the body's source that long at most."""
        self.writer.transport.set_write_buffer_limits(high=0)
        self.writer.write(_response_head(response, "Transfer-Encoding: chunked" if chunked else ""))
        until = self.loop.time() + self.limits.request_timeout
        pieces: Iterator[bytes] = response.body
        while not head_only and (piece := await self.server._in_thread(lambda: next(pieces, None))) is not None:
            if piece:  # an empty chunk would end a chunked body
                self.writer.write(b"%x\r\n%b\r\n" % (len(piece), piece) if chunked else piece)
                await self._drain(until)
        if chunked and not head_only:
            self.writer.write(b"0\r\n\r\n")
        await self._drain(until)

    async def _drain(self, until: float) -> None:
        left = until - self.loop.time()
        if left <= 0:
            raise asyncio.TimeoutError
        await asyncio.wait_for(self.writer.drain(), min(self.limits.idle_timeout, left))

    async def _discard_rest(self) -> None:
        """After refusing a request whose body is still coming, stop writing and read (and drop)
        a little of it, so that the client sees the answer rather than a connection reset."""
        if self.writer.can_write_eof():
            self.writer.write_eof()
        until, dropped = self.loop.time() + 1.0, 0
        while dropped < MAX_BODY and (left := until - self.loop.time()) > 0:
            try:
                chunk = await asyncio.wait_for(self.reader.read(65536), left)
            except asyncio.TimeoutError:
                return
            if not chunk:
                return
            dropped += len(chunk)


def _response_head(response: Response, framing: str) -> bytes:
    """The status line and headers; `framing` is the Content-Length or Transfer-Encoding header
    ('' for a body that ends with the connection)."""
    try:
        phrase = HTTPStatus(response.status).phrase
    except ValueError:
        phrase = ""
    framing = framing and framing + "\r\n"
    return (f"HTTP/1.1 {response.status} {phrase}\r\nServer: model-watchdog\r\n"
            f"Date: {formatdate(usegmt=True)}\r\nContent-Type: {response.content_type}\r\n"
            f"{framing}Connection: close\r\n\r\n").encode("latin-1")


def _parse_head(head: bytes) -> tuple[str, str, dict[str, str]] | Response:
    lines = head.decode("latin-1").split("\r\n")
    parts = lines[0].split(" ")
    if len(parts) != 3 or not parts[2].startswith("HTTP/1.") or not _TOKEN_CHARS.fullmatch(parts[0]):
        return Response(400, {"error": "malformed request line"})
    method, target, _ = parts
    headers: dict[str, str] = {}
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not _TOKEN_CHARS.fullmatch(name):
            return Response(400, {"error": "malformed header line"})
        name, value = name.lower(), value.strip(" \t")
        if name in headers:
            if name in ("content-length", "authorization", "host"):
                return Response(400, {"error": f"header {name} given twice"})
            value = headers[name] + ", " + value
        headers[name] = value
    return method, target, headers


def _body_length(headers: dict[str, str]) -> int | Response:
    if "transfer-encoding" in headers:
        return Response(411, {"error": "chunked request bodies are not accepted; send Content-Length"})
    raw = headers.get("content-length")
    if raw is None:
        return 0
    if not _LENGTH.fullmatch(raw):
        return Response(400, {"error": f"invalid Content-Length {raw[:40]!r}"})
    return int(raw)
