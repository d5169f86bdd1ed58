"""`{{name}}` placeholders in queries, so one rule file serves many models.

Double braces because single braces belong to PromQL label matchers and `${VAR}` to the
environment at load time. Known names: `target`, `version`, `previous_version`, and each
target's `variables`.

Values are untrusted (a version comes from a metric label or a registry), so they are never
spliced into the query's syntax:

- inside a `"…"` or `'…'` string literal (PromQL; JMESPath quoted identifiers and raw
  strings) a value is escaped (`\\` and the quote get a backslash); a value with a control
  character (a newline would end the literal) is refused;
- inside a `` `…` `` literal, which has no escapes, a value holding `` ` `` or `\\` is refused;
- outside any literal, a version (`version`, `previous_version`) must be a plain token of
  letters, digits, `_`, `:` and `.`;
- `version` and `previous_version` must be valid versions (`watchdog.text.versions`).

A refused value raises TemplateError: the rule gets no data, the query is never sent. SQL
sources take no placeholders at all (`validate` refuses them): their queries use the bound
`:version` parameter.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Mapping

from watchdog.errors import WatchdogError
from watchdog.text.versions import shown, version_problem

PLACEHOLDER = re.compile(r"\{\{\s*([A-Za-z_][A-Za-z0-9_]*)\s*\}\}")
BUILTIN = ("target", "version", "previous_version")
UNTRUSTED = ("version", "previous_version")
_TOKEN = re.compile(r"[A-Za-z0-9_:.]*")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


class TemplateError(WatchdogError, ValueError):
    pass


def names_in(text: str) -> set[str]:
    return set(PLACEHOLDER.findall(text))


def render(text: str, values: Mapping[str, str | None],
           filled: dict[tuple[str, str | None], str] | None = None) -> str:
    """Replace every placeholder, escaped for the literal it stands in. An unknown name, an
    unknown value or a value that would leave its literal raises TemplateError. `filled`:
    what earlier calls with the same `values` filled in (name, literal) -> text, kept and
    reused (a target's ten queries fill in the same `{{instance}}`)."""
    pieces, placeholders = compile_template(text)
    if not placeholders:
        return text
    out = [pieces[0]]
    for (name, quote), piece in zip(placeholders, pieces[1:]):
        if filled is None:
            out.append(_fill(name, values, quote))
        else:
            done = filled.get((name, quote))
            if done is None:  # (an error is not kept: raised again each time, as it was)
                done = filled[(name, quote)] = _fill(name, values, quote)
            out.append(done)
        out.append(piece)
    return "".join(out)


@lru_cache(maxsize=65536)
def compile_template(text: str) -> tuple[tuple[str, ...], tuple[tuple[str, str | None], ...]]:
    """`text` taken apart once (a rule's query is rendered for every target on every tick):
    the literal pieces around the placeholders, and each placeholder's name with the literal
    it stands in (see `escape`)."""
    pieces: list[str] = []
    placeholders: list[tuple[str, str | None]] = []
    quote: str | None = None
    done = 0
    for m in PLACEHOLDER.finditer(text):
        quote = _literal_after(text[done:m.start()], quote)
        pieces.append(text[done:m.start()])
        placeholders.append((m.group(1), quote))
        done = m.end()
    pieces.append(text[done:])
    return tuple(pieces), tuple(placeholders)


def _fill(name: str, values: Mapping[str, str | None], quote: str | None) -> str:
    if name not in values:
        raise TemplateError(f"unknown placeholder {{{{{name}}}}} (known: {', '.join(sorted(values))})")
    value = values[name]
    if value is None:
        raise TemplateError(f"{{{{{name}}}}} is not known yet")
    if name in UNTRUSTED and (why := version_problem(value)) is not None:
        raise TemplateError(f"{{{{{name}}}}} is {shown(value)}, not a valid version: {why}")
    return escape(name, value, quote)


def escape(name: str, value: str, quote: str | None) -> str:
    """`value` as it may stand inside the literal (or `#` comment) opened by `quote`, None
    outside any."""
    if quote is None:
        if name in UNTRUSTED and not _TOKEN.fullmatch(value):
            raise TemplateError(f"{{{{{name}}}}} stands outside a string literal, where {shown(value)} would "
                                "change the query; put it in quotes")
        return value
    if _CONTROL.search(value):
        raise TemplateError(f"{{{{{name}}}}} is {shown(value)}: a control character cannot stand in a string literal")
    if quote == "#":
        return value
    if quote == "`":
        if "`" in value or "\\" in value:
            raise TemplateError(f"{{{{{name}}}}} is {shown(value)}, which would leave its `…` literal")
        return value
    return value.replace("\\", "\\\\").replace(quote, "\\" + quote)


def _literal_after(segment: str, quote: str | None) -> str | None:
    """The literal open at the end of `segment` (None: none; `#`: a comment), given the one
    open at its start. Knows `"…"` and `'…'` with backslash escapes, `` `…` `` without, and
    `#` comments to the end of the line."""
    i, n = 0, len(segment)
    while i < n:
        c = segment[i]
        if quote is None:
            if c in "\"'`#":
                quote = c
        elif quote == "#":
            if c == "\n":
                quote = None
        elif c == "\\" and quote != "`":
            i += 1
        elif c == quote:
            quote = None
        i += 1
    return quote


def bound_parameters(values: Mapping[str, str | None]) -> dict[str, str] | None:
    """What sources that bind parameters (SQL: `:version`, `:target`) receive instead of text:
    the target, and the running version when it is known and valid."""
    params = {"target": values["target"]} if values.get("target") else {}
    version = values.get("version")
    if version and version_problem(version) is None:
        params["version"] = version
    return params or None


def variables_for(target: str, target_variables: Mapping[str, str], version: str | None,
                  previous_version: str | None) -> dict[str, str | None]:
    return {**target_variables, "target": target, "version": version, "previous_version": previous_version}
