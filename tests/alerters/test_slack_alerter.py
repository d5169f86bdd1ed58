"""The `slack` alerter against a local receiver that answers as Slack incoming webhooks do.

The receiver follows Slack's documented behaviour (the project's verified API notes, section 7: the changelog
"changes to errors for incoming webhooks" and the rate-limits page): success is `200` with the
plain-text body `ok`; errors are plain-text codes (`400 invalid_payload`, `404 no_service`,
`410 channel_is_archived`), and rate limiting is `429` with `Retry-After: <seconds>`.
"""

from __future__ import annotations

import threading
import time

import pytest

from tests.alerters.alerts import logged, make_alert
from tests.http_receiver import Receiver, Reply
from watchdog.alerters.slack import SlackAlerter
from watchdog.errors import AlerterError

pytestmark = pytest.mark.timeout(30)

SECRET_PATH = "/services/T0001/B0002/XXXXXXXXXXXXXXXXXXXXXXXX"
OK = Reply(200, "ok", {"Content-Type": "text/plain"})


def make_alerter(receiver: Receiver, **options: object) -> SlackAlerter:
    options.setdefault("backoff", 0.01)
    return SlackAlerter("chat", SlackAlerter.Options(webhook_url=receiver.url(SECRET_PATH), **options))


def texts(blocks: list[dict]) -> str:
    out = []
    for block in blocks:
        out += [block.get("text", {}).get("text", "")] + [f["text"] for f in block.get("fields", [])]
        out += [e["text"] for e in block.get("elements", [])]
    return "\n".join(out)


def test_firing_then_resolved_posts_two_messages_with_the_details(receiver: Receiver) -> None:
    receiver.script(OK, OK)
    alerter = make_alerter(receiver, channel="#ml-oncall", username="model-watchdog")

    alerter.send(make_alert(), threading.Event())
    alerter.send(make_alert(status="resolved", summary="p99 latency back to 0.31"), threading.Event())

    firing, resolved = receiver.requests
    assert firing.path == SECRET_PATH and firing.headers["Content-Type"] == "application/json"
    assert firing.json["text"] == "[FIRING] CRITICAL fraud-model/p99-latency: p99 latency 0.93 > 0.5"
    assert firing.json["channel"] == "#ml-oncall" and firing.json["username"] == "model-watchdog"
    shown = texts(firing.json["blocks"])
    for expected in ("FIRING: p99 latency 0.93 > 0.5", "*Severity*\ncritical", "*Target*\nfraud-model",
                     "*Rule*\np99-latency", "*Value*\n0.93 (above 0.5)", "*Version*\nv7", "*Decision*\ndec-42",
                     "<https://runbooks.example.com/fraud/p99|Runbook>", "fraud-model/p99-latency/abc"):
        assert expected in shown
    assert firing.json["blocks"][0]["type"] == "header"
    # Webhooks cannot edit the first message: the resolve is a second one, same incident key.
    assert resolved.json["text"].startswith("[RESOLVED] CRITICAL fraud-model/p99-latency: p99 latency back to 0.31")
    assert "RESOLVED" in texts(resolved.json["blocks"]) and "fraud-model/p99-latency/abc" in texts(resolved.json["blocks"])


def test_mrkdwn_control_characters_are_escaped(receiver: Receiver) -> None:
    make_alerter(receiver).send(make_alert(description="queue <fraud> & co"), threading.Event())

    assert "queue &lt;fraud&gt; &amp; co" in texts(receiver.requests[0].json["blocks"])


def test_rate_limited_post_waits_for_retry_after_then_succeeds(receiver: Receiver, caplog) -> None:
    receiver.script(Reply(429, "rate_limited", {"Retry-After": "1"}), OK)

    started = time.monotonic()
    make_alerter(receiver).send(make_alert(), threading.Event())

    assert len(receiver.requests) == 2
    assert time.monotonic() - started >= 0.9  # Slack's Retry-After, not our 10 ms backoff
    assert "XXXXXXXXXXXXXXXXXXXXXXXX" not in logged(caplog)


@pytest.mark.parametrize(("status", "code", "hint"), [
    (400, "invalid_payload", "model-watchdog bug"),
    (404, "no_service", "create a new incoming webhook"),
    (410, "channel_is_archived", "unarchive it"),
    (403, "action_prohibited", "admin restricted posting"),
])
def test_slack_error_codes_fail_at_once_with_a_hint_and_without_the_url(receiver: Receiver, status, code, hint) -> None:
    receiver.script(Reply(status, code, {"Content-Type": "text/plain"}))

    with pytest.raises(AlerterError) as info:
        make_alerter(receiver).send(make_alert(), threading.Event())

    message = str(info.value)
    assert "slack alerter 'chat'" in message and f"{status}" in message and code in message and hint in message
    assert "XXXXXXXXXXXXXXXXXXXXXXXX" not in message and SECRET_PATH not in message
    assert "headers" not in message  # the generic hint is about an option Slack alerters do not have
    assert len(receiver.requests) == 1


def test_html_error_page_is_retried_and_reported_without_parsing(receiver: Receiver) -> None:
    page = Reply(503, "<html><body><h1>Service Unavailable</h1></body></html>", {"Content-Type": "text/html"})
    receiver.script(page, page)

    with pytest.raises(AlerterError, match=r"503.*Service Unavailable.*gave up after 2 attempts"):
        make_alerter(receiver, retries=1).send(make_alert(), threading.Event())


def test_the_url_is_required_and_masked_in_the_options_repr() -> None:
    options = SlackAlerter.Options(webhook_url="https://hooks.slack.com" + SECRET_PATH)

    assert "XXXXXXXX" not in repr(options)
    with pytest.raises(ValueError, match="url must be an http") as info:
        SlackAlerter("chat", SlackAlerter.Options(webhook_url="hooks.slack.com" + SECRET_PATH))
    assert "XXXXXXXX" not in str(info.value)
