"""Create and close Opsgenie alerts through the Alert API v2.

Auth is the key of an Opsgenie *API integration*, sent as `Authorization: GenieKey <key>`
(a secret: `${OPSGENIE_API_KEY}` or `api_key_file`). A firing alert creates
(`POST /v2/alerts`) with `alias` = the alert's dedup key: Opsgenie keeps one open alert per
alias and counts repeats. A resolved alert closes it
(`POST /v2/alerts/{alias}/close?identifierType=alias`). Both are asynchronous: 202 means
queued, and closing an alias that has no open alert is still 202. 429 and 5xx are retried.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, replace
from typing import Any
from urllib.parse import quote

from watchdog import redact
from watchdog.http import client as httpclient
from watchdog.alerters import _common
from watchdog.alerters.base import Alert, Alerter
from watchdog.config.fields import option
from watchdog.errors import AlerterError

API_URL = "https://api.opsgenie.com"
EU_API_URL = "https://api.eu.opsgenie.com"
_PRIORITIES = ("P1", "P2", "P3", "P4", "P5")  # by _common.severity_rank
_MESSAGE_LIMIT = 130
_ALIAS_LIMIT = 512
_DESCRIPTION_LIMIT = 15000
_TAG_LIMIT = 50
_KEY_HINT = f"api_key: the key of an Opsgenie API integration; EU accounts need url: {EU_API_URL}"


@dataclass(frozen=True)
class OpsgenieOptions:
    """Opsgenie Alert API v2: create on firing, close on resolved, alias = dedup key."""

    api_key: str = option(secret=True, help="key of an Opsgenie API integration; a secret, or api_key_file: PATH")
    url: str = option(API_URL, help=f"API base URL: {API_URL}, or {EU_API_URL} for EU accounts")
    tags: list[str] = option(default_factory=list, help="extra tags on every alert (target, rule and kind are added)")
    timeout: float = option(10.0, duration=True, help="per-request timeout")
    retries: int = option(3, help="attempts after the first on 429, 5xx, timeouts and network errors")
    backoff: float = option(1.0, duration=True, help="first pause between attempts; doubles each time, up to 30s")


class OpsgenieAlerter(Alerter):
    Options = OpsgenieOptions

    def __init__(self, name: str, options: OpsgenieOptions):
        redact.register_secret(options.api_key)
        if not options.api_key.strip():
            raise ValueError("api_key must not be empty")
        self._base = options.url.rstrip("/")
        self._http = _common.http_options(self._base + "/v2/alerts", timeout=options.timeout,
                                          retries=options.retries, backoff=options.backoff,
                                          headers={"Authorization": f"GenieKey {options.api_key}"})
        super().__init__(name, options)

    def send(self, alert: Alert, stop: threading.Event) -> None:
        alias = _common.fit_key(alert.dedup_key, _ALIAS_LIMIT)
        if alert.status == "resolved":
            url = f"{self._base}/v2/alerts/{quote(alias, safe='')}/close?identifierType=alias"
            body = {"source": "model-watchdog", "note": _common.truncate(_common.one_line(alert.summary), 1000)}
        else:
            url, body = self._http.url, self.create_body(alert)
        try:
            httpclient.send_json(replace(self._http, url=url), method="POST", payload=body,
                                 idempotency_key=f"{alert.dedup_key}:{alert.status}", stop=stop, error=AlerterError)
        except AlerterError as exc:
            raise AlerterError(_common.failure("opsgenie", self.name, exc, _KEY_HINT)) from None

    def create_body(self, alert: Alert) -> dict[str, Any]:
        """The body of `POST /v2/alerts` for a firing alert."""
        body: dict[str, Any] = {
            "message": _common.truncate(f"{_common.where(alert)}: {_common.one_line(alert.summary)}", _MESSAGE_LIMIT),
            "alias": _common.fit_key(alert.dedup_key, _ALIAS_LIMIT),
            "description": _common.truncate(_description(alert), _DESCRIPTION_LIMIT),
            "priority": priority(alert.severity),
            "tags": self._tags(alert),
            "details": _common.details(alert),
            "entity": alert.target,
            "source": "model-watchdog",
        }
        return body

    def _tags(self, alert: Alert) -> list[str]:
        tags = [*self.options.tags, "model-watchdog", f"target:{alert.target}", f"kind:{alert.kind}"]
        if alert.rule:
            tags.append(f"rule:{alert.rule}")
        return list(dict.fromkeys(_common.truncate(t, _TAG_LIMIT) for t in tags))


def priority(severity: str) -> str:
    """Our free-form severity as Opsgenie's P1 (critical) … P5 (informational)."""
    return _PRIORITIES[_common.severity_rank(severity)]


def _description(alert: Alert) -> str:
    lines = [alert.summary]
    if alert.description:
        lines += ["", alert.description]
    lines += [""] + [f"{name}: {value}" for name, value in _common.details(alert).items()]
    return "\n".join(lines)
