"""Post alerts to a Slack channel through an incoming webhook.

The webhook URL is the credential (no other auth), so it is a secret: give it as
`webhook_url: ${SLACK_WEBHOOK_URL}` or `webhook_url_file: PATH`; errors show it as `***`.

Each event is one message: `text` (the notification and fallback line) plus Block Kit
blocks. Incoming webhooks cannot edit a posted message, so a resolved alert is a second
message. Slack answers `200 ok` or a plain-text error code (`invalid_payload`, `no_service`,
`channel_is_archived`, …); 429 (with `Retry-After`) and 5xx are retried. Slack does not
de-duplicate: a retry after a timeout may post twice.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from typing import Any

from watchdog import redact
from watchdog.http import client as httpclient
from watchdog.alerters import _common
from watchdog.alerters.base import Alert, Alerter
from watchdog.config.fields import option
from watchdog.errors import AlerterError

_HEADER_LIMIT = 150  # Block Kit: header text
_SECTION_LIMIT = 3000  # Block Kit: section text
_FIELD_LIMIT = 2000  # Block Kit: one section field
_TEXT_LIMIT = 3000  # keep the fallback text to one screen

# Error codes Slack answers in plain text, and what to do about each.
_HINTS = {
    "invalid_payload": "Slack could not read the message; please report this as a model-watchdog bug",
    "no_text": "Slack found no text in the message; please report this as a model-watchdog bug",
    "no_service": "the webhook was removed or the URL is wrong; create a new incoming webhook",
    "no_service_id": "the webhook URL is incomplete; copy it again from the Slack app's settings",
    "no_team": "the Slack workspace is gone or the URL is wrong; create a new incoming webhook",
    "team_disabled": "the Slack workspace is disabled",
    "invalid_token": "the webhook token is no longer valid; create a new incoming webhook",
    "channel_not_found": "the webhook's channel (or the `channel` option) does not exist",
    "channel_is_archived": "the channel is archived; unarchive it or point the webhook at another channel",
    "action_prohibited": "a workspace admin restricted posting to this channel",
    "user_not_found": "the `channel` option names an unknown user",
    "posting_to_general_channel_denied": "only admins may post to this channel",
    "too_many_attachments": "the message is too large; please report this as a model-watchdog bug",
    "no_active_hooks": "the webhook is disabled; enable it in the Slack app's settings",
}
_CODE = re.compile(r"\b(" + "|".join(_HINTS) + r")\b")


@dataclass(frozen=True)
class SlackOptions:
    """Slack incoming webhook: one message per firing and per resolved event."""

    webhook_url: str = option(secret=True, help="the incoming webhook URL (https://hooks.slack.com/services/…); "
                                                "a secret, or webhook_url_file: PATH")
    channel: str | None = option(None, help="channel override (#name); honoured by legacy webhooks only")
    username: str | None = option(None, help="sender name override; honoured by legacy webhooks only")
    timeout: float = option(10.0, duration=True, help="per-request timeout")
    retries: int = option(3, help="attempts after the first on 429 (honouring Retry-After), 5xx, timeouts")
    backoff: float = option(1.0, duration=True, help="first pause between attempts; doubles each time, up to 30s")


class SlackAlerter(Alerter):
    Options = SlackOptions

    def __init__(self, name: str, options: SlackOptions):
        redact.register_secret(options.webhook_url)  # also when built in code, not by the loader
        self._http = _common.http_options(options.webhook_url, timeout=options.timeout, retries=options.retries,
                                          backoff=options.backoff)
        super().__init__(name, options)

    def send(self, alert: Alert, stop: threading.Event) -> None:
        try:
            httpclient.send_json(self._http, method="POST", payload=self.message(alert),
                                 idempotency_key=f"{alert.dedup_key}:{alert.status}", stop=stop, error=AlerterError)
        except AlerterError as exc:
            raise AlerterError(_with_hint(_common.failure("slack", self.name, exc, "webhook_url"))) from None

    def message(self, alert: Alert) -> dict[str, Any]:
        """The webhook payload: fallback `text` plus Block Kit `blocks`."""
        payload: dict[str, Any] = {"text": _common.truncate(_common.title(alert), _TEXT_LIMIT),
                                   "blocks": blocks(alert)}
        if self.options.channel:
            payload["channel"] = self.options.channel
        if self.options.username:
            payload["username"] = self.options.username
        return payload


def blocks(alert: Alert) -> list[dict[str, Any]]:
    resolved = alert.status == "resolved"
    icon = ":white_check_mark:" if resolved else ":rotating_light:"
    heading = f"{icon} {'RESOLVED' if resolved else 'FIRING'}: {_common.one_line(alert.summary)}"
    out: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": _common.truncate(heading, _HEADER_LIMIT),
                                    "emoji": True}},
        {"type": "section", "fields": [_field(name, value) for name, value in _fields(alert)]},
    ]
    if alert.description:
        out.append({"type": "section", "text": {"type": "mrkdwn",
                                                 "text": _common.truncate(_escape(alert.description), _SECTION_LIMIT)}})
    if alert.runbook_url:
        out.append({"type": "section", "text": {"type": "mrkdwn", "text": f"<{_escape(alert.runbook_url)}|Runbook>"}})
    out.append({"type": "context", "elements": [{"type": "mrkdwn", "text": _escape(
        f"model-watchdog · {alert.kind} · {alert.dedup_key} · {alert.at}")}]})
    return out


def _fields(alert: Alert) -> list[tuple[str, str]]:
    fields = [("Severity", alert.severity), ("Target", alert.target), ("Rule", alert.rule),
              ("Value", _common.measurement(alert)), ("Version", alert.version or ""),
              ("Decision", alert.decision_id or "")]
    fields += [(name, value) for name, value in sorted(alert.labels.items())]
    return [(name, value) for name, value in fields if value][:10]  # Block Kit: at most 10 fields


def _field(name: str, value: str) -> dict[str, str]:
    return {"type": "mrkdwn", "text": _common.truncate(f"*{_escape(name)}*\n{_escape(value)}", _FIELD_LIMIT)}


def _escape(text: str) -> str:
    """Slack mrkdwn treats &, < and > as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def _with_hint(message: str) -> str:
    found = _CODE.search(message)
    return f"{message}; {_HINTS[found.group(1)]}" if found else message
