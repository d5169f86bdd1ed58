"""Reading an HTTP answer with bounds: one wall-clock deadline and a cap on the body's size.

Every answer from outside is hostile until read: a body may be endless, a small gzip body
may expand a thousandfold, a server may send one byte every half second for ever. So:

- `Deadline(seconds)` is one wall-clock limit for the whole exchange (connect, headers,
  body). Connections of `Pool`/`TLSPool` (the transport's) and of `session()` tell it
  which socket they use; when it expires, one
  shared reaper thread (not a thread per request: a fleet scrape sends a thousand) shuts that
  connection's socket down, so a read blocked on a trickle returns at once.
- `read_body(response, limit, deadline)` reads a `stream=True` response in chunks and
  decompresses gzip/deflate itself, counting bytes *after* decompression; it stops as soon
  as the body passes `limit` (or returns the first `limit` bytes with `truncate=True`, for
  an excerpt). Memory stays about `limit`, whatever the server sends.

Failures are `BodyError`s whose `kind` says which limit was hit:

    BodyError     kind parse / connection: an unknown or broken encoding, a lost connection
    ├── BodyTooLarge  kind too_large: more than `limit` bytes after decompression
    └── BodyTimeout   kind timeout: the deadline passed
"""

from __future__ import annotations

import heapq
import io
import itertools
import socket
import threading
import time
import zlib
from typing import Any, Callable, Iterator

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool
from urllib3.exceptions import ReadTimeoutError
from urllib3.response import HTTPResponse

from watchdog.errors import WatchdogError

MAX_BODY = 32 * 1024 * 1024  # the default limit of a body, after decompression
CHUNK = 64 * 1024
ACCEPT_ENCODING = "gzip, deflate"  # what read_body can decompress; sent on every request

_local = threading.local()
Response = requests.Response | HTTPResponse  # a requests response (stream=True) or urllib3's (preload_content=False)


class BodyError(WatchdogError):
    def __init__(self, message: str, kind: str = "parse"):
        super().__init__(message)
        self.kind = kind


class BodyTooLarge(BodyError):
    def __init__(self, message: str):
        super().__init__(message, "too_large")


class BodyTimeout(BodyError):
    def __init__(self, message: str):
        super().__init__(message, "timeout")


# -- the deadline ----------------------------------------------------------------------------------

class Deadline:
    """`with Deadline(seconds) as d:` — requests sent on this thread through a `Pool` or a `session()` end
    when `seconds` have passed, wherever they are (connect, headers, body)."""

    def __init__(self, seconds: float):
        self.seconds = seconds
        self.at = time.monotonic() + seconds
        self.expired = False
        self._lock = threading.Lock()
        self._socket: socket.socket | None = None
        self._done = False
        self._outer: Deadline | None = None

    def remaining(self) -> float:
        return self.at - time.monotonic()

    def passed(self) -> bool:
        return self.expired or self.remaining() <= 0

    def __enter__(self) -> "Deadline":
        self._outer = getattr(_local, "deadline", None)
        _local.deadline = self
        _REAPER.watch(self)
        return self

    def __exit__(self, *exc: object) -> None:
        _local.deadline = self._outer
        with self._lock:
            self._done = True
            self._socket = None

    def attach(self, connection: HTTPConnection) -> None:
        """Remember the connection's socket (the response keeps reading from it even after
        the connection drops its reference, as it does for a close-delimited body)."""
        sock = getattr(connection, "sock", None)
        if not isinstance(sock, socket.socket):
            return
        with self._lock:
            self._socket = sock
            expired = self.expired
        if expired:
            _shut(sock)

    def _expire(self) -> None:
        with self._lock:
            if self._done:
                return
            self.expired = True
            sock = self._socket
        if sock is not None:
            _shut(sock)


class _Reaper:
    """One daemon thread that expires every Deadline at its time (a heap ordered by `at`;
    a deadline that ended first is skipped when its time comes)."""

    def __init__(self) -> None:
        self._heap: list[tuple[float, int, Deadline]] = []
        self._order = itertools.count()
        self._wake = threading.Condition()
        self._thread: threading.Thread | None = None

    def watch(self, deadline: Deadline) -> None:
        with self._wake:
            heapq.heappush(self._heap, (deadline.at, next(self._order), deadline))
            if self._thread is None or not self._thread.is_alive():  # also after a fork
                self._thread = threading.Thread(target=self._run, name="http-deadlines", daemon=True)
                self._thread.start()
            if self._heap[0][2] is deadline:
                self._wake.notify()

    def _run(self) -> None:
        while True:
            with self._wake:
                while not self._heap or self._heap[0][0] > time.monotonic():
                    self._wake.wait(None if not self._heap else self._heap[0][0] - time.monotonic())
                due = heapq.heappop(self._heap)[2]
            due._expire()


    def abort_all(self) -> None:
        with self._wake:
            pending = [d for _, _, d in self._heap]
        for deadline in pending:
            deadline._expire()


_REAPER = _Reaper()


_ABORT_HOOKS: list[Callable[[], None]] = []


def on_abort(hook: Callable[[], None]) -> None:
    """Call `hook` on `abort_all()`: clients with deadlines of their own (the scrape loop) end too."""
    _ABORT_HOOKS.append(hook)


def abort_all() -> None:
    """Expire every deadline now (shutdown): requests in flight on any thread end at once,
    as if their time had run out."""
    _REAPER.abort_all()
    for hook in _ABORT_HOOKS:
        hook()


def _shut(sock: socket.socket) -> None:
    try:  # the plain socket's shutdown: safe from another thread, also under TLS
        socket.socket.shutdown(sock, socket.SHUT_RDWR)
    except OSError:
        pass


def _attach_current(connection: HTTPConnection) -> None:
    deadline: Deadline | None = getattr(_local, "deadline", None)
    if deadline is not None:
        deadline.attach(connection)


class _Watched:
    """Mixin: tell the thread's Deadline about the socket when connecting and sending."""

    def connect(self) -> None:
        super().connect()  # type: ignore[misc]
        _attach_current(self)  # type: ignore[arg-type]

    def request(self, *args: Any, **kwargs: Any) -> Any:
        _attach_current(self)  # type: ignore[arg-type]
        return super().request(*args, **kwargs)  # type: ignore[misc]


class _Connection(_Watched, HTTPConnection):
    pass


class _TLSConnection(_Watched, HTTPSConnection):
    pass


class Pool(HTTPConnectionPool):
    """A urllib3 pool whose connections tell the thread's Deadline which socket to shut down."""

    ConnectionCls = _Connection


class TLSPool(HTTPSConnectionPool):
    ConnectionCls = _TLSConnection


class _Adapter(HTTPAdapter):
    """An adapter whose connections tell the thread's Deadline which socket to shut down."""

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = {"http": Pool, "https": TLSPool}

    def proxy_manager_for(self, proxy: str, **kwargs: Any) -> Any:
        manager = super().proxy_manager_for(proxy, **kwargs)
        if not proxy.lower().startswith("socks"):
            manager.pool_classes_by_scheme = {"http": Pool, "https": TLSPool}
        return manager


def session() -> requests.Session:
    """A requests Session whose requests obey the thread's `Deadline` and ask only for the
    encodings `read_body` decompresses."""
    s = requests.Session()
    adapter = _Adapter()
    s.mount("http://", adapter)
    s.mount("https://", adapter)
    s.headers["Accept-Encoding"] = ACCEPT_ENCODING
    return s


# -- the body --------------------------------------------------------------------------------------

def read_all(response: Response, limit: int, deadline: Deadline | None = None, *, truncate: bool = False) -> bytes:
    """`read_body`, then hand the connection back for reuse; on any failure, or a body cut
    at `limit`, close it (what is left of a hostile answer is never read)."""
    raw = _raw(response)
    try:
        content = read_body(response, limit, deadline, truncate=truncate)
    except BaseException:
        response.close()
        raise
    if truncate and len(content) >= limit:
        response.close()
    else:
        raw.release_conn()
    return content


def _raw(response: Response) -> HTTPResponse:
    return response.raw if isinstance(response, requests.Response) else response


def read_body(response: Response, limit: int, deadline: Deadline | None = None, *,
              truncate: bool = False) -> bytes:
    """The body of a `stream=True` response, decompressed, at most `limit` bytes.

    Raises BodyTooLarge past `limit` (unless `truncate`: then the first `limit` bytes),
    BodyTimeout when `deadline` passes, BodyError for a broken body or an unknown encoding.
    """
    decoder = _decoder(response.headers.get("Content-Encoding", ""))
    out = io.BytesIO()  # its getvalue() shares the buffer: no second copy of a large body
    try:
        for piece in decoder.pieces(_raw_chunks(response, deadline)):
            out.write(piece)
            if out.tell() > limit:
                if truncate:
                    return out.getvalue()[:limit]
                raise BodyTooLarge(f"the body is larger than {limit} bytes{_after(decoder)}")
    except BodyError:
        raise
    except zlib.error as exc:
        raise BodyError(f"the {decoder.encoding} body cannot be decompressed: {exc}") from None
    except Exception as exc:  # urllib3/http.client errors when the connection breaks mid-body
        if deadline is not None and deadline.passed():
            raise _timeout(deadline) from None
        if isinstance(exc, ReadTimeoutError):
            raise BodyTimeout(f"the body stopped arriving: {exc}") from None
        raise BodyError(f"the connection broke while reading the body: {type(exc).__name__}",
                        "connection") from None
    else:
        return out.getvalue()
    finally:
        # A refused body must not live on in this frame, which the error's traceback keeps.
        out.close()


def _raw_chunks(response: Response, deadline: Deadline | None) -> Iterator[bytes]:
    raw = _raw(response)
    while True:
        if deadline is not None and deadline.passed():
            raise _timeout(deadline)
        chunk = raw.read(CHUNK, decode_content=False)
        if not chunk:
            if deadline is not None and deadline.expired:  # the timer shut the socket down
                raise _timeout(deadline)
            return
        yield chunk


def _timeout(deadline: Deadline) -> BodyTimeout:
    return BodyTimeout(f"the answer did not arrive completely within {deadline.seconds:g}s")


def _after(decoder: "_Identity") -> str:
    return f" after {decoder.encoding} decompression" if decoder.encoding != "identity" else ""


class _Identity:
    encoding = "identity"

    def pieces(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        return chunks

    def feed(self, data: bytes) -> Iterator[bytes] | tuple[bytes]:
        """The decoded pieces of the next raw bytes (each at most CHUNK bytes when decoding)."""
        return (data,)

    def finish(self) -> bytes:
        """What is left once the raw body has ended."""
        return b""


class _Inflate(_Identity):
    """gzip (several members too) or deflate (zlib-wrapped or raw), never more than CHUNK
    bytes of output per step, so a bomb is caught after at most one CHUNK past the limit."""

    def __init__(self, encoding: str):
        self.encoding = encoding
        self._wbits = 16 + zlib.MAX_WBITS if encoding == "gzip" else zlib.MAX_WBITS
        self._z = zlib.decompressobj(self._wbits)
        self._started = False

    def pieces(self, chunks: Iterator[bytes]) -> Iterator[bytes]:
        for chunk in chunks:
            yield from self._feed(chunk)
        yield self.finish()

    def feed(self, data: bytes) -> Iterator[bytes]:
        return self._feed(data)

    def finish(self) -> bytes:
        """What is left; BodyError when the stream has not reached its end (a body cut short,
        which would otherwise read as a shorter, complete page)."""
        rest = self._z.flush()
        if self._started and not self._z.eof:
            raise BodyError(f"the {self.encoding} body is cut short (its compressed stream does not end)",
                            "connection")
        return rest

    def _feed(self, data: bytes) -> Iterator[bytes]:
        while True:
            try:
                out = self._z.decompress(data, CHUNK)
            except zlib.error:
                if self.encoding != "deflate" or self._started:
                    raise
                self._z = zlib.decompressobj(-zlib.MAX_WBITS)  # deflate without the zlib header
                self._started = True
                continue
            self._started = True
            if out:
                yield out
            data = self._z.unconsumed_tail
            if self._z.eof and self._z.unused_data.strip(b"\0"):
                if self.encoding != "gzip":
                    raise BodyError(f"data after the end of the {self.encoding} stream")
                data = self._z.unused_data  # the next gzip member
                self._z = zlib.decompressobj(self._wbits)
                continue
            if not data and len(out) < CHUNK:
                return


def after_decoding(decoder: _Identity) -> str:
    """` after gzip decompression` for a message, or '' for an identity body."""
    return _after(decoder)


def decoder(content_encoding: str) -> _Identity:
    """The decoder of a Content-Encoding (`feed`/`finish`); BodyError for one we cannot count."""
    return _decoder(content_encoding)


def _decoder(content_encoding: str) -> _Identity:
    encoding = content_encoding.strip().lower()
    if encoding in ("", "identity"):
        return _Identity()
    if encoding in ("gzip", "x-gzip"):
        return _Inflate("gzip")
    if encoding == "deflate":
        return _Inflate("deflate")
    raise BodyError(f"unsupported Content-Encoding {content_encoding!r} (only {ACCEPT_ENCODING} are accepted)")
