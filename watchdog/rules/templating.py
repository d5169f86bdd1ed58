"""`{{name}}` placeholders in queries, so one rule file serves many models.

Double braces because single braces belong to PromQL label matchers and `${VAR}` to the
environment at load time. Known names: `target`, `version`, `previous_version`, and each
target's `variables`.
"""

from __future__ import annotations

import re
from typing import Mapping

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
BUILTIN = ("target", "version", "previous_version")


class TemplateError(ValueError):
    pass


def names_in(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def render(text: str, values: Mapping[str, str | None]) -> str:
    """Replace every placeholder; an unknown name or an unknown value raises TemplateError."""
    def replace(m: re.Match[str]) -> str:
        name = m.group(1)
        if name not in values:
            raise TemplateError(f"unknown placeholder {{{{{name}}}}} (known: {', '.join(sorted(values))})")
        value = values[name]
        if value is None:
            raise TemplateError(f"{{{{{name}}}}} is not known yet")
        return value

    return PLACEHOLDER.sub(replace, text)


def variables_for(target: str, target_variables: Mapping[str, str], version: str | None,
                  previous_version: str | None) -> dict[str, str | None]:
    return {**target_variables, "target": target, "version": version, "previous_version": previous_version}
