"""Version strings come from outside and are untrusted.

A version reaches the watchdog from a metric label, a registry (the target's `version:`
query over `http_json`, e.g. MLflow), the release API or the CLI, and goes on into query
text, actuator arguments, file paths and the status page. So it is checked where it is first
seen, by one pure function, `version_problem`:

    ^[A-Za-z0-9][A-Za-z0-9._:+@/-]{0,127}$     and no `..` path segment

An invalid version is never the running version, never a rollback target and never pasted
into a query: the engine treats an invalid version label like a missing one, records it in the
history and alerts once per episode (`VersionGate`); the CLI and the API refuse it.
"""

from __future__ import annotations

import logging
import re
from typing import Callable

from watchdog.alerters.base import Alert
from watchdog.clock import rfc3339

PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:+@/-]{0,127}$"
_VERSION = re.compile(r"[A-Za-z0-9][A-Za-z0-9._:+@/-]{0,127}")
# The placeholders whose values are versions (rules and actuators).
VERSION_NAMES = frozenset({"version", "previous_version", "from_version", "to_version"})
_SHOWN = 80
log = logging.getLogger("watchdog.versions")


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


History = Callable[[float, str, "str | None", dict, str, str, dict], None]  # type: ignore[type-arg]
Notify = Callable[[str, Alert], None]


class VersionGate:
    """Where the engine first sees a running version: an invalid one is recorded in the
    history and alerted once per episode (until a valid version is seen again), and the
    engine goes on as if no version label had been there.

    `history(now, target, rule, labels, kind, message, data)` and `alert(target, Alert)` are
    the engine's own."""

    def __init__(self, history: History, alert: Notify):
        self.history = history
        self.alert = alert
        self.invalid: dict[str, str] = {}  # target -> why, while an episode lasts

    def admit(self, target: str, found: str | None, now: float) -> str | None:
        """`found` when it is a usable version (or None); None after recording an invalid one."""
        if found is None:
            return None
        why = version_problem(found)
        if why is None:
            if self.invalid.pop(target, None) is not None:
                self._alert(target, now, "resolved", f"{target}: a valid version ({found}) is reported again")
            return found
        if target not in self.invalid:
            self.invalid[target] = why
            message = f"invalid version {shown(found)} ignored: {why}"
            log.warning("%s: %s", target, message)
            self.history(now, target, None, {}, "version", message, {"invalid_version": shown(found), "reason": why})
            self._alert(target, now, "firing", f"{target}: the running version is reported as {shown(found)}, which "
                        f"is not a valid version ({why}); it is ignored and never used as a rollback target")
        return None

    def _alert(self, target: str, now: float, status: str, summary: str) -> None:
        self.alert(target, Alert(status=status, kind="invalid_version", dedup_key=f"{target}/invalid_version",
                                 target=target, rule="", severity="warning", summary=summary, at=rfc3339(now)))
