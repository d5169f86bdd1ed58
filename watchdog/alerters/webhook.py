"""Tell people (or a chat bridge, or an incident tool) by POSTing each alert as JSON.

The body is `Alert.as_json()` plus `"schema": "model-watchdog.alert.v1"`, so receivers can
tell the format apart from future ones. `Idempotency-Key` is `<dedup_key>:<status>`: repeats
of the same firing (or resolved) event of one incident carry the same key.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass

from watchdog.http import client as httpclient
from watchdog.alerters.base import Alert, Alerter
from watchdog.errors import AlerterError

SCHEMA = "model-watchdog.alert.v1"


@dataclass(frozen=True)
class WebhookAlerterOptions(httpclient.HttpOptions):
    pass


class WebhookAlerter(Alerter):
    Options = WebhookAlerterOptions

    def __init__(self, name: str, options: WebhookAlerterOptions):
        httpclient.check_options(options)
        super().__init__(name, options)

    def send(self, alert: Alert, stop: threading.Event) -> None:
        payload = {**alert.as_json(), "schema": SCHEMA}
        httpclient.send_json(self.options, method="POST", payload=payload,
                             idempotency_key=f"{alert.dedup_key}:{alert.status}", stop=stop, error=AlerterError)
