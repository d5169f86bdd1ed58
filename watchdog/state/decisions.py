"""What a rollback decision carries, typed: recorded once, read by the executor, the
incident desk, the timeline and the operator commands. JSON only where the store keeps it.

`DecisionContext.to_json()` writes the same flat object earlier versions wrote (the
`decisions.context` column), and `from_json()` reads those rows: keys an old row lacks take
their defaults, keys this version does not know are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Iterable, Mapping

from watchdog.actuators.base import ActionContext


@dataclass(frozen=True)
class PlannedStep:
    """One step of a rollback plan: an actuator (classic targets), or one component of a stack
    moved from one version to another (component targets, watchdog.rollback.plans)."""

    actuator: str
    component: str | None = None
    from_version: str | None = None
    to_version: str | None = None
    on_failure: str = "stop"

    def to_json(self) -> str | dict[str, str | None]:
        if self.component is None:
            return self.actuator  # classic plans are lists of actuator names
        return {"component": self.component, "actuator": self.actuator, "from_version": self.from_version,
                "to_version": self.to_version, "on_failure": self.on_failure}

    @classmethod
    def from_json(cls, entry: str | Mapping[str, Any]) -> PlannedStep:
        if isinstance(entry, str):
            return cls(actuator=entry)
        return cls(actuator=str(entry["actuator"]), component=entry.get("component"),
                   from_version=entry.get("from_version"), to_version=entry.get("to_version"),
                   on_failure=entry.get("on_failure") or "stop")

    def versions(self) -> dict[str, str | None]:
        """The component and its versions, for history events (empty for a classic step)."""
        if self.component is None:
            return {}
        return {"component": self.component, "from_version": self.from_version, "to_version": self.to_version}

    def describe(self) -> str:
        if self.component is None:
            return self.actuator
        return f"{self.component} {self.from_version or '?'}→{self.to_version} via {self.actuator}"


def actuator_plan(names: Iterable[str]) -> tuple[PlannedStep, ...]:
    """A classic target's plan: its `rollback` actuators, in order."""
    return tuple(PlannedStep(name) for name in names)


@dataclass(frozen=True)
class StackMove:
    """A stack rollback: from which release to which, and the components of each."""

    from_release: int
    to_release: int
    from_components: Mapping[str, str] = field(default_factory=dict)
    to_components: Mapping[str, str] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {"from_release": self.from_release, "to_release": self.to_release,
                "from_components": dict(self.from_components), "to_components": dict(self.to_components)}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> StackMove | None:
        if data.get("to_release") is None:
            return None
        return cls(from_release=data.get("from_release"), to_release=data["to_release"],  # type: ignore[arg-type]
                   from_components=dict(data.get("from_components") or {}),
                   to_components=dict(data.get("to_components") or {}))


@dataclass(frozen=True)
class DecisionContext:
    """Everything a decision needs to be carried out and explained later."""

    action: ActionContext | None = None  # what each actuator is handed
    plan: tuple[PlannedStep, ...] = ()
    severity: str = ""
    requested_by: str | None = None  # the operator of a manual rollback
    awaiting_approval: bool = False
    approve_by: float | None = None
    depth: int = 1
    breach_started_at: float | None = None
    pending_at: float | None = None
    fired_at: float | None = None
    stack: StackMove | None = None
    # Rows written before decisions carried their timeline (fired_at and the rest) have no
    # recovery to mark: False only for those.
    timed: bool = True

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "plan": [step.to_json() for step in self.plan], "severity": self.severity,
            "requested_by": self.requested_by, "awaiting_approval": self.awaiting_approval,
            "approve_by": self.approve_by, "depth": self.depth, "breach_started_at": self.breach_started_at,
            "pending_at": self.pending_at, "fired_at": self.fired_at}
        if self.action is not None:
            out["context"] = self.action.as_json()
        if self.stack is not None:
            out.update(self.stack.to_json())
        return out

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> DecisionContext:
        action = data.get("context")
        return cls(action=ActionContext.from_json(action) if isinstance(action, Mapping) else None,
                   plan=tuple(PlannedStep.from_json(e) for e in data.get("plan") or ()),
                   severity=data.get("severity") or "", requested_by=data.get("requested_by"),
                   awaiting_approval=bool(data.get("awaiting_approval")), approve_by=data.get("approve_by"),
                   depth=int(data.get("depth") or 1), breach_started_at=data.get("breach_started_at"),
                   pending_at=data.get("pending_at"), fired_at=data.get("fired_at"), stack=StackMove.from_json(data),
                   timed="fired_at" in data)
