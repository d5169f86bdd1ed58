from __future__ import annotations

import json
import os
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.actuators.background import apply_in_background
from watchdog.actuators.base import ActionContext
from watchdog.actuators.command import KNOWN_PLACEHOLDERS, CommandActuator
from watchdog.errors import ActuatorError

pytestmark = pytest.mark.timeout(30)

# Writes its arguments and WATCHDOG_* / TEST_* environment to the file named by argv[1].
RECORD = """
import json, os, sys
env = {k: v for k, v in os.environ.items() if k.startswith(("WATCHDOG_", "TEST_"))}
with open(sys.argv[1], "w") as f:
    json.dump({"argv": sys.argv[2:], "env": env, "cwd": os.getcwd()}, f)
"""

# Starts a grandchild (which ignores SIGTERM when asked), records both pids, then sleeps.
SPAWN_AND_SLEEP = """
import subprocess, sys, time
child = "import signal, time\\n"
if sys.argv[2] == "stubborn":
    child += "signal.signal(signal.SIGTERM, signal.SIG_IGN)\\n"
child += "time.sleep(60)"
grandchild = subprocess.Popen([sys.executable, "-c", child])
with open(sys.argv[1], "w") as f:
    f.write(f"{grandchild.pid}")
time.sleep(60)
"""


def make_context(**changes: object) -> ActionContext:
    base = dict(decision_id="dec-42", target="fraud-model", rule="p99-latency", action="rollback", value=0.93,
                threshold={"above": 0.5}, labels={"env": "prod"}, version="v7", previous_version="v6",
                fired_at="2026-01-02T03:04:05Z", reason="p99 above 0.5 for 5m", extra={"component": "scorer"})
    base.update(changes)
    return ActionContext(**base)  # type: ignore[arg-type]


def make_actuator(argv: list[str], **options: object) -> CommandActuator:
    return CommandActuator("rollback-script", CommandActuator.Options(argv=argv, **options))


def python(script: str, *args: str) -> list[str]:
    return [sys.executable, "-c", script, *args]


def alive(pid: int) -> bool:
    """True while `pid` runs (a zombie nobody reaped counts as gone)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_gone(pid: int, within: float = 3.0) -> bool:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if not alive(pid):
            return True
        time.sleep(0.05)
    return False


def wait_for_file(path: Path, within: float = 10.0) -> str:
    end = time.monotonic() + within
    while time.monotonic() < end:
        if path.exists() and path.read_text():
            return path.read_text()
        time.sleep(0.02)
    raise AssertionError(f"{path} was not written")


def test_renders_placeholders_and_sets_watchdog_environment(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    actuator = make_actuator(python(RECORD, str(out), "--to={{previous_version}}", "{{ target }}/{{component}}"),
                             env={"TEST_EXTRA": "yes"}, cwd=str(tmp_path))

    result = actuator.apply(make_context(), threading.Event())

    seen = json.loads(out.read_text())
    assert seen["argv"] == ["--to=v6", "fraud-model/scorer"]
    assert seen["env"]["WATCHDOG_PREVIOUS_VERSION"] == "v6"
    assert seen["env"]["WATCHDOG_DECISION_ID"] == "dec-42"
    assert seen["env"]["WATCHDOG_COMPONENT"] == "scorer"
    assert seen["env"]["WATCHDOG_LABELS"] == "env=prod"
    assert seen["env"]["WATCHDOG_TO_VERSION"] == ""  # known but not filled by this decision
    assert seen["env"]["TEST_EXTRA"] == "yes"
    assert os.path.samefile(seen["cwd"], tmp_path)
    assert "exit 0" in result


def test_shell_metacharacters_are_passed_literally(tmp_path: Path) -> None:
    out = tmp_path / "out.json"
    evil = f"v6; touch {tmp_path}/pwned && echo $(id) `id` | cat > x"
    # Free text (a version this shape is refused before it gets here: tests/security).
    actuator = make_actuator(python(RECORD, str(out), "{{reason}}"), cwd=str(tmp_path))

    actuator.apply(make_context(reason=evil), threading.Event())

    assert json.loads(out.read_text())["argv"] == [evil]
    assert not (tmp_path / "pwned").exists() and not (tmp_path / "x").exists()


def test_non_zero_exit_reports_code_and_last_stderr_lines() -> None:
    script = "import sys\nfor i in range(50): print(f'line {i}', file=sys.stderr)\nsys.exit(3)"

    with pytest.raises(ActuatorError) as err:
        make_actuator(python(script)).apply(make_context(), threading.Event())

    message = str(err.value)
    assert "exit code 3" in message
    assert "line 49" in message and "line 30" in message
    assert "line 29\n" not in message and "line 0\n" not in message


def test_stderr_excerpt_is_redacted(redactor) -> None:
    redactor.register_secret("kube-token-9876543210")
    script = "import sys; print('auth failed for kube-token-9876543210', file=sys.stderr); sys.exit(1)"

    with pytest.raises(ActuatorError) as err:
        make_actuator(python(script)).apply(make_context(), threading.Event())

    assert "auth failed" in str(err.value) and "kube-token-9876543210" not in str(err.value)


@pytest.mark.parametrize("grandchild", ["polite", "stubborn"])
def test_timeout_kills_the_command_and_its_children(tmp_path: Path, grandchild: str) -> None:
    pid_file = tmp_path / "pid"
    actuator = make_actuator(python(SPAWN_AND_SLEEP, str(pid_file), grandchild), timeout=1.0)

    started = time.monotonic()
    with pytest.raises(ActuatorError, match="timed out after 1s"):
        actuator.apply(make_context(), threading.Event())

    assert time.monotonic() - started < 6
    assert wait_gone(int(wait_for_file(pid_file)))


def test_stop_terminates_the_command_promptly(tmp_path: Path) -> None:
    pid_file = tmp_path / "pid"
    actuator = make_actuator(python(SPAWN_AND_SLEEP, str(pid_file), "polite"), timeout=60.0)
    stop = threading.Event()
    thread, outcome = apply_in_background(actuator, make_context(), stop)
    grandchild = int(wait_for_file(pid_file))
    stopped_at = time.monotonic()
    stop.set()
    thread.join(timeout=10)

    assert time.monotonic() - stopped_at < 1.5
    assert len(outcome) == 1 and isinstance(outcome[0], ActuatorError)
    assert "interrupted by shutdown" in str(outcome[0])
    assert wait_gone(grandchild)


def test_missing_executable_is_reported_clearly() -> None:
    with pytest.raises(ActuatorError, match="command not found: no-such-rollback-tool"):
        make_actuator(["no-such-rollback-tool", "{{previous_version}}"]).apply(make_context(), threading.Event())


def test_unknown_placeholder_is_rejected_when_configured() -> None:
    with pytest.raises(ValueError) as err:
        make_actuator(["kubectl", "rollout", "undo", "--to-revision={{prev_version}}"])

    message = str(err.value)
    assert "argv[3]" in message and "{{prev_version}}" in message
    assert "did you mean 'previous_version'" in message
    assert "decision_id" in message  # the known names are listed


def test_known_placeholders_are_the_context_fields_and_engine_extras() -> None:
    assert {"decision_id", "previous_version", "labels", "component", "from_version", "to_version"} <= KNOWN_PLACEHOLDERS
    assert "extra" not in KNOWN_PLACEHOLDERS


def test_empty_argv_is_rejected() -> None:
    with pytest.raises(ValueError, match="argv"):
        make_actuator([])


def test_plan_shows_the_rendered_command() -> None:
    actuator = make_actuator(["helm", "rollback", "{{target}}", "{{previous_version}}"])

    assert actuator.plan(make_context()) == "run helm rollback fraud-model v6"
