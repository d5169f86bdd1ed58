from __future__ import annotations

import threading

import pytest

from tests.http_receiver import Receiver, Reply
from watchdog.alerters.base import Alert
from watchdog.alerters.webhook import WebhookAlerter
from watchdog.errors import AlerterError

pytestmark = pytest.mark.timeout(30)


def make_alert(**changes: object) -> Alert:
    base = dict(status="firing", kind="rule", dedup_key="fraud-model/p99-latency/abc", target="fraud-model",
                rule="p99-latency", severity="critical", summary="p99 latency 0.93 > 0.5", at="2026-01-02T03:04:05Z",
                value=0.93, threshold={"above": 0.5}, labels={"env": "prod"}, decision_id="dec-42", version="v7")
    base.update(changes)
    return Alert(**base)  # type: ignore[arg-type]


def make_alerter(url: str, **options: object) -> WebhookAlerter:
    options.setdefault("backoff", 0.01)
    return WebhookAlerter("oncall", WebhookAlerter.Options(url=url, **options))


def test_posts_the_alert_with_schema_and_idempotency_key(receiver: Receiver) -> None:
    make_alerter(receiver.url("/alerts"), headers={"X-Token": "alert-token-123"}).send(make_alert(), threading.Event())

    [request] = receiver.requests
    assert request.method == "POST" and request.path == "/alerts"
    assert request.json == {**make_alert().as_json(), "schema": "model-watchdog.alert.v1"}
    assert request.json["version"] == "v7"  # the model version, untouched by the schema marker
    assert request.headers["Idempotency-Key"] == "fraud-model/p99-latency/abc:firing"
    assert request.headers["X-Token"] == "alert-token-123"


def test_resolved_event_has_its_own_key(receiver: Receiver) -> None:
    alerter = make_alerter(receiver.url())
    alerter.send(make_alert(), threading.Event())
    alerter.send(make_alert(status="resolved"), threading.Event())

    keys = [r.headers["Idempotency-Key"] for r in receiver.requests]
    assert keys == ["fraud-model/p99-latency/abc:firing", "fraud-model/p99-latency/abc:resolved"]


def test_nan_value_is_sent_as_null(receiver: Receiver) -> None:
    make_alerter(receiver.url()).send(make_alert(value=float("nan")), threading.Event())

    assert receiver.requests[0].json["value"] is None


def test_server_errors_are_retried(receiver: Receiver) -> None:
    receiver.script(500, 503, 200)

    make_alerter(receiver.url()).send(make_alert(), threading.Event())

    assert len(receiver.requests) == 3


def test_rejected_alert_raises_alerter_error_without_retry(receiver: Receiver) -> None:
    receiver.script(Reply(422, "missing field: routing_key"))

    with pytest.raises(AlerterError, match="422.*missing field: routing_key"):
        make_alerter(receiver.url()).send(make_alert(), threading.Event())

    assert len(receiver.requests) == 1


def test_interrupted_by_shutdown_raises_alerter_error(receiver: Receiver) -> None:
    stop = threading.Event()
    stop.set()

    with pytest.raises(AlerterError, match="interrupted by shutdown"):
        make_alerter(receiver.url()).send(make_alert(), stop)
