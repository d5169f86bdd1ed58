"""Under CI a missing test dependency fails; outside CI it skips and says what to install."""

from __future__ import annotations

import re
import shutil
import sys
import tomllib
from importlib import metadata
from pathlib import Path

import pytest

from tests.needs import in_ci, require_executable, require_module

ROOT = Path(__file__).resolve().parents[1]


def test_a_missing_module_fails_under_ci(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"pip install no-such-thing.*required under CI"):
        require_module("no_such_module_for_model_watchdog", "no-such-thing")


def test_a_missing_module_skips_with_the_install_command_outside_ci(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match=r"pip install no-such-thing"):
        require_module("no_such_module_for_model_watchdog", "no-such-thing")


def test_a_missing_executable_fails_under_ci_and_skips_outside(monkeypatch):
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"no-such-tool-for-mw is not installed \(apt-get install x\)"):
        require_executable("no-such-tool-for-mw", "apt-get install x")
    monkeypatch.setenv("CI", "false")
    with pytest.raises(pytest.skip.Exception, match=r"apt-get install x"):
        require_executable("no-such-tool-for-mw", "apt-get install x")


def test_an_executable_is_found_beside_python_then_on_path():
    assert require_executable("python", "-") == str(Path(sys.executable).parent / "python")
    assert require_executable("sh", "-") == shutil.which("sh")


@pytest.mark.parametrize("value, expected", [("true", True), ("1", True), ("TRUE", True), ("false", False), ("", False)])
def test_ci_is_read_like_ci_services_set_it(monkeypatch, value, expected):
    monkeypatch.setenv("CI", value)
    assert in_ci() is expected


def _test_extra() -> list[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    return [re.match(r"[A-Za-z0-9_.-]+", spec).group(0) for spec in project["optional-dependencies"]["test"]]


@pytest.mark.parametrize("distribution", _test_extra())
def test_every_declared_test_dependency_is_installed(distribution):
    try:
        metadata.version(distribution)
    except metadata.PackageNotFoundError:
        from tests.needs import missing
        missing(f"{distribution} (from the `test` extra) is not installed; pip install -e '.[test]'")


def test_ci_run_sets_ci_itself():
    script = (ROOT / ".ci" / "run").read_text()
    assert re.search(r"^export CI=true$", script, re.M), ".ci/run must behave like CI when run by hand"
