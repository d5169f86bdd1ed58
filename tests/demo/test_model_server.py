"""The simulated model server: exposition, traffic ratios, control API, faults, subprocess form."""

from __future__ import annotations

import math
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from prometheus_client.parser import text_string_to_metric_families

from watchdog.demo.model_server import Mode, SimulatedModelServer

REPO = Path(__file__).resolve().parents[2]
Series = dict[tuple[str, tuple[tuple[str, str], ...]], float]


@pytest.fixture
def server() -> Iterator[SimulatedModelServer]:
    # A high rate gives thousands of requests per second, so ratios settle without long sleeps.
    with SimulatedModelServer(rps=2000) as model:
        yield model


def parse(text: str) -> Series:
    return {
        (sample.name, tuple(sorted(sample.labels.items()))): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def scrape(model: SimulatedModelServer) -> Series:
    response = requests.get(model.url + "/metrics", timeout=5)
    response.raise_for_status()
    return parse(response.text)


def requests_by_status(series: Series) -> tuple[float, float]:
    return series[("requests_total", (("status", "ok"),))], series[("requests_total", (("status", "error"),))]


def p99(series: Series) -> float:
    """histogram_quantile(0.99, ...) as Prometheus interpolates it, over cumulative counts."""
    buckets = sorted(
        (float(dict(labels)["le"]), value)
        for (name, labels), value in series.items()
        if name == "request_latency_seconds_bucket"
    )
    rank = 0.99 * buckets[-1][1]
    lower, below = 0.0, 0.0
    for upper, count in buckets:
        if count >= rank:
            return lower + (upper - lower) * (rank - below) / (count - below)
        lower, below = upper, count
    raise AssertionError("no bucket reached the rank")


def post(model: SimulatedModelServer, path: str, body: object, **headers: str) -> requests.Response:
    return requests.post(model.url + path, json=body, headers=headers, timeout=5)


def test_metrics_are_prometheus_text_without_created_series(server: SimulatedModelServer) -> None:
    time.sleep(0.3)
    response = requests.get(server.url + "/metrics", timeout=5)
    assert response.headers["Content-Type"] == "text/plain; version=0.0.4; charset=utf-8"
    assert "_created" not in response.text
    families = {family.name: family for family in text_string_to_metric_families(response.text)}
    assert {name: family.type for name, family in families.items()} == {
        "requests": "counter",
        "request_latency_seconds": "histogram",
        "model_accuracy": "gauge",
        "model_info": "gauge",
    }
    series = parse(response.text)
    inf_bucket = series[("request_latency_seconds_bucket", (("le", "+Inf"),))]
    assert inf_bucket == series[("request_latency_seconds_count", ())]
    assert series[("request_latency_seconds_count", ())] == sum(requests_by_status(series)) > 0
    assert series[("model_info", (("version", "v2"),))] == 1
    assert series[("model_accuracy", ())] == pytest.approx(0.95, abs=0.005)


def test_histogram_buckets_are_the_documented_ones(server: SimulatedModelServer) -> None:
    les = [dict(labels)["le"] for name, labels in scrape(server) if name == "request_latency_seconds_bucket"]
    assert [float(le) for le in les] == [0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, math.inf]


def test_ticks_apportion_errors_exactly_without_a_running_server() -> None:
    model = SimulatedModelServer(rps=200)
    for _ in range(100):  # 10 simulated seconds
        model.tick()
    ok, errors = requests_by_status(parse(model.metrics_text().decode()))
    assert (ok, errors) == (1980, 20)


def test_degraded_error_percent_sets_the_errors_of_degraded_traffic_only() -> None:
    # issue 13's standard latency scenario degrades to 30 % errors (the demo's own profile is 20 %)
    model = SimulatedModelServer(rps=200, degraded_error_percent=30)
    for _ in range(10):
        model.tick()
    assert requests_by_status(parse(model.metrics_text().decode())) == (198, 2)
    model.set_mode("degraded")
    for _ in range(100):
        model.tick()
    ok, errors = requests_by_status(parse(model.metrics_text().decode()))
    assert (ok - 198, errors - 2) == (1400, 600)
    with pytest.raises(ValueError, match="0..100"):
        SimulatedModelServer(degraded_error_percent=130)


def test_fractional_rates_still_add_whole_requests() -> None:
    model = SimulatedModelServer(rps=3)
    for _ in range(10):
        model.tick()
    assert sum(requests_by_status(parse(model.metrics_text().decode()))) == 3


@pytest.mark.parametrize(
    ("mode", "error_ratio", "p99_range", "accuracy"),
    [("healthy", 0.01, (0.05, 0.2), 0.95), ("degraded", 0.20, (0.7, 0.9), 0.80)],
)
def test_mode_sets_error_ratio_latency_and_accuracy(
    server: SimulatedModelServer, mode: str, error_ratio: float, p99_range: tuple[float, float], accuracy: float
) -> None:
    assert post(server, "/control", {"mode": mode}).json()["mode"] == mode
    before = scrape(server)
    time.sleep(1.5)
    after = scrape(server)
    ok = requests_by_status(after)[0] - requests_by_status(before)[0]
    errors = requests_by_status(after)[1] - requests_by_status(before)[1]
    assert ok + errors >= 2000
    assert errors / (ok + errors) == pytest.approx(error_ratio, abs=0.002)
    # Measured over the window only, as rate() would, so earlier traffic does not dilute it.
    window = {key: after[key] - before.get(key, 0.0) for key in after}
    assert p99_range[0] < p99(window) < p99_range[1]
    assert after[("model_accuracy", ())] == pytest.approx(accuracy, abs=0.005)


def test_rollback_switches_version_once_per_idempotency_key(server: SimulatedModelServer) -> None:
    post(server, "/control", {"mode": "degraded"})
    body = {"decision_id": "d-1", "previous_version": "v1", "rule": "error-ratio"}
    first = post(server, "/rollback", body, **{"Idempotency-Key": "k-1"})
    assert first.status_code == 200
    assert first.json() == {"effective": True, "version": "v1", "mode": "healthy"}

    assert post(server, "/deploy", {"version": "v3"}).json()["version"] == "v3"
    repeat = post(server, "/rollback", body, **{"Idempotency-Key": "k-1"})
    assert repeat.status_code == 200
    assert repeat.json()["effective"] is False
    assert requests.get(server.url + "/control", timeout=5).json()["version"] == "v3"

    calls = requests.get(server.url + "/rollbacks", timeout=5).json()
    assert [(c["idempotency_key"], c["effective"], c["body"]["decision_id"]) for c in calls] == [
        ("k-1", True, "d-1"),
        ("k-1", False, "d-1"),
    ]
    assert all(c["at"].endswith("Z") for c in calls)
    assert scrape(server)[("model_info", (("version", "v3"),))] == 1


def test_rollback_without_previous_version_uses_the_last_known_one(server: SimulatedModelServer) -> None:
    post(server, "/deploy", {"version": "v3"})
    body = {"decision_id": "d-2", "previous_version": None}
    answer = post(server, "/rollback", body, **{"Idempotency-Key": "k-2"})
    assert answer.json()["version"] == "v2"


def test_rollback_accepts_put_like_a_webhook_configured_with_method_put(server: SimulatedModelServer) -> None:
    answer = requests.put(
        server.url + "/rollback",
        json={"decision_id": "d-4", "previous_version": "v1"},
        headers={"Idempotency-Key": "d-4"},
        timeout=5,
    )
    assert answer.json()["effective"] is True
    assert server.version == "v1"


def test_rollback_without_any_key_is_refused(server: SimulatedModelServer) -> None:
    answer = post(server, "/rollback", {"previous_version": "v1"})
    assert answer.status_code == 400
    assert server.version == "v2"
    assert server.rollbacks() == []


def test_delayed_rollback_has_taken_effect_before_it_answers(server: SimulatedModelServer) -> None:
    assert post(server, "/control", {"rollback_delay": 2}).json()["rollback_delay"] == 2.0
    with pytest.raises(requests.exceptions.ReadTimeout):
        requests.post(
            server.url + "/rollback",
            json={"decision_id": "d-3", "previous_version": "v1"},
            headers={"Idempotency-Key": "k-3"},
            timeout=0.3,
        )
    assert server.version == "v1"


def test_control_rejects_unknown_modes_and_keys(server: SimulatedModelServer) -> None:
    assert post(server, "/control", {"mode": "sideways"}).status_code == 400
    assert post(server, "/control", {"mode": "healthy", "treshold": 1}).status_code == 400
    assert requests.get(server.url + "/control", timeout=5).json() == {
        "mode": "healthy",
        "version": "v2",
        "previous_versions": ["v1"],
        "rollback_delay": 0.0,
    }
    assert requests.get(server.url + "/nowhere", timeout=5).status_code == 404


def test_reset_counters_starts_the_counters_again(server: SimulatedModelServer) -> None:
    time.sleep(0.5)
    before = sum(requests_by_status(scrape(server)))
    post(server, "/control", {"reset_counters": True})
    assert sum(requests_by_status(scrape(server))) < before


def test_html_mode_answers_503_with_an_html_page(server: SimulatedModelServer) -> None:
    server.set_mode(Mode.HTML)
    response = requests.get(server.url + "/metrics", timeout=5)
    assert response.status_code == 503
    assert response.headers["Content-Type"].startswith("text/html")
    assert "<html>" in response.text


def test_garbage_mode_answers_200_that_no_parser_accepts(server: SimulatedModelServer) -> None:
    server.set_mode("garbage")
    for _ in range(20):
        response = requests.get(server.url + "/metrics", timeout=5)
        assert response.status_code == 200
        with pytest.raises(ValueError):
            list(text_string_to_metric_families(response.text))


def test_down_mode_closes_the_connection_but_control_still_answers(server: SimulatedModelServer) -> None:
    post(server, "/control", {"mode": "down"})
    with pytest.raises(requests.exceptions.ConnectionError):
        requests.get(server.url + "/metrics", timeout=5)
    post(server, "/control", {"mode": "healthy"})
    assert scrape(server)


def test_nan_mode_reports_nan_accuracy_and_freezes_counters(server: SimulatedModelServer) -> None:
    post(server, "/control", {"mode": "nan"})
    before = scrape(server)
    time.sleep(0.4)
    after = scrape(server)
    assert math.isnan(after[("model_accuracy", ())])
    assert requests_by_status(after) == requests_by_status(before)


def test_slow_mode_delays_metrics_and_stop_does_not_wait_for_it() -> None:
    model = SimulatedModelServer(mode="slow").start()
    try:
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.get(model.url + "/metrics", timeout=0.5)
    finally:
        started = time.monotonic()
        model.stop()
    assert time.monotonic() - started < 3


def test_scrape_fault_modes_keep_the_traffic_profile(server: SimulatedModelServer) -> None:
    server.set_mode("degraded")
    server.set_mode("html")
    before = server.metrics_text().decode()
    time.sleep(1.0)
    after = server.metrics_text().decode()
    ok = requests_by_status(parse(after))[0] - requests_by_status(parse(before))[0]
    errors = requests_by_status(parse(after))[1] - requests_by_status(parse(before))[1]
    assert errors / (ok + errors) == pytest.approx(0.20, abs=0.005)


@pytest.mark.timeout(60)
@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT])
def test_module_runs_as_a_process_and_exits_0_on_signal(signum: signal.Signals) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "watchdog.demo.model_server", "--port", "0", "--version", "v7", "--mode", "degraded"],
        cwd=REPO,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        line = process.stdout.readline()
        assert line.startswith("listening on http://127.0.0.1:")
        url = line.split()[-1]
        assert requests.get(url + "/control", timeout=5).json()["mode"] == "degraded"
        assert ("model_info", (("version", "v7"),)) in parse(requests.get(url + "/metrics", timeout=5).text)
        process.send_signal(signum)
        assert process.wait(timeout=10) == 0, process.stderr.read() if process.stderr else ""
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
