"""series_limit, sample_limit and value_limit of the prometheus and http_json sources: an answer
over a cap is no data (a SourceError naming the cap), refused before it is built, so a hostile
answer costs about its body and not ten times more."""

from __future__ import annotations

import json
import tracemalloc

import pytest

from tests.http_receiver import Receiver, Reply
from watchdog.errors import SourceError
from watchdog.http import fetch as httpfetch
from watchdog.sources import jsonlimits
from watchdog.sources.http_json import HttpJsonOptions, HttpJsonSource
from watchdog.sources.prometheus import PrometheusOptions, PrometheusSource

pytestmark = pytest.mark.timeout(60)

NOW = 1_700_000_000.0
JSON = {"Content-Type": "application/json"}
MiB = 1024 * 1024


def prometheus(receiver: Receiver, **options: object) -> PrometheusSource:
    return PrometheusSource("prom", PrometheusOptions(url=receiver.url(""), timeout=5.0, retries=0,
                                                      **options))  # type: ignore[arg-type]


def http_json(receiver: Receiver, **options: object) -> HttpJsonSource:
    return HttpJsonSource("stats", HttpJsonOptions(url=receiver.url("/stats"), timeout=5.0, retries=0,
                                                   **options))  # type: ignore[arg-type]


def vector_body(series: int, labels: int = 1, pad: int = 0) -> bytes:
    """`series` series of `labels` labels, each value `pad` characters longer than needed."""
    result = [{"metric": {f"l{j}": f"{i}-{j}" + "x" * pad for j in range(labels)}, "value": [NOW, "1"]}
              for i in range(series)]
    return json.dumps({"status": "success", "data": {"resultType": "vector", "result": result}}).encode()


def tiny_series(size: int) -> bytes:
    """A vector answer of `size` bytes made of the smallest series there are (the hostile case)."""
    item = b'{"metric":{},"value":[1,"1"]},'
    count = size // len(item)
    return b'{"status":"success","data":{"resultType":"vector","result":[' + item * (count - 1) + item[:-1] + b"]}}"


@pytest.mark.parametrize("big", [False, True], ids=["decoded-then-counted", "counted-before-decoding"])
def test_a_prometheus_answer_over_series_limit_is_no_data_naming_the_cap(receiver: Receiver, big: bool) -> None:
    body = vector_body(4) if not big else tiny_series(2 * MiB)
    receiver.script(Reply(200, body, JSON))
    prom = prometheus(receiver, series_limit=3)

    with pytest.raises(SourceError) as refused:
        prom.query("up", NOW)

    assert refused.value.kind == "series_limit"
    assert "more than 3 series" in str(refused.value) and "series_limit" in str(refused.value)
    health = prom.health()
    assert not health.up and "series_limit" in health.last_error


def test_a_prometheus_answer_within_its_caps_is_read_whole(receiver: Receiver) -> None:
    large = vector_body(1000, labels=4, pad=300)  # over 1 MiB: counted before it is decoded
    assert len(large) > jsonlimits.SMALL
    receiver.script(Reply(200, vector_body(3, labels=4), JSON), Reply(200, large, JSON))
    prom = prometheus(receiver, series_limit=3)

    assert len(prom.query("up", NOW).samples) == 3
    assert len(prometheus(receiver, series_limit=1000).query("up", NOW).samples) == 1000


@pytest.mark.parametrize("big", [False, True], ids=["small", "large"])
def test_a_query_range_answer_over_sample_limit_is_refused(receiver: Receiver, big: bool) -> None:
    steps = 5 if not big else 80_000
    values = [[NOW + i, "1"] for i in range(steps)]
    doc = {"status": "success", "data": {"resultType": "matrix", "result": [{"metric": {"a": "1"}, "values": values}]}}
    receiver.script(Reply(200, json.dumps(doc).encode(), JSON))

    with pytest.raises(SourceError) as refused:
        prometheus(receiver, sample_limit=4).query_range("up", NOW, NOW + steps, 1.0)

    assert refused.value.kind == "sample_limit" and "more than 4 samples" in str(refused.value)


@pytest.mark.parametrize("big", [False, True], ids=["small", "large"])
def test_a_series_with_too_many_labels_is_refused(receiver: Receiver, big: bool) -> None:
    body = vector_body(1, labels=jsonlimits.LABEL_LIMIT + 1, pad=0 if not big else 20_000)
    receiver.script(Reply(200, body, JSON))

    with pytest.raises(SourceError) as refused:
        prometheus(receiver, series_limit=0).query("up", NOW)

    assert refused.value.kind == "label_limit"


def test_a_large_prometheus_answer_nested_inside_a_series_is_refused_before_it_is_built() -> None:
    pad = b"0," * MiB
    body = (b'{"status":"success","data":{"resultType":"vector","result":[{"metric":{"a":"b"},'
            b'"value":[1,"1",' + pad + b'0]}]}}')
    with pytest.raises(SourceError) as refused:
        jsonlimits.load_prometheus(httpfetch.Fetched(200, JSON, body), "prom", jsonlimits.PrometheusCaps(0, 0))
    assert refused.value.kind == "parse" and "[timestamp" in str(refused.value)


def peak_of(call, *args) -> int:  # type: ignore[no-untyped-def]
    tracemalloc.start()
    try:
        base = tracemalloc.get_traced_memory()[0]
        try:
            call(*args)
        except SourceError:
            pass
        return tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()


def test_a_hostile_prometheus_answer_costs_about_its_body_not_ten_times_more() -> None:
    """8 MiB of the smallest series: json.loads alone built ~120 MB of objects (about 500 MB for
    32 MiB); counted first, the answer is refused having built nothing."""
    prom = PrometheusSource("prom", PrometheusOptions(url="http://127.0.0.1:1"))
    hostile = httpfetch.Fetched(200, JSON, tiny_series(8 * MiB))

    assert peak_of(prom._result, hostile, "up") < 8 * MiB


def test_a_hostile_http_json_answer_over_value_limit_is_no_data(receiver: Receiver) -> None:
    body = b"[" + b"0," * (4 * MiB) + b"0]"
    receiver.script(Reply(200, body, JSON), Reply(200, b"[1,2,3,4,5,6]", JSON))
    stats = http_json(receiver)

    with pytest.raises(SourceError) as refused:
        stats.query("[0]", NOW)
    assert refused.value.kind == "value_limit" and "value_limit" in stats.health().last_error

    small = http_json(receiver, value_limit=5)
    with pytest.raises(SourceError) as refused:
        small.query("[0]", NOW)
    assert refused.value.kind == "value_limit" and "more than 5 JSON values" in str(refused.value)
    assert peak_of(jsonlimits.load_values, httpfetch.Fetched(200, JSON, body), "x", 1000) < 8 * MiB


def test_an_http_json_rule_over_series_limit_is_no_data(receiver: Receiver) -> None:
    doc = {"models": [{"name": f"m{i}", "value": i} for i in range(5)]}
    receiver.script(Reply(200, doc, JSON), Reply(200, doc, JSON))

    with pytest.raises(SourceError) as refused:
        http_json(receiver, series_limit=4).query("models", NOW)
    assert refused.value.kind == "series_limit"
    assert len(http_json(receiver, series_limit=5).query("models", NOW).samples) == 5


def test_negative_caps_are_refused() -> None:
    with pytest.raises(ValueError, match="series_limit"):
        PrometheusSource("p", PrometheusOptions(url="http://127.0.0.1:1", series_limit=-1))
    with pytest.raises(ValueError, match="value_limit"):
        HttpJsonSource("h", HttpJsonOptions(url="http://127.0.0.1:1", value_limit=-1))


def test_a_large_body_that_is_not_json_is_a_parse_error_without_being_built() -> None:
    body = b"[" + (b'"' + b"x" * 1000 + b'",') * 1100 + b"nope]"  # over 1 MiB, 1,100 values
    with pytest.raises(SourceError) as refused:
        jsonlimits.load_values(httpfetch.Fetched(200, JSON, body), "x", 10 * MiB)
    assert refused.value.kind == "parse" and "invalid JSON" in str(refused.value)


def test_a_list_where_a_series_has_its_labels_is_counted_too() -> None:
    pad = b"0," * MiB
    body = (b'{"status":"success","data":{"resultType":"vector","result":[{"metric":[' + pad + b'0],'
            b'"value":[1,"1"]}]}}')
    with pytest.raises(SourceError) as refused:
        jsonlimits.load_prometheus(httpfetch.Fetched(200, JSON, body), "prom", jsonlimits.PrometheusCaps(0, 0))
    assert refused.value.kind == "label_limit"


def test_an_answer_over_the_cap_is_no_data_for_the_rule_never_a_breach(tmp_path, receiver: Receiver) -> None:
    """Four series, each far over the threshold: read, they would roll back after `for`;
    over series_limit 3, the rule has no data (alerted as such) and nothing is rolled back."""
    from tests.fixtures.rules import ERROR_RULE
    from tests.harness import Harness
    from watchdog.engine import Engine

    receiver.default = Reply(200, vector_body(4), JSON)
    h = Harness(tmp_path, ERROR_RULE)
    prom = prometheus(receiver, series_limit=3)
    h.engine = Engine(h.loaded, h.store, {"model": prom}, h.executor, h.notifier, h.metrics, clock=h.clock)
    h.run_for(120)
    assert h.rollbacks() == 0
    [no_data] = h.alerts(kind="no_data")
    assert no_data.status == "firing"
    assert "series_limit" in prom.health().last_error
    prom.close()
