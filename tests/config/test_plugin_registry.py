"""The registry checks a plugin's kind by the group its interface names (`plugin_group`),
without importing the interfaces (they build on watchdog.config, which sits below them)."""

from __future__ import annotations

import pytest

from watchdog.config import plugins
from watchdog.errors import PluginError


@pytest.fixture
def registered(monkeypatch):
    def register(group: str, name: str, target: str) -> None:
        monkeypatch.setitem(plugins._BUILTIN[group], name, target)
        plugins.available.cache_clear()
        plugins.plugin_class.cache_clear()
    yield register
    plugins.available.cache_clear()
    plugins.plugin_class.cache_clear()


@pytest.mark.parametrize("group, kind", [(plugins.SOURCES, "Source"), (plugins.ACTUATORS, "Actuator"),
                                         (plugins.ALERTERS, "Alerter")])
def test_a_class_that_is_no_plugin_of_the_group_is_refused(registered, group, kind):
    registered(group, "stranger", "collections:OrderedDict")
    with pytest.raises(PluginError, match=f"is not a subclass of {kind}"):
        plugins.plugin_class(group, "stranger")


def test_a_plugin_of_another_group_is_refused(registered):
    registered(plugins.SOURCES, "an-alerter", "watchdog.alerters.log:LogAlerter")
    with pytest.raises(PluginError, match="is not a subclass of Source"):
        plugins.plugin_class(plugins.SOURCES, "an-alerter")


def test_each_interface_names_its_group():
    from watchdog.actuators.base import Actuator
    from watchdog.alerters.base import Alerter
    from watchdog.sources.base import Source

    assert (Source.plugin_group, Actuator.plugin_group, Alerter.plugin_group) == \
        (plugins.SOURCES, plugins.ACTUATORS, plugins.ALERTERS)
    assert plugins.plugin_class(plugins.SOURCES, "scrape").plugin_group == plugins.SOURCES


def test_the_installed_distributions_are_read_once_for_all_three_groups(monkeypatch):
    # each entry_points() call reads every installed distribution's metadata (≈8 ms here)
    from importlib import metadata
    calls = []

    def counted(**params):
        calls.append(params)
        return metadata.entry_points(**params)

    monkeypatch.setattr(plugins, "entry_points", counted)
    plugins.available.cache_clear()
    try:
        found = {group: plugins.available(group) for group in (plugins.SOURCES, plugins.ACTUATORS, plugins.ALERTERS)}
        assert len(calls) == 1
        for group, names in found.items():  # the same as one scan per group: built-ins, entry points win
            expected = dict(plugins._BUILTIN[group])
            expected.update((ep.name, ep.value) for ep in metadata.entry_points(group=group))
            assert list(names.items()) == list(expected.items())
        plugins.available.cache_clear()  # forgets the scan: a plugin installed since is found
        plugins.available(plugins.SOURCES)
        assert len(calls) == 2
    finally:
        plugins.available.cache_clear()
