"""The `opsgenie` alerter against a local receiver that answers as the Opsgenie Alert API v2.

The receiver follows the Opsgenie OpenAPI spec (opsgenie/opsgenie-oas: paths/alert.yaml,
responses/common.yaml) and docs.opsgenie.com/docs/alert-api, as summarised in the project's
verified API notes, section 8: create and close answer `202 {"result": "Request will be
processed", "took": …, "requestId": …}` (closing an alias without an open alert too: the
outcome is only visible later through the request-status API); errors are
`{"message", "code", "took", "requestId"}` with 400/401/…/429.
"""

from __future__ import annotations

import threading
import uuid

import pytest

from tests.alerters.alerts import logged, make_alert
from tests.http_receiver import Receiver, Reply
from watchdog.alerters.opsgenie import OpsgenieAlerter, priority
from watchdog.errors import AlerterError

pytestmark = pytest.mark.timeout(30)

API_KEY = "eb243592-faa2-4ba2-a551q-1afdf565c889"


def queued(request) -> Reply:
    return Reply(202, {"result": "Request will be processed", "took": 0.302, "requestId": str(uuid.uuid4())})


def failed(status: int, message: str) -> Reply:
    return Reply(status, {"message": message, "code": status, "took": 0.001, "requestId": str(uuid.uuid4())})


def make_alerter(receiver: Receiver, **options: object) -> OpsgenieAlerter:
    options.setdefault("backoff", 0.01)
    return OpsgenieAlerter("genie", OpsgenieAlerter.Options(api_key=API_KEY, url=receiver.url(""), **options))


def test_create_then_close_by_alias(receiver: Receiver) -> None:
    receiver.script(queued, queued)
    alerter = make_alerter(receiver, tags=["team:ml"])

    alerter.send(make_alert(), threading.Event())
    alerter.send(make_alert(status="resolved", summary="p99 latency back to 0.31"), threading.Event())

    create, close = receiver.requests
    assert (create.method, create.path) == ("POST", "/v2/alerts")
    assert create.headers["Authorization"] == f"GenieKey {API_KEY}"
    body = create.json
    assert body["alias"] == "fraud-model/p99-latency/abc"
    assert body["message"] == "fraud-model/p99-latency: p99 latency 0.93 > 0.5"
    assert body["priority"] == "P1"
    assert body["tags"] == ["team:ml", "model-watchdog", "target:fraud-model", "kind:rule", "rule:p99-latency"]
    assert body["entity"] == "fraud-model" and body["source"] == "model-watchdog"
    assert body["details"]["value"] == "0.93 (above 0.5)" and body["details"]["decision_id"] == "dec-42"
    assert body["details"]["version"] == "v7" and body["details"]["label.env"] == "prod"
    assert all(isinstance(v, str) for v in body["details"].values())  # Opsgenie details are string → string
    assert "Latency of the fraud model is high." in body["description"]
    assert "runbook_url: https://runbooks.example.com/fraud/p99" in body["description"]
    # The alias has slashes, so it is encoded as one path segment; identifierType=alias is essential
    # (the default, id, would look for an alert *id* with that text).
    assert (close.method, close.path) == ("POST", "/v2/alerts/fraud-model%2Fp99-latency%2Fabc/close?identifierType=alias")
    assert close.headers["Authorization"] == f"GenieKey {API_KEY}"
    assert close.json == {"source": "model-watchdog", "note": "p99 latency back to 0.31"}


def test_closing_an_alias_without_open_alert_is_accepted_like_any_close(receiver: Receiver) -> None:
    receiver.script(queued)  # the documented answer: 202, "Alert does not exist" shows only in the request status

    make_alerter(receiver).send(make_alert(status="resolved", dedup_key="never-opened"), threading.Event())

    assert receiver.requests[0].path == "/v2/alerts/never-opened/close?identifierType=alias"


def test_message_is_cut_to_130_characters(receiver: Receiver) -> None:
    make_alerter(receiver).send(make_alert(summary="x" * 500), threading.Event())

    message = receiver.requests[0].json["message"]
    assert len(message) == 130 and message.endswith("…")


def test_throttled_request_is_retried(receiver: Receiver, caplog) -> None:
    throttled = failed(429, "You are making too many requests! To avoid errors, we recommend you limit requests.")
    receiver.script(Reply(429, throttled.body, {"X-RateLimit-State": "THROTTLED", "X-RateLimit-Period-In-Sec": "1"}),
                    queued)

    make_alerter(receiver).send(make_alert(), threading.Event())

    assert len(receiver.requests) == 2
    assert API_KEY not in logged(caplog)


def test_rejected_request_fails_at_once_without_the_key(receiver: Receiver) -> None:
    receiver.script(failed(400, "Message can not be empty."))

    with pytest.raises(AlerterError) as info:
        make_alerter(receiver).send(make_alert(), threading.Event())

    message = str(info.value)
    assert message.startswith("opsgenie alerter 'genie': POST http://127.0.0.1:")
    assert "400" in message and "Message can not be empty." in message and "not retried" in message
    assert API_KEY not in message and "faa2" not in message
    assert len(receiver.requests) == 1


def test_wrong_key_says_which_key_and_mentions_the_eu_url(receiver: Receiver) -> None:
    receiver.script(failed(401, "Could not authenticate"))

    with pytest.raises(AlerterError, match=r"401.*API integration.*api\.eu\.opsgenie\.com") as info:
        make_alerter(receiver).send(make_alert(), threading.Event())
    assert API_KEY not in str(info.value)


@pytest.mark.parametrize(("ours", "theirs"), [
    ("critical", "P1"), ("error", "P2"), ("warning", "P3"), ("low", "P4"), ("info", "P5"), ("unheard-of", "P2"),
])
def test_priority_mapping(ours: str, theirs: str) -> None:
    assert priority(ours) == theirs
