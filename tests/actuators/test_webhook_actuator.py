from __future__ import annotations

import socket
import threading
import time

import pytest

from tests.actuators.background import apply_in_background
from tests.http_receiver import Receiver, Reply, receiver  # noqa: F401  (fixture)
from watchdog.actuators.base import ActionContext
from watchdog.actuators.webhook import WebhookActuator
from watchdog.errors import ActuatorError

pytestmark = pytest.mark.timeout(30)


def make_context(**changes: object) -> ActionContext:
    base = dict(decision_id="dec-42", target="fraud-model", rule="p99-latency", action="rollback", value=0.93,
                threshold={"above": 0.5}, labels={"env": "prod"}, version="v7", previous_version="v6",
                fired_at="2026-01-02T03:04:05Z", reason="p99 above 0.5 for 5m")
    base.update(changes)
    return ActionContext(**base)  # type: ignore[arg-type]


def make_actuator(url: str, **options: object) -> WebhookActuator:
    options.setdefault("backoff", 0.01)
    return WebhookActuator("deploy-api", WebhookActuator.Options(url=url, **options))


def test_posts_the_context_with_the_decision_as_idempotency_key(receiver: Receiver) -> None:
    result = make_actuator(receiver.url("/rollback")).apply(make_context(), threading.Event())

    [request] = receiver.requests
    assert request.method == "POST" and request.path == "/rollback"
    assert request.headers["Idempotency-Key"] == "dec-42"
    assert request.headers["Content-Type"] == "application/json"
    assert request.json == make_context().as_json()
    assert result == f"POST http://127.0.0.1:{receiver.port} → 200"


def test_put_and_configured_headers_are_sent(receiver: Receiver) -> None:
    make_actuator(receiver.url(), method="PUT", headers={"X-Team": "ml-platform"}).apply(make_context(), threading.Event())

    [request] = receiver.requests
    assert request.method == "PUT"
    assert request.headers["X-Team"] == "ml-platform"


def test_server_errors_are_retried_with_the_same_key(receiver: Receiver) -> None:
    receiver.script(503, 503, 200)

    result = make_actuator(receiver.url()).apply(make_context(), threading.Event())

    assert result.endswith("→ 200")
    assert [r.headers["Idempotency-Key"] for r in receiver.requests] == ["dec-42"] * 3


def test_gives_up_after_the_configured_retries(receiver: Receiver) -> None:
    receiver.script(*[Reply(502, "upstream down")] * 10)

    with pytest.raises(ActuatorError) as err:
        make_actuator(receiver.url(), retries=2).apply(make_context(), threading.Event())

    assert len(receiver.requests) == 3
    assert "502" in str(err.value) and "upstream down" in str(err.value)
    assert "after 3 attempts" in str(err.value)


def test_client_error_fails_at_once(receiver: Receiver) -> None:
    receiver.script(Reply(400, {"error": "unknown target fraud-model"}))

    with pytest.raises(ActuatorError) as err:
        make_actuator(receiver.url()).apply(make_context(), threading.Event())

    assert len(receiver.requests) == 1
    message = str(err.value)
    # The URL is shown as scheme://host only: a webhook's path is often its credential.
    assert "400" in message and "unknown target fraud-model" in message and f"127.0.0.1:{receiver.port} failed" in message
    assert receiver.url() not in message


@pytest.mark.parametrize("status", [408, 429])
def test_request_timeout_and_throttling_are_retried(receiver: Receiver, status: int) -> None:
    receiver.script(status, 200)

    make_actuator(receiver.url()).apply(make_context(), threading.Event())

    assert len(receiver.requests) == 2


def test_retry_after_from_the_server_is_honoured(receiver: Receiver) -> None:
    receiver.script(Reply(503, headers={"Retry-After": "1"}), 200)

    started = time.monotonic()
    make_actuator(receiver.url()).apply(make_context(), threading.Event())

    assert len(receiver.requests) == 2
    assert time.monotonic() - started >= 0.9


def test_a_receiver_that_hangs_times_out(receiver: Receiver) -> None:
    receiver.script(Reply(200, delay=5))

    started = time.monotonic()
    with pytest.raises(ActuatorError, match="timed out"):
        make_actuator(receiver.url(), timeout=0.3, retries=0).apply(make_context(), threading.Event())

    assert time.monotonic() - started < 3


def test_unreachable_receiver_is_retried_then_reported() -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]

    with pytest.raises(ActuatorError, match="cannot connect") as err:
        make_actuator(f"http://127.0.0.1:{port}/hook", retries=1).apply(make_context(), threading.Event())

    assert "after 2 attempts" in str(err.value)


def test_stop_during_backoff_ends_apply_promptly(receiver: Receiver) -> None:
    receiver.script(*[503] * 10)
    stop = threading.Event()
    actuator = make_actuator(receiver.url(), backoff=20.0, retries=5)
    thread, outcome = apply_in_background(actuator, make_context(), stop)
    receiver.wait_for(1)
    time.sleep(0.1)  # now in the 20s backoff
    stopped_at = time.monotonic()
    stop.set()
    thread.join(timeout=5)

    assert time.monotonic() - stopped_at < 1.0
    assert len(outcome) == 1 and isinstance(outcome[0], ActuatorError)
    assert "interrupted by shutdown" in str(outcome[0]) and "503" in str(outcome[0])
    assert len(receiver.requests) == 1


def test_stop_already_set_sends_nothing(receiver: Receiver) -> None:
    stop = threading.Event()
    stop.set()

    with pytest.raises(ActuatorError, match="interrupted by shutdown"):
        make_actuator(receiver.url()).apply(make_context(), stop)

    assert receiver.requests == []


def test_secret_header_value_never_appears_in_the_error(receiver: Receiver) -> None:
    token = "Bearer s3cr3t-token-0123456789"
    # A careless receiver echoes the credentials it was given.
    receiver.script(lambda req: Reply(401, f"bad credentials: {req.headers['Authorization']}"))

    with pytest.raises(ActuatorError) as err:
        make_actuator(receiver.url(), headers={"Authorization": token}).apply(make_context(), threading.Event())

    message = str(err.value)
    assert "401" in message and "bad credentials" in message
    assert "s3cr3t-token-0123456789" not in message


def test_query_string_of_the_url_is_not_shown(receiver: Receiver) -> None:
    receiver.script(Reply(500, "oops"))
    actuator = make_actuator(receiver.url("/hook?token=abcdef123"), retries=0)

    with pytest.raises(ActuatorError) as err:
        actuator.apply(make_context(), threading.Event())

    assert "abcdef123" not in str(err.value)
    assert "abcdef123" not in actuator.plan(make_context())


def test_redirects_are_not_followed(receiver: Receiver) -> None:
    receiver.script(Reply(302, headers={"Location": "/elsewhere"}))

    with pytest.raises(ActuatorError, match="redirected to /elsewhere"):
        make_actuator(receiver.url()).apply(make_context(), threading.Event())

    assert len(receiver.requests) == 1


def test_tls_is_verified_and_tls_errors_are_not_retried(receiver: Receiver) -> None:
    # An https URL pointing at a plain-HTTP server fails the TLS handshake.
    url = receiver.url().replace("http://", "https://")

    with pytest.raises(ActuatorError, match="TLS error"):
        make_actuator(url).apply(make_context(), threading.Event())

    assert WebhookActuator.Options(url=url).verify_tls is True


def test_plan_names_method_url_and_decision() -> None:
    actuator = make_actuator("https://deploy.example/api/rollback")

    assert actuator.plan(make_context()) == "POST https://deploy.example with decision dec-42"


@pytest.mark.parametrize("options, message", [
    ({"url": "deploy.example/rollback"}, "http:// or https://"),
    ({"url": "https://deploy.example", "verify_tls": False, "ca_file": "/etc/ca.pem"}, "not both"),
    ({"url": "https://deploy.example", "ca_file": "/nonexistent/ca.pem"}, "does not exist"),
    ({"url": "https://deploy.example", "timeout": 0.0}, "timeout"),
])
def test_unusable_options_are_rejected(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        WebhookActuator("deploy-api", WebhookActuator.Options(**options))  # type: ignore[arg-type]
