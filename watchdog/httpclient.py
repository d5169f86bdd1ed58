"""Delivering one JSON document to a webhook: shared by the webhook actuator and alerter.

One policy for both: TLS verified by default, no redirects followed (a redirected POST
would silently become a GET), 2xx is success, 5xx/408/429 and network failures are
retried with backoff, any other answer fails at once. Error messages carry the status, a
short redacted excerpt of the answer and the URL as `scheme://host` only (its path may be
the credential, as in Slack's), never header values.
"""

from __future__ import annotations

import os
import re
import threading
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Any
from urllib.parse import urlsplit

import requests

from watchdog import __version__, httpbody, redact
from watchdog.config.fields import option
from watchdog.retrying import Interrupted, call_with_retries

MAX_WAIT = 30.0  # longest pause between two attempts, also the cap on a server's Retry-After
_EXCERPT = 200  # characters of a response body shown in an error message
_RETRYABLE_STATUS = frozenset({408, 429})


@dataclass(frozen=True)
class HttpOptions:
    """The options every webhook-like plugin shares."""

    url: str = option(help="http(s) URL that receives the JSON document")
    headers: dict[str, str] = option(default_factory=dict, secret_values=True,
                                     help="extra request headers; values are secrets (e.g. Authorization)")
    timeout: float = option(10.0, duration=True, help="per-request timeout")
    retries: int = option(3, help="attempts after the first on 5xx, 408, 429, timeouts and network errors")
    backoff: float = option(1.0, duration=True, help="first pause between attempts; doubles each time, up to 30s")
    verify_tls: bool = option(True, help="verify the server's TLS certificate (keep this on)")
    ca_file: str | None = option(None, help="PEM bundle of CAs trusted for this URL instead of the system's")


class _Failure(Exception):
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
    headers = {**options.headers, "Content-Type": "application/json", "Idempotency-Key": idempotency_key,
               "User-Agent": f"model-watchdog/{__version__}"}
    attempts = 0

    def attempt() -> int:
        nonlocal attempts
        attempts += 1
        timeout = options.timeout if deadline is None else max(0.1, min(options.timeout, deadline - time.monotonic()))
        return _attempt(session, method, options, headers, payload, timeout)

    with httpbody.session() as session:
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
    return f"{shown} → {status}"


def _attempt(session: requests.Session, method: str, options: HttpOptions, headers: dict[str, str],
             payload: dict[str, Any], timeout: float) -> int:
    verify: bool | str = options.ca_file or options.verify_tls
    # One wall-clock deadline for the whole answer: a receiver that trickles its headers or
    # its error page cannot hold a delivery (and the rollback waiting on it) for longer.
    with httpbody.Deadline(timeout) as deadline:
        try:
            response = session.request(method, options.url, json=payload, headers=headers, timeout=timeout,
                                       verify=verify, allow_redirects=False, stream=True)
        except requests.exceptions.SSLError as exc:
            if deadline.passed():
                raise _timed_out(timeout) from None
            raise _Failure(f"TLS error: {_reason(exc, options.url)}; if the server uses a private CA, "
                           "set ca_file to its PEM bundle", retryable=False) from None
        except requests.exceptions.Timeout:
            raise _timed_out(timeout) from None
        except requests.exceptions.ConnectionError as exc:
            if deadline.passed():
                raise _timed_out(timeout) from None
            raise _Failure(f"cannot connect: {_reason(exc, options.url)}", retryable=True) from None
        except requests.exceptions.RequestException as exc:
            raise _Failure(f"request failed: {_reason(exc, options.url)}", retryable=False) from None
        with response:
            return _judge(response, options.url, deadline)


def _timed_out(timeout: float) -> _Failure:
    return _Failure(f"timed out: no complete answer within {timeout:g}s", retryable=True)


def _judge(response: requests.Response, url: str, deadline: httpbody.Deadline | None = None) -> int:
    status = response.status_code
    if 200 <= status < 300:
        return status
    retryable = status >= 500 or status in _RETRYABLE_STATUS
    text = f"{status} {response.reason or ''}".rstrip()
    excerpt = _excerpt(response, url, deadline)
    if excerpt:
        text += f": {excerpt}"
    hint = _hint(response, url)
    if hint:
        text += f" ({hint})"
    retry_after = _retry_after(response) if retryable else None
    raise _Failure(text, retryable=retryable, retry_after=retry_after)


def _hint(response: requests.Response, url: str) -> str:
    status = response.status_code
    if 300 <= status < 400:
        location = response.headers.get("Location", "?")[:200]
        location = redact.origin(location) if "://" in location else redact.redact(location)
        return f"redirected to {location}; configure the final URL, redirects are not followed"
    if status in (401, 403):
        return "check the credentials in headers"
    if status in (404, 405):
        return "check the url and method"
    if 400 <= status < 500 and status not in _RETRYABLE_STATUS:
        return "rejected by the receiver; not retried"
    return ""


def _excerpt(response: requests.Response, url: str, deadline: httpbody.Deadline | None = None) -> str:
    try:  # at most the first _EXCERPT * 4 bytes (decompressed), within the attempt's deadline
        raw = httpbody.read_body(response, _EXCERPT * 4, deadline, truncate=True)
    except httpbody.BodyError:  # the body is only decoration for the message; its failure is not the news
        return ""
    return redact.excerpt(_scrub(raw.decode("utf-8", errors="replace"), url), _EXCERPT)


def _retry_after(response: requests.Response) -> float | None:
    value = response.headers.get("Retry-After", "").strip()
    if not value:
        return None
    if value.isdigit():
        return float(value)
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


_POOL_PREFIX = re.compile(r"^\w+\(host=[^)]*\):\s*")


def failure_reason(exc: BaseException, url: str) -> str:
    """The innermost cause of a requests/urllib3 error, without the pool's URL-bearing wrapper,
    redacted (for messages about a request that failed)."""
    return _reason(exc, url)


def _reason(exc: BaseException, url: str) -> str:
    """The innermost cause of a requests/urllib3 error, without the pool's URL-bearing wrapper."""
    current: BaseException = exc
    for _ in range(10):
        inner = getattr(current, "reason", None)
        if not isinstance(inner, BaseException) and current.args and isinstance(current.args[0], BaseException):
            inner = current.args[0]
        if not isinstance(inner, BaseException) or inner is current:
            break
        current = inner
    text = _POOL_PREFIX.sub("", str(current)) or type(current).__name__
    return _scrub(text, url)


def _scrub(text: str, url: str) -> str:
    """Mask the URL's query and password (often credentials) and every registered secret."""
    parts = urlsplit(url)
    for raw in (parts.query, parts.password):
        if raw and len(raw) >= 4:
            text = text.replace(raw, redact.MASK)
    return redact.redact(text)
