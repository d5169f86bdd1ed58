"""Read-back for the webhook and command actuators: `verify_url`/`current_url` and
`verify_argv`/`current_argv`."""

from __future__ import annotations

import sys
import threading

import pytest

from tests.actuators.kube_fixtures import make_context
from tests.http_receiver import Receiver, Reply
from watchdog.actuators.command import CommandActuator
from watchdog.actuators.webhook import WebhookActuator
from watchdog.errors import ActuatorError

pytestmark = pytest.mark.timeout(30)


def webhook(receiver: Receiver, **options: object) -> WebhookActuator:
    options.setdefault("backoff", 0.01)
    return WebhookActuator("deploy-api", WebhookActuator.Options(url=receiver.url("/rollback"), **options))


def test_verify_url_with_a_field_that_must_equal_the_target(receiver: Receiver) -> None:
    act = webhook(receiver, verify_url=receiver.url("/status/{{target}}/{{component}}"),
                  verify_field="deployment.version", headers={"X-Team": "ml"})
    receiver.script(Reply(200, {"deployment": {"version": "v7"}}), Reply(200, {"deployment": {"version": "v6"}}))

    with pytest.raises(ActuatorError, match="deployment.version = 'v7', expected 'v6'"):
        act.verify(make_context("v6"), threading.Event())
    assert act.verify(make_context("v6"), threading.Event()).endswith("says deployment.version = v6")

    assert receiver.requests[0].path == "/status/fraud-model/scorer"
    assert receiver.requests[0].method == "GET" and receiver.requests[0].headers["X-Team"] == "ml"


def test_verify_url_without_a_field_needs_a_2xx(receiver: Receiver) -> None:
    act = webhook(receiver, verify_url=receiver.url("/health"))
    receiver.script(Reply(404, "no such deployment"), 204)

    with pytest.raises(ActuatorError, match="not verified: GET http://127.0.0.1:[0-9]+ → 404: no such deployment"):
        act.verify(make_context(None), threading.Event())
    assert act.verify(make_context(None), threading.Event()).endswith("→ 204")


def test_placeholders_in_urls_are_url_encoded(receiver: Receiver) -> None:
    act = webhook(receiver, current_url=receiver.url("/versions?model={{target}}&to={{to_version}}"))
    receiver.script(Reply(200, {"version": "v7"}))

    assert act.current_version(make_context("a+b/c@d:1")) == "v7"
    assert receiver.requests[0].path == "/versions?model=fraud-model&to=a%2Bb%2Fc%40d%3A1"


def test_current_url_field_and_unknown(receiver: Receiver) -> None:
    act = webhook(receiver, current_url=receiver.url("/now"), current_field="model.tag")
    receiver.script(Reply(200, {"model": {"tag": 7}}), Reply(200, {"model": {}}))

    assert act.current_version(make_context()) == "7"
    assert act.current_version(make_context()) is None
    assert webhook(receiver).current_version(make_context()) is None  # no current_url: cannot tell


def test_webhook_readback_options_are_checked(receiver: Receiver) -> None:
    with pytest.raises(ValueError, match="verify_field needs verify_url"):
        webhook(receiver, verify_field="version")
    with pytest.raises(ValueError, match="did you mean 'to_version'"):
        webhook(receiver, verify_url=receiver.url("/v/{{to_versoin}}"))


def py(code: str) -> list[str]:
    return [sys.executable, "-c", code]


def test_verify_argv_exit_status_decides() -> None:
    act = CommandActuator("script", CommandActuator.Options(
        argv=["true"], verify_argv=py("import sys; sys.exit(0 if sys.argv[1] == 'v6' else 4)") + ["{{to_version}}"]))

    assert act.verify(make_context("v6"), threading.Event()).startswith("verified by")
    with pytest.raises(ActuatorError, match="not verified: .* exit code 4"):
        act.verify(make_context("v5"), threading.Event())
    assert "verify with" in act.plan(make_context("v6"))


def test_current_argv_prints_the_version() -> None:
    act = CommandActuator("script", CommandActuator.Options(
        argv=["true"], current_argv=py("print('checking…'); print('v7'); print()")))

    assert act.current_version(make_context()) == "v7"
    silent = CommandActuator("s", CommandActuator.Options(argv=["true"], current_argv=py("pass")))
    assert silent.current_version(make_context()) is None
    assert CommandActuator("s", CommandActuator.Options(argv=["true"])).current_version(make_context()) is None


def test_command_readback_placeholders_are_checked() -> None:
    with pytest.raises(ValueError, match=r"verify_argv\[1\]: unknown placeholder \{\{versoin\}\}"):
        CommandActuator("s", CommandActuator.Options(argv=["true"], verify_argv=["check", "{{versoin}}"]))
    with pytest.raises(ValueError, match="current_argv must name a program"):
        CommandActuator("s", CommandActuator.Options(argv=["true"], current_argv=[]))


def test_command_output_without_newlines_is_drained_in_bounded_memory() -> None:
    """A program that writes 64 MB on one line (a binary, a runaway log) costs its tail, not 64 MB."""
    import tracemalloc

    act = CommandActuator("script", CommandActuator.Options(argv=["true"], current_argv=py(
        "import sys; [sys.stdout.write('x' * 1048576) for _ in range(64)]; print(); print('v7')")))
    tracemalloc.start()
    try:
        assert act.current_version(make_context()) == "v7"
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 8 * 1024 * 1024, peak
