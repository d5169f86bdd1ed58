"""Rollback plans for a whole stack: which components change, in which order. Pure.

A deploy moves dependencies first (schema before the features that read it, features before
the model that consumes them); a rollback goes the other way, a component before the
components it depends on, and touches only the components that differ.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

from watchdog.config.validate import CycleError, deploy_order

__all__ = ["CycleError", "PlanStep", "deploy_order", "rollback_plan"]  # the order itself is checked at load: config.validate


@dataclass(frozen=True)
class PlanStep:
    component: str
    actuator: str
    from_version: str | None
    to_version: str
    on_failure: str = "stop"

    def as_json(self) -> dict[str, str | None]:
        return {"component": self.component, "actuator": self.actuator, "from_version": self.from_version,
                "to_version": self.to_version, "on_failure": self.on_failure}


def rollback_plan(current: Mapping[str, str], target: Mapping[str, str], depends_on: Mapping[str, list[str]],
                  actuators: Mapping[str, str], on_failure: Mapping[str, str] | None = None) -> list[PlanStep]:
    """The steps from `current` to `target`: changed components only, dependents first."""
    steps = []
    for component in reversed(deploy_order(depends_on)):
        wanted = target.get(component)
        if wanted is None or current.get(component) == wanted:
            continue
        steps.append(PlanStep(component, actuators[component], current.get(component), wanted,
                              (on_failure or {}).get(component, "stop")))
    return steps
