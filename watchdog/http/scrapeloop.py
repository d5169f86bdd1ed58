"""Many GETs at once on one event loop: the scrape source's client.

    client = ScrapeClient(verify_tls=True, ca_file=None, headers={...})
    target = client.target(url)                    # ValueError for a URL it cannot send to
    answers = client.fetch_all(targets, timeout=2.0, deadline=time.monotonic() + 5, concurrency=64)
    # one per target: a Fetched, an HttpFailure, or None (not started before the deadline)
    for index, answer in client.fetch_each(targets, ...):  # the same, each as it comes
        ...
    client.close()

Why not `http.transport`: a scrape through urllib3 cost ~1 ms of CPU under the GIL (its
per-request machinery, `is_connection_dropped`'s poll, http.client's header parsing), and a
thread pool to run a thousand of them. Here one asyncio loop, in one daemon thread shared by
every scrape source, keeps one HTTP/1.1 keep-alive connection per target and reads each answer
with `http.wire`'s strict, bounded reader; the request's bytes are built once per target.

The bounds are those of `http.transport`, kept:
- one deadline per scrape for connect, TLS handshake, headers and body: `min(timeout, what is
  left of the tick)`; a scrape not started by the tick's deadline is not started at all (None);
- `concurrency` lanes take the targets in turn. A lane is for a scrape that makes progress: one
  that has held its lane longer than its share of the round (`_patience`: half of
  `min(timeout, what is left of the tick) × lanes / targets`, so that every target is started
  within the first half of that time) and read less than `PROGRESS` bytes since the last look
  (one reading a large page keeps it: `concurrency` bounds those) gives it up and waits on, within its own deadline, while
  a new lane takes the next target; targets whose last scrape did that or timed out are started
  last. So targets that accept and never answer, or trickle a byte at a time, cannot keep the
  healthy ones of the round from their tick, whatever `concurrency` is. What bounds the sockets
  is then the number of targets, as the kept-alive connections (one per target) already do;
  a round of loopback targets that answer at once gives no lane up (nothing changes for it);
- at most `max_body` bytes of body after decompression, headers and chunk framing capped
  (`http.wire`); TLS verified by default (certifi's bundle or `ca_file`, none of the
  environment's, as Prometheus); redirects not followed (the 3xx is the answer); no proxies;
- `user:password@` in the URL is Basic auth, configured headers (`Authorization: Bearer …`)
  are sent as given; header values are never part of a message.
- `http.body.abort_all()` (shutdown) ends the scrapes in flight at once, as timeouts.

A kept-alive connection the server closed while idle is replaced before the request; one that
it closes as the request is sent (no byte of an answer) is retried once on a new connection:
neither is an error. Failures are `HttpFailure`s with `http.transport`'s kinds and messages.
"""

from __future__ import annotations

import asyncio
import base64
import os
import socket
import ssl
import threading
import time
from concurrent.futures import Future, wait
from queue import SimpleQueue
from dataclasses import dataclass, field
from typing import Any, Callable, Coroutine, Iterator, Mapping, TypeVar
from urllib.parse import SplitResult, quote, unquote, urlsplit

import certifi

from watchdog import __version__
from watchdog.http import body
from watchdog.http.body import ACCEPT_ENCODING, BodyError
from watchdog.http.transport import Fetched, HttpFailure, reason, scrub
from watchdog.http.wire import ResponseReader

T = TypeVar("T")
_PATH_SAFE = "/%:@!$&'()*+,;=-._~"


# -- the loop thread -------------------------------------------------------------------------------

class _LoopThread:
    """One event loop in one daemon thread, started on first use (and again after a fork)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._pid = 0
        self.clients: set[ScrapeClient] = set()  # touched on the loop only

    def loop(self) -> asyncio.AbstractEventLoop:
        with self._lock:
            if self._loop is None or self._pid != os.getpid():
                loop = asyncio.new_event_loop()
                ready = threading.Event()
                threading.Thread(target=self._run, args=(loop, ready), name="scrape-loop", daemon=True).start()
                ready.wait()
                self._loop, self._pid = loop, os.getpid()
            return self._loop

    @staticmethod
    def _run(loop: asyncio.AbstractEventLoop, ready: threading.Event) -> None:
        asyncio.set_event_loop(loop)
        loop.call_soon(ready.set)
        loop.run_forever()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run `coro` on the loop and wait for its result (from any other thread)."""
        return self.submit(coro).result()

    def submit(self, coro: Coroutine[Any, Any, T]) -> Future[T]:
        """Start `coro` on the loop (from any other thread); its future."""
        return asyncio.run_coroutine_threadsafe(coro, self.loop())

    def abort_all(self) -> None:
        with self._lock:
            loop = self._loop if self._pid == os.getpid() else None
        if loop is not None and not loop.is_closed():
            loop.call_soon_threadsafe(self._abort_on_loop)

    def _abort_on_loop(self) -> None:
        for client in list(self.clients):
            client._abort()


_LOOP = _LoopThread()
body.on_abort(_LOOP.abort_all)


# -- one connection --------------------------------------------------------------------------------

class _Aborted(HttpFailure):
    """A scrape ended by `abort_all()`: its lane takes no further target."""


class _Dropped(HttpFailure):
    """A kept-alive connection ended before any byte of the answer: worth one retry."""


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, each answer read by a ResponseReader."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.open = False
        self._reader: ResponseReader | None = None
        self._waiter: asyncio.Future[ResponseReader] | None = None
        self.received = 0  # bytes read on it so far: whether a scrape holding a lane makes progress
        self._sockets: tuple[object, ...] = ()  # the socket transport(s) under `transport`

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.open = True
        # TLS: `transport` is the SSL layer's; the socket transport is its protocol's transport.
        under = getattr(getattr(transport, "_ssl_protocol", None), "_transport", None)
        self._sockets = (transport,) if under is None else (transport, under)

    def data_received(self, data: bytes) -> None:
        self.received += len(data)
        reader, waiter = self._reader, self._waiter
        if reader is None or waiter is None or waiter.done():
            self.abort()  # bytes nobody asked for: the connection is not reusable
            return
        try:
            reader.feed(data)
        except BodyError as exc:
            self._fail(exc)
            return
        if reader.done:
            waiter.set_result(reader)

    def eof_received(self) -> bool:
        self._ended(None)
        return False  # close the transport

    def connection_lost(self, exc: Exception | None) -> None:
        self.open = False
        self._ended(exc)
        # Python 3.11's socket transport keeps a bound method of itself (`_read_ready_cb`) after
        # it closed: a reference cycle, 7 objects (≈ 1.2 KB) per connection, that only the cyclic
        # collector frees, and the daemon's runs rarely (runtime/gctune.py): a server that closes
        # after each answer made RSS grow ≈ 4.5 MB/h (bench/soak.py). Python 3.12 drops it on
        # close (python/cpython#100348); here it is dropped once the transport is done reading.
        for transport in self._sockets:
            if getattr(transport, "_read_ready_cb", None) is not None:
                transport._read_ready_cb = None  # type: ignore[attr-defined]
        self._sockets = ()

    def _ended(self, exc: Exception | None) -> None:
        self.open = False
        reader, waiter = self._reader, self._waiter
        if reader is None or waiter is None or waiter.done():
            return
        try:
            reader.eof()
        except BodyError as error:
            if not reader.started:
                waiter.set_exception(_Dropped(f"cannot connect: {error}", "connection"))
            else:
                kind = f" ({type(exc).__name__})" if exc is not None else ""
                waiter.set_exception(BodyError(f"{error}{kind}", error.kind))
            return
        waiter.set_result(reader)

    def _fail(self, exc: BaseException) -> None:
        if self._waiter is not None and not self._waiter.done():
            self._waiter.set_exception(exc)
        self.abort()

    async def exchange(self, request: bytes, max_body: int) -> ResponseReader:
        assert self.transport is not None
        self._reader = ResponseReader(max_body)
        self._waiter = asyncio.get_running_loop().create_future()
        try:
            self.transport.write(request)
            return await self._waiter
        finally:
            self._reader = self._waiter = None

    def abort(self) -> None:
        self.open = False
        if self.transport is not None:
            self.transport.abort()


# -- targets and the client ------------------------------------------------------------------------

@dataclass(eq=False)
class Target:
    """One URL, its request's bytes (built once) and its kept-alive connection."""

    url: str
    host: str
    port: int
    tls: bool
    request: bytes = field(repr=False)
    connection: _Connection | None = field(default=None, repr=False)
    # its last scrape held a lane past its share or timed out: the next round starts it last
    slow: bool = field(default=False, repr=False)


class ScrapeClient:
    """GETs to many targets on the shared loop; one per scrape source. Thread-safe to call."""

    def __init__(self, *, verify_tls: bool = True, ca_file: str | None = None,
                 headers: Mapping[str, str] | None = None, accept: str = "*/*"):
        self._headers = {"User-Agent": f"model-watchdog/{__version__}", "Accept": accept,
                         "Accept-Encoding": ACCEPT_ENCODING, **(headers or {})}
        self._verify: bool | str = ca_file or verify_tls
        self._ssl: ssl.SSLContext | None = None
        self._in_flight: set[asyncio.Task[Any]] = set()
        self._known: list[Target] = []  # the targets whose connections close() ends
        self._checked: set[tuple[str, str]] = set()  # header lines `target` found sendable

    def target(self, url: str, parts: SplitResult | None = None) -> Target:
        """Prepare `url`'s request; ValueError when it cannot be sent (scheme, port, header values).
        `parts`: `urlsplit(url)`, when the caller has it (a fleet's thousand URLs: urlsplit's
        own cache holds 128)."""
        parts = urlsplit(url) if parts is None else parts
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("the URL must be http:// or https:// with a host")
        port = parts.port or (443 if parts.scheme == "https" else 80)
        headers = {k.lower(): (k, v) for k, v in self._headers.items()}
        headers.setdefault("host", ("Host", parts.netloc.rpartition("@")[2]))
        if parts.username is not None:  # user:password@ is Basic auth, as the transport does
            pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
            headers["authorization"] = ("Authorization", "Basic " + base64.b64encode(pair.encode()).decode())
        path = quote(parts.path or "/", safe=_PATH_SAFE) + (f"?{quote(parts.query, safe=_PATH_SAFE + '?')}"
                                                             if parts.query else "")
        lines = [f"GET {path} HTTP/1.1"]
        lines += [f"{name}: {value}" for name, value in headers.values()]
        checked = self._checked
        for name, value in headers.values():
            if (name, value) in checked:  # the client's own headers, the same for every target
                continue
            if any(c in f"{name}{value}" for c in "\r\n\0") or not name or any(c in name for c in " \t:"):
                raise ValueError(f"header {name[:40]!r} has a name or value that cannot be sent (a line break?)")
            if name in self._headers and self._headers[name] == value:
                checked.add((name, value))
        try:
            request = ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError("a header value has characters outside Latin-1; it cannot be sent") from None
        return Target(url=url, host=parts.hostname, port=port, tls=parts.scheme == "https", request=request)

    def fetch_all(self, targets: list[Target], *, timeout: float, deadline: float, concurrency: int,
                  max_body: int) -> list[Fetched | HttpFailure | None]:
        """One GET per target, `concurrency` at a time, each within `min(timeout, deadline - now)`
        (`deadline` on time.monotonic()); None for a target not started by the deadline."""
        self._known = targets
        return _LOOP.run(self._round(targets, timeout, deadline, concurrency, max_body))

    def fetch_each(self, targets: list[Target], *, timeout: float, deadline: float, concurrency: int,
                   max_body: int) -> Iterator[tuple[int, Fetched | HttpFailure]]:
        """`fetch_all`, each answer handed over as it comes, (index, answer) in no particular
        order, while the others are in flight: the caller reads pages while the loop waits on
        the network (a first round's connects). A target not started by the deadline is not
        yielded. Closed early (`close()`), it waits for the round to end: the next round uses
        the same connections."""
        self._known = targets
        answers: SimpleQueue[tuple[int, Fetched | HttpFailure] | None] = SimpleQueue()
        future = _LOOP.submit(self._round(targets, timeout, deadline, concurrency, max_body,
                                          lambda i, answer: answers.put((i, answer))))
        future.add_done_callback(lambda _: answers.put(None))
        try:
            while (item := answers.get()) is not None:
                yield item
        finally:
            wait([future])
        future.result()  # what the round raised, if anything

    def close(self) -> None:
        if not self._known:
            return
        try:
            _LOOP.run(self._close())
        except RuntimeError:  # the loop is gone (interpreter shutdown)
            pass

    # -- on the loop -----------------------------------------------------------------------------

    async def _round(self, targets: list[Target], timeout: float, deadline: float, concurrency: int, max_body: int,
                     on_answer: Callable[[int, Fetched | HttpFailure], object] | None = None,
                     ) -> list[Fetched | HttpFailure | None]:
        """`concurrency` lanes take the targets in turn (no task per target), those that were
        slow last round last. A scrape that holds its lane longer than its share of the round
        (`_patience`) gives the lane up: it waits on within its own time, and a new lane takes
        the next target, so targets that stall cannot keep the others from the tick."""
        _LOOP.clients.add(self)
        results: list[Fetched | HttpFailure | None] = [None] * len(targets)
        pending = iter(_order(targets))
        width = min(concurrency, len(targets))
        left = len(targets)  # not started yet
        holding: dict[int, tuple[Target, float, int]] = {}  # lane -> its target, the last look: when, bytes read
        lanes: list[asyncio.Future[None]] = []
        aborted = False

        async def lane(number: int) -> None:
            nonlocal aborted, left
            for i in pending:
                left -= 1
                wait = min(timeout, deadline - time.monotonic())
                if wait <= 0 or aborted:
                    return
                target = targets[i]
                holding[number] = (target, time.monotonic(), _received(target))
                answer = results[i] = await self._scrape(target, wait, max_body)
                kept = holding.pop(number, None) is not None  # None: it gave its lane up (parked)
                target.slow = not kept or (isinstance(answer, HttpFailure) and answer.kind == "timeout")
                if isinstance(answer, _Aborted):
                    aborted = True
                if on_answer is not None:
                    on_answer(i, HttpFailure(str(answer), answer.kind) if isinstance(answer, _Aborted) else answer)
                if not kept:
                    return  # a new lane took its place

        def start_lane() -> None:
            task = asyncio.ensure_future(lane(len(lanes)))
            lanes.append(task)
            self._in_flight.add(task)

        def park() -> None:  # the lanes held past their patience without progress are given up, each to a new lane
            now = time.monotonic()
            for number, (target, since, read) in list(holding.items()):
                if now - since < patience or left <= 0 or aborted:
                    continue
                if _received(target) - read >= PROGRESS:  # reading its page: it keeps its lane
                    holding[number] = (target, now, _received(target))
                    continue
                del holding[number]
                start_lane()
            if left > 0:
                timers[0] = loop.call_later(patience / 2, parking[0])

        parking = [park]  # not `park` itself from inside it: a cell cycle (see the end)
        loop = asyncio.get_running_loop()
        patience = _patience(timeout, deadline, width, len(targets))
        for _ in range(width):
            start_lane()
        timers = [loop.call_later(patience, park)] if width < len(targets) else []
        try:
            while unfinished := [task for task in lanes if not task.done()]:
                await asyncio.wait(unfinished)
            for task in lanes:  # as gather(return_exceptions=True) did: retrieved, not raised
                if not task.cancelled():
                    task.exception()
        finally:
            for timer in timers:
                timer.cancel()
            self._in_flight.difference_update(lanes)
            if not self._in_flight:
                _LOOP.clients.discard(self)
            # A lane's task keeps its coroutine, whose closure keeps `lanes`, and `park` plans
            # itself again (`parking`): cycles per round (tasks, answers, closures) that only the
            # rarely run cyclic collector would free (the soak's slope, bench/README.md "Soak").
            # Broken here, they go at once.
            lanes.clear()
            timers.clear()
            parking.clear()
        if aborted:  # shutdown: what was not started is not started
            return [HttpFailure(str(r), r.kind) if isinstance(r, _Aborted) else r for r in results]
        return results

    async def _scrape(self, target: Target, timeout: float, max_body: int) -> Fetched | HttpFailure:
        try:
            async with asyncio.timeout(timeout):
                reader = await self._get(target, max_body)
        except TimeoutError:
            self._drop(target)
            return HttpFailure(_timed_out(timeout), "timeout")
        except asyncio.CancelledError:  # abort_all (shutdown)
            self._drop(target)
            return _Aborted(_timed_out(timeout), "timeout")
        except HttpFailure as exc:
            self._drop(target)
            return HttpFailure(scrub(str(exc), target.url), exc.kind)
        except BodyError as exc:
            self._drop(target)
            return HttpFailure(scrub(str(exc), target.url), exc.kind)
        except Exception as exc:  # noqa: BLE001 - anything else asyncio raises is this target's failure
            self._drop(target)
            return HttpFailure(f"request failed: {reason(exc, target.url)}", "http")
        if not reader.keep_alive or reader.leftover:
            self._drop(target)
        return Fetched(reader.status, reader.headers, reader.body, reader.reason)

    async def _get(self, target: Target, max_body: int) -> ResponseReader:
        connection = target.connection
        reused = connection is not None and connection.open
        if not reused:
            self._drop(target)
            connection = await self._connect(target)
        assert connection is not None
        try:
            return await connection.exchange(target.request, max_body)
        except _Dropped:
            if not reused:
                raise
        self._drop(target)  # the server closed the idle connection as we sent: once more, anew
        connection = await self._connect(target)
        return await connection.exchange(target.request, max_body)

    async def _connect(self, target: Target) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            _, connection = await loop.create_connection(
                _Connection, target.host, target.port,
                ssl=self._context() if target.tls else None,
                server_hostname=target.host if target.tls else None)
        except ssl.SSLError as exc:
            raise HttpFailure(f"TLS error: {reason(exc, target.url)}; if the server uses a private CA, "
                              "set ca_file to its PEM bundle", "tls") from None
        except OSError as exc:
            raise HttpFailure(f"cannot connect: {reason(exc, target.url)}", "connection") from None
        sock = connection.transport.get_extra_info("socket") if connection.transport else None
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        target.connection = connection
        return connection

    def _context(self) -> ssl.SSLContext:
        if self._ssl is None:
            if self._verify is False:
                context = ssl.create_default_context()
                context.check_hostname = False
                context.verify_mode = ssl.CERT_NONE
            else:  # as Prometheus: the CA given, else certifi's bundle; nothing from the environment
                context = ssl.create_default_context(
                    cafile=self._verify if isinstance(self._verify, str) else certifi.where())
            self._ssl = context
        return self._ssl

    @staticmethod
    def _drop(target: Target) -> None:
        if target.connection is not None:
            target.connection.abort()
            target.connection = None

    def _abort(self) -> None:
        for task in list(self._in_flight):
            task.cancel()

    async def _close(self) -> None:
        self._abort()
        for target in self._known:
            self._drop(target)
        _LOOP.clients.discard(self)


def _order(targets: list[Target]) -> list[int]:
    """The targets' indices, those slow last round last (in their order otherwise)."""
    if not any(t.slow for t in targets):
        return list(range(len(targets)))
    return [i for i, t in enumerate(targets) if not t.slow] + [i for i, t in enumerate(targets) if t.slow]


# bytes a scrape must have read since the last look to keep its lane past its patience: a page
# being read holds its lane (`concurrency` bounds those, and so the memory of the bodies being
# read); one that stalls, or trickles a few bytes at a time, gives it up
PROGRESS = 4096


def _received(target: Target) -> int:
    connection = target.connection
    return connection.received if connection is not None else 0


MIN_PATIENCE = 0.005  # seconds: the shortest a scrape holds its lane before it may give it up


def _patience(timeout: float, deadline: float, width: int, count: int) -> float:
    """How long a scrape may hold its lane: half its fair share of the round's time, so that
    were every lane held that long, all `count` targets are started within half of the time
    (`min(timeout, what is left of the tick)`) and the last ones still have the other half."""
    budget = min(timeout, deadline - time.monotonic())
    return max(MIN_PATIENCE, budget * width / max(count, 1) / 2)


def _timed_out(timeout: float) -> str:
    return f"timed out: no complete answer within {timeout:g}s"
