"""An alerter that writes alerts to the daemon's log (journald, container logs).

Useful on its own for a first deployment and as a last line of defence next to paging.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from typing import Literal

from watchdog.alerters.base import Alert, Alerter
from watchdog.config.fields import option

log = logging.getLogger("watchdog.alert")


@dataclass(frozen=True)
class LogOptions:
    level: Literal["info", "warning", "error"] = option("warning", help="log level of firing alerts")


class LogAlerter(Alerter):
    Options = LogOptions

    def send(self, alert: Alert, stop: threading.Event) -> None:
        level = logging.INFO if alert.status == "resolved" else getattr(logging, self.options.level.upper())
        log.log(level, "[%s] %s %s (%s): %s", alert.severity.upper(), alert.status.upper(), alert.dedup_key,
                alert.kind, alert.summary)
