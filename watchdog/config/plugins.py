"""Plugin registry: sources, actuators and alerters are found through entry points.

A third party adds a plugin by declaring, in its own package metadata:

    [project.entry-points."model_watchdog.sources"]
    influx = "my_package.influx:InfluxSource"

Plugins are imported lazily (only the types a configuration names), checked against the
base class of their group, and a missing one is reported with the names that do exist.
"""

from __future__ import annotations

import importlib
from functools import lru_cache
from importlib.metadata import entry_points
from typing import Any

from watchdog.config.fields import suggest
from watchdog.errors import PluginError

SOURCES = "model_watchdog.sources"
ACTUATORS = "model_watchdog.actuators"
ALERTERS = "model_watchdog.alerters"

# The built-in plugins, so a source checkout works even before `pip install -e .`
# has written entry-point metadata. Entry points of the same name win.
_BUILTIN: dict[str, dict[str, str]] = {
    SOURCES: {
        "scrape": "watchdog.sources.scrape:ScrapeSource",
        "prometheus": "watchdog.sources.prometheus:PrometheusSource",
        "http_json": "watchdog.sources.http_json:HttpJsonSource",
        "sql": "watchdog.sources.sql:SqlSource",
    },
    ACTUATORS: {
        "webhook": "watchdog.actuators.webhook:WebhookActuator",
        "command": "watchdog.actuators.command:CommandActuator",
        "mlflow": "watchdog.actuators.mlflow:MlflowActuator",
        "kubernetes": "watchdog.actuators.kubernetes:KubernetesActuator",
        "argo-rollouts": "watchdog.actuators.argo:ArgoRolloutsActuator",
        "kserve": "watchdog.actuators.kserve:KServeActuator",
        "file": "watchdog.actuators.file:FileActuator",
    },
    ALERTERS: {
        "webhook": "watchdog.alerters.webhook:WebhookAlerter",
        "log": "watchdog.alerters.log:LogAlerter",
        "slack": "watchdog.alerters.slack:SlackAlerter",
        "pagerduty": "watchdog.alerters.pagerduty:PagerDutyAlerter",
        "opsgenie": "watchdog.alerters.opsgenie:OpsgenieAlerter",
        "alertmanager": "watchdog.alerters.alertmanager:AlertmanagerAlerter",
        "email": "watchdog.alerters.smtp:EmailAlerter",
    },
}

_EXTRAS: dict[str, str] = {  # module prefix -> extra that provides its dependencies
    "watchdog.sources.sql": "postgresql",
}


# Each plugin interface (watchdog.sources.base.Source, watchdog.actuators.base.Actuator,
# watchdog.alerters.base.Alerter) names its group in `plugin_group`, which its subclasses
# inherit: the registry checks that, and so needs none of the interfaces (they build on
# config.fields, which sits below them).
_BASES = {SOURCES: "Source", ACTUATORS: "Actuator", ALERTERS: "Alerter"}


def _is_plugin(cls: Any, group: str) -> bool:
    return isinstance(cls, type) and getattr(cls, "plugin_group", None) == group


class _Available:
    """`available(group)`: the plugins of `group`, name -> "module:attr" (built-ins, then entry
    points of the same name win). Each `entry_points(group=...)` reads every installed
    distribution's metadata, so one scan serves all groups (start-up asks for three);
    `available.cache_clear()` forgets it, as it did when this was an lru_cache per group."""

    def __init__(self) -> None:
        self._scanned: Any = None
        self._cache: dict[str, dict[str, str]] = {}

    def __call__(self, group: str) -> dict[str, str]:
        if group not in self._cache:
            found = dict(_BUILTIN.get(group, {}))
            for ep in self.scanned().select(group=group):
                found[ep.name] = ep.value
            self._cache[group] = found
        return self._cache[group]

    def scanned(self) -> Any:
        """Every installed entry point (`importlib.metadata.entry_points()`), read once."""
        if self._scanned is None:
            self._scanned = entry_points()  # select() filters what it read: no new scan
        return self._scanned

    def cache_clear(self) -> None:
        self._scanned, self._cache = None, {}


available = _Available()


def _import(target: str) -> Any:
    module_name, _, attr = target.partition(":")
    module = importlib.import_module(module_name)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


@lru_cache(maxsize=None)
def plugin_class(group: str, name: str) -> type:
    """The plugin class registered as `name` in `group`; PluginError says what exists."""
    names = available(group)
    kind = group.rsplit(".", 1)[-1].rstrip("s")
    if name not in names:
        hint = suggest(name, names) or f" (available: {', '.join(sorted(names)) or 'none'})"
        raise PluginError(f"unknown {kind} type '{name}'{hint}")
    try:
        cls = _import(names[name])
    except ImportError as exc:
        extra = next((e for prefix, e in _EXTRAS.items() if names[name].startswith(prefix)), None)
        fix = f"; install it with: pip install 'model-watchdog[{extra}]'" if extra else ""
        raise PluginError(f"{kind} type '{name}' cannot be loaded: {exc}{fix}") from exc
    if not _is_plugin(cls, group):
        raise PluginError(f"{kind} type '{name}' ({names[name]}) is not a subclass of {_BASES[group]}")
    if not hasattr(cls, "Options"):
        raise PluginError(f"{kind} type '{name}' ({names[name]}) has no Options dataclass")
    return cls


def options_class(group: str, name: str) -> tuple[type | None, str]:
    try:
        return plugin_class(group, name).Options, ""  # type: ignore[attr-defined]
    except PluginError as exc:
        return None, str(exc)


def create(group: str, spec: Any) -> Any:
    """Instantiate the plugin for a PluginSpec."""
    return plugin_class(group, spec.type)(spec.name, spec.options)
