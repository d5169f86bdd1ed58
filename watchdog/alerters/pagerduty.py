"""Open and resolve PagerDuty alerts through the Events API v2.

`POST https://events.pagerduty.com/v2/enqueue`; the credential is the integration's
`routing_key` in the body (a secret: `${PAGERDUTY_ROUTING_KEY}` or `routing_key_file`).
A firing alert is a `trigger` and a resolved one a `resolve`, both with
`dedup_key` = the alert's dedup key, so repeats of one incident update one PagerDuty alert
and the resolve closes it. PagerDuty answers 202 (queued, not yet an incident); 400 means
the event is invalid and is not retried; 429 and 5xx are retried with backoff.
"""

from __future__ import annotations

import socket
import threading
from dataclasses import dataclass
from typing import Any

from watchdog import redact
from watchdog.http import client as httpclient
from watchdog.alerters import _common
from watchdog.alerters.base import Alert, Alerter
from watchdog.config.fields import option
from watchdog.errors import AlerterError

EVENTS_URL = "https://events.pagerduty.com/v2/enqueue"
_SEVERITIES = ("critical", "error", "warning", "info", "info")  # by _common.severity_rank
_SUMMARY_LIMIT = 1024
_DEDUP_LIMIT = 255
_KEY_LENGTH = 32


@dataclass(frozen=True)
class PagerDutyOptions:
    """PagerDuty Events API v2: trigger on firing, resolve on resolved, one dedup_key per incident."""

    routing_key: str = option(secret=True, help="the 32-character integration key of an Events API v2 "
                                                "integration; a secret, or routing_key_file: PATH")
    url: str = option(EVENTS_URL, help="the Events API v2 enqueue URL (change it only for tests or a proxy)")
    source: str | None = option(None, help="payload.source: where the problem is seen (default model-watchdog@<host>)")
    timeout: float = option(10.0, duration=True, help="per-request timeout")
    retries: int = option(3, help="attempts after the first on 429, 5xx, timeouts and network errors")
    backoff: float = option(1.0, duration=True, help="first pause between attempts; doubles each time, up to 30s")


class PagerDutyAlerter(Alerter):
    Options = PagerDutyOptions

    def __init__(self, name: str, options: PagerDutyOptions):
        redact.register_secret(options.routing_key)
        if len(options.routing_key) != _KEY_LENGTH:
            raise ValueError(f"routing_key must be the {_KEY_LENGTH}-character integration key of an Events API v2 "
                             f"integration (this one has {len(options.routing_key)} characters)")
        self._http = _common.http_options(options.url, timeout=options.timeout, retries=options.retries,
                                          backoff=options.backoff)
        self._source = options.source or f"model-watchdog@{socket.gethostname()}"
        super().__init__(name, options)

    def send(self, alert: Alert, stop: threading.Event) -> None:
        try:
            httpclient.send_json(self._http, method="POST", payload=self.event(alert),
                                 idempotency_key=f"{alert.dedup_key}:{alert.status}", stop=stop, error=AlerterError)
        except AlerterError as exc:
            raise AlerterError(_common.failure("pagerduty", self.name, exc, "routing_key")) from None

    def event(self, alert: Alert) -> dict[str, Any]:
        """The Events API v2 body for `alert`."""
        dedup_key = _common.fit_key(alert.dedup_key, _DEDUP_LIMIT)
        if alert.status == "resolved":
            return {"routing_key": self.options.routing_key, "event_action": "resolve", "dedup_key": dedup_key}
        event: dict[str, Any] = {
            "routing_key": self.options.routing_key,
            "event_action": "trigger",
            "dedup_key": dedup_key,
            "payload": {
                "summary": _common.truncate(_summary(alert), _SUMMARY_LIMIT),
                "source": self._source,
                "severity": severity(alert.severity),
                "timestamp": alert.at,
                "component": alert.target,
                "group": alert.kind,
                "class": alert.rule or alert.kind,
                "custom_details": _custom_details(alert),
            },
            "client": "model-watchdog",
        }
        if alert.runbook_url:
            event["links"] = [{"href": alert.runbook_url, "text": "Runbook"}]
        return event


def severity(ours: str) -> str:
    """Our free-form severity as one of PagerDuty's critical|error|warning|info."""
    return _SEVERITIES[_common.severity_rank(ours)]


def _summary(alert: Alert) -> str:
    return f"{_common.where(alert)}: {_common.one_line(alert.summary)}"


def _custom_details(alert: Alert) -> dict[str, Any]:
    data = {"value": alert.value, "threshold": dict(alert.threshold), "labels": dict(alert.labels),
            "kind": alert.kind, "severity": alert.severity, "version": alert.version,
            "decision_id": alert.decision_id, "description": alert.description, "dedup_key": alert.dedup_key}
    return {k: v for k, v in _common.json_safe(data).items() if v not in (None, "", {})}
