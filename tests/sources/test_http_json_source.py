"""The http_json source: one fetch per tick, JMESPath over the document, clear errors."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from tests.http_receiver import Receiver, Reply
from tests.sources.helpers import options_from_yaml
from watchdog.errors import QueryError, SourceError
from watchdog.sources.http_json import HttpJsonOptions, HttpJsonSource

pytestmark = pytest.mark.timeout(30)

NOW = 1_700_000_000.0
JSON = {"Content-Type": "application/json"}
STATS = {
    "service": "fraud",
    "error_rate": 0.012,
    "latency": {"p50": 0.04, "p99": 0.21},
    "models": [
        {"name": "fraud", "version": "v7", "value": 0.93, "samples": 1200, "tags": ["a"]},
        {"name": "churn", "version": "v2", "value": None, "samples": 0},
    ],
    "status": "green",
    "shards": [0.1, 0.2],
}


def source(receiver: Receiver, **options: object) -> HttpJsonSource:
    options.setdefault("timeout", 2.0)
    options.setdefault("retries", 0)
    return HttpJsonSource("stats", HttpJsonOptions(url=receiver.url("/stats"), **options))  # type: ignore[arg-type]


def test_a_number_is_one_unlabelled_series(receiver: Receiver) -> None:
    receiver.script(Reply(200, STATS, JSON))

    [sample] = source(receiver).query("error_rate", NOW).samples

    assert sample.labels == () and sample.value == 0.012


def test_nested_expressions_and_a_filter_that_yields_one_number(receiver: Receiver) -> None:
    receiver.script(Reply(200, STATS, JSON))
    stats = source(receiver)
    stats.begin_tick(NOW)

    assert stats.query("latency.p99", NOW).samples[0].value == 0.21
    assert stats.query("models[?name=='fraud'].value", NOW).samples[0].value == 0.93
    assert stats.query("max(shards)", NOW).samples[0].value == 0.2
    assert len(receiver.requests) == 1  # fetched once per tick, however many rules ask


def test_a_list_of_objects_is_one_series_each_with_scalar_fields_as_labels(receiver: Receiver) -> None:
    receiver.script(Reply(200, STATS, JSON))

    result = source(receiver).query("models", NOW)

    by_name = {s.label("name"): s for s in result.samples}
    assert by_name["fraud"].value == 0.93 and by_name["fraud"].label("version") == "v7"
    assert by_name["fraud"].label("tags") is None  # lists are not labels
    assert math.isnan(by_name["churn"].value)  # null: no data for that series
    assert result.counts == {by_name["fraud"].labels: 1200.0, by_name["churn"].labels: 0.0}


def test_a_projection_builds_the_objects(receiver: Receiver) -> None:
    receiver.script(Reply(200, STATS, JSON))

    result = source(receiver).query("models[*].{model: name, value: samples}", NOW)

    assert {s.label("model"): s.value for s in result.samples} == {"fraud": 1200.0, "churn": 0.0}


def test_the_next_tick_fetches_again(receiver: Receiver) -> None:
    receiver.script(Reply(200, {"x": 1}, JSON), Reply(200, {"x": 2}, JSON))
    stats = source(receiver)

    stats.begin_tick(NOW)
    first = stats.query("x", NOW).samples[0].value
    stats.begin_tick(NOW + 15)
    second = stats.query("x", NOW + 15).samples[0].value

    assert (first, second) == (1, 2)


def test_a_query_for_an_earlier_time_is_refused_rather_than_answered_with_todays_document(receiver: Receiver) -> None:
    receiver.script(Reply(200, STATS, JSON))
    stats = source(receiver)
    stats.begin_tick(NOW)

    assert stats.query("error_rate", NOW + 0.5).samples[0].value == 0.012  # the same tick, a moment later
    with pytest.raises(QueryError, match="cannot answer for an earlier time"):
        stats.query("error_rate", NOW - 3600)


def test_null_and_empty_results_are_no_series(receiver: Receiver) -> None:
    receiver.script(Reply(200, STATS, JSON))
    stats = source(receiver)

    missing = stats.query("no_such_field", NOW)
    assert missing.samples == [] and "null" in missing.note
    assert stats.query("models[?name=='nope']", NOW).samples == []


@pytest.mark.parametrize("query, expected", [
    ("status", "gave a string \"green\""),
    ("shards", "2 numbers, which is ambiguous"),
    ("latency", "no \"value\" field (fields: p50, p99)"),
    ("models[*].name", "gave a string"),
    ("[error_rate, status]", "gave a number 0.012, expected an object"),
])
def test_wrong_types_are_source_errors_that_say_what_was_found(receiver: Receiver, query: str, expected: str) -> None:
    receiver.script(Reply(200, STATS, JSON))

    with pytest.raises(SourceError) as err:
        source(receiver).query(query, NOW)

    assert expected in str(err.value)
    assert err.value.kind == "type"
    assert receiver.url("/stats") in str(err.value)


def test_a_string_value_of_an_object_is_an_error(receiver: Receiver) -> None:
    receiver.script(Reply(200, {"items": [{"name": "a", "value": "0.5"}]}, JSON))

    with pytest.raises(SourceError, match='gave a string "0.5", expected a number in "value" of item 0'):
        source(receiver).query("items", NOW)


def test_truncated_json_is_a_parse_error(receiver: Receiver) -> None:
    receiver.script(Reply(200, json.dumps(STATS)[:40], JSON))

    with pytest.raises(SourceError, match="truncated") as err:
        source(receiver).query("error_rate", NOW)
    assert err.value.kind == "parse"


def test_an_html_error_page_is_a_clear_error(receiver: Receiver) -> None:
    receiver.script(Reply(503, "<!DOCTYPE html><html><title>Service Unavailable</title></html>",
                          {"Content-Type": "text/html"}))

    with pytest.raises(SourceError, match="HTML page instead of JSON") as err:
        source(receiver).query("error_rate", NOW)
    assert err.value.kind == "http_5xx"


def test_a_json_error_status_is_an_http_error(receiver: Receiver) -> None:
    receiver.script(Reply(404, {"error": "no such model"}, JSON))

    with pytest.raises(SourceError, match="HTTP 404: .*no such model") as err:
        source(receiver).query("error_rate", NOW)
    assert err.value.kind == "http_4xx"


def test_a_slow_endpoint_times_out_and_the_failure_is_shared_by_the_tick(receiver: Receiver) -> None:
    receiver.script(Reply(200, STATS, JSON, delay=3.0))
    stats = source(receiver, timeout=0.3)
    stats.begin_tick(NOW)

    with pytest.raises(SourceError, match="timed out after 0.3s") as err:
        stats.query("error_rate", NOW)
    assert err.value.kind == "timeout"
    with pytest.raises(SourceError, match="this tick's fetch"):
        stats.query("latency.p99", NOW)  # a different rule: fails fast, no second wait
    assert len(receiver.requests) == 1


def test_the_same_query_asking_again_in_the_tick_is_a_retry_and_fetches_again(receiver: Receiver) -> None:
    receiver.script(Reply(502, "bad gateway"), Reply(200, STATS, JSON))
    stats = source(receiver)
    stats.begin_tick(NOW)

    with pytest.raises(SourceError):
        stats.query("error_rate", NOW)
    assert stats.query("error_rate", NOW).samples[0].value == 0.012


def test_post_with_a_yaml_body_and_a_bearer_token_from_a_file(receiver: Receiver, tmp_path: Path) -> None:
    (tmp_path / "token").write_text("json-token-0123456789")
    options = options_from_yaml(HttpJsonOptions, f"""
url: {receiver.url('/query')}
method: POST
body: {{model: fraud, window: 5m}}
bearer_token_file: token
""", tmp_path)
    receiver.script(Reply(200, {"value": 3}, JSON))

    assert HttpJsonSource("stats", options).query("value", NOW).samples[0].value == 3

    [request] = receiver.requests
    assert request.method == "POST" and request.json == {"model": "fraud", "window": "5m"}
    assert request.headers["Authorization"] == "Bearer json-token-0123456789"
    assert request.headers["Content-Type"] == "application/json"


def test_invalid_jmespath_is_rejected_up_front_with_its_position(receiver: Receiver) -> None:
    stats = source(receiver)

    with pytest.raises(QueryError) as err:
        stats.check_query("models[?name=='fraud'.value")
    assert "invalid JMESPath" in err.value.message and err.value.position is not None
    with pytest.raises(QueryError, match="empty"):
        stats.check_query("")
    stats.check_query("models[?name=='fraud'] | [0].value")


def test_a_body_needs_post() -> None:
    with pytest.raises(ValueError, match="POST"):
        HttpJsonSource("s", HttpJsonOptions(url="http://127.0.0.1:1/x", body='{"a": 1}'))  # type: ignore[arg-type]
