"""Build a plugin's options from YAML the way the config loader does (`*_file` secrets included)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from watchdog.config.fields import BuildContext, build
from watchdog.config.yamlnodes import parse_yaml


def options_from_yaml(cls: type, text: str, base_dir: Path = Path(".")) -> Any:
    node, problems = parse_yaml(text, "watchdog.yaml")
    assert node is not None and not problems, problems
    ctx = BuildContext("watchdog.yaml", interpolate_env=True, base_dir=base_dir, environ={})
    built = build(cls, node, ctx, "sources.s")
    assert built is not None, [str(p) for p in ctx.problems]
    return built
