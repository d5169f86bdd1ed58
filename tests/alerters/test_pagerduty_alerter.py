"""The `pagerduty` alerter against a local receiver that answers as the PagerDuty Events API v2.

The receiver follows PagerDuty's developer docs (events-API-v2 Overview, Trigger Events and
Rate Limits; the api-schema openapiv3.json), as summarised in the project's verified API notes,
section 6: `202 {"status":"success","message":"Event processed","dedup_key":…}`;
`400 {"status":"invalid event","message":"Event object is invalid","errors":[…]}` (not
retried); `429` rate limiting (retried with backoff).
"""

from __future__ import annotations

import threading

import pytest

from tests.alerters.alerts import logged, make_alert
from tests.http_receiver import Receiver, Reply
from watchdog.alerters.pagerduty import PagerDutyAlerter, severity
from watchdog.errors import AlerterError

pytestmark = pytest.mark.timeout(30)

ROUTING_KEY = "R0UT1NGKEY0123456789abcdefABCDEF"  # 32 characters, as PagerDuty's are


def accepted(request) -> Reply:
    return Reply(202, {"status": "success", "message": "Event processed", "dedup_key": request.json["dedup_key"]})


def make_alerter(receiver: Receiver, **options: object) -> PagerDutyAlerter:
    options.setdefault("backoff", 0.01)
    options.setdefault("source", "model-watchdog@test-host")
    return PagerDutyAlerter("pager", PagerDutyAlerter.Options(routing_key=ROUTING_KEY,
                                                               url=receiver.url("/v2/enqueue"), **options))


def test_trigger_then_resolve_share_the_dedup_key(receiver: Receiver) -> None:
    receiver.script(accepted, accepted)
    alerter = make_alerter(receiver)

    alerter.send(make_alert(), threading.Event())
    alerter.send(make_alert(status="resolved", summary="p99 latency back to 0.31"), threading.Event())

    trigger, resolve = (r.json for r in receiver.requests)
    assert all(r.path == "/v2/enqueue" and r.method == "POST" for r in receiver.requests)
    assert "Authorization" not in receiver.requests[0].headers  # the key travels in the body only
    assert trigger == {
        "routing_key": ROUTING_KEY,
        "event_action": "trigger",
        "dedup_key": "fraud-model/p99-latency/abc",
        "payload": {
            "summary": "fraud-model/p99-latency: p99 latency 0.93 > 0.5",
            "source": "model-watchdog@test-host",
            "severity": "critical",
            "timestamp": "2026-01-02T03:04:05Z",
            "component": "fraud-model",
            "group": "rule",
            "class": "p99-latency",
            "custom_details": {"value": 0.93, "threshold": {"above": 0.5}, "labels": {"env": "prod"},
                               "kind": "rule", "severity": "critical", "version": "v7", "decision_id": "dec-42",
                               "description": "Latency of the fraud model is high.",
                               "dedup_key": "fraud-model/p99-latency/abc"},
        },
        "client": "model-watchdog",
        "links": [{"href": "https://runbooks.example.com/fraud/p99", "text": "Runbook"}],
    }
    assert resolve == {"routing_key": ROUTING_KEY, "event_action": "resolve",
                       "dedup_key": "fraud-model/p99-latency/abc"}


def test_limits_long_summary_and_dedup_key_stably(receiver: Receiver) -> None:
    long_key = "fraud-model/p99-latency/" + "series=x," * 60
    alerter = make_alerter(receiver)

    alerter.send(make_alert(dedup_key=long_key, summary="s" * 2000, value=float("nan")), threading.Event())
    alerter.send(make_alert(dedup_key=long_key, status="resolved"), threading.Event())

    trigger, resolve = (r.json for r in receiver.requests)
    assert len(trigger["payload"]["summary"]) == 1024 and trigger["payload"]["summary"].endswith("…")
    assert len(trigger["dedup_key"]) == 255 and trigger["dedup_key"] == resolve["dedup_key"]
    assert "value" not in trigger["payload"]["custom_details"]  # NaN is not JSON


def test_rate_limited_event_is_retried(receiver: Receiver, caplog) -> None:
    receiver.script(Reply(429, {"status": "throttle event", "message": "Requests for this service are arriving too quickly."}),
                    accepted)

    make_alerter(receiver).send(make_alert(), threading.Event())

    assert len(receiver.requests) == 2
    assert receiver.requests[0].json == receiver.requests[1].json
    assert ROUTING_KEY not in logged(caplog)


def test_invalid_event_fails_at_once_without_the_routing_key(receiver: Receiver) -> None:
    receiver.script(Reply(400, {"status": "invalid event", "message": "Event object is invalid",
                                "errors": ["'payload.severity' is invalid (must be one of the following: "
                                           "'critical', 'warning', 'error' or 'info')"]}))

    with pytest.raises(AlerterError) as info:
        make_alerter(receiver).send(make_alert(), threading.Event())

    message = str(info.value)
    assert message.startswith("pagerduty alerter 'pager': POST http://127.0.0.1:")
    assert "400" in message and "Event object is invalid" in message and "not retried" in message
    assert ROUTING_KEY not in message
    assert len(receiver.requests) == 1


def test_routing_key_of_the_wrong_length_is_a_config_error() -> None:
    with pytest.raises(ValueError, match="32-character integration key.*has 10 characters"):
        PagerDutyAlerter("pager", PagerDutyAlerter.Options(routing_key="too-short!"))


@pytest.mark.parametrize(("ours", "theirs"), [
    ("critical", "critical"), ("page", "critical"), ("error", "error"), ("high", "error"), ("warning", "warning"),
    ("Warning", "warning"), ("low", "info"), ("info", "info"), ("something-else", "error"),
])
def test_severity_mapping(ours: str, theirs: str) -> None:
    assert severity(ours) == theirs
