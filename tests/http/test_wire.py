"""The strict HTTP/1.1 response reader, fed hostile bytes directly (no sockets, no waiting)."""

from __future__ import annotations

import gzip
import zlib

import pytest

from watchdog.http.body import BodyError, BodyTooLarge
from watchdog.http.wire import MAX_HEAD, MAX_HEADERS, MAX_INTERIM, MAX_LINE, ResponseReader

OK = b"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 5\r\n\r\nhello"


def read(*pieces: bytes, max_body: int = 1 << 20, eof: bool = False) -> ResponseReader:
    reader = ResponseReader(max_body)
    for piece in pieces:
        reader.feed(piece)
    if eof:
        reader.eof()
    return reader


def bytewise(data: bytes, max_body: int = 1 << 20) -> ResponseReader:
    return read(*(data[i:i + 1] for i in range(len(data))), max_body=max_body)


def test_a_content_length_answer_reads_whole_in_one_piece_or_byte_by_byte() -> None:
    for reader in (read(OK), bytewise(OK)):
        assert reader.done and reader.status == 200 and reader.reason == "OK"
        assert reader.body == b"hello" and reader.keep_alive and not reader.leftover
        assert reader.headers.get("content-type") == "text/plain" == reader.headers.get("Content-Type")


def test_chunked_bodies_with_extensions_and_trailers() -> None:
    data = (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
            b"5;name=value\r\nhello\r\n1\r\n \r\n5\r\nworld\r\n0\r\nX-Trailer: 1\r\n\r\n")
    for reader in (read(data), bytewise(data)):
        assert reader.done and reader.body == b"hello world" and reader.keep_alive


def test_gzip_and_deflate_bodies_are_decoded() -> None:
    text = b"requests_total 1\n" * 100
    for encoding, raw in (("gzip", gzip.compress(text)), ("deflate", zlib.compress(text))):
        head = f"HTTP/1.1 200 OK\r\nContent-Encoding: {encoding}\r\nContent-Length: {len(raw)}\r\n\r\n".encode()
        assert read(head + raw).body == text
        assert bytewise(head + raw).body == text


def test_a_gzip_bomb_is_refused_at_the_limit_counted_after_decompression() -> None:
    bomb = gzip.compress(b"#" * (8 << 20))  # 8 KiB that expands to 8 MiB
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(bomb)}\r\n\r\n".encode()
    with pytest.raises(BodyTooLarge, match="larger than 1048576 bytes after gzip decompression"):
        read(head + bomb, max_body=1 << 20)


def test_an_endless_chunked_body_stops_at_the_limit() -> None:
    reader = ResponseReader(1000)
    reader.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n")
    with pytest.raises(BodyTooLarge, match="larger than 1000 bytes"):
        for _ in range(100):
            reader.feed(b"40\r\n" + b"x" * 64 + b"\r\n")


def test_a_declared_length_over_the_limit_fails_before_the_body() -> None:
    with pytest.raises(BodyTooLarge):
        read(b"HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n", max_body=1000)


@pytest.mark.parametrize("data, words", [
    (b"SSH-2.0-OpenSSH_9.2\r\n", "not HTTP/1.x"),
    (b"HTTP/1.1 2000 OK\r\n\r\n", "not HTTP/1.x"),
    (b"HTTP/2 200\r\n\r\n", "not HTTP/1.x"),
    (b"<html>" + b"x" * (MAX_LINE + 10), "not HTTP/1.x"),
    (b"HTTP/1.1 200 OK\r\nX-A: 1\r\n folded\r\n\r\n", "folded"),
    (b"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", "invalid header line"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n", "both"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: 3, 4\r\n\r\n", "invalid Content-Length"),
    (b"HTTP/1.1 200 OK\r\nContent-Length: -3\r\n\r\n", "invalid Content-Length"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", "unsupported Transfer-Encoding"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk-size"),
    (b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX", "without its line end"),
])
def test_what_is_not_strict_http_is_refused(data: bytes, words: str) -> None:
    with pytest.raises(BodyError, match=words) as err:
        read(data)
    assert err.value.kind == "connection"


def test_oversized_headers_are_refused_however_they_arrive() -> None:
    many = b"HTTP/1.1 200 OK\r\n" + b"".join(b"X-%d: 1\r\n" % i for i in range(MAX_HEADERS + 1)) + b"\r\n"
    with pytest.raises(BodyError, match="more than 100 header fields"):
        read(many)
    reader = ResponseReader(1000)
    reader.feed(b"HTTP/1.1 200 OK\r\n")
    with pytest.raises(BodyError, match="headers are larger than"):  # no end of headers, ever
        for _ in range(MAX_HEAD // 1000 + 20):
            reader.feed(b"X-Long: " + b"a" * 990 + b"\r\n")
    with pytest.raises(BodyError, match="chunk-size line is longer"):
        read(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + b"e" * (MAX_LINE + 10))


def test_endless_trailers_are_refused() -> None:
    reader = ResponseReader(1000)
    reader.feed(b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n")
    with pytest.raises(BodyError, match="trailer"):
        for i in range(MAX_HEADERS + 2):
            reader.feed(b"X-T%d: 1\r\n" % i)


def test_the_end_of_the_connection() -> None:
    close_delimited = read(b"HTTP/1.1 200 OK\r\n\r\nsome body", eof=True)
    assert close_delimited.done and close_delimited.body == b"some body" and not close_delimited.keep_alive

    with pytest.raises(BodyError, match="without an answer") as err:
        read(b"", eof=True)
    assert err.value.kind == "connection"
    with pytest.raises(BodyError, match="while reading the body"):
        read(b"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nabc", eof=True)
    with pytest.raises(BodyError, match="while reading the headers"):
        read(b"HTTP/1.1 200 OK\r\nContent-Le", eof=True)


def test_keep_alive_follows_the_version_and_connection_header() -> None:
    assert not read(b"HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 0\r\n\r\n").keep_alive
    assert not read(b"HTTP/1.0 200 OK\r\nContent-Length: 0\r\n\r\n").keep_alive
    assert read(b"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 0\r\n\r\n").keep_alive
    assert read(OK + b"HTTP/1.1").leftover  # bytes nobody asked for: the connection is not reused


def test_interim_answers_are_skipped_but_not_for_ever() -> None:
    reader = read(b"HTTP/1.1 100 Continue\r\n\r\n" + OK)
    assert reader.done and reader.status == 200 and reader.body == b"hello"
    with pytest.raises(BodyError, match="interim"):
        read(b"HTTP/1.1 103 Early Hints\r\n\r\n" * (MAX_INTERIM + 1))


def test_lf_only_line_ends_are_tolerated_and_204_has_no_body() -> None:
    reader = read(b"HTTP/1.1 200 OK\nContent-Length: 2\n\nok")
    assert reader.done and reader.body == b"ok"
    assert read(b"HTTP/1.1 204 No Content\r\n\r\n").done


@pytest.mark.parametrize("encoding, raw", [
    ("gzip", b"not gzip at all"),
    ("deflate", b"\xff\xfe not deflate"),
    ("gzip", gzip.compress(b"x 1\n", mtime=0) + b"trailing junk"),
])
def test_a_body_that_does_not_decompress_is_a_parse_error_not_a_crash(encoding: str, raw: bytes) -> None:
    """zlib's own error used to escape the reader (the scrape loop's protocol callback then died
    with a traceback in the log, and the scrape was reported as a broken connection)."""
    head = f"HTTP/1.1 200 OK\r\nContent-Encoding: {encoding}\r\nContent-Length: {len(raw)}\r\n\r\n".encode()
    for feed in (read, bytewise):
        with pytest.raises(BodyError, match="cannot be decompressed") as err:
            feed(head + raw)
        assert err.value.kind == "parse"


def test_a_gzip_body_cut_short_is_not_a_complete_page() -> None:
    """A close-delimited gzip body whose connection breaks mid-stream decompressed to a short (or
    empty) page read as complete: a scrape that 'succeeded' with series missing."""
    text = b"requests_total 1\n" * 2000
    raw = gzip.compress(text)
    head = b"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n"
    assert read(head + raw, eof=True).body == text
    with pytest.raises(BodyError, match="cut short"):
        read(head + raw[: len(raw) // 2], eof=True)
    framed = f"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\nContent-Length: {len(raw) - 8}\r\n\r\n".encode()
    with pytest.raises(BodyError, match="cut short"):  # framed complete, but the gzip stream is not
        read(framed + raw[:-8])


def test_content_length_digits_are_ascii_digits() -> None:
    """'²'.isdigit() is True but int('²') raises ValueError, which escaped the reader."""
    with pytest.raises(BodyError, match="invalid Content-Length") as err:
        read("HTTP/1.1 200 OK\r\nContent-Length: \u00b2\r\n\r\nab".encode("latin-1"))
    assert err.value.kind == "connection"


def test_lf_only_headers_end_at_the_first_blank_line_even_if_the_body_has_crlf_crlf() -> None:
    reader = read(b"HTTP/1.1 200 OK\nContent-Length: 12\n\nab\r\n\r\ncdefgh")
    assert reader.done and reader.body == b"ab\r\n\r\ncdefgh" and not reader.leftover


def test_headers_trickled_a_byte_at_a_time_cost_linear_time() -> None:
    """The scrape loop reads every target on ONE thread: a target sending its headers one byte
    per segment made the reader search the whole buffer again at each byte (6 s of CPU up to
    the 64 KiB cap, all other scrapes stalled). Now each byte is searched once."""
    import time

    line = b"X-A: " + b"a" * 60 + b"\r\n"
    reader = ResponseReader(1000)
    reader.feed(b"HTTP/1.1 200 OK\r\n")
    started = time.process_time()
    with pytest.raises(BodyError, match="headers are larger than"):
        for _ in range(MAX_HEAD // len(line) + 200):
            for i in range(len(line)):
                reader.feed(line[i:i + 1])
    assert time.process_time() - started < 1.0
    trickled = bytewise(b"HTTP/1.1 200 OK\r\nX-A: 1\nX-B: 2\r\n\r\nhello", max_body=100)  # still read right
    assert trickled.headers.get("x-b") == "2" and trickled.status == 200
