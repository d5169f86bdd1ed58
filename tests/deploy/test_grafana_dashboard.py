"""The Grafana dashboard (deploy/grafana) and the meta-alerts (deploy/prometheus) only query
metrics a running daemon exports.

A real `model-watchdog run` goes through what the panels show — a source failing, a breach,
a rollback, recovery, a drill, a reload — and then every metric name in every PromQL
expression of the dashboard (panels and variables) and of the alert rules must be among the
samples on its /metrics. The expressions themselves are checked by Prometheus's own parser
(`promtool check rules` on them as recording rules)."""

from __future__ import annotations

import json
import re
import shutil
import signal
import subprocess
from pathlib import Path

import pytest
import requests
import yaml
from prometheus_client.parser import text_string_to_metric_families

from watchdog.demo.model_server import SimulatedModelServer

from tests.http_receiver import Receiver
from tests.integration.daemon_process import ERROR_RATE_RULE, DaemonProcess, free_port, wait_until
from tests.servers import require

ROOT = Path(__file__).resolve().parents[2]
DASHBOARD = ROOT / "deploy" / "grafana" / "model-watchdog-dashboard.json"
ALERTS = ROOT / "deploy" / "prometheus" / "model-watchdog-alerts.yaml"

# Grafana's variables, replaced by something Prometheus accepts.
VARIABLES = {"$__rate_interval": "5m", "$__range": "1h", "$__interval": "1m",
             "$target": ".*", "$rule": ".*", "$instance": ".*"}
KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset",
            "and", "or", "unless", "inf", "nan"}
FROM_PROMETHEUS = {"up"}  # the scrape's own series, not the daemon's

BROKEN_PROBE = """\
- name: broken-probe
  source: broken
  query: up
  below: 1
"""


def dashboard_expressions() -> list[str]:
    dashboard = json.loads(DASHBOARD.read_text())
    found = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    for var in dashboard["templating"]["list"]:
        if var["type"] == "query":
            inner = re.fullmatch(r"label_values\((.+),\s*\w+\)", var["query"]["query"])
            assert inner, var["query"]
            found.append(inner.group(1))
    return found


def alert_expressions() -> list[str]:
    return [r["expr"] for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def substitute(expr: str) -> str:
    for name in sorted(VARIABLES, key=len, reverse=True):
        expr = expr.replace(name, VARIABLES[name]).replace("${" + name[1:] + "}", VARIABLES[name])
    assert "$" not in expr, expr
    return expr


def metric_names(expr: str) -> set[str]:
    """Metric names of a PromQL expression: identifiers that are not functions, keywords,
    label names (in matchers or by/on lists) or inside strings and ranges."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"(?<![\w.])[a-zA-Z_:][a-zA-Z0-9_:]*", text):
        if text[match.end():].lstrip().startswith("(") or match.group().lower() in KEYWORDS:
            continue
        names.add(match.group())
    return names


def test_metric_names_are_read_from_promql():
    assert metric_names('histogram_quantile(0.9, sum by (le, source) (rate(a_bucket{source=~"x|y"}[5m])))') == {"a_bucket"}
    assert metric_names("time() - max without (instance) (b) > 1e3 or on (target) c_total offset 5m") == {"b", "c_total"}
    assert metric_names('sum(increase(d_sum{t="$target"}[1h])) / sum(increase(d_count[1h])) or vector(0)') == {"d_sum", "d_count"}


def test_every_expression_parses_in_prometheus(tmp_path):
    rules = [{"record": f"dashboard:expr_{i}", "expr": substitute(e)}
             for i, e in enumerate(dashboard_expressions() + alert_expressions())]
    path = tmp_path / "expressions.yaml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
    done = subprocess.run([require(shutil.which("promtool"), "prometheus"), "check", "rules", str(path)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_the_dashboard_shows_what_the_issue_asks_for():
    names = set().union(*(metric_names(substitute(e)) for e in dashboard_expressions()))
    for needed in ["model_watchdog_rule_value", "model_watchdog_rule_threshold", "model_watchdog_rule_state",
                   "model_watchdog_decisions_total", "model_watchdog_actions_total", "model_watchdog_source_up",
                   "model_watchdog_source_query_duration_seconds_bucket", "model_watchdog_evaluation_duration_seconds_bucket",
                   "model_watchdog_target_held", "model_watchdog_time_to_detect_seconds_bucket",
                   "model_watchdog_time_to_act_seconds_bucket", "model_watchdog_time_to_recover_seconds_bucket"]:
        assert needed in names, needed


def exported(text: str) -> set[str]:
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


@pytest.mark.integration
@pytest.mark.timeout(180)
def test_every_metric_queried_is_exported_by_a_running_daemon(tmp_path):
    wanted = set().union(*(metric_names(substitute(e)) for e in dashboard_expressions() + alert_expressions()))
    wanted -= FROM_PROMETHEUS
    with SimulatedModelServer(version="v2", previous_versions=("v1",)) as model:
        receiver = Receiver()
        receiver.start()
        daemon = DaemonProcess(tmp_path, model.url, receiver.url("/alert"), ERROR_RATE_RULE + BROKEN_PROBE)
        # A second source that is down: source errors and source_up 0.
        daemon.config.write_text(daemon.config.read_text().replace("sources:\n", (
            f'sources:\n  broken: {{type: scrape, url: "http://127.0.0.1:{free_port()}/metrics", timeout: 1s}}\n')))
        try:
            daemon.start()
            requests.post(model.url + "/control", json={"mode": "degraded"}, timeout=5).raise_for_status()
            wait_until(lambda: "model_watchdog_time_to_recover_seconds_count" in exported(daemon.metrics()), 90,
                       what="a rollback and the recovery after it")
            drill = daemon.cli("drill", "fraud-model")
            assert "rollback drill for fraud-model" in drill.stdout, drill.stdout + drill.stderr
            assert daemon.proc is not None
            daemon.proc.send_signal(signal.SIGHUP)  # a reload: model_watchdog_config_reloads_total
            last: set[str] = set()

            def complete() -> bool:
                nonlocal last
                last = wanted - exported(daemon.metrics())
                return not last
            try:
                wait_until(complete, 30, what="every queried metric")
            except AssertionError:
                raise AssertionError(f"queried but not exported: {sorted(last)}") from None
        finally:
            daemon.close()
            receiver.close()


def test_the_dashboard_is_importable_as_is():
    """Unique panel ids, a layout within Grafana's 24 columns, and every query on the
    `datasource` variable (so import and provisioning need no editing)."""
    dashboard = json.loads(DASHBOARD.read_text())
    assert dashboard["uid"] == "model-watchdog" and dashboard["schemaVersion"] >= 36
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        grid = panel["gridPos"]
        assert grid["x"] + grid["w"] <= 24, panel["title"]
        if panel["type"] != "row":
            assert panel["targets"] and panel["datasource"] == {"type": "prometheus", "uid": "${datasource}"}, panel["title"]
            assert all(t["datasource"] == panel["datasource"] for t in panel["targets"]), panel["title"]
    assert [v["name"] for v in dashboard["templating"]["list"]][0] == "datasource"
