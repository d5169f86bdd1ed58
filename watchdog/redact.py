"""Secrets never reach logs or output.

Values that come from secret places (`*_file` keys, header values, `${VAR}` whose name looks
like a credential) are registered here when the configuration is loaded; `redact()` replaces
them in any text, and `RedactingFilter` applies it to every log record.

A URL is registered in the forms a server may echo back (`register_url`): a secret URL (a
webhook URL from a `*_file` or a secret option, a URL with `${VAR}` outside its host) by its
path, query, long path segments and their base64; any URL's userinfo by `user:password`,
the password and the base64 of `user:password` (what the `Authorization: Basic` header
carries). People see webhook and actuator URLs as `scheme://host` only (`origin`).
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|PASSWD|PWD|KEY|AUTH|CREDENTIAL|COOKIE|SESSION", re.I)
_lock = threading.Lock()
_secrets: set[str] = set()


def looks_secret(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


def register_secret(value: str) -> None:
    # Very short values would mask ordinary words; such secrets are not worth having anyway.
    if len(value) >= 4:
        with _lock:
            _secrets.add(value)
            # The bearer scheme is often written around the value; mask the bare token too.
            for part in value.split():
                if len(part) >= 8:
                    _secrets.add(part)
        if _URL.match(value.strip()):
            register_url(value.strip(), secret=True)


_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^\s]+$")
_MIN_SEGMENT = 12  # path segments this long in a secret URL look like tokens: masked on their own too


def register_url(url: str, *, secret: bool) -> None:
    """Register what a server could echo of `url`: always its userinfo (and the base64 of
    `user:password`), and for a `secret` URL also its path, query and long path segments."""
    try:
        parts = urlsplit(url)
        user, password = parts.username, parts.password
    except ValueError:
        return
    forms: set[str] = set()
    if password:
        for u, p in {(user or "", password), (unquote(user or ""), unquote(password))}:
            forms.update({p, f"{u}:{p}"})
            forms.update(_base64_forms(f"{u}:{p}"))
    if secret:
        # A path as short as `/api` is no credential, and masking it would blank ordinary words.
        for piece in (parts.path if len(parts.path) >= 8 else "", parts.query, parts.fragment):
            if piece:
                forms.update({piece, unquote(piece), piece.replace("/", "\\/")})
                forms.update(_base64_forms(piece))
        forms.update(seg for seg in parts.path.split("/") if len(seg) >= _MIN_SEGMENT)
    with _lock:
        _secrets.update(form for form in forms if len(form) >= 4)


def _base64_forms(text: str) -> set[str]:
    """Standard and URL-safe base64 without padding, of the UTF-8 and Latin-1 bytes."""
    out = set()
    for encoding in ("utf-8", "latin-1"):
        try:
            raw = text.encode(encoding)
        except UnicodeEncodeError:
            continue
        out.add(base64.b64encode(raw).decode().rstrip("="))
        out.add(base64.urlsafe_b64encode(raw).decode().rstrip("="))
    return out


def origin(url: str) -> str:
    """`scheme://host[:port]` of a URL, for errors and history: paths and userinfo may be secrets."""
    try:
        parts = urlsplit(url)
        host, port = parts.hostname, parts.port
    except ValueError:
        return MASK
    if not parts.scheme or not host:
        return redact(url)  # a path on an API server named elsewhere (Kubernetes), not a URL of its own
    shown = f"[{host}]" if ":" in host else host
    return redact(f"{parts.scheme}://{shown}" + (f":{port}" if port is not None else ""))


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


def excerpt(text: str, limit: int) -> str:
    """At most `limit` characters of a peer's answer for a message, on one line, redacted.

    Redacted *before* it is cut, so a cut cannot split a secret into an unrecognised piece;
    a tail that is the start of a secret (the answer was read only so far) is masked too."""
    text = redact(" ".join(text.split()))
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        for size in range(min(len(secret) - 1, len(text)), 5, -1):
            if text.endswith(secret[:size]):
                text = text[:-size] + MASK
                break
    return text if len(text) <= limit else text[:limit] + "…"


def redact_url(url: str) -> str:
    """Hide userinfo passwords and query strings of URLs shown to people."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return redact(url)
    netloc = parts.netloc
    if parts.password is not None:
        netloc = netloc.replace(f":{parts.password}@", f":{MASK}@")
    query = MASK if parts.query else ""
    return redact(urlunsplit((parts.scheme, netloc, parts.path, query, "")))


_DSN_URL_PASSWORD = re.compile(r"(\bpassword=)[^&]*", re.I)
_DSN_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)


def redact_dsn(dsn: str) -> str:
    """A database DSN for people: URL passwords and `password=` parameters masked, the rest kept."""
    if "://" not in dsn:  # libpq key=value form
        return redact(_DSN_KV_PASSWORD.sub(lambda m: m.group(1) + MASK, dsn))
    try:
        parts = urlsplit(dsn)
        password = parts.password
    except ValueError:
        return MASK
    head, sep, query = dsn.partition("?")
    if password is not None:
        head = head.replace(f":{password}@", f":{MASK}@", 1)
    return redact(head + sep + _DSN_URL_PASSWORD.sub(lambda m: m.group(1) + MASK, query))


class RedactingFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        return True
