"""The release ledger: what was deployed together, which releases proved healthy, and what
to roll back to.

A release is recorded when it is deployed (`model-watchdog release`, the API, or discovered
from the target's `version:` query). One that runs for the target's `bake` with no rollback
rule firing becomes healthy; one rolled back from becomes bad. The rollback target is the
newest healthy release before the current one — if there is none, the watchdog alerts and
does not act.
"""

from __future__ import annotations

from dataclasses import dataclass

from watchdog.clock import rfc3339
from watchdog.config.schema import Config
from watchdog.rollback.plans import PlanStep, rollback_plan
from watchdog.state.base import HistoryEvent, Release, StateStore


@dataclass(frozen=True)
class StackPlan:
    current: Release
    to: Release
    steps: list[PlanStep]


class Ledger:
    def __init__(self, store: StateStore, config: Config):
        self.store = store
        self.config = config

    def _history(self, now: float, target: str, message: str, data: dict) -> None:  # type: ignore[type-arg]
        self.store.append(HistoryEvent(None, now, target, None, {}, "release", message, data))

    def record(self, target: str, components: dict[str, str], now: float, note: str = "", origin: str = "cli",
               state: str = "unknown") -> Release:
        with self.store.transaction():
            release = self.store.record_release(Release(None, target, now, dict(components), note, origin, state))
            shown = ", ".join(f"{k}={v}" for k, v in sorted(components.items()))
            self._history(now, target, f"release #{release.id} recorded ({origin}): {shown}" + (f" — {note}" if note else ""),
                          {"release": release.id, "components": components, "origin": origin})
        return release

    def current(self, target: str) -> Release | None:
        releases = self.store.releases(target, limit=1)
        return releases[0] if releases else None

    def discovered(self, target: str, component: str, version: str, now: float) -> Release | None:
        """The target's `version:` query saw a new version: record it as a release, keeping
        the other components as they were."""
        current = self.current(target)
        if current is not None and current.components.get(component) == version:
            return None
        components = dict(current.components) if current else {}
        components[component] = version
        return self.record(target, components, now, f"{component} {version} seen running", "discovered")

    def bake(self, target: str, now: float, firing: bool, current: dict[str, Release] | None = None) -> Release | None:
        """Mark the current release healthy once it ran its bake with nothing firing.
        `current`: the current releases, just read for many targets (`StateStore.current_releases`)."""
        current_one = current.get(target) if current is not None else self.current(target)
        return self._bake(target, now, firing, current_one)

    def _bake(self, target: str, now: float, firing: bool, current: Release | None) -> Release | None:
        bake = self.config.targets[target].bake
        if current is None or current.state != "unknown" or firing or now - current.created_at < bake:
            return None
        with self.store.transaction():
            self.store.set_release_state(current.id, "healthy")  # type: ignore[arg-type]
            self._history(now, target, f"release #{current.id} is healthy: ran {bake:g}s since "
                          f"{rfc3339(current.created_at)} with no rollback rule firing", {"release": current.id})
        return current

    @staticmethod
    def _known_bad(releases: list[Release], candidate: Release) -> bool:
        return any(r.state == "bad" and r.components == candidate.components for r in releases)

    def plan(self, target: str, to_release: int | None = None) -> StackPlan | str:
        """The plan back to the newest healthy release (or `to_release`), or why there is none."""
        releases = self.store.releases(target, limit=200)
        if not releases:
            return "no release recorded for this target (model-watchdog release …)"
        current = releases[0]
        if to_release is not None:
            to = next((r for r in releases if r.id == to_release), None)
            if to is None:
                return f"no release #{to_release} for {target}"
        else:
            # A healthy release with the current components is no way out (after a rollback the
            # current release is a copy of the one it went back to).
            to = next((r for r in releases[1:] if r.state == "healthy" and r.components != current.components
                       and not self._known_bad(releases, r)), None)
            if to is None:
                return f"no healthy release before #{current.id} to roll back to"
        components = self.config.targets[target].components
        steps = rollback_plan(current.components, to.components, {c: s.depends_on for c, s in components.items()},
                              {c: s.actuator for c, s in components.items()},
                              {c: s.on_failure for c, s in components.items()})
        if not steps:
            return f"release #{to.id} has the same components as the current #{current.id}: nothing to roll back"
        return StackPlan(current, to, steps)
