"""One HTTP GET/POST for the sources that read over HTTP (scrape, prometheus, http_json).

Every failure becomes a `SourceError` whose message says what and where (the URL redacted)
and whose `kind` is a short label for /metrics:

    timeout      no answer within the timeout
    connection   refused, reset, DNS, … (the innermost reason is shown)
    tls          certificate problems (the message says to set `ca_file`)
    http_4xx/5xx a non-2xx answer whose body is not the expected document
    parse        HTML instead of data, invalid or truncated JSON, a body over the size limit

Header and token values never appear in messages: they are registered as secrets.
"""

from __future__ import annotations

import json
from typing import Any

import requests

from watchdog import redact
from watchdog.errors import SourceError
from watchdog.httpclient import _reason

MAX_BODY = 32 * 1024 * 1024
_EXCERPT = 200


def make_session(verify_tls: bool, ca_file: str | None) -> requests.Session:
    session = requests.Session()
    session.verify = ca_file or verify_tls
    return session


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


def request(session: requests.Session, method: str, url: str, *, timeout: float, what: str,
            **kwargs: Any) -> requests.Response:
    """Send one request; network failures become SourceError. `what` names it in messages."""
    where = redact.redact_url(url)
    try:
        return session.request(method, url, timeout=timeout, allow_redirects=False, **kwargs)
    except requests.exceptions.SSLError as exc:
        raise SourceError(f"{what} {where} failed: TLS error: {_reason(exc, url)}; if the server uses a "
                          "private CA, set ca_file to its PEM bundle", "tls") from None
    except requests.Timeout:
        raise SourceError(f"{what} {where} timed out after {timeout:g}s", "timeout") from None
    except requests.ConnectionError as exc:
        raise SourceError(f"{what} {where} failed: cannot connect: {_reason(exc, url)}", "connection") from None
    except requests.RequestException as exc:
        raise SourceError(f"{what} {where} failed: {_reason(exc, url)}", "http") from None


def status_kind(status: int) -> str:
    return f"http_{status // 100}xx"


def is_html(response: requests.Response) -> bool:
    content_type = response.headers.get("Content-Type", "").lower()
    head = response.content[:64].lstrip().lower()
    return "html" in content_type or head.startswith((b"<!doctype", b"<html"))


def body_hint(response: requests.Response) -> str:
    """`: <first 200 characters of the body>` (redacted), or '' for an empty body."""
    text = " ".join(response.content[:_EXCERPT * 4].decode("utf-8", errors="replace").split())
    if len(text) > _EXCERPT:
        text = text[:_EXCERPT] + "…"
    return f": {redact.redact(text)}" if text else ""


def check_size(response: requests.Response, where: str) -> None:
    if len(response.content) > MAX_BODY:
        raise SourceError(f"{where} returned {len(response.content)} bytes, more than the {MAX_BODY} accepted", "parse")


def html_error(response: requests.Response, where: str, expected: str) -> SourceError:
    content_type = response.headers.get("Content-Type", "") or "none"
    kind = "parse" if response.status_code < 300 else status_kind(response.status_code)
    return SourceError(f"{where} answered HTTP {response.status_code} with an HTML page instead of {expected} "
                       f"(Content-Type {content_type}; a proxy, load balancer or login page?){body_hint(response)}",
                       kind)


def decode_json(response: requests.Response, where: str) -> Any:
    """The body as JSON; SourceError(kind parse) for invalid, truncated or oversized bodies."""
    check_size(response, where)
    text = response.content.decode("utf-8", errors="replace")
    try:
        return json.loads(text)
    except ValueError as exc:
        pos = getattr(exc, "pos", None)
        if not text.strip():
            detail = "an empty body"
        elif (isinstance(pos, int) and pos >= len(text.rstrip())) or str(getattr(exc, "msg", "")).startswith("Unterminated"):
            detail = f"JSON that ends early at character {pos} (truncated?)"
        else:
            detail = f"invalid JSON ({getattr(exc, 'msg', exc)} at character {pos})"
        raise SourceError(f"{where} returned {detail}{body_hint(response)}", "parse") from None
