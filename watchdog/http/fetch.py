"""One HTTP GET/POST for the sources that read over HTTP (scrape, prometheus, http_json),
through the shared `http.transport`.

Every failure becomes a `SourceError` whose message says what and where (the URL redacted)
and whose `kind` is a short label for /metrics:

    timeout      no complete answer within the timeout: one wall-clock deadline for connect,
                 headers and the whole body (a server trickling bytes cannot stretch it)
    too_large    a body over `max_body` bytes after decompression (default 32 MiB); reading
                 stops there, so an endless stream or a gzip bomb costs at most that much
    connection   refused, reset, DNS, … (the innermost reason is shown)
    tls          certificate problems (the message says to set `ca_file`)
    http_4xx/5xx a non-2xx answer whose body is not the expected document
    parse        HTML instead of data, invalid or truncated JSON, an unknown Content-Encoding

Header and token values never appear in messages: they are registered as secrets.
"""

from __future__ import annotations

import json
from typing import Any

from watchdog import redact
from watchdog.errors import SourceError
from watchdog.http.body import MAX_BODY
from watchdog.http.transport import Fetched, HttpFailure, Transport, excerpt
from watchdog.text.sizes import format_size

__all__ = ["MAX_BODY", "Fetched", "Transport", "make_session", "request"]


def make_session(verify_tls: bool, ca_file: str | None, *, trust_env: bool = True) -> Transport:
    """The transport of one source (its connections kept alive between ticks)."""
    return Transport(verify=ca_file or verify_tls, trust_env=trust_env)


def auth_headers(headers: dict[str, str], bearer_token: str | None) -> dict[str, str]:
    """The configured headers plus `Authorization: Bearer …`; registers the values as secrets."""
    out = dict(headers)
    for value in out.values():
        redact.register_secret(value)
    if bearer_token:
        redact.register_secret(bearer_token)
        out["Authorization"] = f"Bearer {bearer_token}"
    return out


def check_auth(headers: dict[str, str], bearer_token: str | None, basic: bool = False) -> None:
    """Raise ValueError when two options would each set the Authorization header."""
    has_header = any(k.lower() == "authorization" for k in headers)
    given = [name for name, on in (("bearer_token", bool(bearer_token)), ("basic_auth", basic),
                                   ("headers.Authorization", has_header)) if on]
    if len(given) > 1:
        raise ValueError(f"give only one of {', '.join(given)}: each sets the Authorization header")


def request(session: Transport, method: str, url: str, *, timeout: float, what: str,
            max_body: int = MAX_BODY, **kwargs: Any) -> Fetched:
    """Send one request and read its answer, all within `timeout` seconds of wall-clock time
    and at most `max_body` bytes of (decompressed) body. Failures become SourceError;
    `what` names the request in messages."""
    try:
        return session.send(method, url, timeout=timeout, max_body=max_body, **kwargs)
    except HttpFailure as exc:
        raise _failure(exc, f"{what} {redact.redact_url(url)}", timeout, max_body) from None


def source_error(exc: HttpFailure, what: str, timeout: float, max_body: int) -> SourceError:
    """The SourceError of a failed exchange (`what` names it: `scrape of <url>`)."""
    return _failure(exc, what, timeout, max_body)


def _failure(exc: HttpFailure, what: str, timeout: float, max_body: int) -> SourceError:
    if exc.kind == "too_large":
        return SourceError(f"{what} refused: {exc} (max_body {format_size(max_body)}; raise the source's "
                           "max_body if the page is really that large)", "too_large")
    if exc.kind == "timeout":
        return _timed_out(what, timeout)
    return SourceError(f"{what} failed: {exc}", exc.kind)


def _timed_out(what: str, timeout: float) -> SourceError:
    return SourceError(f"{what} timed out after {timeout:g}s (no complete answer: "
                       "connect, headers and body must all arrive within the timeout)", "timeout")


def status_kind(status: int) -> str:
    return f"http_{status // 100}xx"


def is_html(response: Fetched) -> bool:
    content_type = response.headers.get("Content-Type", "").lower()
    head = response.content[:64].lstrip().lower()
    return "html" in content_type or head.startswith((b"<!doctype", b"<html"))


def body_hint(response: Fetched) -> str:
    """`: <first 200 characters of the body>` (redacted before it is cut, so a cut cannot leave
    half a secret readable), or '' for an empty body."""
    text = excerpt(response.content)
    return f": {text}" if text else ""


def html_error(response: Fetched, where: str, expected: str) -> SourceError:
    content_type = response.headers.get("Content-Type", "") or "none"
    kind = "parse" if response.status_code < 300 else status_kind(response.status_code)
    return SourceError(f"{where} answered HTTP {response.status_code} with an HTML page instead of {expected} "
                       f"(Content-Type {content_type}; a proxy, load balancer or login page?){body_hint(response)}",
                       kind)


def decode_json(response: Fetched, where: str) -> Any:
    """The body as JSON; SourceError(kind parse) for invalid, truncated or oversized bodies."""
    text = response.content.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except RecursionError:
        raise SourceError(f"{where} returned JSON nested too deeply to read{body_hint(response)}", "parse") from None
    except ValueError as exc:
        pos = getattr(exc, "pos", None)
        if not text.strip():
            detail = "an empty body"
        elif (isinstance(pos, int) and pos >= len(text.rstrip())) or str(getattr(exc, "msg", "")).startswith("Unterminated"):
            detail = f"JSON that ends early at character {pos} (truncated?)"
        else:
            detail = f"invalid JSON ({getattr(exc, 'msg', exc)} at character {pos})"
        raise SourceError(f"{where} returned {detail}{body_hint(response)}", "parse") from None
