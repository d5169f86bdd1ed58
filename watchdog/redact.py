"""Secrets never reach logs or output.

Values that come from secret places (`*_file` keys, header values, `${VAR}` whose name looks
like a credential) are registered here when the configuration is loaded; `redact()` replaces
them in any text, and `RedactingFilter` applies it to every log record.

A URL is registered in the forms a server may echo back (`register_url`): a secret URL (a
webhook URL from a `*_file` or a secret option, a URL with `${VAR}` outside its host) by its
path, query, long path segments and their base64; any URL's userinfo by `user:password`,
the password and the base64 of `user:password` (what the `Authorization: Basic` header
carries). People see webhook and actuator URLs as `scheme://host` only (`origin`).

The secrets live in a `Redactor`. The daemon owns one and installs it as the process's
(`install`), so plugins and the log filter use it through the module functions below; a
reload builds the next set of secrets while the old one still masks, then swaps: secrets the
new configuration no longer has are forgotten. A CLI run installs its own the same way, and
tests make their own. `collecting(redactor)` sends what the calling thread registers meanwhile
to `redactor` (the loader gathers a configuration's secrets so, and a CLI run its own).
"""

from __future__ import annotations

import base64
import logging
import re
import threading
from contextlib import contextmanager
from typing import Iterator
from urllib.parse import unquote, urlsplit, urlunsplit

MASK = "***"
_SECRET_NAME = re.compile(r"TOKEN|SECRET|PASSW|PASSWD|PWD|KEY|AUTH|CREDENTIAL|COOKIE|SESSION", re.I)
_URL = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*://[^\s]+$")
_MIN_SEGMENT = 12  # path segments this long in a secret URL look like tokens: masked on their own too
_DSN_URL_PASSWORD = re.compile(r"(\bpassword=)[^&]*", re.I)
_DSN_KV_PASSWORD = re.compile(r"(\bpassword\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", re.I)


def looks_secret(name: str) -> bool:
    return bool(_SECRET_NAME.search(name))


class Redactor:
    """A set of secrets, and the ways to keep them out of text shown to people."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._next: set[str] | None = None  # a reload's secrets, being gathered (begin/commit)

    # -- what is secret ------------------------------------------------------------------------

    def register_secret(self, value: str) -> None:
        # Very short values would mask ordinary words; such secrets are not worth having anyway.
        if len(value) < 4:
            return
        # The bearer scheme is often written around the value; mask the bare token too.
        self._keep({value, *(part for part in value.split() if len(part) >= 8)})
        if _URL.match(value.strip()):
            self.register_url(value.strip(), secret=True)

    def register_url(self, url: str, *, secret: bool) -> None:
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
        self._keep({form for form in forms if len(form) >= 4})

    def update(self, other: Redactor) -> None:
        """Mask `other`'s secrets too."""
        self._keep(other.secrets())

    def secrets(self) -> frozenset[str]:
        with self._lock:
            return frozenset(self._secrets)

    def _keep(self, forms: set[str] | frozenset[str]) -> None:
        with self._lock:
            self._secrets.update(forms)
            if self._next is not None:
                self._next.update(forms)

    # -- a reload: the next secrets replace these ------------------------------------------------

    def begin(self) -> None:
        """Start gathering the next set: everything registered from now on (it is masked at
        once too, as are the current secrets, until `commit` or `abort`)."""
        with self._lock:
            self._next = set()

    def commit(self) -> None:
        """The gathered set becomes the only one: secrets not registered again are forgotten."""
        with self._lock:
            if self._next is not None:
                self._secrets, self._next = self._next, None

    def abort(self) -> None:
        """Keep masking everything (the old and the gathered secrets)."""
        with self._lock:
            self._next = None

    # -- text for people -------------------------------------------------------------------------

    def _sorted(self) -> list[str]:
        with self._lock:
            return sorted(self._secrets, key=len, reverse=True)

    def redact(self, text: str) -> str:
        for secret in self._sorted():
            if secret in text:
                text = text.replace(secret, MASK)
        return text

    def excerpt(self, text: str, limit: int) -> str:
        """At most `limit` characters of a peer's answer for a message, on one line, redacted.

        Redacted *before* it is cut, so a cut cannot split a secret into an unrecognised piece;
        a tail that is the start of a secret (the answer was read only so far) is masked too."""
        text = self.redact(" ".join(text.split()))
        for secret in self._sorted():
            for size in range(min(len(secret) - 1, len(text)), 5, -1):
                if text.endswith(secret[:size]):
                    text = text[:-size] + MASK
                    break
        return text if len(text) <= limit else text[:limit] + "…"

    def origin(self, url: str) -> str:
        """`scheme://host[:port]` of a URL, for errors and history: paths and userinfo may be secrets."""
        try:
            parts = urlsplit(url)
            host, port = parts.hostname, parts.port
        except ValueError:
            return MASK
        if not parts.scheme or not host:
            return self.redact(url)  # a path on an API server named elsewhere (Kubernetes), not a URL of its own
        shown = f"[{host}]" if ":" in host else host
        return self.redact(f"{parts.scheme}://{shown}" + (f":{port}" if port is not None else ""))

    def redact_url(self, url: str) -> str:
        """Hide userinfo passwords and query strings of URLs shown to people."""
        try:
            parts = urlsplit(url)
        except ValueError:
            return self.redact(url)
        netloc = parts.netloc
        if parts.password is not None:
            netloc = netloc.replace(f":{parts.password}@", f":{MASK}@")
        query = MASK if parts.query else ""
        return self.redact(urlunsplit((parts.scheme, netloc, parts.path, query, "")))

    def redact_dsn(self, dsn: str) -> str:
        """A database DSN for people: URL passwords and `password=` parameters masked, the rest kept."""
        if "://" not in dsn:  # libpq key=value form
            return self.redact(_DSN_KV_PASSWORD.sub(lambda m: m.group(1) + MASK, dsn))
        try:
            parts = urlsplit(dsn)
            password = parts.password
        except ValueError:
            return MASK
        head, sep, query = dsn.partition("?")
        if password is not None:
            head = head.replace(f":{password}@", f":{MASK}@", 1)
        return self.redact(head + sep + _DSN_URL_PASSWORD.sub(lambda m: m.group(1) + MASK, query))


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


# -- the process's redactor, for code that is not handed one (plugins, the log filter) -------------

_installed = Redactor()
_install_lock = threading.Lock()
_local = threading.local()


def current() -> Redactor:
    return _installed


def install(redactor: Redactor) -> Redactor:
    """Make `redactor` the process's; returns the one it replaces."""
    global _installed
    with _install_lock:
        previous, _installed = _installed, redactor
    return previous


def uninstall(redactor: Redactor, previous: Redactor) -> None:
    """Put `previous` back, if `redactor` is still the process's."""
    global _installed
    with _install_lock:
        if _installed is redactor:
            _installed = previous


def _collectors() -> list[Redactor]:
    return getattr(_local, "collectors", [])


@contextmanager
def collecting(redactor: Redactor) -> Iterator[Redactor]:
    """While inside, what this thread registers through this module goes to `redactor` (and to
    the collectors around it), not to the process's redactor."""
    _local.collectors = [*_collectors(), redactor]
    try:
        yield redactor
    finally:
        _local.collectors = [c for c in _collectors() if c is not redactor]


def _targets() -> list[Redactor]:
    """Where a secret registered through this module goes: the calling thread's collectors
    (a configuration being loaded, a reload, a CLI run), or else the process's redactor."""
    return _collectors() or [current()]


def register_secret(value: str) -> None:
    for redactor in _targets():
        redactor.register_secret(value)


def register_url(url: str, *, secret: bool) -> None:
    for redactor in _targets():
        redactor.register_url(url, secret=secret)


def redact(text: str) -> str:
    return current().redact(text)


def excerpt(text: str, limit: int) -> str:
    return current().excerpt(text, limit)


def origin(url: str) -> str:
    return current().origin(url)


def redact_url(url: str) -> str:
    return current().redact_url(url)


def redact_dsn(dsn: str) -> str:
    return current().redact_dsn(dsn)


class RedactingFilter(logging.Filter):
    """Redacts every record with `redactor` (by default the process's at the time of the record)."""

    def __init__(self, redactor: Redactor | None = None):
        super().__init__()
        self.redactor = redactor

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = (self.redactor or current()).redact(message)
        if cleaned != message or record.args:
            record.msg = cleaned
            record.args = None
        return True
