"""Push alerts to a Prometheus Alertmanager (API v2), which then routes, groups and silences them.

`POST {url}/api/v2/alerts` with a one-element array. Alertmanager identifies an alert by its
label set, so firing and resolved events of one incident carry the same labels (including
`dedup_key`). A resolve is the same labels with `endsAt` = now.

Alertmanager expects clients to re-send firing alerts until they resolve, and ends an alert
whose `endsAt` has passed (without `endsAt`: after its `resolve_timeout`, 5m by default).
The notifier sends each event once, so a firing alert is sent with `endsAt` = now +
`firing_ttl` (default 24h): it stays firing until we resolve it, or until the TTL ends it
if the resolve is lost (e.g. Alertmanager restarted without its data). Answers: 200 with an
empty body; 400 with a message when an alert is invalid (not retried); 5xx is retried.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Callable
from urllib.parse import urlsplit

from watchdog.http import client as httpclient
from watchdog.alerters import _common
from watchdog.alerters.base import Alert, Alerter
from watchdog.clock import SystemClock, rfc3339
from watchdog.config.fields import option
from watchdog.errors import AlerterError

_LABEL_NAME = re.compile(r"[^A-Za-z0-9_]")
_ESCAPES = re.compile(r"(?:[^%]|%[0-9A-Fa-f]{2})*")


@dataclass(frozen=True)
class AlertmanagerOptions:
    """Prometheus Alertmanager API v2: firing with endsAt = now + firing_ttl, resolved with endsAt = now."""

    url: str = option(help="Alertmanager base URL, e.g. http://alertmanager:9093")
    labels: dict[str, str] = option(default_factory=dict, help="extra labels on every alert (e.g. team, cluster)")
    firing_ttl: float = option(86400.0, duration=True, help="endsAt of firing alerts is now + this; Alertmanager "
                                                            "ends the alert then unless it is sent again")
    generator_url: str | None = option(None, help="generatorURL: a link back to this watchdog (e.g. its status page)")
    headers: dict[str, str] = option(default_factory=dict, secret_values=True,
                                     help="extra request headers (e.g. Authorization for a proxy); values are secrets")
    timeout: float = option(10.0, duration=True, help="per-request timeout")
    retries: int = option(3, help="attempts after the first on 5xx, 429, timeouts and network errors")
    backoff: float = option(1.0, duration=True, help="first pause between attempts; doubles each time, up to 30s")
    verify_tls: bool = option(True, help="verify the server's TLS certificate (keep this on)")
    ca_file: str | None = option(None, help="PEM bundle of CAs trusted for this URL instead of the system's")


class AlertmanagerAlerter(Alerter):
    Options = AlertmanagerOptions

    def __init__(self, name: str, options: AlertmanagerOptions, now: Callable[[], float] = SystemClock().now):
        if options.firing_ttl <= 0:
            raise ValueError("firing_ttl must be greater than 0")
        if options.generator_url is not None:
            _check_url(options.generator_url)
        self._http = _common.http_options(options.url.rstrip("/") + "/api/v2/alerts", timeout=options.timeout,
                                          retries=options.retries, backoff=options.backoff, headers=options.headers,
                                          verify_tls=options.verify_tls, ca_file=options.ca_file)
        self._now = now
        super().__init__(name, options)

    def send(self, alert: Alert, stop: threading.Event) -> None:
        body: Any = [self.alert_body(alert)]  # the API takes an array of alerts
        try:
            httpclient.send_json(self._http, method="POST", payload=body,
                                 idempotency_key=f"{alert.dedup_key}:{alert.status}", stop=stop, error=AlerterError)
        except AlerterError as exc:
            raise AlerterError(f"alertmanager alerter '{self.name}': {exc}") from None

    def alert_body(self, alert: Alert) -> dict[str, Any]:
        """One postableAlert: labels, annotations, startsAt/endsAt, generatorURL."""
        now = self._now()
        body: dict[str, Any] = {"labels": self.labels(alert), "annotations": annotations(alert)}
        if alert.status == "resolved":
            # Without startsAt Alertmanager takes endsAt, and keeps the earlier startsAt it has.
            body["endsAt"] = rfc3339(now)
        else:
            starts = _timestamp(alert.at, now)
            body["startsAt"] = rfc3339(starts)
            body["endsAt"] = rfc3339(max(now, starts) + self.options.firing_ttl)
        if self.options.generator_url:
            body["generatorURL"] = self.options.generator_url
        return body

    def labels(self, alert: Alert) -> dict[str, str]:
        """Option labels, then the alert's own, then ours (which win); names made valid for Prometheus."""
        ours = {"alertname": alert.rule or alert.kind or "model-watchdog", "target": alert.target, "rule": alert.rule,
                "severity": alert.severity, "kind": alert.kind, "dedup_key": alert.dedup_key}
        out: dict[str, str] = {}
        for source in (self.options.labels, alert.labels, ours):
            for name, value in source.items():
                if value:  # an empty value is the same as no label
                    out[label_name(name)] = value
        return out


def label_name(name: str) -> str:
    """A valid Prometheus label name: `[a-zA-Z_][a-zA-Z0-9_]*` (other characters become `_`)."""
    clean = _LABEL_NAME.sub("_", name)
    return "_" + clean if not clean or clean[0].isdigit() else clean


def annotations(alert: Alert) -> dict[str, str]:
    data = {"summary": alert.summary, "description": alert.description, "runbook_url": alert.runbook_url,
            "decision_id": alert.decision_id or "", "version": alert.version or "",
            "value": _common.measurement(alert)}
    return {name: value for name, value in data.items() if value}


def _check_url(url: str) -> None:
    """Alertmanager answers 422 to a generatorURL that is not a URI; say so at load time instead."""
    try:
        parts = urlsplit(url)
        valid = parts.scheme in ("http", "https") and bool(parts.hostname) and (parts.port or 0) >= 0
    except ValueError:  # e.g. an unclosed [IPv6 or a bad port
        valid = False
    if not valid or not _ESCAPES.fullmatch(url):
        raise ValueError(f"generator_url must be an absolute http(s) URL, got {url!r}")


def _timestamp(text: str, default: float) -> float:
    try:
        return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return default
