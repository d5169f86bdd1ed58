"""Typed dataclasses built from YAML nodes, with every problem reported at its line.

A configuration class is an ordinary frozen dataclass. Field metadata adds what YAML needs:

- `key`: the YAML key when it is not a Python name (`for` → field `for_`)
- `duration`: the value is a duration string (`30s`, `1m30s`) stored as float seconds
- `size`: the value is a byte size (`32MiB`, `512KiB`, or bytes) stored as int bytes
- `secret`: the value may also come from `<key>_file`; it is registered for redaction
- `env`: `${VAR}` in strings is replaced from the environment (config file, not rule files)
- `plugin`: an entry-point group; the mapping's values are that group's plugin specs
- `help`: one line for the JSON Schema and the docs

Each built object receives `marks`: the position of its mapping and of each key, so later
checks (cross references, query parsing) can point at the offending line too.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import os
import re
import types
import typing
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit
from typing import Any, Callable, Literal

from watchdog import redact
from watchdog.config.yamlnodes import Node, read_capped
from watchdog.durations import parse_duration
from watchdog.errors import Problem
from watchdog.text.sizes import parse_size

Mark = tuple[int, int]


def option(default: Any = dataclasses.MISSING, *, key: str | None = None, duration: bool = False,
           secret: bool = False, secret_values: bool = False, help: str = "",
           default_factory: Any = dataclasses.MISSING, size: bool = False) -> Any:
    meta = {"key": key, "duration": duration, "secret": secret, "secret_values": secret_values, "help": help,
            "size": size}
    shown = not (secret or secret_values)  # secrets stay out of reprs (and so out of tracebacks)
    if default_factory is not dataclasses.MISSING:
        return field(default_factory=default_factory, metadata=meta, repr=shown)
    return field(default=default, metadata=meta, repr=shown)


def marks_field() -> Any:
    return field(default_factory=dict, compare=False, repr=False, metadata={"internal": True})


@dataclass
class BuildContext:
    filename: str
    problems: list[Problem] = field(default_factory=list)
    interpolate_env: bool = False
    base_dir: Path = Path(".")
    environ: typing.Mapping[str, str] = field(default_factory=lambda: os.environ)
    # Resolves a plugin group + type name to its options class, or returns a problem message.
    plugin_options: Callable[[str, str], tuple[type | None, str]] | None = None

    def problem(self, at: Node | Mark, message: str) -> None:
        line, col = (at.line, at.column) if isinstance(at, Node) else at
        self.problems.append(Problem(self.filename, line, col, message))


@dataclass(frozen=True)
class PluginSpec:
    """A configured plugin instance: its name, its type, and its typed options."""

    name: str
    type: str
    options: Any
    marks: dict[str, Mark] = marks_field()


_ENV = re.compile(r"\$\$|\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def interpolate(text: str, node: Node, ctx: BuildContext, secret_key: bool, what: str) -> str:
    if "$" not in text:  # most values (a fleet's thousand URLs and names): nothing to substitute
        return text
    substituted: list[str] = []

    def replace(m: re.Match[str]) -> str:
        if m.group(0) == "$$":
            return "$"
        name, default = m.group(1), m.group(2)
        value = ctx.environ.get(name)
        if value is None:
            if default is None:
                ctx.problem(node, f"{what}: environment variable {name} is not set (write ${{{name}:-default}} for a default)")
                return ""
            value = default
        if secret_key or redact.looks_secret(name):
            redact.register_secret(value)
        substituted.append(value)
        return value

    result = _ENV.sub(replace, text)
    if substituted and _outside_host(text):
        # `https://hooks.example/${HOOK}`: whatever the variable holds, the URL now carries it
        # where a server echoes it back (path, query, userinfo): the URL is a secret.
        for value in substituted:
            redact.register_secret(value)
        redact.register_url(result, secret=True)
    return result


_SENTINEL = "wdenvsentinel"


def _outside_host(text: str) -> bool:
    """Whether a URL template has a `${VAR}` anywhere but in its host and port."""
    if not re.match(r"^[A-Za-z][A-Za-z0-9+.-]*://", text):
        return False
    skeleton = _ENV.sub(lambda m: "$" if m.group(0) == "$$" else _SENTINEL, text)
    try:
        parts = urlsplit(skeleton)
        userinfo = parts.netloc.rpartition("@")[0]
    except ValueError:
        return True
    return any(_SENTINEL in piece for piece in (userinfo, parts.path, parts.query, parts.fragment))


def suggest(word: str, choices: typing.Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean '{close[0]}'?)" if close else ""


def _key_of(f: dataclasses.Field[Any]) -> str:
    return f.metadata.get("key") or f.name


def _public_fields(cls: type) -> list[dataclasses.Field[Any]]:
    return [f for f in dataclasses.fields(cls) if not f.metadata.get("internal")]


def build(cls: type, node: Node, ctx: BuildContext, what: str) -> Any:
    """Build dataclass `cls` from mapping `node`; None (with problems recorded) if it can't."""
    if node.kind != "map":
        ctx.problem(node, f"{what}: expected a mapping, got {node.describe()}")
        return None
    hints, fields, secret_files, has_marks = _shape(cls)
    values: dict[str, Any] = {}
    marks: dict[str, Mark] = {"": (node.line, node.column)}
    seen: set[str] = set()
    ok = True
    for key_node, value_node in node.value:
        key = key_node.value
        if not isinstance(key, str):
            ctx.problem(key_node, f"{what}: keys must be strings, got {key_node.describe()}")
            ok = False
            continue
        if key in seen:
            ctx.problem(key_node, f"{what}: duplicate key '{key}'")
            ok = False
            continue
        seen.add(key)
        marks[key] = (key_node.line, key_node.column)
        marks["@" + key] = (value_node.line, value_node.column)
        if key in secret_files:
            target = secret_files[key]
            if target in seen:
                ctx.problem(key_node, f"{what}: give either '{target}' or '{key}', not both")
                ok = False
                continue
            seen.add(target)
            marks[target] = marks[key]
            secret = _read_secret_file(value_node, ctx, f"{what}.{key}")
            ok &= secret is not None
            values[fields[target].name] = secret
            continue
        if key not in fields:
            allowed = sorted(list(fields) + list(secret_files))
            key_hints: dict[str, str] = getattr(cls, "KEY_HINTS", {})
            close = difflib.get_close_matches(key, list(key_hints), n=1, cutoff=0.6)
            hint = (f" ({key_hints[close[0]]})" if close else
                    suggest(key, allowed) or f" (allowed: {', '.join(allowed)})")
            ctx.problem(key_node, f"{what}: unknown key '{key}'{hint}")
            ok = False
            continue
        f = fields[key]
        converted = convert(hints[f.name], value_node, ctx, f"{what}.{key}", f.metadata)
        if converted is _INVALID:
            ok = False
            continue
        values[f.name] = converted
    for key, f in fields.items():
        if key not in seen and f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            ctx.problem(node, f"{what}: missing required key '{key}'")
            ok = False
    if not ok:
        return None
    if has_marks:
        values["marks"] = marks
    return cls(**values)


@functools.lru_cache(maxsize=None)
def _shape(cls: type) -> tuple[dict[str, Any], dict[str, dataclasses.Field[Any]], dict[str, str], bool]:
    """What `build` needs to know of a dataclass, worked out once per class (resolving the
    type hints is most of the cost of building a small object: 1,000 targets build 1,000 each)."""
    hints = typing.get_type_hints(cls)
    fields = {_key_of(f): f for f in _public_fields(cls)}
    secret_files = {f"{k}_file": k for k, f in fields.items() if f.metadata.get("secret")}
    return hints, fields, secret_files, any(f.name == "marks" for f in dataclasses.fields(cls))


def _read_secret_file(node: Node, ctx: BuildContext, what: str) -> str | None:
    if node.kind != "scalar" or not isinstance(node.value, str):
        ctx.problem(node, f"{what}: expected a file path")
        return None
    path = Path(interpolate(node.value, node, ctx, False, what) if ctx.interpolate_env else node.value)
    if not path.is_absolute():
        path = ctx.base_dir / path
    failed: list[Problem] = []
    text = read_capped(path, failed)  # a regular file of at most 5 MiB: never a FIFO or /dev/zero
    if text is None:
        ctx.problem(node, f"{what}: cannot read secret file {path}: {failed[0].message.removeprefix('cannot read file: ')}")
        return None
    secret = text.rstrip("\r\n")
    redact.register_secret(secret)
    return secret


class _Invalid:
    pass


_INVALID: Any = _Invalid()


def _origin_args(tp: Any) -> tuple[Any, tuple[Any, ...]]:
    """`typing.get_origin(tp), typing.get_args(tp)`, worked out once per type (a fleet's
    config converts 8,000 values of a dozen types)."""
    try:
        found = _ORIGIN_ARGS.get(tp)
    except TypeError:  # an unhashable type form
        return typing.get_origin(tp), typing.get_args(tp)
    if found is None:
        found = _ORIGIN_ARGS[tp] = (typing.get_origin(tp), typing.get_args(tp))
    return found


_ORIGIN_ARGS: dict[Any, tuple[Any, tuple[Any, ...]]] = {}


def convert(tp: Any, node: Node, ctx: BuildContext, what: str, meta: typing.Mapping[str, Any]) -> Any:
    """Convert one node to Python type `tp`; returns _INVALID (problem recorded) on mismatch."""
    origin, args = _origin_args(tp)
    if origin in (typing.Union, types.UnionType):
        if node.kind == "scalar" and node.value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return convert(inner[0], node, ctx, what, meta)
    if meta.get("plugin_group"):
        return _plugins(node, ctx, what, meta["plugin_group"])
    if origin is list:
        if node.kind != "seq":
            ctx.problem(node, f"{what}: expected a list, got {node.describe()}")
            return _INVALID
        items = [convert(args[0], item, ctx, f"{what}[{i}]", meta) for i, item in enumerate(node.value)]
        return _INVALID if any(i is _INVALID for i in items) else items
    if origin is dict:
        return _mapping(args[1], node, ctx, what, meta)
    if origin is Literal:
        return _literal(args, node, ctx, what)
    if tp is Node:
        return node
    if dataclasses.is_dataclass(tp):
        built = build(tp, node, ctx, what)  # type: ignore[arg-type]
        return _INVALID if built is None else built
    return _scalar(tp, node, ctx, what, meta)


def _mapping(value_tp: Any, node: Node, ctx: BuildContext, what: str, meta: typing.Mapping[str, Any]) -> Any:
    if node.kind != "map":
        ctx.problem(node, f"{what}: expected a mapping, got {node.describe()}")
        return _INVALID
    out: dict[str, Any] = {}
    for key_node, value_node in node.value:
        key = key_node.value
        if not isinstance(key, str) or not key:
            ctx.problem(key_node, f"{what}: keys must be non-empty strings")
            return _INVALID
        if key in out:
            ctx.problem(key_node, f"{what}: duplicate key '{key}'")
            return _INVALID
        inner_meta = dict(meta)
        if meta.get("secret_values"):
            inner_meta["secret"] = True
        out[key] = convert(value_tp, value_node, ctx, f"{what}.{key}", inner_meta)
    return _INVALID if any(v is _INVALID for v in out.values()) else out


def _literal(choices: tuple[Any, ...], node: Node, ctx: BuildContext, what: str) -> Any:
    if node.kind == "scalar" and node.value in choices:
        return node.value
    shown = node.value if node.kind == "scalar" else node.describe()
    hint = suggest(str(shown), [str(c) for c in choices])
    ctx.problem(node, f"{what}: must be one of {', '.join(map(str, choices))}, got {shown!r}{hint}")
    return _INVALID


def _scalar(tp: Any, node: Node, ctx: BuildContext, what: str, meta: typing.Mapping[str, Any]) -> Any:
    value = node.value if node.kind == "scalar" else None
    if node.kind != "scalar":
        ctx.problem(node, f"{what}: expected {_type_name(tp, meta)}, got {node.describe()}")
        return _INVALID
    if isinstance(value, str) and ctx.interpolate_env:
        value = interpolate(value, node, ctx, bool(meta.get("secret")), what)
    if meta.get("duration"):
        try:
            return parse_duration(value)
        except ValueError as exc:
            ctx.problem(node, f"{what}: {exc}")
            return _INVALID
    if meta.get("size"):
        try:
            return parse_size(value)
        except ValueError as exc:
            ctx.problem(node, f"{what}: {exc}")
            return _INVALID
    if tp is bool and isinstance(value, bool):
        return value
    if tp is int and isinstance(value, int) and not isinstance(value, bool):
        return value
    if tp is float and isinstance(value, str):
        # PyYAML reads `1e9` (no dot) as a string, unlike YAML 1.2 and every other tool.
        try:
            value = float(value)
        except ValueError:
            pass
    if tp is float and isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value:
            ctx.problem(node, f"{what}: NaN is not a usable number here")
            return _INVALID
        return float(value)
    if tp is str and isinstance(value, (str, int, float)) and not isinstance(value, bool):
        text = str(value)
        if meta.get("secret"):
            redact.register_secret(text)
        elif "://" in text and "@" in text:
            redact.register_url(text, secret=False)  # a URL's password, and its base64 form
        return text
    ctx.problem(node, f"{what}: expected {_type_name(tp, meta)}, got {node.describe()}")
    return _INVALID


def _type_name(tp: Any, meta: typing.Mapping[str, Any]) -> str:
    if meta.get("duration"):
        return "a duration like 30s, 1m30s or 500ms"
    if meta.get("size"):
        return "a size like 32MiB or a number of bytes"
    return {str: "a string", int: "an integer", float: "a number", bool: "true or false"}.get(tp, str(tp))


def _plugins(node: Node, ctx: BuildContext, what: str, group: str) -> Any:
    if node.kind != "map":
        ctx.problem(node, f"{what}: expected a mapping of names to definitions, got {node.describe()}")
        return _INVALID
    out: dict[str, PluginSpec] = {}
    for key_node, value_node in node.value:
        name = key_node.value
        spec = _plugin(str(name), value_node, ctx, f"{what}.{name}", group)
        if spec is _INVALID:
            continue
        out[str(name)] = spec
    return out


def _plugin(name: str, node: Node, ctx: BuildContext, what: str, group: str) -> Any:
    if node.kind != "map":
        ctx.problem(node, f"{what}: expected a mapping with a 'type' key, got {node.describe()}")
        return _INVALID
    type_node = next((v for k, v in node.value if k.value == "type"), None)
    if type_node is None:
        ctx.problem(node, f"{what}: missing required key 'type'")
        return _INVALID
    assert ctx.plugin_options is not None
    options_cls, message = ctx.plugin_options(group, str(type_node.value))
    if options_cls is None:
        ctx.problem(type_node, f"{what}.type: {message}")
        return _INVALID
    rest = Node("map", [(k, v) for k, v in node.value if k.value != "type"], node.line, node.column)
    options = build(options_cls, rest, ctx, what)
    if options is None:
        return _INVALID
    marks = {"": (node.line, node.column), "type": (type_node.line, type_node.column)}
    marks.update(getattr(options, "marks", {}) or {})
    return PluginSpec(name=name, type=str(type_node.value), options=options, marks=marks)


def plugins_field(group: str, help: str = "") -> Any:
    return field(default_factory=dict, metadata={"plugin_group": group, "help": help})
