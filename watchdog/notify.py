"""Alert delivery off the evaluation path.

Alerts are queued and sent by one worker thread, so a slow or dead alerting endpoint never
delays the detection of the next breach. Each delivery outcome is counted and failures are
written to the history.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Callable

from watchdog.alerters.base import Alert, Alerter
from watchdog.errors import WatchdogError
from watchdog.metrics import DaemonMetrics
from watchdog.redact import redact

log = logging.getLogger("watchdog.notify")


@dataclass(frozen=True)
class _Delivery:
    alerter: str
    alert: Alert


class Notifier:
    def __init__(self, alerters: dict[str, Alerter], metrics: DaemonMetrics, stop: threading.Event,
                 on_failure: Callable[[str, Alert, str], None] | None = None,
                 on_sent: Callable[[str, Alert], None] | None = None):
        self._alerters = alerters
        self._metrics = metrics
        self._stop = stop
        self._on_failure = on_failure
        self._on_sent = on_sent
        self._queue: queue.Queue[_Delivery | None] = queue.Queue()
        self._thread: threading.Thread | None = None

    def replace_alerters(self, alerters: dict[str, Alerter]) -> None:
        """After a reload: deliveries still queued go to the new alerters of the same name."""
        self._alerters = alerters

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()

    def notify(self, alerter_names: list[str], alert: Alert) -> None:
        log.info("alert %s %s: %s", alert.status, alert.dedup_key, alert.summary)
        for name in alerter_names:
            self._queue.put(_Delivery(name, alert))

    def drain(self, timeout: float) -> None:
        """Send what is queued (used on shutdown and by tests); gives up after `timeout`."""
        if self._thread is None:
            self._deliver_all()
            return
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            self._deliver(item)

    def _deliver_all(self) -> None:
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                self._deliver(item)

    def _deliver(self, item: _Delivery) -> None:
        alerter = self._alerters.get(item.alerter)
        if alerter is None:
            return
        try:
            alerter.send(item.alert, self._stop)
        except WatchdogError as exc:
            self._failed(item, str(exc))
        except Exception as exc:  # a third-party alerter's bug must not kill alerting
            self._failed(item, f"{type(exc).__name__}: {exc}")
        else:
            self._metrics.alerts.labels(item.alerter, "sent").inc()
            if self._on_sent is not None:
                self._on_sent(item.alerter, item.alert)

    def _failed(self, item: _Delivery, message: str) -> None:
        message = redact(message)
        self._metrics.alerts.labels(item.alerter, "failed").inc()
        log.error("alerter %s could not deliver %s: %s", item.alerter, item.alert.dedup_key, message)
        if self._on_failure is not None:
            self._on_failure(item.alerter, item.alert, message)
