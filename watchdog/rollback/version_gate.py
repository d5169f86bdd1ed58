"""Where the engine first sees a running version (the target's `version:` query: a metric
label or a registry): an invalid one (`watchdog.text.versions.version_problem`) is recorded in the
history and alerted once per episode, and the engine goes on as if no label had been there."""

from __future__ import annotations

import logging
from typing import Callable

from watchdog.alerters.base import Alert
from watchdog.clock import rfc3339
from watchdog.text.versions import shown, version_problem

log = logging.getLogger("watchdog.versions")

History = Callable[[float, str, "str | None", dict, str, str, dict], None]  # type: ignore[type-arg]
Notify = Callable[[str, Alert], None]


class VersionGate:
    """An invalid running version is recorded and alerted once per episode (until a valid
    version is seen again); `admit` then answers None, as for a missing label.

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
