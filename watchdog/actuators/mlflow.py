"""Roll back by pointing an MLflow registered-model alias (`champion`) at an earlier version.

Talks to the MLflow Model Registry REST API (`/api/2.0/mlflow/...`, MLflow 2.x and 3.x)
directly, so the `mlflow` package is not needed. The model comes from the `model` option, or
from the version itself written as `name:version` (`fraud-detector:7`); with both, the names
must agree. Setting an alias to the version it already has is a no-op, so `apply` is
idempotent; the registry has no compare-and-set, so `current_version` is read first and
`verify` reads the alias back.

API facts this relies on: `version` is sent as a JSON string (a number is rejected),
POSTs need `Content-Type: application/json`, an alias that is not set answers
`400 INVALID_PARAMETER_VALUE` (not 404), and a missing model or version answers `404`.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from urllib.parse import urlsplit

from watchdog import redact
from watchdog.http import rest
from watchdog.actuators.base import ActionContext, Actuator
from watchdog.actuators.templating import rollback_version
from watchdog.config.fields import option
from watchdog.errors import ActuatorError

API = "/api/2.0/mlflow"
_ALIAS = re.compile(r"^[\w\-]+$")


@dataclass(frozen=True)
class MlflowActuatorOptions:
    tracking_uri: str = option(help="MLflow tracking server, e.g. https://mlflow.internal:5000")
    model: str | None = option(None, help="registered model name; else the version must read name:version")
    alias: str = option("champion", help="the alias that serving follows")
    token: str | None = option(None, secret=True, help="sent as Authorization: Bearer; or token_file: PATH")
    headers: dict[str, str] = option(default_factory=dict, secret_values=True,
                                     help="extra request headers; values are secrets")
    timeout: float = option(10.0, duration=True, help="per-request timeout")
    retries: int = option(3, help="attempts after the first on 5xx, 408, 429, timeouts and network errors")
    backoff: float = option(1.0, duration=True, help="first pause between attempts; doubles each time, up to 30s")
    verify_tls: bool = option(True, help="verify the server's TLS certificate (keep this on)")
    ca_file: str | None = option(None, help="PEM bundle of CAs trusted for this server instead of the system's")


@dataclass(frozen=True)
class _Ref:
    model: str
    version: str
    qualified: bool  # written as name:version; current_version answers in the same form


class MlflowActuator(Actuator):
    Options = MlflowActuatorOptions

    def __init__(self, name: str, options: MlflowActuatorOptions):
        self.check(options)
        super().__init__(name, options)
        headers = dict(options.headers)
        if options.token:
            headers["Authorization"] = f"Bearer {options.token}"
        self.connection = rest.Connection(
            timeout=options.timeout, retries=options.retries, backoff=options.backoff,
            verify=options.ca_file or options.verify_tls, headers=headers)
        self.base = options.tracking_uri.rstrip("/") + API

    @staticmethod
    def check(options: MlflowActuatorOptions) -> None:
        parts = urlsplit(options.tracking_uri)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError("tracking_uri must be an http:// or https:// URL with a host, got "
                             f"{redact.redact_url(options.tracking_uri)!r}")
        alias = options.alias
        if not _ALIAS.match(alias) or len(alias) > 255:
            raise ValueError(f"alias {alias!r}: only letters, digits, '_' and '-' (at most 255)")
        if alias.lower() == "latest" or re.fullmatch(r"[vV]\d+", alias):
            raise ValueError(f"alias {alias!r} is reserved by MLflow; choose another (e.g. champion)")
        if options.timeout <= 0 or options.retries < 0:
            raise ValueError("timeout must be greater than 0 and retries not negative")
        if options.ca_file is not None and not options.verify_tls:
            raise ValueError("give ca_file or verify_tls: false, not both")
        for value in options.headers.values():
            redact.register_secret(value)
        if options.token:
            redact.register_secret(options.token)

    def plan(self, context: ActionContext) -> str:
        ref = self._ref(context)
        return (f"set alias {self.options.alias} of MLflow model {ref.model} to version {ref.version} "
                f"at {redact.redact_url(self.options.tracking_uri)}")

    def apply(self, context: ActionContext, stop: threading.Event) -> str:
        ref = self._ref(context)
        before = self._alias_version(ref.model, stop)
        if before == ref.version:
            return f"alias {self.options.alias} of {ref.model} already points at version {ref.version}"
        answer = self._call("POST", "/registered-models/alias", stop,
                            json_body={"name": ref.model, "alias": self.options.alias, "version": ref.version})
        if not answer.ok:
            raise ActuatorError(self._failure(answer, f"setting alias {self.options.alias} of {ref.model} "
                                                      f"to version {ref.version}"))
        was = f" (was version {before})" if before else " (alias was not set)"
        return f"alias {self.options.alias} of {ref.model} → version {ref.version}{was}"

    def verify(self, context: ActionContext, stop: threading.Event) -> str:
        ref = self._ref(context)
        now = self._alias_version(ref.model, stop)
        if now != ref.version:
            where = f"version {now}" if now else "nothing (alias not set)"
            raise ActuatorError(f"alias {self.options.alias} of {ref.model} points at {where}, "
                                f"expected version {ref.version}")
        return f"alias {self.options.alias} of {ref.model} points at version {ref.version}"

    def current_version(self, context: ActionContext) -> str | None:
        """The alias's version; `name:version` when the decision's versions are written so."""
        qualified = any(":" in (context.extra.get(k) or "") for k in ("to_version", "from_version"))
        model = self.options.model
        if model is None:
            model = next((v.split(":", 1)[0] for v in (context.extra.get("to_version"),
                          context.extra.get("from_version"), context.previous_version, context.version)
                          if v and ":" in v), None)
            if model is None:
                raise ActuatorError(f"{self.name}: no model option and no name:version in the decision; "
                                    "set model: NAME")
            qualified = True
        version = self._alias_version(model, threading.Event())
        if version is None:
            return None
        return f"{model}:{version}" if qualified else version

    def _ref(self, context: ActionContext) -> _Ref:
        raw = rollback_version(context)
        model, sep, version = raw.rpartition(":")
        if not sep:
            if self.options.model is None:
                raise ActuatorError(f"version {raw!r} names no model: write it as name:version "
                                    "(e.g. fraud-detector:7) or set the actuator's model option")
            model, version = self.options.model, raw
        elif self.options.model is not None and model != self.options.model:
            raise ActuatorError(f"version {raw!r} names model {model!r}, but this actuator manages "
                                f"{self.options.model!r}")
        if not version.isdigit():
            raise ActuatorError(f"{raw!r}: MLflow model versions are numbers (e.g. {model}:7)")
        return _Ref(model, version, bool(sep))

    def _alias_version(self, model: str, stop: threading.Event) -> str | None:
        """The version the alias points at; None when the alias is not set."""
        answer = self._call("GET", "/registered-models/alias", stop,
                            params={"name": model, "alias": self.options.alias})
        if answer.ok:
            try:
                return str(answer.body["model_version"]["version"])
            except (TypeError, KeyError):
                raise ActuatorError(f"reading alias {self.options.alias} of {model}: unexpected answer "
                                    f"{answer.excerpt!r}") from None
        if answer.status == 400 and _error_code(answer) == "INVALID_PARAMETER_VALUE" \
                and "alias" in str((answer.body or {}).get("message", "")).lower():
            return None  # MLflow answers an unset alias with 400, not 404
        raise ActuatorError(self._failure(answer, f"reading alias {self.options.alias} of {model}"))

    def _call(self, method: str, path: str, stop: threading.Event, **kwargs: object) -> rest.Answer:
        return rest.call(self.connection, method, self.base + path, stop=stop, **kwargs)  # type: ignore[arg-type]

    def _failure(self, answer: rest.Answer, doing: str) -> str:
        body = answer.body if isinstance(answer.body, dict) else {}
        detail = body.get("message") or answer.excerpt or "no details"
        code = f" {body['error_code']}" if body.get("error_code") else ""
        hint = {401: "check token or headers", 403: "the credentials may not change this model",
                404: "check the model name and that the version exists"}.get(answer.status, "")
        return (f"{doing} failed: {answer.status}{code}: {redact.redact(str(detail))}"
                + (f" ({hint})" if hint else ""))


def _error_code(answer: rest.Answer) -> str:
    return str(answer.body.get("error_code", "")) if isinstance(answer.body, dict) else ""
