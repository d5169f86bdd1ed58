"""The Alerter interface: telling people.

`send(alert, stop)` delivers one alert event. `alert.dedup_key` is stable for the life of one
incident, so receivers can de-duplicate repeats and match `resolved` to `firing`.
Raises `AlerterError` when delivery failed after the alerter's own retries; must give up
promptly when `stop` is set.
"""

from __future__ import annotations

import abc
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from watchdog.config.plugins import ALERTERS


@dataclass(frozen=True)
class Alert:
    status: str  # "firing" | "resolved"
    kind: str  # "rule", "no_data", "rollback_completed", "actuator_failed", "rollback_blocked", ... (docs/rules.md)
    dedup_key: str
    target: str
    rule: str
    severity: str
    summary: str
    at: str  # RFC 3339 UTC
    value: float | None = None
    threshold: dict[str, float] = field(default_factory=dict)
    labels: dict[str, str] = field(default_factory=dict)
    decision_id: str | None = None
    version: str | None = None
    runbook_url: str = ""
    description: str = ""

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        if data["value"] is not None and data["value"] != data["value"]:
            data["value"] = None
        return data


class Alerter(abc.ABC):
    #: the entry-point group the registry (watchdog.config.plugins) finds this kind in
    plugin_group: ClassVar[str] = ALERTERS
    Options: ClassVar[type]

    def __init__(self, name: str, options: Any):
        self.name = name
        self.options = options

    @abc.abstractmethod
    def send(self, alert: Alert, stop: threading.Event) -> None:
        """Deliver `alert`; raise AlerterError on failure."""

    def close(self) -> None:
        pass
