"""The prometheus source against a local server that answers as the HTTP API documents."""

from __future__ import annotations

import base64
import logging
import math
from pathlib import Path
from urllib.parse import parse_qs, urlsplit

import pytest

from tests.http_receiver import Receiver, Reply, Request
from tests.sources.helpers import options_from_yaml
from watchdog.errors import QueryError, SourceError
from watchdog.sources.prometheus import PrometheusOptions, PrometheusSource

pytestmark = pytest.mark.timeout(30)

NOW = 1_700_000_000.0
JSON = {"Content-Type": "application/json"}


def vector(*series: tuple[dict[str, str], str]) -> dict[str, object]:
    return {"status": "success", "data": {"resultType": "vector",
                                          "result": [{"metric": m, "value": [NOW, v]} for m, v in series]}}


def ok(doc: dict[str, object], status: int = 200) -> Reply:
    return Reply(status, doc, JSON)


def error(status: int, error_type: str, text: str) -> Reply:
    return Reply(status, {"status": "error", "errorType": error_type, "error": text}, JSON)


def source(receiver: Receiver, **options: object) -> PrometheusSource:
    options.setdefault("timeout", 2.0)
    return PrometheusSource("prom", PrometheusOptions(url=receiver.url(""), **options))  # type: ignore[arg-type]


def params(request: Request) -> dict[str, str]:
    raw = request.body.decode() if request.method == "POST" else urlsplit(request.path).query
    return {k: v[0] for k, v in parse_qs(raw).items()}


def test_an_instant_query_is_sent_at_the_tick_time_and_each_series_becomes_a_sample(receiver: Receiver) -> None:
    receiver.script(ok(vector(({"__name__": "up", "job": "model", "instance": "a:1"}, "1"),
                              ({"__name__": "up", "job": "model", "instance": "b:1"}, "0"))))

    result = source(receiver).query("up", NOW)

    [request] = receiver.requests
    assert request.method == "GET" and urlsplit(request.path).path == "/api/v1/query"
    assert params(request) == {"query": "up", "time": f"{NOW:.3f}", "timeout": "2"}
    values = {s.label("instance"): s.value for s in result.samples}
    assert values == {"a:1": 1.0, "b:1": 0.0}
    assert result.samples[0].label("job") == "model"


def test_a_long_query_is_posted_form_encoded(receiver: Receiver) -> None:
    receiver.script(ok(vector(({}, "3"))))
    long_query = "sum(" + " + ".join(f'x{{pod="p{i}"}}' for i in range(200)) + ")"

    source(receiver).query(long_query, NOW)

    [request] = receiver.requests
    assert request.method == "POST"
    assert request.headers["Content-Type"] == "application/x-www-form-urlencoded"
    assert params(request)["query"] == long_query


def test_a_base_url_that_already_names_the_api_path_is_accepted(receiver: Receiver) -> None:
    receiver.script(ok(vector(({}, "1"))))
    prom = PrometheusSource("prom", PrometheusOptions(url=receiver.url("/prom/api/v1/query")))

    prom.query("up", NOW)

    assert urlsplit(receiver.requests[0].path).path == "/prom/api/v1/query"


def test_special_values_are_floats_and_nan_is_kept_for_the_judge_to_call_no_data(receiver: Receiver) -> None:
    receiver.script(ok(vector(({"s": "nan"}, "NaN"), ({"s": "inf"}, "+Inf"), ({"s": "-inf"}, "-Inf"))))

    values = {s.label("s"): s.value for s in source(receiver).query("ratio", NOW).samples}

    assert math.isnan(values["nan"]) and values["inf"] == math.inf and values["-inf"] == -math.inf


def test_an_empty_vector_is_no_series(receiver: Receiver) -> None:
    receiver.script(ok({"status": "success", "data": {"resultType": "vector", "result": []}}))

    assert source(receiver).query("absent_metric", NOW).samples == []


def test_a_scalar_is_one_unlabelled_sample(receiver: Receiver) -> None:
    receiver.script(ok({"status": "success", "data": {"resultType": "scalar", "result": [NOW, "0.25"]}}))

    [sample] = source(receiver).query("scalar(x)", NOW).samples

    assert sample.labels == () and sample.value == 0.25


def test_a_string_result_is_a_query_error(receiver: Receiver) -> None:
    receiver.script(ok({"status": "success", "data": {"resultType": "string", "result": [NOW, "hello"]}}))

    with pytest.raises(QueryError, match="string result"):
        source(receiver).query('"hello"', NOW)


def test_a_range_vector_is_a_query_error_that_says_to_use_an_instant_vector(receiver: Receiver) -> None:
    receiver.script(ok({"status": "success", "data": {"resultType": "matrix", "result": [
        {"metric": {"__name__": "x"}, "values": [[NOW - 15, "1"], [NOW, "2"]]}]}}))

    with pytest.raises(QueryError, match="instant vector"):
        source(receiver).query("x[1m]", NOW)


def test_bad_data_is_a_query_error_with_prometheus_own_words(receiver: Receiver) -> None:
    receiver.script(error(400, "bad_data", 'invalid parameter "query": 1:5: parse error: unexpected ")"'))

    with pytest.raises(QueryError) as err:
        source(receiver).query("sum())", NOW)

    assert "Prometheus rejected the query" in str(err.value)
    assert 'unexpected ")"' in str(err.value)


@pytest.mark.parametrize("status, error_type", [
    (422, "execution"), (503, "timeout"), (499, "canceled"), (500, "internal"),
    (404, "not_found"), (406, "not_acceptable"), (500, "unavailable"),
])
def test_every_documented_error_type_is_a_source_error_of_that_kind(receiver: Receiver, status: int,
                                                                    error_type: str) -> None:
    receiver.script(error(status, error_type, f"something about {error_type}"))

    with pytest.raises(SourceError) as err:
        source(receiver).query("up", NOW)

    assert err.value.kind == error_type
    message = str(err.value)
    assert f"HTTP {status}" in message and f"something about {error_type}" in message
    assert receiver.url("/api/v1/query") in message


def test_an_unknown_error_type_is_still_reported(receiver: Receiver) -> None:
    receiver.script(error(500, "brand_new", "boom"))

    with pytest.raises(SourceError, match="boom") as err:
        source(receiver).query("up", NOW)
    assert err.value.kind == "error"


def test_an_html_page_from_a_proxy_is_a_clear_http_error(receiver: Receiver) -> None:
    receiver.script(Reply(502, "<!DOCTYPE html><html><body><h1>502 Bad Gateway</h1></body></html>",
                          {"Content-Type": "text/html"}))

    with pytest.raises(SourceError) as err:
        source(receiver).query("up", NOW)

    assert err.value.kind == "http_5xx"
    assert "HTML page" in str(err.value) and "502" in str(err.value)


def test_an_html_login_page_with_status_200_is_a_parse_error(receiver: Receiver) -> None:
    receiver.script(Reply(200, "<html><form>Sign in</form></html>", {"Content-Type": "text/html"}))

    with pytest.raises(SourceError, match="HTML page") as err:
        source(receiver).query("up", NOW)
    assert err.value.kind == "parse"


def test_plain_text_errors_keep_their_status(receiver: Receiver) -> None:
    receiver.script(Reply(503, "upstream connect error or disconnect/reset before headers", {"Content-Type": "text/plain"}))

    with pytest.raises(SourceError, match="HTTP 503: upstream connect error") as err:
        source(receiver).query("up", NOW)
    assert err.value.kind == "http_5xx"


def test_truncated_json_is_a_parse_error(receiver: Receiver) -> None:
    receiver.script(Reply(200, '{"status":"success","data":{"resultType":"vector","result":[{"metric":{},"val', JSON))

    with pytest.raises(SourceError, match="truncated") as err:
        source(receiver).query("up", NOW)
    assert err.value.kind == "parse"


@pytest.mark.parametrize("body", [
    {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [NOW, 0.5]}]}},
    {"status": "success", "data": {"resultType": "vector", "result": [{"metric": {}, "value": [NOW, "many"]}]}},
    {"status": "success", "data": {"resultType": "vector", "result": "nope"}},
    {"status": "success"},
    {"data": []},
])
def test_wrong_types_in_the_answer_are_parse_errors(receiver: Receiver, body: dict[str, object]) -> None:
    receiver.script(ok(body))

    with pytest.raises(SourceError) as err:
        source(receiver).query("up", NOW)
    assert err.value.kind == "parse"


def test_warnings_are_logged_and_kept_in_the_note(receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    doc = vector(({}, "0.5"))
    doc["warnings"] = ["PromQL info: metric might not be a counter"]
    receiver.script(ok(doc))

    with caplog.at_level(logging.WARNING):
        result = source(receiver).query("rate(x[1m])", NOW)

    assert result.samples[0].value == 0.5
    assert "might not be a counter" in result.note
    assert "might not be a counter" in caplog.text


def test_a_native_histogram_sample_is_a_query_error(receiver: Receiver) -> None:
    receiver.script(ok({"status": "success", "data": {"resultType": "vector", "result": [
        {"metric": {"__name__": "latency"}, "histogram": [NOW, {"count": "3", "sum": "1", "buckets": []}]}]}}))

    with pytest.raises(QueryError, match="histogram_quantile"):
        source(receiver).query("latency", NOW)


def test_a_slow_server_times_out(receiver: Receiver) -> None:
    receiver.script(Reply(200, vector(({}, "1")), JSON, delay=3.0))

    with pytest.raises(SourceError, match="timed out after 0.3s") as err:
        source(receiver, timeout=0.3).query("up", NOW)
    assert err.value.kind == "timeout"


def test_a_dead_server_is_a_connection_error() -> None:
    with Receiver() as gone:
        url = gone.url("")
    prom = PrometheusSource("prom", PrometheusOptions(url=url, timeout=1.0))

    with pytest.raises(SourceError, match="cannot connect") as err:
        prom.query("up", NOW)
    assert err.value.kind == "connection"


def test_bearer_token_from_a_file_is_sent_and_never_shown(receiver: Receiver, tmp_path: Path,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    (tmp_path / "token").write_text("tok-0123456789abcdef\n")
    options = options_from_yaml(PrometheusOptions, f"url: {receiver.url('')}\nbearer_token_file: token\n", tmp_path)
    receiver.script(Reply(401, "invalid token tok-0123456789abcdef", {"Content-Type": "text/plain"}))

    with caplog.at_level(logging.DEBUG), pytest.raises(SourceError) as err:
        PrometheusSource("prom", options).query("up", NOW)

    assert receiver.requests[0].headers["Authorization"] == "Bearer tok-0123456789abcdef"
    assert "tok-0123456789abcdef" not in str(err.value) and "tok-0123456789abcdef" not in caplog.text
    assert "check bearer_token" in str(err.value) and err.value.kind == "http_4xx"
    assert "tok-0123456789abcdef" not in repr(options)


def test_basic_auth_with_a_password_file(receiver: Receiver, tmp_path: Path) -> None:
    (tmp_path / "pw").write_text("s3cret-password\n")
    options = options_from_yaml(
        PrometheusOptions, f"url: {receiver.url('')}\nbasic_auth: {{username: grafana, password_file: pw}}\n", tmp_path)
    receiver.script(ok(vector(({}, "1"))))

    PrometheusSource("prom", options).query("up", NOW)

    expected = base64.b64encode(b"grafana:s3cret-password").decode()
    assert receiver.requests[0].headers["Authorization"] == f"Basic {expected}"


def test_two_ways_of_setting_authorization_are_rejected(receiver: Receiver) -> None:
    with pytest.raises(ValueError, match="only one of bearer_token, headers.Authorization"):
        source(receiver, bearer_token="abcdefgh", headers={"Authorization": "Bearer x"})


def test_queries_are_full_promql_so_only_empty_ones_are_rejected_up_front(receiver: Receiver) -> None:
    prom = source(receiver)

    prom.check_query('topk(3, sum by (pod) (rate(x[5m] offset 1h)))')  # outside our subset: fine
    with pytest.raises(QueryError, match="empty"):
        prom.check_query("  ")


def test_window_of_reads_ranges_from_any_promql(receiver: Receiver) -> None:
    prom = source(receiver)

    assert prom.window_of('sum(rate(requests_total{status="error"}[2m])) / sum(rate(requests_total[1m]))') == 120
    assert prom.window_of("max_over_time(rate(x[1m])[30m:1m])") == 1800  # a subquery
    assert prom.window_of('topk(1, rate(x{path="/a[5m]"}[5m] offset 1h))') == 3900
    assert prom.window_of("up") == 0
