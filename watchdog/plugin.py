"""The public plugin API: everything a third-party source, actuator or alerter needs.

    from watchdog.plugin import Source, QueryResult, Sample, labels_of, option, QueryError

A plugin imports from here only; the modules behind these names may move, this list stays
(tests/test_plugin_api.py keeps it exact). See docs/plugins.md.
"""

from __future__ import annotations

from watchdog.actuators.base import ActionContext, Actuator
from watchdog.actuators.templating import rollback_version
from watchdog.alerters.base import Alert, Alerter
from watchdog.config.fields import option
from watchdog.errors import ActuatorError, AlerterError, QueryError, SourceError, WatchdogError
from watchdog.samples import QueryResult, Sample, labels_of
from watchdog.sources.base import Source, SourceHealth

__all__ = [
    # sources
    "Source", "QueryResult", "SourceHealth", "Sample", "labels_of",
    # actuators
    "Actuator", "ActionContext", "rollback_version",
    # alerters
    "Alerter", "Alert",
    # configuration: a plugin's Options dataclass declares its keys with option()
    "option",
    # errors a plugin raises
    "WatchdogError", "QueryError", "SourceError", "ActuatorError", "AlerterError",
]
