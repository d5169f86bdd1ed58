"""Roll back by sending the decision to an HTTP endpoint (a deploy API, a CI trigger, …).

The receiver gets `ActionContext.as_json()` and an `Idempotency-Key` header equal to the
decision id: the same decision may be sent again after a retry or a restart, and the
receiver is expected to act on it once.

Optional read-back, with the same headers, timeout, retries and TLS settings (URLs may hold
`{{placeholders}}`, filled URL-encoded):

- `verify_url`: GET it; a 2xx answer verifies. With `verify_field` (a dotted path into the
  JSON answer, e.g. `deployment.version`) the value there must also equal the rollback
  target: the decision's `to_version`, else its `previous_version`.
- `current_url`: GET it; the running version is the value at `current_field` (default
  `version`) of the JSON answer; a missing field or JSON null means unknown.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import quote

from watchdog import redact
from watchdog.http import client as httpclient
from watchdog.http import rest
from watchdog.actuators.base import ActionContext, Actuator
from watchdog.actuators.templating import PLACEHOLDER, check_template, render, rollback_version
from watchdog.config.fields import option
from watchdog.errors import ActuatorError


@dataclass(frozen=True)
class WebhookActuatorOptions(httpclient.HttpOptions):
    method: Literal["POST", "PUT"] = option("POST", help="HTTP method")
    verify_url: str | None = option(None, help="GET after apply; 2xx (and verify_field, if set) = took effect")
    verify_field: str | None = option(None, help="dotted path in verify_url's JSON that must equal the "
                                                 "rollback target (to_version, else previous_version)")
    current_url: str | None = option(None, help="GET to read the running version")
    current_field: str = option("version", help="dotted path of the running version in current_url's JSON")


class WebhookActuator(Actuator):
    Options = WebhookActuatorOptions

    def __init__(self, name: str, options: WebhookActuatorOptions):
        httpclient.check_options(options)
        for key in ("verify_url", "current_url"):
            url = getattr(options, key)
            if url is not None:
                check_template(url, key)
                httpclient.check_options(httpclient.HttpOptions(url=_skeleton(url)))
        if options.verify_field is not None and options.verify_url is None:
            raise ValueError("verify_field needs verify_url")
        super().__init__(name, options)
        self.connection = rest.Connection(
            timeout=options.timeout, retries=options.retries, backoff=options.backoff,
            verify=options.ca_file or options.verify_tls, headers=options.headers)

    def plan(self, context: ActionContext) -> str:
        planned = f"{httpclient.describe(self.options.method, self.options.url)} with decision {context.decision_id}"
        if self.options.verify_url is not None:
            planned += f"; verify with {rest.describe('GET', self._url(self.options.verify_url, context))}"
        return planned

    def apply(self, context: ActionContext, stop: threading.Event) -> str:
        return httpclient.send_json(self.options, method=self.options.method, payload=context.as_json(),
                                    idempotency_key=context.decision_id, stop=stop, error=ActuatorError)

    def verify(self, context: ActionContext, stop: threading.Event) -> str:
        if self.options.verify_url is None:
            return super().verify(context, stop)
        url = self._url(self.options.verify_url, context)
        expected = rollback_version(context) if self.options.verify_field else None
        answer = self._get(url, stop, "not verified")
        shown = rest.describe("GET", url)
        if self.options.verify_field is None:
            return f"verified: {shown} → {answer.status}"
        found = _field(answer, self.options.verify_field, shown, "not verified")
        if found is None or str(found) != expected:
            raise ActuatorError(f"not verified: {shown} says {self.options.verify_field} = {found!r}, "
                                f"expected {expected!r}")
        return f"verified: {shown} says {self.options.verify_field} = {expected}"

    def current_version(self, context: ActionContext) -> str | None:
        if self.options.current_url is None:
            return None
        url = self._url(self.options.current_url, context)
        answer = self._get(url, threading.Event(), "cannot read the current version")
        try:
            found = rest.field_at(answer.body, self.options.current_field)
        except KeyError:
            return None
        return None if found is None else str(found)

    def _url(self, template: str, context: ActionContext) -> str:
        return render(template, context, escape=lambda value: quote(value, safe=""))

    def _get(self, url: str, stop: threading.Event, failing: str) -> rest.Answer:
        answer = rest.call(self.connection, "GET", url, stop=stop)
        if not answer.ok:
            detail = f": {answer.excerpt}" if answer.excerpt else ""
            raise ActuatorError(f"{failing}: {rest.describe('GET', url)} → {answer.status}{detail}")
        return answer


def _field(answer: rest.Answer, path: str, shown: str, failing: str) -> Any:
    if not isinstance(answer.body, (dict, list)):
        raise ActuatorError(f"{failing}: {shown} did not answer JSON ({answer.excerpt!r})")
    try:
        return rest.field_at(answer.body, path)
    except KeyError:
        raise ActuatorError(f"{failing}: {shown} has no field {path} in {redact.redact(answer.excerpt)!r}") from None


def _skeleton(url: str) -> str:
    """The URL with placeholders filled by a dummy value, to check its shape at load time."""
    return PLACEHOLDER.sub("x", url)
