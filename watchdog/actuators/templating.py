"""`{{placeholder}}` rendering and the rollback target, shared by the actuators.

Double braces are placeholders because single braces belong to PromQL and `${VAR}` to the
environment at load time. The names are the `ActionContext` fields (`decision_id`, `target`,
`previous_version`, …) plus what the engine passes in `context.extra` for stack rollbacks
(`component`, `from_version`, `to_version`). A known name the decision did not fill renders
as an empty string; an unknown name is an error when the actuator is configured.

`rollback_version(context)` is the version an actuator rolls back to: `to_version` from
`context.extra`, else `context.previous_version`; neither known is an `ActuatorError`.

Versions are untrusted: a version placeholder (`version`, `previous_version`, `from_version`,
`to_version`) whose value is not a valid version (`watchdog.text.versions`) is an `ActuatorError`,
and so is such a rollback target: nothing is run, written or sent with it.
"""

from __future__ import annotations

import dataclasses
import re
from typing import Callable, Iterable

from watchdog.actuators.base import ActionContext
from watchdog.config.fields import suggest
from watchdog.errors import ActuatorError
from watchdog.text.versions import VERSION_NAMES, shown, version_problem

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
# Filled by the engine through ActionContext.extra when it knows them.
EXTRA_NAMES = ("component", "from_version", "to_version")
KNOWN_PLACEHOLDERS = frozenset(
    [f.name for f in dataclasses.fields(ActionContext) if f.name != "extra"] + list(EXTRA_NAMES))


def placeholder_names(text: str) -> list[str]:
    return PLACEHOLDER.findall(text)


def check_template(text: str, what: str) -> None:
    """ValueError naming `what` when `text` uses a placeholder no decision can fill."""
    for name in placeholder_names(text):
        if name not in KNOWN_PLACEHOLDERS:
            raise ValueError(f"{what}: {unknown_placeholder(name, KNOWN_PLACEHOLDERS)}")


def values(context: ActionContext) -> dict[str, str]:
    # Known names the engine did not fill render empty, like a None field.
    return {**{name: "" for name in KNOWN_PLACEHOLDERS}, **context.placeholders()}


def render(text: str, context: ActionContext, escape: Callable[[str], str] = str) -> str:
    """Fill `{{name}}` placeholders (each value passed through `escape`)."""
    filled = values(context)

    def fill(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in filled:
            raise ActuatorError(unknown_placeholder(name, filled))
        return escape(checked(name, filled[name]))

    return PLACEHOLDER.sub(fill, text)


def checked(name: str, value: str) -> str:
    """`value`, unless it fills a version placeholder and is no valid version (ActuatorError)."""
    if name in VERSION_NAMES and value and (why := version_problem(value)) is not None:
        raise ActuatorError(f"{{{{{name}}}}} would be {shown(value)}, which is not a valid version ({why}); "
                            "refusing to act on it")
    return value


def unknown_placeholder(name: str, known: Iterable[str]) -> str:
    names = sorted(known)
    hint = suggest(name, names)
    return f"unknown placeholder {{{{{name}}}}}{hint}; known: {', '.join(names)}"


def rollback_version(context: ActionContext) -> str:
    """The version to roll back to: `to_version`, else `previous_version`."""
    version = context.extra.get("to_version") or context.previous_version
    if not version:
        raise ActuatorError(
            f"no version to roll back to: decision {context.decision_id} for target {context.target} carries "
            "neither to_version nor previous_version (the watchdog has not yet seen a version before this one)")
    return checked("to_version", version)


def with_rollback_version(context: ActionContext) -> ActionContext:
    """The context with `extra['to_version']` set to `rollback_version(context)`."""
    return dataclasses.replace(context, extra={**context.extra, "to_version": rollback_version(context)})
