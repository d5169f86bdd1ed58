"""Faults at the actuator: a hang past its timeout, and 5xx before success.

The receiver is a local HTTP server (tests/http_receiver.py) playing a deployment webhook.
"""

import pytest

from watchdog.rollback.executor import RollbackExecutor
from watchdog.actuators.webhook import WebhookActuator
from watchdog.config.fields import BuildContext, build
from watchdog.config.yamlnodes import parse_yaml

from tests.harness import Harness
from tests.http_receiver import Receiver, Reply
from tests.fixtures.rules import ERROR_RULE

pytestmark = pytest.mark.timeout(60)


def webhook(url: str, **options: str) -> WebhookActuator:
    text = "\n".join([f"url: {url}", *(f"{k}: {v}" for k, v in options.items())])
    node, _ = parse_yaml(text, "test")
    return WebhookActuator("first", build(WebhookActuator.Options, node, BuildContext("test"), "webhook"))


def use(h: Harness, actuator: WebhookActuator) -> None:
    h.actuators["first"] = actuator  # type: ignore[assignment]
    h.executor = RollbackExecutor(h.store, h.actuators, h.metrics, h.stop)
    h.engine.executor = h.executor


def test_an_actuator_that_hangs_past_its_timeout_fails_the_step_and_alerts(tmp_path):
    with Receiver(default=Reply(200, delay=10)) as receiver:
        h = Harness(tmp_path, ERROR_RULE)
        use(h, webhook(receiver.url("/rollback"), timeout="500ms", retries="1", backoff="10ms"))
        h.source.set("error_ratio", 0.2)
        h.run_for(60)
        decision = h.store.decisions(target="fraud-model")[0]
        assert decision.status == "failed"
        (step,) = h.store.steps(decision.id)
        assert step.status == "failed" and "timed out" in step.message
        assert [a.kind for a in h.alerts(kind="actuator_failed")] == ["actuator_failed"]
        assert h.actuators["second"].calls == []  # the chain stopped
        assert "fraud-model" in h.store.holds()
        evaluated = h.metrics.evaluations._value.get()
        reports = h.run_for(30)  # and the engine keeps evaluating
        assert len(reports) == 3 and h.metrics.evaluations._value.get() == evaluated + 3
        assert h.source.queries[-1] == ("error_ratio", h.clock.now() - h.interval)  # ...on fresh data


def test_5xx_then_2xx_succeeds_with_one_idempotency_key(tmp_path):
    with Receiver() as receiver:
        receiver.script(503, 502, 200)
        h = Harness(tmp_path, ERROR_RULE)
        use(h, webhook(receiver.url("/rollback"), retries="3", backoff="10ms"))
        h.source.set("error_ratio", 0.2)
        h.run_for(60)
        keys = {r.headers["Idempotency-Key"] for r in receiver.requests}
        assert len(receiver.requests) == 3 and len(keys) == 1
        assert h.store.decisions(target="fraud-model")[0].status == "succeeded"
