"""Issue 11, "Placeholders and version strings are untrusted".

A version comes from a metric label, a registry, the release API or the CLI; placeholders
carry it into query text, actuator arguments and file paths. Each story below was reproduced
on the old code (a database password on the status page, a forged breach, `current -> /etc`,
a deploy script printing its help and the step recorded as succeeded).
"""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import jmespath
import pytest
import requests

from watchdog.actuators.base import ActionContext
from watchdog.actuators.command import CommandActuator
from watchdog.actuators.file import FileActuator
from watchdog.alerters.base import Alert
from watchdog.cli import main
from watchdog.demo.model_server import SimulatedModelServer
from watchdog.errors import ActuatorError
from watchdog.promql.parser import parse
from watchdog.config.templating import TemplateError, bound_parameters, render
from watchdog.rollback.version_gate import VersionGate
from watchdog.text.versions import shown, version_problem

from tests.http_receiver import Receiver
from tests.integration.daemon_process import free_port, wait_until

PASSWORD = "hunter2-Db-Passw0rd-7c1e"
# Closes the quoted '{{version}}', adds a row whose label is the password and whose value
# breaches `above: 0.9`, and comments out the rest.
FORGED = "zzz' UNION SELECT password, 0.99 FROM users --"

# -- the pure validation function ------------------------------------------------------------------


@pytest.mark.parametrize("version", ["v1", "1.2.3", "2026-11-20_rc1", "sha256:abc", "a+b@c/d-e", "x" * 128,
                                     "models/fraud/7", "a..b"])
def test_valid_versions(version):
    assert version_problem(version) is None


@pytest.mark.parametrize("version", [FORGED, "--help", "-v", "", "x" * 129, "../../../../../etc", "v1/../../etc",
                                     "a/..", "..", ".hidden", "v1\n", "v1\nforged line", "v\x1b[31m", 'v1"} or vector(1)',
                                     "ü", "v 1", "/etc", 7])
def test_invalid_versions(version):
    assert version_problem(version) is not None
    assert "\n" not in shown(version) and "\x1b" not in shown(version)  # safe to show in one line


def test_the_gate_records_and_alerts_once_per_episode_and_resolves():
    history: list[tuple] = []
    alerts: list[tuple[str, Alert]] = []
    gate = VersionGate(lambda *event: history.append(event), lambda target, alert: alerts.append((target, alert)))

    assert gate.admit("fraud-model", "v1", 0) == "v1"
    assert gate.admit("fraud-model", FORGED, 1) is None
    assert gate.admit("fraud-model", FORGED, 2) is None
    assert gate.admit("fraud-model", "--help", 3) is None  # still the same episode
    assert gate.admit("fraud-model", None, 4) is None
    assert len(history) == 1 and history[0][4] == "version" and "invalid version" in history[0][5]
    assert [(a.status, a.kind, a.dedup_key) for _, a in alerts] == [
        ("firing", "invalid_version", "fraud-model/invalid_version")]
    assert gate.admit("fraud-model", "v2", 5) == "v2"
    assert [(a.status, a.dedup_key) for _, a in alerts][1:] == [("resolved", "fraud-model/invalid_version")]
    assert gate.admit("fraud-model", FORGED, 6) is None  # a new episode
    assert len(history) == 2 and len(alerts) == 3


def test_an_invalid_running_version_is_never_a_rollback_target_nor_in_the_decision(tmp_path):
    """The production engine on fakes: v1, then v2, then a forged label; the rule fires.
    (`unknown_version: proceed`: by default the rollback waits for a valid version, see
    tests/rollback/test_unknown_version_guard.py.)"""
    from tests.harness import DEFAULT_TARGET, Harness

    h = Harness(tmp_path, """\
        - {name: error-rate, source: model, query: error_ratio, above: 0.05, action: rollback}
        """, target=DEFAULT_TARGET + "    unknown_version: proceed\n")
    h.source.set("error_ratio", 0.01)
    h.version = "v1"
    h.run_for(30)
    h.version = "v2"
    h.run_for(30)
    h.version = "../../../../../etc"
    h.run_for(30)
    h.source.set("error_ratio", 0.2)
    h.run_for(30)
    call = h.actuators["first"].calls[0]
    assert (call.version, call.previous_version) == ("v2", "v1")
    assert "etc" not in json.dumps(call.as_json())
    assert [v.version for v in h.store.versions("fraud-model")] == ["v2", "v1"]
    assert [a.status for a in h.alerts(kind="invalid_version")] == ["firing"]


# -- query templating ------------------------------------------------------------------------------


def test_a_value_inside_a_promql_string_literal_stays_inside_it():
    evil = 'x"} or vector(0.99) or up{a="'
    expr = parse(render('errors_total{model="{{name}}"}', {"name": evil}))
    assert type(expr).__name__ == "VectorSelector"  # not `… or vector(0.99) or …`
    assert [m.value for m in expr.matchers if m.name == "model"] == [evil]
    single = parse(render("errors_total{model='{{name}}'}", {"name": "a'b\\"}))
    assert [m.value for m in single.matchers if m.name == "model"] == ["a'b\\"]


def test_a_value_that_would_leave_its_literal_is_refused():
    with pytest.raises(TemplateError, match="would leave"):
        render("errors_total{model=`{{name}}`}", {"name": "a` or vector(1) or up{b=`"})
    with pytest.raises(TemplateError, match="control character"):
        render('errors_total{model="{{name}}"}', {"name": "a\nvector(1)"})
    with pytest.raises(TemplateError, match="control character"):
        render("errors_total # {{name}}", {"name": "x\nvector(0.99)"})
    with pytest.raises(TemplateError, match="outside a string literal"):
        render("errors_total_{{version}}", {"version": "v1/2"})


def test_an_invalid_version_is_never_pasted_into_a_query_nor_bound():
    for name in ("version", "previous_version"):
        with pytest.raises(TemplateError, match="not a valid version"):
            render(f'errors_total{{version="{{{{{name}}}}}"}}', {name: FORGED})
    assert bound_parameters({"target": "fraud-model", "version": FORGED}) == {"target": "fraud-model"}
    assert bound_parameters({"target": "fraud-model", "version": "v7"}) == {"target": "fraud-model", "version": "v7"}


def test_a_value_inside_a_jmespath_raw_string_stays_inside_it():
    data = {"models": [{"name": "a", "p99": 0.1}, {"name": "b", "p99": 0.99}]}
    query = render("models[?name=='{{name}}'].p99", {"name": "nope' || name=='b"})
    assert jmespath.search(query, data) == []
    assert jmespath.search(render("models[?name=='{{name}}'].p99", {"name": "b"}), data) == [0.99]


# -- sql: validate refuses placeholders, the daemon never runs such a query ------------------------


def make_database(path: Path) -> None:
    with sqlite3.connect(path) as db:
        db.execute("CREATE TABLE scores (model_version TEXT, score REAL)")
        db.executemany("INSERT INTO scores VALUES (?, ?)", [("v1", 0.2), ("v2", 0.3)])
        db.execute("CREATE TABLE users (name TEXT, password TEXT)")
        db.execute("INSERT INTO users VALUES ('admin', ?)", (PASSWORD,))


SQL_CONFIG = """\
interval: 1s
state: state.db
listen: 127.0.0.1:{port}
rule_files: [rules.yaml]
api: {{token_file: token}}
sources:
  model: {{type: scrape, url: "{model}/metrics", timeout: 1s}}
  db: {{type: sql, dsn: "sqlite:///{db}"}}
actuators:
  rollback-hook: {{type: webhook, url: "{model}/rollback", timeout: 5s}}
alerters:
  ops: {{type: webhook, url: "{alerts}", timeout: 2s, retries: 1, backoff: 100ms}}
targets:
  fraud-model:
    version: {{source: model, query: model_info, label: version}}
    rollback: [rollback-hook]
    alert: [ops]
"""

SQL_RULES = """\
target: fraud-model
rules:
  - name: score
    source: db
    query: {query}
    above: 0.9
    action: rollback
"""
QUOTED = "SELECT model_version, max(score) AS value FROM scores WHERE model_version = '{{version}}' GROUP BY 1"
BOUND = "SELECT model_version, max(score) AS value FROM scores WHERE model_version = :version GROUP BY 1"


def write_sql_config(directory: Path, model: str, alerts: str, query: str) -> tuple[Path, int]:
    make_database(directory / "scores.db")
    port = free_port()
    (directory / "token").write_text("a-long-api-token-0123456789\n")
    (directory / "token").chmod(0o600)
    config = directory / "watchdog.yaml"
    config.write_text(SQL_CONFIG.format(port=port, model=model, alerts=alerts, db=directory / "scores.db"))
    (directory / "rules.yaml").write_text(SQL_RULES.format(query=query))
    return config, port


def validate(config: Path) -> tuple[int, str]:
    import io
    from contextlib import redirect_stderr, redirect_stdout

    out = io.StringIO()
    with redirect_stdout(out), redirect_stderr(out):
        code = main(["validate", "-c", str(config)])
    return code, out.getvalue()


def test_validate_refuses_a_placeholder_in_an_sql_query_and_points_to_version(tmp_path):
    config, _ = write_sql_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9/alert", QUOTED)
    code, out = validate(config)
    assert code != 0
    column = 12 + QUOTED.index("{{")  # `    query: ` then the offset in the plain scalar
    assert f"rules.yaml:5:{column}: rule \"score\": query: {{{{version}}}} cannot be used in a sql query" in out, out
    assert ":version" in out and "without quotes" in out
    (tmp_path / "rules.yaml").write_text(SQL_RULES.format(query=BOUND))
    assert validate(config)[0] == 0


def test_the_problem_points_at_the_placeholder_in_any_scalar_style(tmp_path):
    config, _ = write_sql_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9/alert", BOUND)
    (tmp_path / "rules.yaml").write_text(textwrap.dedent("""\
        target: fraud-model
        rules:
          - name: block
            source: db
            query: |
              SELECT avg(score) AS value FROM scores
              WHERE model = '{{ target }}'
            below: 0.5
          - name: proportion
            source: db
            compare:
              test: proportion
              errors: SELECT count(*) AS value FROM e WHERE v = '{{version}}'
              total: SELECT count(*) AS value FROM t WHERE w = '{{version}}'
              baseline: previous_version
        """))
    code, out = validate(config)
    assert code != 0
    assert "rules.yaml:7:22: rule \"block\": query: {{target}} cannot be used" in out and ":target" in out, out
    assert "rules.yaml:13:58: rule \"proportion\"" in out and "rules.yaml:14:57: rule \"proportion\"" in out, out


@pytest.fixture
def alerts():
    receiver = Receiver()
    receiver.start()
    yield receiver
    receiver.close()


def start_daemon(config: Path) -> subprocess.Popen[str]:
    log = open(config.parent / "daemon.log", "w")  # a file, not a pipe nobody reads while it runs
    proc = subprocess.Popen([sys.executable, "-m", "watchdog.cli", "run", "-c", str(config)], stdout=log,
                            stderr=subprocess.STDOUT, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    log.close()
    return proc


def stop(proc: subprocess.Popen[str], config: Path) -> str:
    if proc.poll() is None:
        proc.kill()
    proc.wait(timeout=20)
    return (config.parent / "daemon.log").read_text()


@pytest.mark.integration
@pytest.mark.timeout(90)
def test_the_daemon_refuses_to_run_an_injectable_sql_rule(tmp_path, alerts):
    """Old code: the forged label closed the quote, the password became a series label on the
    open status page and 0.99 breached `above: 0.9`, rolling the model back."""
    with SimulatedModelServer(version=FORGED, previous_versions=("v1",)) as model:
        config, port = write_sql_config(tmp_path, model.url, alerts.url("/alert"), QUOTED)
        proc = start_daemon(config)
        try:
            code = proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            leaked = "".join(requests.get(f"http://127.0.0.1:{port}{p}", timeout=5).text
                             for p in ("/", "/api/v1/status", "/api/v1/history"))
            rollbacks = requests.get(model.url + "/rollbacks", timeout=5).json()
            stop(proc, config)
            pytest.fail(f"the daemon runs an injectable SQL query (password shown: {PASSWORD in leaked}; "
                        f"{len(rollbacks)} rollback(s))")
        out = stop(proc, config)
        assert code != 0
        assert "rules.yaml:5:" in out and "{{version}} cannot be used in a sql query" in out and ":version" in out
        assert PASSWORD not in out
        assert requests.get(model.url + "/rollbacks", timeout=5).json() == []


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_a_forged_version_label_is_recorded_alerted_once_and_never_used(tmp_path, alerts):
    """The bound form of the rule, a version label that is an SQL injection: nothing leaks, no
    breach, the invalid version is in the history and alerted once, and it is neither the
    running version nor a version the API or the CLI accept."""
    with SimulatedModelServer(version="v1", previous_versions=()) as model:
        config, port = write_sql_config(tmp_path, model.url, alerts.url("/alert"), BOUND)
        url = f"http://127.0.0.1:{port}"
        proc = start_daemon(config)
        try:
            wait_until(lambda: _ready(url, proc, config), 30, what="the daemon to become ready")
            wait_until(lambda: _status(url)["version"] == "v1", 20, what="v1 to be seen")
            requests.post(model.url + "/deploy", json={"version": FORGED}, timeout=5).raise_for_status()
            wait_until(lambda: _invalid_alerts(alerts), 20, what="the invalid_version alert")
            ticks = _evaluations(url)
            wait_until(lambda: _evaluations(url) >= ticks + 4, 20, what="four more ticks")

            firing = _invalid_alerts(alerts)
            assert [(a["status"], a["dedup_key"], a["target"]) for a in firing] == [
                ("firing", "fraud-model/invalid_version", "fraud-model")]
            assert _status(url)["version"] == "v1"  # the forged one never becomes the running version
            history = requests.get(url + "/api/v1/history?limit=200", timeout=5).text
            events = [e for e in json.loads(history) if e["kind"] == "version"]
            assert sum("invalid version" in e["message"] for e in events) == 1
            assert not any("is running" in e["message"] and "UNION" in e["message"] for e in events)
            everything = "".join(requests.get(url + p, timeout=5).text
                                 for p in ("/", "/api/v1/status", "/api/v1/history", "/metrics"))
            assert PASSWORD not in everything
            assert requests.get(model.url + "/rollbacks", timeout=5).json() == []

            # The release API and the CLI refuse invalid versions, and record the attempt.
            headers = {"Authorization": "Bearer a-long-api-token-0123456789"}
            api = requests.post(url + "/api/v1/targets/fraud-model/releases", headers=headers, timeout=5,
                                json={"components": {"model": "../../../../../etc"}})
            assert api.status_code == 400 and "not a valid version" in api.json()["error"]
            cli = subprocess.run([sys.executable, "-m", "watchdog.cli", "rollback", "fraud-model", "--to=--help",
                                  "--reason", "test", "-c", str(config)], capture_output=True, text=True, timeout=60)
            assert cli.returncode == 2 and "not a valid version" in cli.stderr, cli.stdout + cli.stderr
            history = json.loads(requests.get(url + "/api/v1/history?limit=200", timeout=5).text)
            refused = [e["message"] for e in history if "refused" in e["message"]]
            assert len(refused) == 2 and any("'--help'" in m for m in refused), refused

            # A valid version again ends the episode.
            requests.post(model.url + "/deploy", json={"version": "v3"}, timeout=5).raise_for_status()
            wait_until(lambda: _status(url)["version"] == "v3", 20, what="v3 to be seen")
            wait_until(lambda: len(_invalid_alerts(alerts)) == 2, 20, what="the resolved alert")
            assert _invalid_alerts(alerts)[1]["status"] == "resolved"
        finally:
            log = stop(proc, config)
        assert PASSWORD not in log


def _ready(url: str, proc: subprocess.Popen[str], config: Path) -> bool:
    if proc.poll() is not None:
        raise AssertionError(f"daemon exited with {proc.returncode}:\n{stop(proc, config)}")
    try:
        return requests.get(url + "/readyz", timeout=1).status_code == 200
    except requests.RequestException:
        return False


def _status(url: str) -> dict:  # type: ignore[type-arg]
    return requests.get(url + "/api/v1/status", timeout=5).json()["targets"]["fraud-model"]


def _evaluations(url: str) -> float:
    for line in requests.get(url + "/metrics", timeout=5).text.splitlines():
        if line.startswith("model_watchdog_evaluations_total "):
            return float(line.split()[1])
    return 0.0


def _invalid_alerts(alerts: Receiver) -> list[dict]:  # type: ignore[type-arg]
    return [r.json for r in alerts.requests if r.json and r.json.get("kind") == "invalid_version"]


# -- file actuator: the target stays inside its template's directory ---------------------------------


def context(**changes: object) -> ActionContext:
    base = dict(decision_id="dec-1", target="fraud-model", rule="accuracy", action="rollback", value=0.5,
                threshold={"below": 0.9}, labels={}, version="v7", previous_version="v6",
                fired_at="2026-01-02T03:04:05Z", reason="accuracy below 0.9")
    base.update(changes)
    return ActionContext(**base)  # type: ignore[arg-type]


def symlink_actuator(tmp_path: Path, template: str, must_exist: bool = True) -> FileActuator:
    return FileActuator("switch", FileActuator.Options(path=str(tmp_path / "serving" / "current"),
                                                       target_template=template, must_exist=must_exist))


@pytest.fixture
def layout(tmp_path: Path) -> Path:
    (tmp_path / "models" / "v6").mkdir(parents=True)
    (tmp_path / "serving").mkdir()
    return tmp_path


def test_dot_dot_in_a_version_cannot_point_the_symlink_outside(layout):
    act = symlink_actuator(layout, f"{layout}/models/{{{{to_version}}}}")
    with pytest.raises(ActuatorError):
        act.apply(context(previous_version="../../../../../etc"), threading.Event())
    assert not os.path.lexists(layout / "serving" / "current")


def test_a_symlink_inside_the_template_directory_cannot_lead_outside(layout):
    os.symlink("/etc", layout / "models" / "v5")  # a valid version name, a hostile link
    act = symlink_actuator(layout, f"{layout}/models/{{{{to_version}}}}")
    with pytest.raises(ActuatorError, match="outside"):
        act.apply(context(previous_version="v5"), threading.Event())
    assert not os.path.lexists(layout / "serving" / "current")
    # A value with no `..` segment, from a placeholder that is not a version, cannot escape either.
    relative = symlink_actuator(layout, "../models/{{rule}}", must_exist=False)
    with pytest.raises(ActuatorError, match="outside"):
        relative.apply(context(rule=".."), threading.Event())


def test_a_target_inside_the_template_directory_is_switched(layout):
    act = symlink_actuator(layout, f"{layout}/models/{{{{to_version}}}}")
    assert "→" in act.apply(context(), threading.Event())
    assert os.readlink(layout / "serving" / "current") == f"{layout}/models/v6"
    relative = symlink_actuator(layout, "../models/{{to_version}}")
    relative.apply(context(), threading.Event())
    assert os.readlink(layout / "serving" / "current") == "../models/v6"


# -- command actuator: a whole-argument value starting with '-' --------------------------------------

# A deploy script that, like many, prints its help and exits 0 on --help.
DEPLOY = textwrap.dedent("""\
    import sys
    if sys.argv[1].startswith("-"):
        print("usage: deploy VERSION"); sys.exit(0)
    open(sys.argv[2], "w").write(sys.argv[1])
    """)


@pytest.mark.parametrize("placeholder,changes", [("{{reason}}", {"reason": "--help"}),
                                                 ("{{ rule }}", {"rule": "-h"}),
                                                 ("{{rule}}.yaml", {"rule": "--config=/etc/x"}),
                                                 ("{{previous_version}}", {"previous_version": "--help"})])
def test_a_value_filling_a_whole_argument_and_starting_with_a_dash_is_refused(tmp_path, placeholder, changes):
    out = tmp_path / "deployed"
    act = CommandActuator("deploy", CommandActuator.Options(argv=[sys.executable, "-c", DEPLOY, placeholder, str(out)]))
    with pytest.raises(ActuatorError, match="starts with '-'|not a valid version"):
        act.apply(context(**changes), threading.Event())
    with pytest.raises(ActuatorError):
        act.plan(context(**changes))


def test_values_inside_an_argument_and_ordinary_values_still_run(tmp_path):
    out = tmp_path / "deployed"
    act = CommandActuator("deploy", CommandActuator.Options(argv=[sys.executable, "-c", DEPLOY, "{{previous_version}}",
                                                                  str(out)]))
    act.apply(context(), threading.Event())
    assert out.read_text() == "v6"
    record = tmp_path / "argv.json"
    script = "import json, sys; json.dump(sys.argv[1:], open(sys.argv[-1], 'w'))"
    inside = CommandActuator("deploy", CommandActuator.Options(argv=[sys.executable, "-c", script, "--reason={{reason}}",
                                                                     str(record)]))
    inside.apply(context(reason="-x"), threading.Event())
    assert json.loads(record.read_text())[0] == "--reason=-x"


def test_the_cli_refuses_an_invalid_release_version(tmp_path):
    config, _ = write_sql_config(tmp_path, "http://127.0.0.1:9", "http://127.0.0.1:9/alert", BOUND)
    code = main(["release", "fraud-model", "--component", "model=v1/../../etc", "-c", str(config)])
    assert code == 2
    assert main(["release", "fraud-model", "--component", "model=v2", "-c", str(config)]) == 0
