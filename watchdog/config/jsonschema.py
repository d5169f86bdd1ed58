"""JSON Schema (draft 2020-12) for `watchdog.yaml` and for rule files, made from the dataclasses.

The same field metadata that drives loading drives the schema, so the two cannot drift:
YAML keys (`for`), durations (a string like `1m30s` or a number of seconds), `Literal`
choices (enums), `help` (descriptions), secrets (`<key>_file` as the alternative), plugin
groups (`oneOf` per plugin type, told apart by `type`, from `watchdog.config.plugins.available`).
Every object has `additionalProperties: false`, as the loader rejects unknown keys.

`config_schema()` and `rules_schema()` return plain dicts; `dump()` gives the stable text of
the files in docs/schema/ (`model-watchdog schema [--rules]` prints it).
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from typing import Any, Literal

from watchdog.config import plugins
from watchdog.config.schema import Config, RuleFile
from watchdog.config.yamlnodes import Node
from watchdog.durations import format_duration
from watchdog.text.sizes import SIZE_PATTERN, format_size

DRAFT = "https://json-schema.org/draft/2020-12/schema"
DURATION_PATTERN = r"^(0|([0-9]+(\.[0-9]+)?(ms|s|m|h|d|w))+)$"
# `${VAR}` / `${VAR:-default}` is replaced after parsing, so any string holding one may be right.
ENV_PATTERN = r"\$\{[A-Za-z_][A-Za-z0-9_]*(:-[^}]*)?\}"

__all__ = ["DRAFT", "config_schema", "dump", "rules_schema"]


def config_schema() -> dict[str, Any]:
    """The schema of `watchdog.yaml` (strings and durations may hold `${VAR}`)."""
    return _Generator(env=True).document(
        Config, "model-watchdog configuration",
        "watchdog.yaml: sources, actuators, alerters, targets and where the rule files are.")


def rules_schema() -> dict[str, Any]:
    """The schema of a rule file."""
    return _Generator(env=False).document(
        RuleFile, "model-watchdog rule file", "Trigger rules for one target, written before a deployment.")


def dump(schema: dict[str, Any]) -> str:
    """Stable text: the generated files are compared with this byte for byte."""
    return json.dumps(schema, indent=2, ensure_ascii=False) + "\n"


class _Generator:
    def __init__(self, env: bool):
        self.env = env
        self.defs: dict[str, Any] = {}
        self._names: dict[type, str] = {}

    def document(self, cls: type, title: str, description: str) -> dict[str, Any]:
        body = self.object(cls)
        return {"$schema": DRAFT, "title": title, "description": description, **body,
                "$defs": dict(sorted(self.defs.items()))}

    # -- objects -------------------------------------------------------------------------------------

    def ref(self, cls: type) -> dict[str, Any]:
        name = self._names.get(cls)
        if name is None:
            name = cls.__name__ if cls.__name__ not in self._names.values() else f"{cls.__module__}.{cls.__name__}"
            self._names[cls] = name
            self.defs[name] = {}  # reserved first: a class may refer to itself
            self.defs[name] = self.object(cls)
        return {"$ref": f"#/$defs/{name}"}

    def object(self, cls: type, extra: dict[str, Any] | None = None, required_extra: tuple[str, ...] = ()) -> dict[str, Any]:
        hints = typing.get_type_hints(cls)
        properties: dict[str, Any] = dict(extra or {})
        required: list[str] = list(required_extra)
        constraints: list[dict[str, Any]] = []
        for f in dataclasses.fields(cls):
            if f.metadata.get("internal"):
                continue
            key = f.metadata.get("key") or f.name
            properties[key] = self.field(hints[f.name], f)
            is_required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
            if f.metadata.get("secret"):
                properties[f"{key}_file"] = {"type": "string",
                                             "description": f"file whose content is {key} (instead of {key})"}
                both = {"required": [key, f"{key}_file"]}
                constraints.append({"oneOf": [{"required": [key]}, {"required": [f"{key}_file"]}]}
                                   if is_required else {"not": both})
            elif is_required:
                required.append(key)
        out: dict[str, Any] = {"type": "object"}
        doc = _doc(cls)
        if doc:
            out["description"] = doc
        out["properties"] = properties
        if required:
            out["required"] = required
        if constraints:
            out["allOf"] = constraints
        out["additionalProperties"] = False
        return out

    # -- fields ---------------------------------------------------------------------------------------

    def field(self, tp: Any, f: dataclasses.Field[Any]) -> dict[str, Any]:
        meta = f.metadata
        if meta.get("plugin_group"):
            schema = self.plugins(meta["plugin_group"])
        else:
            schema = self.type(tp, meta)
        help_text = meta.get("help")
        if help_text:
            schema = {"description": help_text, **schema}
        default = _default(f)
        if default is not _NONE:
            schema["default"] = default
        return schema

    def type(self, tp: Any, meta: typing.Mapping[str, Any]) -> dict[str, Any]:
        origin, args = typing.get_origin(tp), typing.get_args(tp)
        if origin in (typing.Union, types.UnionType):
            inner = [a for a in args if a is not type(None)]
            schema = self.type(inner[0], meta)
            if type(None) in args:
                if "enum" in schema:
                    return {"enum": [*schema["enum"], None]}
                return {"anyOf": [schema, {"type": "null"}]}
            return schema
        if origin is list:
            return {"type": "array", "items": self.type(args[0], meta)}
        if origin is dict:
            values = dict(meta)
            if meta.get("secret_values"):
                values["secret"] = True
            return {"type": "object", "propertyNames": {"minLength": 1},
                    "additionalProperties": self.type(args[1], values)}
        if origin is Literal:
            return {"enum": list(args)}
        if tp is Node:
            return {}  # any YAML value; the plugin checks it
        if dataclasses.is_dataclass(tp):
            return self.ref(tp)  # type: ignore[arg-type]
        return self.scalar(tp, meta)

    def scalar(self, tp: Any, meta: typing.Mapping[str, Any]) -> dict[str, Any]:
        if meta.get("duration"):
            if "duration" not in self.defs:
                text: dict[str, Any] = {"type": "string", "pattern": DURATION_PATTERN}
                if self.env:
                    text = {"type": "string", "anyOf": [{"pattern": DURATION_PATTERN}, {"pattern": ENV_PATTERN}]}
                self.defs["duration"] = {"description": "a duration like 30s, 1m30s or 500ms, or a number of seconds",
                                         "anyOf": [text, {"type": "number", "minimum": 0}]}
            return {"$ref": "#/$defs/duration"}
        if meta.get("size"):
            size: dict[str, Any] = {"type": "string", "pattern": SIZE_PATTERN}
            if self.env:
                size = {"type": "string", "anyOf": [{"pattern": SIZE_PATTERN}, {"pattern": ENV_PATTERN}]}
            self.defs.setdefault("size", {"description": "a size like 32MiB, 512KiB or 10MB, or a number of bytes",
                                          "anyOf": [size, {"type": "integer", "minimum": 0}]})
            return {"$ref": "#/$defs/size"}
        if tp is bool:
            return {"type": "boolean"}
        if tp is int:
            return {"type": "integer"}
        if tp is float:
            return {"type": "number"}
        if tp is str:
            return {"type": ["string", "number"]}  # the loader reads `version: 2` as "2"
        return {}

    def plugins(self, group: str) -> dict[str, Any]:
        branches = []
        for name in sorted(plugins.available(group)):
            type_property = {"type": {"const": name, "description": f"plugin type '{name}'"}}
            try:
                options = plugins.plugin_class(group, name).Options  # type: ignore[attr-defined]
            except Exception:  # e.g. a plugin whose extra is not installed: accept any options
                branches.append({"type": "object", "title": name,
                                 "description": "options not known here (the plugin could not be loaded)",
                                 "properties": type_property, "required": ["type"]})
                continue
            branch = self.object(options, extra=type_property, required_extra=("type",))
            branches.append({"title": name, **branch})
        kind = group.rsplit(".", 1)[-1]
        return {"type": "object", "propertyNames": {"minLength": 1},
                "additionalProperties": {"description": f"one of the {kind}, chosen by 'type'", "oneOf": branches}}


class _None:
    pass


_NONE: Any = _None()


def _default(f: dataclasses.Field[Any]) -> Any:
    if f.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        value = f.default_factory()  # type: ignore[misc]
        return value if value in ([], {}) else _NONE
    if f.default is dataclasses.MISSING or f.metadata.get("secret"):
        return _NONE
    if f.metadata.get("duration") and isinstance(f.default, (int, float)):
        return format_duration(f.default)
    if f.metadata.get("size") and isinstance(f.default, int):
        return format_size(f.default)
    if f.default is None or isinstance(f.default, (str, int, float, bool)):
        return f.default
    return _NONE


def _doc(cls: type) -> str:
    doc = (cls.__doc__ or "").strip()
    if not doc or doc.startswith(cls.__name__ + "("):  # dataclass' generated signature
        return ""
    return " ".join(doc.split("\n\n")[0].split())
