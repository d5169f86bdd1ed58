"""The command line, told as operator stories: `main(argv, out, err)` in-process, no subprocesses."""

from __future__ import annotations

import io
import json
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from watchdog.cli import main
from watchdog.demo.model_server import SimulatedModelServer

from tests.harness import Harness

ROOT = Path(__file__).resolve().parents[1]

ERROR_RULE = """\
- name: error-rate
  source: model
  query: error_ratio
  above: 0.05
  for: 20s
  action: rollback
  severity: critical
"""


def run(*argv: str) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    code = main(list(argv), out, err)
    return code, out.getvalue(), err.getvalue()


@pytest.fixture
def rolled_back(tmp_path: Path) -> Path:
    """A state file written by the engine: a breach, a rollback, a held target."""
    h = Harness(tmp_path, ERROR_RULE)
    h.source.set("error_ratio", 0.01)
    h.run_for(30)
    h.source.set("error_ratio", 0.3)
    h.run_for(60)
    assert h.rollbacks() == 1
    h.store.close()
    return tmp_path / "watchdog.yaml"


# -- validate, and where -c goes ------------------------------------------------------------------------


def test_config_flag_before_or_after_the_command(rolled_back):
    for argv in (["-c", str(rolled_back), "validate"], ["validate", "-c", str(rolled_back)],
                 ["validate", "--config", str(rolled_back)]):
        code, out, err = run(*argv)
        assert code == 0, err
        assert out.startswith(f"{rolled_back}: OK — 1 rules for 1 targets in 1 rule files")


def test_validate_reports_every_problem_with_its_line(tmp_path):
    h = Harness(tmp_path, ERROR_RULE)
    (tmp_path / "rules.yaml").write_text(textwrap.dedent("""\
        target: fraud-model
        rules:
          - name: error-rate
            source: modle
            query: error_ratio
            treshold: 0.05
        """))
    code, out, err = run("validate", "-c", str(h.dir / "watchdog.yaml"))
    assert code == 1 and out == ""
    lines = err.splitlines()
    assert f"{tmp_path / 'rules.yaml'}:6:5: rule file.rules[0]: unknown key 'treshold' " \
           "(write 'above: X' or 'below: X' (both for a band))" in lines
    assert any(line.startswith(f"{tmp_path / 'rules.yaml'}:4:") and "unknown source 'modle'" in line for line in lines)
    assert lines[-1] == f"{len(lines) - 1} problem(s) found"


def test_a_missing_config_file_is_a_clear_error(tmp_path):
    code, _, err = run("validate", "-c", str(tmp_path / "nope.yaml"))
    assert code == 1 and "nope.yaml: cannot read file" in err


# -- status, history, resume on what the engine wrote -------------------------------------------------------


def test_status_history_and_resume_after_a_rollback(rolled_back):
    code, out, _ = run("status", "-c", str(rolled_back))
    assert code == 0
    assert "target fraud-model: version v2 — HELD since" in out
    assert "error-rate" in out and "firing" in out

    code, out, _ = run("status", "--json", "-c", str(rolled_back))
    snapshot = json.loads(out)["targets"]["fraud-model"]
    assert code == 0 and snapshot["held"] is True and snapshot["decisions"][0]["status"] == "succeeded"

    code, out, _ = run("history", "-c", str(rolled_back), "--limit", "100")
    assert code == 0 and "rollback decided" in out and "error-rate" in out
    code, out, _ = run("history", "--json", "-c", str(rolled_back))
    assert {e["kind"] for e in json.loads(out)} >= {"decision", "state"}

    code, out, err = run("resume", "fraud-model", "-c", str(rolled_back), "--reason", "fixed upstream")
    assert code == 0, err
    code, out, _ = run("status", "--json", "-c", str(rolled_back))
    assert json.loads(out)["targets"]["fraud-model"]["held"] is False


# -- against a running (simulated) model server ------------------------------------------------------------


@pytest.fixture(scope="module")
def model() -> Iterator[SimulatedModelServer]:
    with SimulatedModelServer(rps=2000) as server:
        yield server


@pytest.fixture
def live_config(tmp_path: Path, model: SimulatedModelServer) -> Path:
    path = tmp_path / "watchdog.yaml"
    path.write_text(textwrap.dedent(f"""\
        interval: 1s
        state: state.db
        rule_files: ["{ROOT / 'rules' / 'fraud-model.yaml'}"]
        sources:
          model: {{type: scrape, url: "{model.url}/metrics"}}
        actuators:
          hook: {{type: webhook, url: "{model.url}/rollback"}}
        alerters:
          log: {{type: log}}
        targets:
          fraud-model:
            version: {{source: model, query: model_info, label: version}}
            rollback: [hook]
            alert: [log]
        """))
    return path


def test_check_finds_a_healthy_model_healthy(live_config):
    code, out, err = run("check", "--json", "--gap", "0.5", "-c", str(live_config))
    rows = json.loads(out)
    assert code == 0, err
    assert {r["rule"]: r["verdict"] for r in rows} == {"error-rate": "ok", "p99-latency": "ok", "accuracy": "ok"}


def test_explain_shows_the_steps(live_config):
    code, out, err = run("explain", "fraud-model", "error-rate", "--gap", "0.5", "-c", str(live_config))
    assert code == 0, err
    lines = out.splitlines()
    assert lines[0].startswith("explain fraud-model/error-rate at ") and "nothing is acted on or written" in lines[0]
    for step in ("1. queries sent: 2", "2. sample counts (min_samples)", "3. comparison with the threshold (> 0.05)",
                 "4. state machine (for 30s; stored state from no state file yet"):
        assert any(line.startswith(step) for line in lines), (step, out)
    assert "source model: sum(rate(requests_total{status=\"error\"}[1m]))" in out
    assert "no: ok" in out and "inactive → inactive" in out
    assert not (live_config.parent / "state.db").exists()  # explain never creates the state file

    code, out, _ = run("-c", str(live_config), "explain", "fraud-model", "accuracy", "--json", "--gap", "0")
    report = json.loads(out)
    assert code == 0 and report["series"][0]["outcome"] == "ok" and report["sources"]["model"]["type"] == "scrape"

    code, _, err = run("explain", "fraud-model", "latency", "-c", str(live_config))
    assert code == 2 and "has no rule 'latency'" in err


# -- test and schema ---------------------------------------------------------------------------------------


def test_rule_tests_pass_and_fail(tmp_path):
    code, out, _ = run("test", str(ROOT / "rules" / "tests" / "fraud-model.yaml"))
    assert code == 0 and "  PASS  healthy traffic is left alone" in out and out.rstrip().endswith("tests passed")

    broken = tmp_path / "broken.yaml"
    broken.write_text(textwrap.dedent(f"""\
        rule_files: ["{ROOT / 'rules' / 'fraud-model.yaml'}"]
        tests:
          - name: accuracy is fine
            input_series:
              - {{series: model_accuracy, values: '0.5x4'}}
            expect:
              - at: 30s
                rules: {{accuracy: inactive}}
        """))
    code, out, _ = run("test", str(broken))
    assert code == 1
    assert "  FAIL  accuracy is fine" in out and "        exp: inactive" in out and "        got: firing" in out

    broken.write_text("rule_files: []\ntests: [{name: x, expect: [{at: soon}]}]\n")
    code, out, _ = run("test", str(broken))
    assert code == 1 and f"  {broken}:2:33: " in out and "invalid duration 'soon'" in out


def test_schema_prints_json_schema():
    for argv, title in ((["schema"], "model-watchdog configuration"), (["schema", "--rules"], "model-watchdog rule file")):
        code, out, _ = run(*argv)
        schema = json.loads(out)
        assert code == 0 and schema["title"] == title and schema["additionalProperties"] is False


def test_usage_errors_exit_2():
    with pytest.raises(SystemExit) as info:
        run("test")
    assert info.value.code == 2
