"""Small helpers the vendor alerters share: text limits, stable keys, readable alert fields.

Sending itself is `watchdog.httpclient.send_json` (HTTP) or `smtplib` (email); this module
only shapes what is sent, so every alerter shows an alert the same way.
"""

from __future__ import annotations

import hashlib
import math
from typing import Any

from watchdog.http import client as httpclient
from watchdog.alerters.base import Alert

ELLIPSIS = "…"


def truncate(text: str, limit: int) -> str:
    """`text` cut to at most `limit` characters, marked with an ellipsis when cut."""
    return text if len(text) <= limit else text[: limit - 1] + ELLIPSIS


def fit_key(key: str, limit: int) -> str:
    """`key` if it fits `limit`; else a prefix plus a hash, the same for the same key every time.

    Firing and resolved events of one incident must carry the same key, so shortening must
    be deterministic; the hash keeps two long keys with a common prefix apart.
    """
    if len(key) <= limit:
        return key
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()[:16]
    return key[: limit - len(digest) - 1] + "~" + digest


def number(value: float | None) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "n/a"
    return f"{value:.6g}"


def measurement(alert: Alert) -> str:
    """`0.93 (above 0.5)`: the observed value against the rule's thresholds; "" when it has neither."""
    if alert.value is None and not alert.threshold:
        return ""
    limits = ", ".join(f"{name} {number(limit)}" for name, limit in alert.threshold.items())
    return f"{number(alert.value)} ({limits})" if limits else number(alert.value)


def where(alert: Alert) -> str:
    """`fraud-model/p99-latency`, or just the target when the event has no rule."""
    return f"{alert.target}/{alert.rule}" if alert.rule else alert.target


def title(alert: Alert) -> str:
    """One line: `[FIRING] CRITICAL fraud-model/p99-latency: p99 latency 0.93 > 0.5`."""
    return f"[{alert.status.upper()}] {alert.severity.upper()} {where(alert)}: {one_line(alert.summary)}"


def one_line(text: str) -> str:
    return " ".join(text.split())


def details(alert: Alert) -> dict[str, str]:
    """Every field of the alert as readable strings, in a fixed order, empty ones left out."""
    fields = {
        "status": alert.status,
        "kind": alert.kind,
        "severity": alert.severity,
        "target": alert.target,
        "rule": alert.rule,
        "value": measurement(alert),
        "version": alert.version or "",
        "decision_id": alert.decision_id or "",
        "runbook_url": alert.runbook_url,
        "dedup_key": alert.dedup_key,
        "at": alert.at,
    }
    fields.update({f"label.{name}": value for name, value in sorted(alert.labels.items())})
    return {name: value for name, value in fields.items() if value}


def http_options(url: str, *, timeout: float, retries: int, backoff: float,
                 headers: dict[str, str] | None = None, verify_tls: bool = True,
                 ca_file: str | None = None) -> httpclient.HttpOptions:
    """The shared HTTP sender's options for one vendor URL; raises ValueError if unusable."""
    options = httpclient.HttpOptions(url=url, headers=dict(headers or {}), timeout=timeout, retries=retries,
                                     backoff=backoff, verify_tls=verify_tls, ca_file=ca_file)
    httpclient.check_options(options)
    return options


def failure(alerter: str, name: str, error: Exception, credential: str) -> str:
    """An error of the shared HTTP sender, named after the alerter, its credential hint made specific.

    The sender's 401/403 hint points at `headers`, which vendor alerters build themselves.
    """
    return f"{alerter} alerter '{name}': " + str(error).replace("check the credentials in headers",
                                                                f"check {credential}")


def severity_rank(severity: str) -> int:
    """0 (critical) … 4 (informational) for our free-form severities; unknown ones count as 1 (error).

    An unrecognised word is treated as serious rather than quiet: better paged than missed.
    """
    return _RANKS.get(severity.strip().lower(), 1)


_RANKS: dict[str, int] = {
    **dict.fromkeys(("critical", "crit", "page", "fatal", "emergency", "p1", "sev1"), 0),
    **dict.fromkeys(("error", "high", "major", "p2", "sev2"), 1),
    **dict.fromkeys(("warning", "warn", "medium", "p3", "sev3"), 2),
    **dict.fromkeys(("low", "minor", "ticket", "p4", "sev4"), 3),
    **dict.fromkeys(("info", "informational", "notice", "none", "p5", "sev5"), 4),
}


def json_safe(value: Any) -> Any:
    """NaN/inf are not JSON; vendors reject them. Replace them by None (null)."""
    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {k: json_safe(v) for k, v in value.items()}
    return value
