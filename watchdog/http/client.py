"""Delivering one JSON document to a webhook: shared by the webhook actuator and alerter.

One policy for both: TLS verified by default, no redirects followed (a redirected POST
would silently become a GET), 2xx is success, 5xx/408/429 and network failures are
retried with backoff, any other answer fails at once. Error messages carry the status, a
short redacted excerpt of the answer and the URL as `scheme://host` only (its path may be
the credential, as in Slack's), never header values.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any, Mapping
from urllib.parse import urlsplit

from watchdog import redact
from watchdog.errors import WatchdogError
from watchdog.config.fields import option
from watchdog.http.transport import EXCERPT, Fetched, HttpFailure, Transport, excerpt, reason, scrub
from watchdog.retrying import Interrupted, call_with_retries

MAX_WAIT = 30.0  # longest pause between two attempts, also the cap on a server's Retry-After
_RETRYABLE_STATUS = frozenset({408, 429})
_reason, _scrub = reason, scrub  # the names other modules knew


@dataclass(frozen=True)
class TlsOptions:
    """Mixed into the options of every plugin that speaks HTTPS."""

    verify_tls: bool = option(True, help="verify the server's TLS certificate (keep this on)")
    ca_file: str | None = option(None, help="PEM bundle of CAs trusted for this URL instead of the system's")

    @property
    def verify(self) -> bool | str:
        """What the transport takes: a CA bundle path, True (certifi's) or False."""
        return self.ca_file or self.verify_tls


@dataclass(frozen=True)
class RetryOptions:
    """Mixed into the options of every plugin that retries over HTTP."""

    retries: int = option(3, help="attempts after the first on 5xx, 408, 429, timeouts and network errors")
    backoff: float = option(1.0, duration=True, help="first pause between attempts; doubles each time, up to 30s")


@dataclass(frozen=True)
class _Endpoint:
    url: str = option(help="http(s) URL that receives the JSON document")
    headers: dict[str, str] = option(default_factory=dict, secret_values=True,
                                     help="extra request headers; values are secrets (e.g. Authorization)")
    timeout: float = option(10.0, duration=True, help="per-request timeout")


@dataclass(frozen=True)
class HttpOptions(TlsOptions, RetryOptions, _Endpoint):
    """The options every webhook-like plugin shares (fields in the order url, headers,
    timeout, retries, backoff, verify_tls, ca_file: the mixins come after the endpoint)."""


class _Failure(WatchdogError):
    """One failed attempt, already described for people (redacted)."""

    def __init__(self, message: str, retryable: bool, retry_after: float | None = None):
        super().__init__(message)
        self.retryable = retryable
        self.retry_after = retry_after


def check_options(options: HttpOptions) -> None:
    """Raise ValueError for options that can never work; register header values as secrets."""
    parts = urlsplit(options.url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"url must be an http:// or https:// URL with a host, got {redact.redact_url(options.url)!r}")
    if options.timeout <= 0:
        raise ValueError("timeout must be greater than 0")
    if options.retries < 0:
        raise ValueError("retries must not be negative")
    if options.ca_file is not None and not options.verify_tls:
        raise ValueError("give ca_file or verify_tls: false, not both")
    if options.ca_file is not None and not os.path.isfile(options.ca_file):
        raise ValueError(f"ca_file {options.ca_file} does not exist")
    # Options built in code (not by the config loader) must not leak headers or userinfo either.
    for value in options.headers.values():
        redact.register_secret(value)
    redact.register_url(options.url, secret=False)


def describe(method: str, url: str) -> str:
    """`POST https://host:port`: the path and userinfo of a webhook URL are often the credential."""
    return f"{method} {redact.origin(url)}"


def send_json(options: HttpOptions, *, method: str, payload: dict[str, Any], idempotency_key: str,
              stop: threading.Event, error: type[Exception], deadline: float | None = None) -> str:
    """Send `payload`; return e.g. `POST https://host/path → 200`, or raise `error(message)`.

    `deadline` is a `time.monotonic()` instant after which no new attempt starts.
    """
    shown = describe(method, options.url)
    headers = {**options.headers, "Idempotency-Key": idempotency_key}
    attempts = 0
    transport = Transport(verify=options.verify)

    def attempt() -> int:
        nonlocal attempts
        attempts += 1
        timeout = options.timeout if deadline is None else max(0.1, min(options.timeout, deadline - time.monotonic()))
        return _attempt(transport, method, options.url, headers, payload, timeout)

    try:
        status = call_with_retries(
            attempt, attempts=options.retries + 1, initial_wait=options.backoff, max_wait=MAX_WAIT,
            stop=stop, deadline=deadline, describe=shown,
            retry_on=lambda exc: isinstance(exc, _Failure) and exc.retryable)
    except Interrupted as exc:
        raise error(str(exc)) from None
    except _Failure as exc:
        tried = f" (gave up after {attempts} attempts)" if attempts > 1 else ""
        raise error(f"{shown} failed: {exc}{tried}") from None
    finally:
        transport.close()
    return f"{shown} → {status}"


def _attempt(transport: Transport, method: str, url: str, headers: dict[str, str], payload: dict[str, Any],
             timeout: float) -> int:
    # One wall-clock deadline for the whole answer, of which only an excerpt is read: a
    # receiver that trickles its headers or its error page cannot hold a delivery (and the
    # rollback waiting on it) for longer.
    try:
        answer = transport.send(method, url, headers=headers, json_body=payload, timeout=timeout,
                                max_body=EXCERPT * 4, excerpt_only=True)
    except HttpFailure as exc:
        raise _Failure(str(exc), retryable=exc.transient) from None
    return _judge(answer, url)


def _judge(answer: Fetched, url: str) -> int:
    status = answer.status_code
    if 200 <= status < 300:
        return status
    retryable = status >= 500 or status in _RETRYABLE_STATUS
    text = f"{status} {answer.reason}".rstrip()
    shown = excerpt(answer.content, url)
    if shown:
        text += f": {shown}"
    hint = _hint(status, answer.headers)
    if hint:
        text += f" ({hint})"
    raise _Failure(text, retryable=retryable, retry_after=retry_after(answer.headers) if retryable else None)


def _hint(status: int, headers: Mapping[str, str]) -> str:
    if 300 <= status < 400:
        location = headers.get("Location", "?")[:200]
        location = redact.origin(location) if "://" in location else redact.redact(location)
        return f"redirected to {location}; configure the final URL, redirects are not followed"
    if status in (401, 403):
        return "check the credentials in headers"
    if status in (404, 405):
        return "check the url and method"
    if 400 <= status < 500 and status not in _RETRYABLE_STATUS:
        return "rejected by the receiver; not retried"
    return ""


def retry_after(headers: Mapping[str, str]) -> float | None:
    """A server's Retry-After, in seconds from now (a number or an HTTP date)."""
    value = headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None
