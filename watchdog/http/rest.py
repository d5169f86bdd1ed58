"""JSON over HTTP for actuators that read back what they change (MLflow, Kubernetes, verify URLs).

The policy is `watchdog.http.client`'s, over the same `http.transport`: TLS verified by default, redirects not followed,
5xx/408/429, timeouts and network errors retried with exponential backoff and jitter through
`retrying.call_with_retries` (a server's Retry-After honoured), and `stop` ends a wait at
once. `http.client` delivers one document and only needs the status; here the caller gets the
status *and* the parsed body of every other answer, because 400, 403, 404 and 409 mean
different things to each API. Messages carry the method, the URL's scheme://host and a redacted
excerpt of the answer, never header values.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Mapping

from watchdog import redact
from watchdog.errors import ActuatorError, WatchdogError
from watchdog.http.client import MAX_WAIT, retry_after  # one policy, one implementation
from watchdog.http.transport import HttpFailure, Transport, excerpt
from watchdog.retrying import Interrupted, call_with_retries

_RETRYABLE_STATUS = frozenset({408, 429})


@dataclass(frozen=True)
class Connection:
    """How to reach one server."""

    timeout: float = 10.0
    retries: int = 3
    backoff: float = 1.0
    verify: bool | str = True  # True (certifi's CAs, or REQUESTS_CA_BUNDLE), a CA bundle path, or False (only if configured so)
    cert: tuple[str, str] | None = None  # client certificate and key files
    headers: Mapping[str, str] = field(default_factory=dict)
    tls_hint: str = "if the server uses a private CA, set ca_file to its PEM bundle"


@dataclass(frozen=True)
class Answer:
    status: int
    body: Any  # the parsed JSON document, or None
    excerpt: str  # the start of the body, redacted, for messages

    @property
    def ok(self) -> bool:
        return 200 <= self.status < 300


class _Transient(WatchdogError):
    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


def describe(method: str, url: str) -> str:
    return f"{method} {redact.origin(url)}"


def call(connection: Connection, method: str, url: str, *, stop: threading.Event,
         params: Mapping[str, str] | None = None, json_body: Any = None,
         content_type: str = "application/json", headers: Mapping[str, str] | None = None,
         deadline: float | None = None) -> Answer:
    """Send one request; retry transient failures; return any other answer for the caller to judge.

    Raises ActuatorError for TLS errors, after the last retry, and on shutdown (`stop`).
    `deadline` is a `time.monotonic()` instant after which no new attempt starts.
    """
    shown = describe(method, url)
    sent = {**connection.headers, **(headers or {}), "Accept": "application/json"}
    data = None
    if json_body is not None:
        data = json.dumps(json_body).encode()
        sent["Content-Type"] = content_type
    attempts = 0

    def attempt() -> Answer:
        nonlocal attempts
        attempts += 1
        timeout = connection.timeout
        if deadline is not None:
            timeout = max(0.1, min(timeout, deadline - time.monotonic()))
        return _attempt(connection, method, url, params, data, sent, timeout)

    try:
        return call_with_retries(attempt, attempts=connection.retries + 1, initial_wait=connection.backoff,
                                 max_wait=MAX_WAIT, stop=stop, deadline=deadline, describe=shown,
                                 retry_on=lambda exc: isinstance(exc, _Transient))
    except Interrupted as exc:
        raise ActuatorError(str(exc)) from None
    except _Transient as exc:
        tried = f" (gave up after {attempts} attempts)" if attempts > 1 else ""
        raise ActuatorError(f"{shown} failed: {exc}{tried}") from None


def _attempt(connection: Connection, method: str, url: str, params: Mapping[str, str] | None,
             data: bytes | None, headers: dict[str, str], timeout: float) -> Answer:
    # One wall-clock deadline for the whole answer, and at most MAX_BODY bytes of it.
    transport = Transport(verify=connection.verify, cert=connection.cert)
    try:
        fetched = transport.send(method, url, params=params, data=data, headers=headers, timeout=timeout)
    except HttpFailure as exc:
        if exc.transient:
            raise _Transient(str(exc) if exc.kind != "connection" or str(exc).startswith("cannot connect")
                             else f"reading the answer failed: {exc}") from None
        if exc.kind == "tls":
            raise ActuatorError(f"{describe(method, url)} failed: {exc}".replace(
                "if the server uses a private CA, set ca_file to its PEM bundle", connection.tls_hint)) from None
        raise ActuatorError(f"{describe(method, url)} failed: {exc}") from None
    finally:
        transport.close()
    answer = Answer(fetched.status_code, _json(fetched.content), excerpt(fetched.content, url))
    if answer.status >= 500 or answer.status in _RETRYABLE_STATUS:
        text = f"{answer.status} {fetched.reason}".rstrip()
        raise _Transient(f"{text}: {answer.excerpt}" if answer.excerpt else text, retry_after(fetched.headers))
    return answer


def _json(content: bytes) -> Any:
    if not content:
        return None
    try:
        return json.loads(content)
    except (ValueError, RecursionError):  # not JSON, or nested deeper than the parser goes
        return None


def field_at(document: Any, path: str) -> Any:
    """The value at a dotted path (`status.version`, `items.0.name`); KeyError when absent."""
    current = document
    for part in path.split("."):
        if isinstance(current, dict) and part in current:
            current = current[part]
        elif isinstance(current, list) and part.isdigit() and int(part) < len(current):
            current = current[int(part)]
        else:
            raise KeyError(path)
    return current
