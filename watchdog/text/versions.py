"""Version strings come from outside and are untrusted.

A version reaches the watchdog from a metric label, a registry (the target's `version:`
query over `http_json`, e.g. MLflow), the release API or the CLI, and goes on into query
text, actuator arguments, file paths and the status page. So it is checked where it is first
seen, by one pure function, `version_problem`:

    ^[A-Za-z0-9][A-Za-z0-9._:+@/-]{0,127}$     and no `..` path segment

An invalid version is never the running version, never a rollback target and never pasted
into a query: the engine treats an invalid version label like a missing one, records it in the
history and alerts once per episode (`watchdog.rollback.version_gate`); the CLI and the API refuse it.
Pure: no I/O, no imports from the rest of the package, so every layer may use it.
"""

from __future__ import annotations

import re
from typing import Iterable, Protocol

PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:+@/-]{0,127}$"
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+@/-]{0,127}")
# The placeholders whose values are versions (rules and actuators).
VERSION_NAMES = frozenset({"version", "previous_version", "from_version", "to_version"})
_SHOWN = 80


class VersionRecordLike(Protocol):
    version: str
    bad: bool


def version_problem(text: object) -> str | None:
    """Why `text` is not a usable version, or None when it is one. Pure."""
    if not isinstance(text, str):
        return f"a version is text, not {type(text).__name__}"
    if not _VERSION.fullmatch(text):
        return (f"a version must match {PATTERN} (a letter or digit, then at most 127 letters, digits "
                "and . _ : + @ / -)")
    if ".." in text.split("/"):
        return "a version must not contain a '..' path segment"
    return None


def shown(text: object) -> str:
    """A hostile value made safe to show in one line: quoted, escaped, truncated."""
    raw = text if isinstance(text, str) else str(text)
    return repr(raw[:_SHOWN]) + ("…" if len(raw) > _SHOWN else "")


def previous_good(records: Iterable[VersionRecordLike], current: str | None) -> str | None:
    """The version a rollback goes to: the newest one seen before `current` that is neither
    marked bad nor invalid (a store written before versions were checked may hold one)."""
    return next((r.version for r in records if r.version != current and not r.bad and version_problem(r.version) is None),
                None)
