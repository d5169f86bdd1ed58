"""Hostile config and rule files (issue 11, "Config and rule files"): `validate` reports them
at file:line:column within bounded memory, and a reload of them — SIGHUP, `model-watchdog
reload`, the API — leaves the running daemon on its last good configuration."""

from __future__ import annotations

import io
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest
import requests

from watchdog.cli import main
from watchdog.config.loader import load
from watchdog.daemon import Daemon
from watchdog.demo.model_server import SimulatedModelServer

from tests.http_receiver import Receiver
from tests.integration.daemon_process import ERROR_RATE_RULE, DaemonProcess, wait_until

pytestmark = pytest.mark.timeout(180)

CONFIG = """\
state: s.db
rule_files: [rules.yaml]
sources: {model: {type: scrape, url: "http://127.0.0.1:9/metrics"}}
targets: {fraud-model: {}}
"""


def alias_bomb(levels: int) -> str:
    """The "billion laughs": each level lists the previous one nine times (9**levels nodes)."""
    lines = ["target: fraud-model", 'a0: &a0 ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i in range(1, levels):
        lines.append(f"a{i}: &a{i} [" + ",".join([f"*a{i - 1}"] * 9) + "]")
    lines.append(f"rules: *a{levels - 1}")
    return "\n".join(lines) + "\n"


def validate(tmp_path: Path, rules: str) -> tuple[int, str]:
    (tmp_path / "watchdog.yaml").write_text(CONFIG)
    (tmp_path / "rules.yaml").write_text(rules)
    out, err = io.StringIO(), io.StringIO()
    code = main(["validate", "-c", str(tmp_path / "watchdog.yaml")], out, err)
    return code, out.getvalue() + err.getvalue()


def test_validate_refuses_a_recursive_alias_at_its_position(tmp_path):
    code, text = validate(tmp_path, "target: fraud-model\nrules: &r [*r]\n")
    assert code == 1
    assert "rules.yaml:2:12: alias *r is inside its own anchor &r" in text


def test_validate_refuses_deep_nesting_at_its_position(tmp_path):
    code, text = validate(tmp_path, "target: fraud-model\nrules: " + "[" * 5000 + "]" * 5000 + "\n")
    assert code == 1 and "rules.yaml:2:107: nested deeper than 100 levels" in text


def test_validate_refuses_a_file_over_5_mib_without_reading_it_whole(tmp_path):
    padding = "# " + "x" * 1021 + "\n"  # 1 KiB a line
    code, text = validate(tmp_path, "target: fraud-model\nrules: []\n" + padding * (6 * 1024))
    assert code == 1 and "file is larger than 5242880 bytes (5 MiB)" in text
    assert "rules.yaml:5122:995: " in text  # where the limit was crossed


@pytest.mark.timeout(30)
def test_validate_does_not_hang_on_a_rule_file_that_is_a_fifo(tmp_path):
    (tmp_path / "watchdog.yaml").write_text(CONFIG)
    os.mkfifo(tmp_path / "rules.yaml")  # opening it for reading would wait for a writer forever
    out, err = io.StringIO(), io.StringIO()
    code = main(["validate", "-c", str(tmp_path / "watchdog.yaml")], out, err)
    assert code == 1 and "rules.yaml: cannot read file: not a regular file" in err.getvalue()


@pytest.mark.timeout(30)
def test_a_secret_file_that_is_not_a_regular_file_is_refused(tmp_path):
    # A FIFO here (the old loader waited on it forever); /dev/zero is refused the same way.
    os.mkfifo(tmp_path / "webhook")
    (tmp_path / "watchdog.yaml").write_text(CONFIG.replace(
        "targets:", "alerters: {chat: {type: slack, webhook_url_file: webhook}}\ntargets:"))
    (tmp_path / "rules.yaml").write_text("target: fraud-model\nrules: []\n")
    out, err = io.StringIO(), io.StringIO()
    code = main(["validate", "-c", str(tmp_path / "watchdog.yaml")], out, err)
    assert code == 1 and "webhook: not a regular file" in err.getvalue() and "cannot read secret file" in err.getvalue()


def test_validate_refuses_an_alias_bomb_within_bounded_memory(tmp_path):
    (tmp_path / "watchdog.yaml").write_text(CONFIG)
    bomb = alias_bomb(9)  # 387 million nodes once expanded, from a few hundred bytes
    assert len(bomb) < 600
    (tmp_path / "rules.yaml").write_text(bomb)
    # A child with 2 GiB of address space: the old loader died of MemoryError expanding it.
    limit = "import resource; resource.setrlimit(resource.RLIMIT_AS, (2 << 30, 2 << 30))"
    code = f"{limit}; import sys; from watchdog.cli import main; sys.exit(main(sys.argv[1:]))"
    done = subprocess.run([sys.executable, "-c", code, "validate", "-c", str(tmp_path / "watchdog.yaml")],
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 1, done.stderr[-2000:]
    assert "rules.yaml:7:10: " in done.stderr and "more than 100000 YAML nodes once aliases are expanded" in done.stderr
    assert "MemoryError" not in done.stderr


# -- the running daemon -------------------------------------------------------------------------

TOKEN = "reload-api-token-0123456789"


@pytest.fixture
def daemon(tmp_path):
    with SimulatedModelServer(version="v2", previous_versions=("v1",)) as model, Receiver() as alerts:
        d = DaemonProcess(tmp_path, model.url, alerts.url("/alert"), ERROR_RATE_RULE)
        (tmp_path / "api.token").write_text(TOKEN)
        (tmp_path / "api.token").chmod(0o600)
        d.config.write_text(d.config.read_text().replace("rule_files:", "api: {token_file: api.token}\nrule_files:"))
        d.alerts = alerts  # type: ignore[attr-defined]
        yield d.start()
        d.close()


def evaluations(d: DaemonProcess) -> float:
    line = next(x for x in d.metrics().splitlines() if x.startswith("model_watchdog_evaluations_total"))
    return float(line.split()[1])


def assert_still_guarding_with_the_old_rules(d: DaemonProcess) -> None:
    assert d.proc is not None and d.proc.poll() is None, d.log.read_text()[-3000:]
    assert requests.get(d.url + "/healthz", timeout=5).text == "ok\n"
    assert "model_watchdog_config_last_reload_successful 0.0" in d.metrics()
    before = evaluations(d)
    wait_until(lambda: evaluations(d) >= before + 2, 20, what="two more evaluations")
    assert [r["rule"] for r in d.status()["targets"]["fraud-model"]["rules"]] == ["error-rate"]
    assert d.rule_series("error-rate"), "the old rule is still evaluated"


@pytest.mark.parametrize("rules, problem", [
    ("target: fraud-model\nrules: &r [*r]\n", "rules.yaml:2:12: alias *r is inside its own anchor"),
    (alias_bomb(6), "rules.yaml:7:10: more than 100000 YAML nodes"),  # 531,441 nodes: safe to try on old code
], ids=["recursive-alias", "alias-bomb"])
def test_sighup_with_a_hostile_rule_file_keeps_the_daemon_on_its_old_rules(daemon, rules, problem):
    (daemon.dir / "rules.yaml").write_text(rules)
    assert daemon.proc is not None
    daemon.proc.send_signal(signal.SIGHUP)
    alerts: Receiver = daemon.alerts  # type: ignore[attr-defined]
    wait_until(lambda: any(b"config_reload_failed" in r.body for r in alerts.requests), 30,
               what="the config_reload_failed alert")
    assert problem in daemon.log.read_text()
    assert_still_guarding_with_the_old_rules(daemon)


def test_api_reload_of_an_alias_bomb_is_refused_without_growing_memory(daemon):
    assert daemon.proc is not None
    rss = lambda: int(next(x for x in Path(f"/proc/{daemon.proc.pid}/status").read_text().splitlines()  # noqa: E731
                            if x.startswith("VmRSS:")).split()[1])
    before = rss()
    (daemon.dir / "rules.yaml").write_text(alias_bomb(6))  # 531,441 nodes expanded: past the cap, safe for old code
    response = requests.post(daemon.url + "/api/v1/reload", headers={"Authorization": f"Bearer {TOKEN}"}, timeout=60)
    assert response.status_code == 422, response.text
    assert "rules.yaml:7:10: more than 100000 YAML nodes" in response.json()["message"]
    assert rss() - before < 30 * 1024  # kB
    done = daemon.cli("reload")  # the CLI loads the files itself first, and refuses to ask for them
    assert done.returncode == 1 and "rules.yaml:7:10: more than 100000 YAML nodes" in done.stderr
    assert_still_guarding_with_the_old_rules(daemon)


def test_a_reload_that_fails_in_an_unforeseen_way_keeps_the_last_good_configuration(tmp_path, monkeypatch):
    with SimulatedModelServer() as model:
        (tmp_path / "watchdog.yaml").write_text(textwrap.dedent(f"""\
            state: state.db
            rule_files: [rules.yaml]
            sources: {{model: {{type: scrape, url: "{model.url}/metrics"}}}}
            targets: {{fraud-model: {{}}}}
            """))
        (tmp_path / "rules.yaml").write_text("target: fraud-model\nrules:\n  - {name: acc, source: model, "
                                             "query: model_accuracy, below: 0.9, action: alert}\n")
        daemon = Daemon(load(tmp_path / "watchdog.yaml"))
        try:
            before = daemon.loaded

            def broken_loader(path: object, environ: object = None) -> None:
                raise RuntimeError("a loader bug")

            monkeypatch.setattr("watchdog.daemon.load", broken_loader)  # the fault to inject: no other way in
            ok, message = daemon.reload()
            assert not ok and "RuntimeError: a loader bug" in message
            assert daemon.loaded is before
            assert daemon.metrics.config_reloads.labels("failure")._value.get() == 1
            assert daemon.metrics.config_last_reload_success._value.get() == 0
            recorded = daemon.store.history(limit=5)
            assert any(e.kind == "reload" and "a loader bug" in e.message for e in recorded)
            assert daemon.run_once() is not None  # and it still evaluates
        finally:
            daemon.close()
