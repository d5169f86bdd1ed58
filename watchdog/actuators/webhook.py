"""Roll back by sending the decision to an HTTP endpoint (a deploy API, a CI trigger, …).

The receiver gets `ActionContext.as_json()` and an `Idempotency-Key` header equal to the
decision id: the same decision may be sent again after a retry or a restart, and the
receiver is expected to act on it once.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Literal

from watchdog import httpclient
from watchdog.actuators.base import ActionContext, Actuator
from watchdog.config.fields import option
from watchdog.errors import ActuatorError


@dataclass(frozen=True)
class WebhookActuatorOptions(httpclient.HttpOptions):
    method: Literal["POST", "PUT"] = option("POST", help="HTTP method")


class WebhookActuator(Actuator):
    Options = WebhookActuatorOptions

    def __init__(self, name: str, options: WebhookActuatorOptions):
        httpclient.check_options(options)
        super().__init__(name, options)

    def plan(self, context: ActionContext) -> str:
        return f"{httpclient.describe(self.options.method, self.options.url)} with decision {context.decision_id}"

    def apply(self, context: ActionContext, stop: threading.Event) -> str:
        return httpclient.send_json(self.options, method=self.options.method, payload=context.as_json(),
                                    idempotency_key=context.decision_id, stop=stop, error=ActuatorError)
