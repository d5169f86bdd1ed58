"""The Actuator interface: how a rollback is carried out.

`apply(context, stop)` performs the action. It must be idempotent for a given
`context.decision_id` (the same decision may be re-sent after a crash or a retry), must give
up promptly when `stop` is set (shutdown), and raises `ActuatorError` with an actionable
message when the action did not take effect. Returning normally means success; the returned
string is a short human description of what was done (recorded in the history).

`plan(context)` describes what `apply` would do without doing it.

`verify(context, stop)` reads back that the action took effect (e.g. the alias points at the
version, the Deployment finished rolling out) and raises `ActuatorError` if it did not;
actuators that cannot read anything back return a sentence saying so.

`current_version(context)` reads what the component runs now, or None when the actuator
cannot tell. Used before writing (compare-and-set): a step whose component already runs
`to_version` is skipped, and one that runs neither `from_version` nor `to_version` is not
overwritten blindly.

For stack rollbacks the context's `extra` carries `component`, `from_version` and `to_version`.
"""

from __future__ import annotations

import abc
import threading
from dataclasses import asdict, dataclass, field
from typing import Any, ClassVar

from watchdog.config.plugins import ACTUATORS


@dataclass(frozen=True)
class ActionContext:
    decision_id: str
    target: str
    rule: str
    action: str
    value: float | None
    threshold: dict[str, float]
    labels: dict[str, str]
    version: str | None
    previous_version: str | None
    fired_at: str
    reason: str
    extra: dict[str, str] = field(default_factory=dict)

    def as_json(self) -> dict[str, Any]:
        data = asdict(self)
        extra = data.pop("extra")
        value = data["value"]
        if value is not None and value != value:  # NaN is not JSON
            data["value"] = None
        data.update(extra)
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ActionContext:
        """The inverse of `as_json`: keys that are not fields go back into `extra`."""
        fields = cls.__dataclass_fields__
        extra = {k: str(v) for k, v in data.items() if k not in fields}
        known = {k: v for k, v in data.items() if k in fields and k != "extra"}
        return cls(**known, extra=extra)

    def placeholders(self) -> dict[str, str]:
        """Values for `{{name}}` placeholders; unknown values render as empty strings."""
        out: dict[str, str] = {}
        for key, value in self.as_json().items():
            if value is None:
                out[key] = ""
            elif isinstance(value, dict):
                out[key] = ",".join(f"{k}={v}" for k, v in sorted(value.items()))
            else:
                out[key] = str(value)
        return out


class Actuator(abc.ABC):
    #: the entry-point group the registry (watchdog.config.plugins) finds this kind in
    plugin_group: ClassVar[str] = ACTUATORS
    Options: ClassVar[type]

    def __init__(self, name: str, options: Any):
        self.name = name
        self.options = options

    def plan(self, context: ActionContext) -> str:
        return f"{type(self).__name__} {self.name} for decision {context.decision_id}"

    @abc.abstractmethod
    def apply(self, context: ActionContext, stop: threading.Event) -> str:
        """Carry out the action idempotently; raise ActuatorError on failure."""

    def verify(self, context: ActionContext, stop: threading.Event) -> str:
        """Confirm the action took effect; raise ActuatorError if it did not."""
        return f"{self.name}: no read-back available; success of apply taken as effect"

    def current_version(self, context: ActionContext) -> str | None:
        """What the component runs now, if this actuator can read it."""
        return None

    def close(self) -> None:
        pass
