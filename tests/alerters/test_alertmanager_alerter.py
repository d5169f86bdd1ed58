"""The `alertmanager` alerter against a REAL Prometheus Alertmanager (Debian's package, API v2).

What the server does is Alertmanager's own behaviour (prometheus/alertmanager api/v2/api.go,
alert/alert.go; summarised in the project's verified API notes, section 9): `POST
/api/v2/alerts` answers 200 with an empty body, or 400 with a message when an alert is invalid;
an alert is identified by its label set; one whose `endsAt` has passed is resolved, and
`GET /api/v2/alerts` no longer lists it (its filter drops ended alerts, active or not).
"""

from __future__ import annotations

import threading
import time
from datetime import datetime, timezone
from typing import Any, Iterator

import pytest
import requests

from tests.alerters.alerts import make_alert
from tests.servers import AlertmanagerServer, free_port, start_alertmanager
from watchdog.alerters.alertmanager import AlertmanagerAlerter, label_name
from watchdog.errors import AlerterError

pytestmark = [pytest.mark.timeout(60), pytest.mark.integration]


@pytest.fixture(scope="module")
def alertmanager() -> Iterator[AlertmanagerServer]:
    server = start_alertmanager()
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(f"{server.url}/-/ready", timeout=1).status_code == 200:
                    break
            except requests.RequestException:
                pass
            if time.monotonic() > deadline:
                raise RuntimeError("alertmanager did not become ready within 30s")
            time.sleep(0.1)
        yield server
    finally:
        server.stop()


def listed(server: AlertmanagerServer, alertname: str, **params: str) -> list[dict[str, Any]]:
    answer = requests.get(f"{server.url}/api/v2/alerts", params={"filter": f'alertname="{alertname}"', **params},
                          timeout=5)
    answer.raise_for_status()
    return answer.json()


def make_alerter(server: AlertmanagerServer, **options: object) -> AlertmanagerAlerter:
    options.setdefault("backoff", 0.01)
    return AlertmanagerAlerter("am", AlertmanagerAlerter.Options(url=server.url, **options))


def test_firing_alert_is_listed_with_our_labels_and_annotations(alertmanager: AlertmanagerServer) -> None:
    alerter = make_alerter(alertmanager, labels={"team": "ml"}, generator_url="http://watchdog.example:8080/status")
    alert = make_alert(rule="p99-latency-a", dedup_key="fraud-model/p99-latency-a/x",
                       labels={"env": "prod", "model.version": "7", "2xx": "yes"})

    alerter.send(alert, threading.Event())

    [found] = listed(alertmanager, "p99-latency-a")
    assert found["labels"] == {
        "alertname": "p99-latency-a", "target": "fraud-model", "rule": "p99-latency-a", "severity": "critical",
        "kind": "rule", "dedup_key": "fraud-model/p99-latency-a/x", "team": "ml", "env": "prod",
        "model_version": "7", "_2xx": "yes"}
    assert found["annotations"] == {
        "summary": "p99 latency 0.93 > 0.5", "description": "Latency of the fraud model is high.",
        "runbook_url": "https://runbooks.example.com/fraud/p99", "decision_id": "dec-42", "version": "v7",
        "value": "0.93 (above 0.5)"}
    assert found["status"]["state"] == "active"
    assert found["generatorURL"] == "http://watchdog.example:8080/status"
    assert found["startsAt"].startswith("2026-01-02T03:04:05")
    ends = datetime.fromisoformat(found["endsAt"].replace("Z", "+00:00"))
    hours_left = (ends - datetime.now(timezone.utc)).total_seconds() / 3600
    assert 23.9 < hours_left <= 24.0  # firing_ttl, not Alertmanager's 5m resolve_timeout


def test_resolve_ends_the_same_alert(alertmanager: AlertmanagerServer) -> None:
    alerter = make_alerter(alertmanager)
    alert = make_alert(rule="p99-latency-b", dedup_key="fraud-model/p99-latency-b/x")
    alerter.send(alert, threading.Event())
    assert len(listed(alertmanager, "p99-latency-b")) == 1

    alerter.send(make_alert(rule="p99-latency-b", dedup_key="fraud-model/p99-latency-b/x", status="resolved",
                            summary="p99 latency back to 0.31"), threading.Event())

    time.sleep(0.01)  # endsAt = now: it has passed by the next query
    assert listed(alertmanager, "p99-latency-b") == []
    assert listed(alertmanager, "p99-latency-b", active="false") == []  # ended alerts are not listed at all


def test_firing_ttl_sets_ends_at(alertmanager: AlertmanagerServer) -> None:
    make_alerter(alertmanager, firing_ttl=600.0).send(make_alert(rule="p99-latency-c"), threading.Event())

    [found] = listed(alertmanager, "p99-latency-c")
    ends = datetime.fromisoformat(found["endsAt"].replace("Z", "+00:00"))
    assert 590 < (ends - datetime.now(timezone.utc)).total_seconds() <= 600


class _InvalidAnnotation(AlertmanagerAlerter):
    """Sends an annotation name Alertmanager refuses: our own bodies are valid by construction."""

    def alert_body(self, alert):  # type: ignore[no-untyped-def]
        body = super().alert_body(alert)
        body["annotations"]["bad-name"] = "x"
        return body


def test_validation_error_is_an_alerter_error_and_not_retried(alertmanager: AlertmanagerServer) -> None:
    alerter = _InvalidAnnotation("am", AlertmanagerAlerter.Options(url=alertmanager.url, backoff=0.01))

    with pytest.raises(AlerterError) as info:
        alerter.send(make_alert(rule="p99-latency-d"), threading.Event())

    message = str(info.value)
    assert message.startswith(f"alertmanager alerter 'am': POST {alertmanager.url} failed: 400")
    assert 'invalid annotations: invalid name \\"bad-name\\"' in message and "not retried" in message
    assert "gave up" not in message


def test_unreachable_alertmanager_is_retried_then_reported() -> None:
    alerter = AlertmanagerAlerter("am", AlertmanagerAlerter.Options(url=f"http://127.0.0.1:{free_port()}", retries=1, backoff=0.01))

    with pytest.raises(AlerterError, match=r"cannot connect.*gave up after 2 attempts"):
        alerter.send(make_alert(), threading.Event())


@pytest.mark.parametrize(("name", "clean"), [
    ("env", "env"), ("model.version", "model_version"), ("2xx", "_2xx"), ("ça-va", "_a_va"), ("", "_")])
def test_label_names_are_made_valid(name: str, clean: str) -> None:
    assert label_name(name) == clean


@pytest.mark.parametrize("url", ["%zz", "http://[::1", "ftp://host/x"])
def test_bad_generator_url_is_a_config_error(url: str) -> None:
    with pytest.raises(ValueError, match="generator_url must be an absolute http"):
        AlertmanagerAlerter("am", AlertmanagerAlerter.Options(url="http://127.0.0.1:9093", generator_url=url))
