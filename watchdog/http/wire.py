"""A strict, bounded HTTP/1.1 response reader without I/O: feed it bytes, get one answer.

    reader = ResponseReader(max_body)
    reader.feed(data)      # as the bytes arrive; raises BodyError (below) on anything hostile
    reader.eof()           # the peer closed: ends a close-delimited body, else raises
    reader.done            # the whole answer is read: status, reason, headers, body, keep_alive

Used by the scrape loop (`http.scrapeloop`), which owns the sockets and the deadline. What it
accepts, and the bounds that keep a hostile server from costing more than them:

- a status line `HTTP/1.x NNN reason` of at most MAX_LINE bytes (1xx answers are skipped, at
  most MAX_INTERIM of them); anything else is not HTTP;
- at most MAX_HEADERS header fields in at most MAX_HEAD bytes, no obs-fold, no field without
  a name; LF line ends are tolerated as CRLF (http.client does too);
- the body framed by `Transfer-Encoding: chunked` (chunk-size lines of at most MAX_LINE bytes,
  trailers counted like headers), by one `Content-Length`, or by the connection's end; both
  framings at once, or two different lengths, are refused (a smuggling shape, never benign);
- the body decoded (gzip, deflate) as it arrives, by `http.body`'s decoders, and refused once
  it passes `max_body` bytes *after* decoding: an endless chunked stream or a gzip bomb costs
  at most about `max_body` of memory. A declared Content-Length over the limit fails at once.

Failures are `http.body` errors: BodyTooLarge (kind too_large), BodyError kind `parse` (an
unknown or broken encoding) or kind `connection` (not HTTP, broken framing, a body cut short).
"""

from __future__ import annotations

import io
import re
import zlib
from typing import Mapping

from watchdog.http.body import BodyError, BodyTooLarge, after_decoding, decoder
from watchdog.redact import MASK, redact

MAX_LINE = 8 * 1024  # a status line, a chunk-size line, a trailer line (header lines: within MAX_HEAD)
MAX_HEAD = 64 * 1024  # all header lines of one answer (and, apart, its trailers)
MAX_HEADERS = 100  # header fields of one answer (and, apart, its trailers)
MAX_INTERIM = 8  # 1xx answers before the real one

_STATUS = re.compile(rb"HTTP/1\.([01]) ([1-9][0-9][0-9])(?: ([^\r\n]*))?\r?")
_TOKEN = re.compile(rb"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")
_HEX = re.compile(rb"[0-9A-Fa-f]{1,16}")
_DIGITS = re.compile(r"[0-9]{1,18}")  # ASCII only: str.isdigit() is also true of '²', which int() refuses
_NO_BODY = (204, 304)

_HEAD, _LENGTH, _CHUNK_SIZE, _CHUNK_DATA, _CHUNK_END, _TRAILERS, _UNTIL_CLOSE, _DONE = range(8)


class Headers(dict[str, str]):
    """Header fields by lower-case name (repeated fields joined by `, `); `get` ignores case."""

    def get(self, name: str, default: str | None = None) -> str | None:  # type: ignore[override]
        return super().get(name.lower(), default)

    def __getitem__(self, name: str) -> str:
        return super().__getitem__(name.lower())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and super().__contains__(name.lower())


def _broken(message: str) -> BodyError:
    return BodyError(message, "connection")


class ResponseReader:
    """One answer to one request; `started` once any byte of it arrived."""

    __slots__ = ("max_body", "status", "reason", "headers", "keep_alive", "started", "_state", "_buf",
                 "_left", "_first", "_more", "_size", "_decoder", "_interim", "_trailer_bytes", "_trailers",
                 "_scanned")

    def __init__(self, max_body: int):
        self.max_body = max_body
        self.status = 0
        self.reason = ""
        self.headers: Mapping[str, str] = Headers()
        self.keep_alive = False
        self.started = False
        self._state = _HEAD
        self._buf = b""
        self._left = 0
        self._first = b""  # the body while it is one piece (a page in one read), then in _more
        self._more: io.BytesIO | None = None
        self._size = 0
        self._decoder = decoder("")
        self._interim = 0
        self._trailer_bytes = 0
        self._trailers = 0
        self._scanned = 0  # bytes of a head in the buffer already searched for its end

    @property
    def done(self) -> bool:
        return self._state == _DONE

    @property
    def body(self) -> bytes:
        return self._first if self._more is None else self._more.getvalue()

    @property
    def leftover(self) -> bool:
        """Bytes arrived after the answer's end: the connection cannot carry another request."""
        return bool(self._buf)

    def feed(self, data: bytes) -> None:
        if not data:
            return
        self.started = True
        if self._state == _DONE:
            self._buf += data
            return
        if not self._buf:
            self._buf = data
        elif self._state == _HEAD:  # a head trickling in grows in place: no copy of it per byte
            if not isinstance(self._buf, bytearray):
                self._buf = bytearray(self._buf)
            self._buf += data
        else:
            self._buf = self._buf + data
        while self._buf and self._state != _DONE:
            if not self._step():
                return

    def eof(self) -> None:
        """The peer closed the connection: the end of a close-delimited body, or an answer cut short."""
        if self._state == _UNTIL_CLOSE:
            self._finish()
            return
        if self._state == _DONE:
            return
        if not self.started:
            raise _broken("the server closed the connection without an answer")
        where = "headers" if self._state == _HEAD else "body"
        raise _broken(f"the connection broke while reading the {where}: the server closed it early")

    # -- the states ------------------------------------------------------------------------------

    def _step(self) -> bool:
        """Advance on the buffer; False when more bytes are needed."""
        state = self._state
        if state == _LENGTH or state == _UNTIL_CLOSE:
            return self._data()
        if state == _CHUNK_DATA:
            return self._data()
        if state == _HEAD:
            return self._head()
        if state == _CHUNK_SIZE:
            return self._chunk_size()
        if state == _CHUNK_END:
            return self._chunk_end()
        return self._trailer()

    def _head(self) -> bool:
        buf = self._buf
        start = max(0, self._scanned - 3)  # what was searched before holds no end (but may hold its start)
        end = buf.find(b"\r\n\r\n", start)
        cut = end + 4
        within = end + 1 if end >= 0 else len(buf)  # an LF-only blank line before it ends the head first
        lf = buf.find(b"\n\n", start, within)
        if lf >= 0:
            end, cut = lf, lf + 2
        lf = buf.find(b"\n\r\n", start, within)
        if lf >= 0 and (end < 0 or lf < end):
            end, cut = lf, lf + 3
        if end < 0:
            self._scanned = len(buf)
            if len(buf) > MAX_HEAD + MAX_LINE:
                raise _broken(f"the answer's headers are larger than {MAX_HEAD} bytes")
            first = buf.find(b"\n")
            if (first < 0 and len(buf) > MAX_LINE) or (first >= 0 and not _STATUS.fullmatch(buf[:first])):
                raise _broken(f"the answer is not HTTP/1.x (status line {_shown(buf, first)})")
            return False
        head, self._buf = bytes(buf[:end]), bytes(buf[cut:])
        self._scanned = 0
        lines = head.split(b"\n")
        self._status_line(lines[0])
        if len(head) > MAX_HEAD + len(lines[0]):
            raise _broken(f"the answer's headers are larger than {MAX_HEAD} bytes")
        if len(lines) - 1 > MAX_HEADERS:
            raise _broken(f"the answer has more than {MAX_HEADERS} header fields")
        headers = Headers()
        for line in lines[1:]:
            _field(line, headers, "header")
        if 100 <= self.status < 200:  # 100 Continue, 103 Early Hints: the answer follows
            self._interim += 1
            if self._interim > MAX_INTERIM:
                raise _broken(f"the server sent more than {MAX_INTERIM} interim (1xx) answers")
            return True
        self.headers = headers
        self._framing(headers)
        return True

    def _status_line(self, line: bytes) -> None:
        match = _STATUS.fullmatch(line) if len(line) <= MAX_LINE else None
        if match is None:
            raise _broken(f"the answer is not HTTP/1.x (status line {_shown(line, len(line))})")
        self.status = int(match.group(2))
        self.reason = (match.group(3) or b"").decode("latin-1")
        self.keep_alive = match.group(1) == b"1"  # HTTP/1.1 keeps the connection unless told

    def _framing(self, headers: Headers) -> None:
        connection = (headers.get("connection") or "").lower()
        if "close" in connection:
            self.keep_alive = False
        elif "keep-alive" in connection:
            self.keep_alive = True
        self._decoder = decoder(headers.get("content-encoding") or "")
        transfer = headers.get("transfer-encoding")
        length = headers.get("content-length")
        if transfer is not None:
            if length is not None:
                raise _broken("the answer has both Transfer-Encoding and Content-Length")
            if transfer.strip().lower() != "chunked":
                raise _broken(f"unsupported Transfer-Encoding {transfer[:40]!r} (only chunked)")
            self._state = _CHUNK_SIZE
        elif self.status in _NO_BODY:
            self._finish()
        elif length is not None:
            values = {v.strip() for v in length.split(",")}
            if len(values) != 1 or not _DIGITS.fullmatch(next(iter(values))):
                raise _broken(f"the answer has an invalid Content-Length {length[:40]!r}")
            self._left = int(values.pop())
            if self._decoder.encoding == "identity" and self._left > self.max_body:
                raise BodyTooLarge(f"the body is larger than {self.max_body} bytes")
            self._state = _LENGTH
            if not self._left:
                self._finish()
        else:
            self.keep_alive = False
            self._state = _UNTIL_CLOSE

    def _data(self) -> bool:
        buf = self._buf
        if self._state == _UNTIL_CLOSE:
            self._buf = b""
            self._decoded(buf)
            return False
        if len(buf) < self._left:
            self._left -= len(buf)
            self._buf = b""
            self._decoded(buf)
            return False
        take = self._left
        piece, self._buf = (buf, b"") if len(buf) == take else (buf[:take], buf[take:])
        self._left = 0
        self._decoded(piece)
        if self._state == _LENGTH:
            self._finish()
        else:
            self._state = _CHUNK_END
        return True

    def _chunk_size(self) -> bool:
        buf = self._buf
        end = buf.find(b"\n")
        if end < 0:
            if len(buf) > MAX_LINE:
                raise _broken(f"a chunk-size line is longer than {MAX_LINE} bytes")
            return False
        line = buf[:end].rstrip(b"\r").split(b";", 1)[0].strip(b" \t")
        if end > MAX_LINE or not _HEX.fullmatch(line):
            raise _broken(f"the chunked body has an invalid chunk-size line {_shown(buf, end)}")
        self._buf = buf[end + 1:]
        self._left = int(line, 16)
        self._state = _CHUNK_DATA if self._left else _TRAILERS
        return True

    def _chunk_end(self) -> bool:
        buf = self._buf
        if buf.startswith(b"\r\n"):
            self._buf = buf[2:]
        elif buf.startswith(b"\n"):
            self._buf = buf[1:]
        elif buf == b"\r":
            return False
        else:
            raise _broken("the chunked body has a chunk without its line end")
        self._state = _CHUNK_SIZE
        return True

    def _trailer(self) -> bool:
        buf = self._buf
        end = buf.find(b"\n")
        if end < 0:
            if len(buf) > MAX_LINE:
                raise _broken(f"a trailer line is longer than {MAX_LINE} bytes")
            return False
        line, self._buf = buf[:end], buf[end + 1:]
        self._trailer_bytes += end + 1
        if line in (b"", b"\r"):
            self._finish()
            return True
        self._trailers += 1
        if self._trailers > MAX_HEADERS or self._trailer_bytes > MAX_HEAD:
            raise _broken(f"the chunked body has more than {MAX_HEADERS} trailer fields or {MAX_HEAD} bytes of them")
        _field(line, Headers(), "trailer")  # checked, not kept
        return True

    def _decoded(self, data: bytes) -> None:
        if not data:
            return
        try:
            for piece in self._decoder.feed(data):
                self._keep(piece)
        except zlib.error as exc:
            raise self._undecodable(exc) from None

    def _undecodable(self, exc: zlib.error) -> BodyError:
        self._first, self._more = b"", None
        return BodyError(f"the {self._decoder.encoding} body cannot be decompressed: {exc}")

    def _keep(self, piece: bytes) -> None:
        if not piece:
            return
        self._size += len(piece)
        if self._size > self.max_body:
            self._first, self._more = b"", None
            raise BodyTooLarge(f"the body is larger than {self.max_body} bytes{after_decoding(self._decoder)}")
        if self._more is not None:
            self._more.write(piece)
        elif not self._first:
            self._first = piece
        else:  # one copy of the body as it grows (getvalue() shares it), not pieces and a join
            self._more = io.BytesIO()
            self._more.write(self._first)
            self._more.write(piece)
            self._first = b""

    def _finish(self) -> None:
        try:
            self._keep(self._decoder.finish())
        except zlib.error as exc:
            raise self._undecodable(exc) from None
        self._state = _DONE


def _field(line: bytes, headers: Headers, what: str) -> None:
    if line.endswith(b"\r"):
        line = line[:-1]
    if line[:1] in (b" ", b"\t"):
        raise _broken(f"the answer has a folded {what} line (obsolete line folding is refused)")
    name, colon, value = line.partition(b":")
    if not colon or not _TOKEN.fullmatch(name):
        raise _broken(f"the answer has an invalid {what} line {_shown(line, len(line))}")
    key = name.decode("ascii").lower()
    text = value.strip(b" \t").decode("latin-1")
    if dict.__contains__(headers, key):
        text = f"{dict.__getitem__(headers, key)}, {text}"
    dict.__setitem__(headers, key, text)


def _shown(data: bytes, end: int) -> str:
    """The start of a line for a message: at most 40 characters, never its header values. Masked
    before it is cut (a cut secret is no longer found): registered secrets, and anything after a
    `?` (a server that echoes our request line would show its query, often a credential)."""
    line = redact(data[:end if end >= 0 else len(data)][:MAX_LINE].decode("latin-1"))
    query = line.find("?")
    if query >= 0:
        line = line[:query + 1] + MASK
    return repr(line[:40])
