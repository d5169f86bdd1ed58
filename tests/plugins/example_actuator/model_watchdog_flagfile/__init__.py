"""An example actuator plugin: a "flag file" that a deploy system watches.

`apply` writes `{"version": …, "decision_id": …}` to `path` (atomically, by rename), `verify`
reads it back, `current_version` reports the version in it. It shows the whole contract:
an `Options` dataclass, `plan`, an idempotent `apply` that honours `stop`, a read-back
`verify`, `current_version`, and `ActuatorError` for every failure.
"""

from __future__ import annotations

import json
import os
import threading
from dataclasses import dataclass

from watchdog.plugin import ActionContext, Actuator, ActuatorError, option, rollback_version


@dataclass(frozen=True)
class FlagFileOptions:
    path: str = option(help="the JSON file the deploy system watches")


class FlagFileActuator(Actuator):
    Options = FlagFileOptions

    def __init__(self, name: str, options: FlagFileOptions):
        if not options.path.endswith(".json"):
            raise ValueError("path must name a .json file")  # `validate` reports it at the plugin's line
        super().__init__(name, options)

    def plan(self, context: ActionContext) -> str:
        return f"write version {rollback_version(context)} to {self.options.path}"

    def apply(self, context: ActionContext, stop: threading.Event) -> str:
        version = rollback_version(context)  # to_version, else previous_version, else ActuatorError
        if stop.is_set():
            raise ActuatorError("interrupted by shutdown before writing")
        if self._read().get("version") == version:
            return f"{self.options.path} already names {version}"  # idempotent: the same decision may come twice
        temp = f"{self.options.path}.tmp"
        try:
            with open(temp, "w", encoding="utf-8") as f:
                json.dump({"version": version, "decision_id": context.decision_id}, f)
            os.replace(temp, self.options.path)
        except OSError as exc:
            raise ActuatorError(f"cannot write {self.options.path}: {exc.strerror}") from None
        return f"wrote version {version} to {self.options.path}"

    def verify(self, context: ActionContext, stop: threading.Event) -> str:
        version = rollback_version(context)
        found = self._read().get("version")
        if found != version:
            raise ActuatorError(f"{self.options.path} names {found!r}, expected {version!r}")
        return f"{self.options.path} names {version}"

    def current_version(self, context: ActionContext) -> str | None:
        return self._read().get("version")

    def _read(self) -> dict:
        try:
            with open(self.options.path, encoding="utf-8") as f:
                return json.load(f)
        except FileNotFoundError:
            return {}
        except (OSError, ValueError) as exc:
            raise ActuatorError(f"cannot read {self.options.path}: {exc}") from None
