"""Secrets never reach logs or output.

Values that come from secret places (`*_file` keys, header values, `${VAR}` whose name looks
like a credential) are registered here when the configuration is loaded; `redact()` replaces
them in any text, and `RedactingFilter` applies it to every log record.
"""

from __future__ import annotations

import logging
import re
import threading
from urllib.parse import urlsplit, urlunsplit

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


def redact(text: str) -> str:
    with _lock:
        secrets = sorted(_secrets, key=len, reverse=True)
    for secret in secrets:
        if secret in text:
            text = text.replace(secret, MASK)
    return text


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
