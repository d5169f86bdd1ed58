from __future__ import annotations

import os
import stat
import threading
from pathlib import Path

import pytest

from tests.actuators.kube_fixtures import make_context
from watchdog.actuators.file import FileActuator
from watchdog.errors import ActuatorError

pytestmark = pytest.mark.timeout(30)


def models(tmp_path: Path) -> Path:
    for version in ("v5", "v6", "v7"):
        (tmp_path / "models" / version).mkdir(parents=True)
    current = tmp_path / "current"
    current.symlink_to(tmp_path / "models" / "v7")
    return current


def symlink_actuator(tmp_path: Path, **options: object) -> FileActuator:
    return FileActuator("switch", FileActuator.Options(
        path=str(tmp_path / "current"), target_template=str(tmp_path / "models") + "/{{to_version}}", **options))


def test_switches_the_symlink_atomically_and_reads_it_back(tmp_path: Path) -> None:
    current = models(tmp_path)
    act = symlink_actuator(tmp_path)
    assert act.current_version(make_context()) == "v7"

    result = act.apply(make_context("v6"), threading.Event())

    assert os.readlink(current) == str(tmp_path / "models" / "v6")
    assert result.endswith(f"(was {tmp_path / 'models' / 'v7'})")
    assert act.current_version(make_context()) == "v6"
    assert act.verify(make_context("v6"), threading.Event()) == f"{current} → {tmp_path / 'models' / 'v6'}"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["current", "models"]  # no temporary left behind


def test_switching_again_changes_nothing(tmp_path: Path) -> None:
    current = models(tmp_path)
    act = symlink_actuator(tmp_path)
    act.apply(make_context("v6"), threading.Event())
    inode = os.lstat(current).st_ino

    assert "already points at" in act.apply(make_context("v6"), threading.Event())
    assert os.lstat(current).st_ino == inode


def test_previous_version_without_to_version_and_neither(tmp_path: Path) -> None:
    models(tmp_path)
    act = symlink_actuator(tmp_path)

    act.apply(make_context(None, previous_version="v5"), threading.Event())
    assert act.current_version(make_context()) == "v5"

    with pytest.raises(ActuatorError, match="no version to roll back to"):
        act.apply(make_context(None), threading.Event())


def test_a_missing_target_is_refused_unless_allowed(tmp_path: Path) -> None:
    current = models(tmp_path)

    with pytest.raises(ActuatorError, match="v9 does not exist"):
        symlink_actuator(tmp_path).apply(make_context("v9"), threading.Event())
    assert os.readlink(current).endswith("v7")

    symlink_actuator(tmp_path, must_exist=False).apply(make_context("v9"), threading.Event())
    assert os.readlink(current).endswith("v9")


def test_a_regular_file_is_not_replaced_by_a_symlink(tmp_path: Path) -> None:
    models(tmp_path)
    (tmp_path / "current").unlink()
    (tmp_path / "current").write_text("precious")

    with pytest.raises(ActuatorError, match="is not a symlink"):
        symlink_actuator(tmp_path).apply(make_context("v6"), threading.Event())
    assert (tmp_path / "current").read_text() == "precious"


def test_verify_notices_a_symlink_pointing_elsewhere(tmp_path: Path) -> None:
    models(tmp_path)

    with pytest.raises(ActuatorError, match="points at .*v7, expected .*v6"):
        symlink_actuator(tmp_path).verify(make_context("v6"), threading.Event())


def test_config_file_is_rewritten_atomically_keeping_its_mode(tmp_path: Path) -> None:
    config = tmp_path / "serving.yaml"
    config.write_text("model_version: v7\n")
    config.chmod(0o640)
    act = FileActuator("cfg", FileActuator.Options(
        path=str(config), content_template="model_version: {{to_version}}\n# decision {{decision_id}}\n"))

    act.apply(make_context("v6"), threading.Event())

    assert config.read_text() == "model_version: v6\n# decision dec-42\n"
    assert stat.S_IMODE(config.stat().st_mode) == 0o640
    assert act.verify(make_context("v6"), threading.Event()).endswith("expected contents")
    assert "already holds" in act.apply(make_context("v6"), threading.Event())
    assert act.current_version(make_context()) is None
    assert [p.name for p in tmp_path.iterdir()] == ["serving.yaml"]
    with pytest.raises(ActuatorError, match="does not hold the expected contents"):
        act.verify(make_context("v5"), threading.Event())


def test_plan_renders_without_touching_anything(tmp_path: Path) -> None:
    models(tmp_path)

    assert symlink_actuator(tmp_path).plan(make_context("v6")) == \
        f"point symlink {tmp_path / 'current'} at {tmp_path / 'models' / 'v6'}"
    assert os.readlink(tmp_path / "current").endswith("v7")


@pytest.mark.parametrize("options, message", [
    ({"path": "/x"}, "exactly one of"),
    ({"path": "/x", "target_template": "/m/{{to_version}}", "content_template": "v"}, "exactly one of"),
    ({"path": "/x", "target_template": "/m/{{to_versoin}}"}, "did you mean 'to_version'"),
    ({"path": "", "target_template": "/m"}, "path must name a file"),
])
def test_unusable_options_are_rejected(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        FileActuator("f", FileActuator.Options(**options))  # type: ignore[arg-type]
