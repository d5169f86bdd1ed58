"""Secrets a hostile (or merely chatty) peer echoes back, and label values that forge output.

The echoing endpoint is a local HTTP server that answers every request with an error whose
body repeats the request line, the Authorization header and the body — as many proxies and
frameworks do. Nothing of a secret URL may come back through the log, the alerts or the open
history API, in any form: the path of a Slack webhook from `webhook_url_file`, the base64 of
URL `user:password`, a URL path built from `${VAR}`.
"""

from __future__ import annotations

import base64
import io
import json
import threading

import pytest
import requests

from watchdog.http import client as httpclient
from watchdog.demo.model_server import SimulatedModelServer
from watchdog.errors import ActuatorError

from tests.http_receiver import Receiver, Reply, Request
from tests.integration.daemon_process import ACCURACY_RULE as RULE, DaemonProcess, wait_until


PASSWORD = "S3cret-Passw0rd"
USERINFO = f"deployer:{PASSWORD}"
HOOK = "hook-7f3a9c2e1b"  # in an environment variable whose name does not look secret
SLACK_TOKEN = "xoxHookSecret0123456789abc"


def echo(request: Request) -> Reply:
    auth = request.headers.get("Authorization", "")
    return Reply(400, f"no route for {request.method} {request.path} (Authorization: {auth}); "
                      f"you sent: {request.body[:300].decode(errors='replace')}")


def secret_forms(slack_path: str) -> list[str]:
    b64 = base64.b64encode(USERINFO.encode()).decode()
    return [PASSWORD, USERINFO, b64.rstrip("="), HOOK, f"/deploy/{HOOK}", slack_path, SLACK_TOKEN,
            base64.b64encode(slack_path.encode()).decode().rstrip("=")]


@pytest.mark.integration
@pytest.mark.timeout(120)
def test_an_echoing_endpoint_leaks_no_secret_into_log_alerts_or_history(tmp_path, monkeypatch):
    monkeypatch.setenv("DEPLOY_HOOK", HOOK)
    with SimulatedModelServer() as model, Receiver() as ops, Receiver(default=echo) as echoing:
        slack_path = f"/services/T0WATCHDOG/B0WATCHDOG/{SLACK_TOKEN}"
        (tmp_path / "slack.url").write_text(f"http://127.0.0.1:{echoing.port}{slack_path}\n")
        daemon = DaemonProcess(tmp_path, model.url, ops.url("/alert"), RULE, with_version=False)
        config = daemon.config.read_text()
        config = config.replace(
            f'rollback-hook: {{type: webhook, url: "{model.url}/rollback", timeout: 5s, backoff: 200ms}}',
            f'rollback-hook: {{type: webhook, url: "http://{USERINFO}@127.0.0.1:{echoing.port}/deploy/${{DEPLOY_HOOK}}", '
            "timeout: 5s, retries: 0}")
        config = config.replace("alerters:\n", "alerters:\n  chat: {type: slack, webhook_url_file: slack.url, retries: 0}\n")
        config = config.replace("alert: [ops]", "alert: [ops, chat]")
        daemon.config.write_text(config)
        try:
            daemon.start()
            requests.post(model.url + "/control", json={"mode": "degraded"}, timeout=5)
            failed = wait_until(lambda: [r for r in ops.requests if r.json.get("kind") == "actuator_failed"], 60,
                                what="the actuator_failed alert")
            wait_until(lambda: "alerter chat could not deliver firing alert" in _history(daemon)
                       and "rollback-hook" in _history(daemon), 30, what="the slack failure in the history")
            # The endpoint did echo every secret form: the test would see a leak.
            echoed = " ".join(r.path + r.headers.get("Authorization", "") for r in echoing.requests)
            assert slack_path in echoed and f"/deploy/{HOOK}" in echoed
            assert base64.b64encode(USERINFO.encode()).decode() in echoed

            seen = {"log": daemon.log.read_text(), "history API": _history(daemon),
                    "alerts": " ".join(r.body.decode() for r in ops.requests),
                    "history CLI": daemon.cli("history", "--limit", "200").stdout,
                    "status API": json.dumps(daemon.status())}
            for where, text in seen.items():
                for form in secret_forms(slack_path):
                    assert form not in text, f"{form!r} leaked into the {where}"
            # URLs of webhooks and actuators are shown as scheme://host only.
            shown = f"POST http://127.0.0.1:{echoing.port} failed: 400"
            assert shown in failed[0].json["summary"] and shown in seen["history API"]
            assert "no route for POST ***" in seen["history API"]  # the echo is there, its secrets masked
        finally:
            daemon.close()


def _history(daemon: DaemonProcess) -> str:
    return requests.get(daemon.url + "/api/v1/history?limit=500", timeout=5).text


def test_an_excerpt_is_redacted_before_it_is_cut(receiver: Receiver, redactor):
    """A secret straddling the excerpt's length limit must not leave its first half readable."""
    token = "tok-" + "Z9" * 20
    url = f"{receiver.url('/hook')}/{token}"
    redactor.register_secret(url)  # as webhook_url_file does
    receiver.script(Reply(400, "x" * 190 + f" {token} " + "y" * 300))  # the token spans character 200
    options = httpclient.HttpOptions(url=url, retries=0)
    with pytest.raises(ActuatorError) as err:
        httpclient.send_json(options, method="POST", payload={}, idempotency_key="k", stop=threading.Event(),
                             error=ActuatorError)
    message = str(err.value)
    assert "tok-Z9Z9" not in message and "Z9Z9Z9" not in message


@pytest.fixture
def receiver():
    with Receiver() as r:
        yield r


LABEL_ATTACKS = {"newline": "a\n2026-12-03 07:00:00 INFO watchdog.engine: all good", "escape": "\x1b[2J\x1b[31mred",
                 "quote": 'x",forged="1', "backslash": "c:\\temp"}


def test_format_labels_escapes_like_prometheus():
    from watchdog.samples import format_labels
    shown = format_labels((("a", 'x",forged="1'), ("b", "c:\\t"), ("c", "l1\nl2"), ("d", "\x1b[31m\x07")))
    assert shown == '{a="x\\",forged=\\"1",b="c:\\\\t",c="l1\\nl2",d="\\x1b[31m\\x07"}'


def test_cli_output_escapes_label_values_and_control_characters(tmp_path):
    from watchdog.cli import main
    from watchdog.state import open_store
    from watchdog.state.base import HistoryEvent

    (tmp_path / "watchdog.yaml").write_text(
        "state: state.db\nsources:\n  m: {type: scrape, url: 'http://127.0.0.1:9/metrics'}\n"
        "actuators:\n  a: {type: webhook, url: 'http://127.0.0.1:9/hook'}\n"
        "targets:\n  fraud-model:\n    rollback: [a]\n")
    with open_store(str(tmp_path / "state.db")) as store:
        store.append(HistoryEvent(None, 1.0, "fraud-model", "r", dict(LABEL_ATTACKS), "state",
                                  "pending\nFORGED LINE \x1b]0;title\x07\x9b31m", {"version": "v1\x1b[8m"}))
        store.observe_version("fraud-model", "v2\x1b[2J\nforged", 2.0)
    out = io.StringIO()
    assert main(["history", "-c", str(tmp_path / "watchdog.yaml")], out=out, err=io.StringIO()) == 0
    text = out.getvalue()
    assert text.count("\n") == 1, text  # one event, one line
    assert "\x1b" not in text and "\x07" not in text and "\x9b" not in text
    assert "\\n2026-12-03" in text and "\\x1b[2J" in text and "FORGED LINE" in text
    out = io.StringIO()
    assert main(["status", "-c", str(tmp_path / "watchdog.yaml")], out=out, err=io.StringIO()) == 0
    assert "\x1b" not in out.getvalue() and "\nforged" not in out.getvalue()


def test_a_newline_in_a_logged_value_cannot_forge_a_log_record():
    import logging

    from watchdog.cli import _setup_logging
    from watchdog.redact import Redactor
    from watchdog.samples import format_labels

    err = io.StringIO()
    root = logging.getLogger()
    handlers, level = root.handlers[:], root.level
    try:
        _setup_logging("info", err, Redactor())
        value = LABEL_ATTACKS["newline"]
        logging.getLogger("watchdog.engine").info("fraud-model/accuracy%s fired", format_labels((("model", value),)))
        logging.getLogger("watchdog.engine").warning("source said: %s", "oops\n2026-12-03 07:00:01 INFO forged \x1b[2J")
    finally:
        root.handlers[:] = handlers
        root.setLevel(level)
    lines = err.getvalue().splitlines()
    assert len(lines) == 2 and all(" watchdog.engine: " in line for line in lines)
    assert "\x1b" not in err.getvalue() and "\\n2026-12-03" in lines[0] and "\\x1b[2J" in lines[1]


def test_a_source_error_excerpt_is_redacted_before_it_is_cut(redactor):
    """A scrape target that echoes a secret across the 200-character cut shows none of it."""
    from watchdog.http.fetch import Fetched, body_hint

    token = "src-" + "Q7" * 20
    redactor.register_secret(token)
    answer = Fetched(500, {"Content-Type": "text/plain"}, ("x" * 190 + f" {token} " + "y" * 300).encode())
    hint = body_hint(answer)
    assert hint.startswith(": xxx") and "Q7Q7" not in hint and "src-Q" not in hint
