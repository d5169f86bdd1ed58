"""A scraped page: UTF-8 whatever the charset, `sample_limit` while parsing, malformed pages refused."""

from __future__ import annotations

import time
import tracemalloc
from typing import Iterator

import pytest

from tests.security.hostile_server import HostileServer
from watchdog.sources.exposition import PageError, samples
from watchdog.sources.scrape import ScrapeOptions, ScrapeSource

pytestmark = pytest.mark.timeout(60)

T0 = 1_700_000_000.0
PAGE = """\
# HELP requests_total Requests.
# TYPE requests_total counter
requests_total{status="ok"} 10
requests_total{status="error"} 1
# TYPE latency_seconds histogram
latency_seconds_bucket{le="0.1"} 3
latency_seconds_bucket{le="+Inf"} 4
latency_seconds_count 4
latency_seconds_sum -0.5
# TYPE temperature gauge
temperature -12
"""


def values(body: str, limit: int = 0) -> dict[str, float]:
    out = {}
    for s in samples(body.encode(), limit):
        labels = ",".join(f"{k}={v}" for k, v in s.labels if k != "__name__")
        out[f"{s.label('__name__')}{{{labels}}}"] = s.value
    return out


def test_an_ordinary_page_parses_and_negative_gauges_and_sums_are_fine() -> None:
    got = values(PAGE)

    assert got["requests_total{status=error}"] == 1 and got["temperature{}"] == -12
    assert got["latency_seconds_sum{}"] == -0.5


@pytest.mark.parametrize(("page", "words"), [
    ('# TYPE e counter\ne_total{code="500"} -1e9\n', 'counter e_total{code="500"} is negative (-1e+09)'),
    ("# TYPE h histogram\nh_bucket{le=\"+Inf\"} -1\nh_count 1\nh_sum 1\n", 'counter h_bucket{le="+Inf"} is negative'),
    ("# TYPE s summary\ns_count -3\ns_sum 1\n", "counter s_count is negative"),
    ("errors_total -2\n", "counter errors_total is negative"),  # untyped, named like a counter
])
def test_a_negative_counter_is_a_malformed_page_not_a_reset(page: str, words: str) -> None:
    with pytest.raises(PageError) as err:
        samples(page.encode(), 0)

    assert err.value.kind == "malformed" and words in str(err.value)
    assert "not a counter reset" in str(err.value)


def test_the_same_series_twice_is_a_malformed_page() -> None:
    page = PAGE + 'requests_total{status="ok"} 11\n'

    with pytest.raises(PageError) as err:
        samples(page.encode(), 0)

    assert err.value.kind == "malformed"
    assert 'series requests_total{status="ok"} appears twice' in str(err.value)


def test_the_same_name_with_other_labels_is_fine() -> None:
    assert len(values('a{x="1"} 1\na{x="2"} 1\na 1\n')) == 3


def test_sample_limit_counts_samples_not_comments_and_fails_one_past_it() -> None:
    assert len(samples(PAGE.encode(), 7)) == 7  # 7 samples, 5 comment lines

    with pytest.raises(PageError) as err:
        samples(PAGE.encode(), 6)

    assert err.value.kind == "sample_limit"
    assert "sample limit exceeded: the page has more than 6 samples" in str(err.value)


def test_a_million_series_fail_fast_without_being_built() -> None:
    body = b"# TYPE many gauge\n" + b"".join(b'many{i="%d"} 1\n' % i for i in range(1_000_000))
    tracemalloc.start()
    started = time.process_time()  # this process's CPU: the parser's own work, not the machine's load
    try:
        with pytest.raises(PageError, match="sample limit exceeded"):
            samples(body, 50_000)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert time.process_time() - started < 10
    assert peak < 150 * 1024 * 1024  # 50,000 samples, not 1,000,000 (about 1 GB in the old parser)


def test_the_page_is_utf8_and_invalid_utf8_is_a_parse_error() -> None:
    assert values('probe{name="üñí"} 1\n') == {"probe{name=üñí}": 1.0}

    with pytest.raises(PageError) as err:
        samples(b'probe{name="\xff"} 1\n', 0)

    assert err.value.kind == "parse" and "not UTF-8 (line 1" in str(err.value)


# -- through the scrape source ---------------------------------------------------------------

@pytest.fixture(scope="module")
def hostile() -> Iterator[HostileServer]:
    with HostileServer() as server:
        yield server


def test_a_page_without_charset_is_read_as_utf8(hostile: HostileServer) -> None:
    source = ScrapeSource("model", ScrapeOptions(url=f"{hostile.url}/utf8"))

    assert source.begin_tick(T0) is None
    assert [s.label("name") for s in source.query("label_probe", T0).samples] == ["üñí"]


def test_the_default_sample_limit_of_50000_fails_the_whole_scrape(hostile: HostileServer) -> None:
    source = ScrapeSource("model", ScrapeOptions(url=f"{hostile.url}/series", timeout=20.0))

    error = source.begin_tick(T0)

    assert error is not None and error.kind == "sample_limit"
    assert "sample limit exceeded: the page has more than 50000 samples" in str(error)
    assert source.query("many", T0).samples == [] and source.query("up", T0).samples[0].value == 0


@pytest.mark.parametrize(("page", "kind"), [("counter", "malformed"), ("duplicate", "malformed")])
def test_a_malformed_page_fails_the_scrape_as_no_data(hostile: HostileServer, page: str, kind: str) -> None:
    source = ScrapeSource("model", ScrapeOptions(url=f"{hostile.url}/{page}"))
    if page == "counter":
        hostile._served = 0  # the next page is the one with -1e9

    error = source.begin_tick(T0)

    assert error is not None and error.kind == kind, error
    result = source.query('requests_total{status="error"}', T0)
    assert result.samples == [] and "malformed page" in result.note


def test_sample_limit_0_means_no_limit_and_negative_is_refused() -> None:
    assert ScrapeOptions(url="http://x/", sample_limit=0).sample_limit == 0
    with pytest.raises(ValueError, match="sample_limit must not be negative"):
        ScrapeSource("m", ScrapeOptions(url="http://127.0.0.1:9/", sample_limit=-1))
