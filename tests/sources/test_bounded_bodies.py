"""Every HTTP answer is read within `max_body` (after decompression) and one wall-clock deadline.

The sources (scrape, prometheus, http_json) turn a breach of either limit into no data with
`kind="too_large"` / `kind="timeout"`; the webhook client and the actuators' REST client read
with the same reader. A hostile server on 127.0.0.1 supplies the bodies.
"""

from __future__ import annotations

import gzip
import re
import threading
import time
import tracemalloc
import zlib
from pathlib import Path
from typing import Iterator

import certifi
import pytest

from tests.fakes.kube_api import self_signed_cert
from tests.http_receiver import Receiver, Reply
from tests.security.hostile_server import HostileServer
from tests.sources.helpers import options_from_yaml
from watchdog.http import body as httpbody, client as httpclient
from watchdog.http import rest
from watchdog.errors import ActuatorError, SourceError
from watchdog.config.fields import BuildContext, build
from watchdog.config.yamlnodes import parse_yaml
from watchdog.text.sizes import SIZE_PATTERN, format_size, parse_size
from watchdog.sources.http_json import HttpJsonOptions, HttpJsonSource
from watchdog.sources.prometheus import PrometheusOptions, PrometheusSource
from watchdog.sources.runner import RunnerSettings, SourceRunner
from watchdog.sources.scrape import ScrapeOptions, ScrapeSource

pytestmark = pytest.mark.timeout(60)

T0 = 1_700_000_000.0
MiB = 1024 * 1024


@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    with HostileServer(huge_size=200 * 1000 * 1000, series=1_000_000) as server:
        yield server


def scrape(url: str, **options: object) -> tuple[SourceError | None, float, ScrapeSource]:
    source = ScrapeSource("model", ScrapeOptions(url=url, **options))  # type: ignore[arg-type]
    started = time.monotonic()
    try:
        error = source.begin_tick(T0)
    finally:
        source.close()
    return error, time.monotonic() - started, source


@pytest.mark.parametrize(("page", "words"), [
    ("huge", "larger than 33554432 bytes"),
    ("endless", "larger than 33554432 bytes"),
    ("bomb", "larger than 33554432 bytes after gzip decompression"),
])
def test_a_page_over_max_body_is_no_data_too_large_and_reading_stops_there(
        hostile: HostileServer, page: str, words: str) -> None:
    error, took, _ = scrape(f"{hostile.url}/{page}", timeout=20.0)

    assert error is not None and error.kind == "too_large", error
    assert words in str(error) and "max_body 32MiB" in str(error)
    assert took < 10  # the endless stream and the 1 GiB bomb are not read to their end


def test_the_limit_is_counted_after_decompression_and_memory_stays_near_it(hostile: HostileServer) -> None:
    tracemalloc.start()
    try:
        error, _, _ = scrape(f"{hostile.url}/bomb", timeout=20.0, max_body=4 * MiB)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert error is not None and error.kind == "too_large" and "larger than 4194304 bytes" in str(error)
    assert peak < 24 * MiB  # the 1 GiB the body expands to is never held


def test_a_kept_error_does_not_keep_the_refused_body_alive(hostile: HostileServer) -> None:
    # The error outlives the scrape (runner cache, last tick's report); its traceback and
    # chained errors held the frames of the failed call, and so a 32 MiB body, per error.
    error, _, _ = scrape(f"{hostile.url}/endless", timeout=20.0)
    assert error is not None and error.kind == "too_large"
    assert error.__traceback__ is None and error.__context__ is None and error.__cause__ is None

    source = PrometheusSource("prom", PrometheusOptions(url=f"{hostile.url}/endless", timeout=20.0, retries=0))
    runner = SourceRunner({"prom": source}, settings=RunnerSettings(query_timeout=30.0))
    try:
        answer = runner.query("prom", "up", T0)
    finally:
        source.close()
    assert isinstance(answer, SourceError) and answer.kind == "too_large"
    assert answer.__traceback__ is None and answer.__context__ is None


def test_max_body_is_configurable_with_sizes_like_32MiB() -> None:
    options = options_from_yaml(ScrapeOptions, "url: http://127.0.0.1:9/metrics\nmax_body: 512KiB\n")
    assert options.max_body == 512 * 1024
    assert ScrapeOptions(url="http://x/").max_body == 32 * MiB
    assert parse_size("32MiB") == 32 * MiB and parse_size("10MB") == 10_000_000 and parse_size(4096) == 4096
    assert format_size(32 * MiB) == "32MiB" and format_size(1000) == "1000"
    with pytest.raises(ValueError, match="invalid size"):
        parse_size("32 parsecs")


def test_a_bad_size_is_a_config_problem_at_its_line() -> None:
    node, _ = parse_yaml("url: http://127.0.0.1:9/metrics\nmax_body: 32 parsecs\n", "watchdog.yaml")
    ctx = BuildContext("watchdog.yaml")

    assert build(ScrapeOptions, node, ctx, "sources.model") is None
    assert [str(p) for p in ctx.problems] == [
        "watchdog.yaml:2:11: sources.model.max_body: invalid size '32 parsecs': expected a number with an "
        "optional unit (B, KB, MB, GB, KiB, MiB, GiB), e.g. 32MiB"]


@pytest.mark.parametrize(("text", "valid"), [("32MiB", True), ("512 KiB", True), ("10MB", True), ("1.5GiB", True),
                                             ("4096", True), ("7b", True), ("32 parsecs", False), ("MiB", False),
                                             ("-1MiB", False), ("32MiBs", False)])
def test_the_json_schema_pattern_accepts_what_the_loader_accepts(text: str, valid: bool) -> None:
    assert bool(re.match(SIZE_PATTERN, text)) == valid
    if valid:
        assert parse_size(text) > 0
    else:
        with pytest.raises(ValueError):
            parse_size(text)


def test_a_small_max_body_refuses_an_ordinary_page(hostile: HostileServer) -> None:
    error, _, _ = scrape(f"{hostile.url}/ok", max_body=64)

    assert error is not None and error.kind == "too_large" and "max_body 64" in str(error)


@pytest.mark.parametrize("page", ["trickle", "slowheaders"])
def test_a_trickle_ends_at_the_one_deadline_of_the_whole_download(hostile: HostileServer, page: str) -> None:
    # one byte every 0.5 s: each read succeeds within the timeout, the download never ends
    error, took, _ = scrape(f"{hostile.url}/{page}", timeout=1.5)

    assert error is not None and error.kind == "timeout", error
    assert "timed out after 1.5s" in str(error)
    assert 1.4 < took < 4


def test_a_source_recovers_after_its_deadline_cut_a_connection(hostile: HostileServer) -> None:
    source = ScrapeSource("model", ScrapeOptions(url=f"{hostile.url}/metrics", timeout=1.0))
    try:
        hostile.mode = "trickle"
        assert source.begin_tick(T0).kind == "timeout"  # type: ignore[union-attr]
        hostile.mode = "ok"
        assert source.begin_tick(T0 + 1) is None
    finally:
        hostile.mode = "ok"
        source.close()


def test_prometheus_answers_are_bounded_too(hostile: HostileServer) -> None:
    for page, kind in (("bomb", "too_large"), ("trickle", "timeout")):
        source = PrometheusSource("prom", PrometheusOptions(url=f"{hostile.url}/{page}", timeout=1.0, retries=0))
        try:
            with pytest.raises(SourceError) as err:
                source.query("up", T0)
        finally:
            source.close()
        assert err.value.kind == kind, err.value


def test_http_json_answers_are_bounded_too(receiver: Receiver, hostile: HostileServer) -> None:
    receiver.script(Reply(200, b'{"v": "' + b"x" * 5000 + b'"}', {"Content-Type": "application/json"}))
    source = HttpJsonSource("stats", HttpJsonOptions(url=receiver.url("/stats"), max_body=1024, retries=0))
    with pytest.raises(SourceError) as err:
        source.query("v", T0)
    assert err.value.kind == "too_large" and "larger than 1024 bytes" in str(err.value)

    trickle = HttpJsonSource("stats", HttpJsonOptions(url=f"{hostile.url}/trickle", timeout=1.0, retries=0))
    with pytest.raises(SourceError) as err:
        trickle.query("v", T0)
    assert err.value.kind == "timeout"


def test_the_webhook_client_reads_an_error_page_within_its_deadline(hostile: HostileServer) -> None:
    options = httpclient.HttpOptions(url=f"{hostile.url}/trickle500", timeout=1.0, retries=0)
    started = time.monotonic()

    with pytest.raises(RuntimeError, match="500"):
        httpclient.send_json(options, method="POST", payload={}, idempotency_key="k", stop=threading.Event(),
                             error=RuntimeError)

    assert time.monotonic() - started < 4  # not 800 bytes at 2 bytes a second


def test_the_actuators_rest_client_refuses_a_body_over_the_limit(hostile: HostileServer) -> None:
    connection = rest.Connection(timeout=20.0, retries=0)
    with pytest.raises(ActuatorError, match="larger than 33554432 bytes after gzip decompression"):
        rest.call(connection, "GET", f"{hostile.url}/bomb", stop=threading.Event())

    with pytest.raises(ActuatorError, match="timed out|did not arrive"):
        rest.call(rest.Connection(timeout=1.0, retries=0), "GET", f"{hostile.url}/trickle", stop=threading.Event())


# -- over TLS ----------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tls_hostile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[HostileServer, Path]]:
    cert, key = self_signed_cert(tmp_path_factory.mktemp("tls"))
    with HostileServer(tls=(cert, key)) as server:
        yield server, cert


@pytest.mark.parametrize("page", ["trickle", "slowheaders"])
def test_the_deadline_cuts_a_trickle_over_tls_too(tls_hostile: tuple[HostileServer, Path], page: str) -> None:
    server, cert = tls_hostile
    error, took, _ = scrape(f"{server.url}/{page}", timeout=1.5, ca_file=str(cert))

    assert error is not None and error.kind == "timeout", error
    assert took < 4


def test_ca_file_is_used_even_when_requests_ca_bundle_is_set(tls_hostile: tuple[HostileServer, Path],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    # requests lets REQUESTS_CA_BUNDLE (set in many images) override a Session's own `verify`
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", certifi.where())
    server, cert = tls_hostile

    error, _, _ = scrape(f"{server.url}/ok", ca_file=str(cert))

    assert error is None


# -- the reader itself ---------------------------------------------------------------------------

def _body(receiver: Receiver, payload: bytes, encoding: str, limit: int = MiB, truncate: bool = False) -> bytes:
    receiver.script(Reply(200, payload, {"Content-Encoding": encoding}))
    with httpbody.session() as session, httpbody.Deadline(5) as deadline:
        response = session.get(receiver.url("/b"), stream=True, timeout=5)
        return httpbody.read_body(response, limit, deadline, truncate=truncate)


def test_gzip_deflate_and_identity_bodies_decode(receiver: Receiver) -> None:
    text = b"requests_total 1\n" * 1000
    raw_deflate = zlib.compressobj(6, zlib.DEFLATED, -zlib.MAX_WBITS)
    assert _body(receiver, gzip.compress(text), "gzip") == text
    assert _body(receiver, gzip.compress(text[:500]) + gzip.compress(text[500:]), "gzip") == text  # two members
    assert _body(receiver, zlib.compress(text), "deflate") == text
    assert _body(receiver, raw_deflate.compress(text) + raw_deflate.flush(), "deflate") == text
    assert _body(receiver, text, "identity") == text
    assert _body(receiver, gzip.compress(text), "gzip", limit=10, truncate=True) == text[:10]


def test_an_encoding_the_reader_cannot_count_is_refused(receiver: Receiver) -> None:
    with pytest.raises(httpbody.BodyError, match="unsupported Content-Encoding 'br'"):
        _body(receiver, b"\x0b\x02\x80hello\x03", "br")
    with pytest.raises(httpbody.BodyError, match="cannot be decompressed"):
        _body(receiver, b"not gzip at all", "gzip")


def test_requests_ask_only_for_encodings_the_reader_decompresses(receiver: Receiver) -> None:
    _body(receiver, b"x", "identity")
    assert receiver.requests[-1].headers["Accept-Encoding"] == "gzip, deflate"
