"""Alerts on the watchdog itself (deploy/prometheus): valid for Prometheus (`promtool check
rules`), and each one unit-tested firing and not firing (`promtool test rules`)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import yaml

from tests.servers import require

DIR = Path(__file__).resolve().parents[2] / "deploy" / "prometheus"
RULES = DIR / "model-watchdog-alerts.yaml"
TESTS = DIR / "model-watchdog-alerts.test.yaml"

# What the issue asks to be alerted on, and the metric each alert must read.
REQUIRED = {
    "ModelWatchdogNotEvaluating": "model_watchdog_last_evaluation_timestamp_seconds",
    "ModelWatchdogEvaluationFailures": "model_watchdog_evaluation_failures_total",
    "ModelWatchdogSourceDown": "model_watchdog_source_up",
    "ModelWatchdogConfigReloadFailed": "model_watchdog_config_last_reload_successful",
    "ModelWatchdogTargetHeldForLong": "model_watchdog_target_held",
    "ModelWatchdogDrillFailed": "model_watchdog_drill_ready",
}


def promtool(*args: str, cwd: Path = DIR) -> subprocess.CompletedProcess[str]:
    binary = require(shutil.which("promtool"), "prometheus")
    return subprocess.run([binary, *args], capture_output=True, text=True, timeout=120, cwd=cwd)


def alerts() -> dict[str, dict]:  # type: ignore[type-arg]
    groups = yaml.safe_load(RULES.read_text())["groups"]
    return {r["alert"]: r for g in groups for r in g["rules"] if "alert" in r}


def test_the_rules_are_valid_for_prometheus():
    done = promtool("check", "rules", str(RULES))
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {len(alerts())} rules found" in done.stdout


def test_the_unit_tests_pass():
    done = promtool("test", "rules", str(TESTS))
    assert done.returncode == 0, done.stdout + done.stderr
    assert "SUCCESS" in done.stdout


def test_the_issue_s_alerts_exist_and_read_the_right_metrics():
    found = alerts()
    for name, metric in REQUIRED.items():
        assert name in found, name
        assert metric in found[name]["expr"], (name, found[name]["expr"])
        assert found[name]["labels"]["severity"] in ("warning", "critical")
        assert found[name]["annotations"]["summary"]


def test_every_alert_is_tested_firing_and_quiet():
    cases = [c for t in yaml.safe_load(TESTS.read_text())["tests"] for c in t.get("alert_rule_test", [])]
    for name in alerts():
        mine = [c for c in cases if c["alertname"] == name]
        assert any(c["exp_alerts"] for c in mine), f"{name}: no test where it fires"
        assert any(not c["exp_alerts"] for c in mine), f"{name}: no test where it stays quiet"


def test_the_unit_tests_catch_a_broken_rule(tmp_path):
    """A rule that no longer fires (a threshold typo) fails `promtool test rules`."""
    (tmp_path / RULES.name).write_text(RULES.read_text().replace(
        "time() - model_watchdog_last_evaluation_timestamp_seconds > 300",
        "time() - model_watchdog_last_evaluation_timestamp_seconds > 3000"))
    shutil.copy(TESTS, tmp_path / TESTS.name)
    done = promtool("test", "rules", TESTS.name, cwd=tmp_path)
    assert done.returncode != 0 and "ModelWatchdogNotEvaluating" in done.stdout + done.stderr
