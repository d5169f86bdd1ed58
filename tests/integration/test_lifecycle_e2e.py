"""End to end, the rollback lifecycle with the real daemon (1 s interval): guards defer a
rollback and the tick they lift on rolls back; `target_held` follows the hold; `for` is
measured on the schedule."""

from __future__ import annotations

import re
import time
from datetime import datetime
from typing import Any

import pytest

from tests.http_receiver import Receiver
from tests.integration.daemon_process import (  # noqa: F401 (alerts, daemons, model: fixtures)
    ACCURACY_RULE, ERROR_RATE_RULE, DaemonProcess, alerts, daemons, deploy, model, rollback_calls, set_mode, wait_until,
)

pytestmark = [pytest.mark.integration, pytest.mark.timeout(240)]

@pytest.fixture
def daemon_factory(daemons):
    def make(action: str = "rollback", target_extra: str = "", with_version: bool = True,
             rules: str | None = None) -> DaemonProcess:
        accuracy = ACCURACY_RULE.replace("action: rollback", f"action: {action}")
        return daemons(rules or accuracy, with_version, target_extra=target_extra).start()

    return make


def sent(alerts: Receiver, kind: str, status: str | None = None) -> list[dict[str, Any]]:
    return [r.json for r in alerts.requests
            if r.json and r.json["kind"] == kind and (status is None or r.json["status"] == status)]


def ts(text: str) -> float:
    return datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def decisions(daemon: DaemonProcess) -> list[dict[str, Any]]:
    return list(reversed(daemon.status()["targets"]["fraud-model"]["decisions"]))


def first_seen(daemon: DaemonProcess, version: str) -> float:
    versions = daemon.status()["targets"]["fraud-model"]["versions"]
    return ts(next(v["first_seen"] for v in versions if v["version"] == version))


def held(daemon: DaemonProcess) -> float:
    match = re.search(r'^model_watchdog_target_held\{target="fraud-model"\} (\S+)$', daemon.metrics(), re.M)
    return float(match.group(1)) if match else -1.0


def firing(daemon: DaemonProcess) -> bool:
    return any(s["state"] == "firing" for s in daemon.rule_series("accuracy"))


def test_pause_breach_resume_rolls_back_within_two_intervals_and_held_returns_to_0(daemon_factory, model, alerts):
    daemon = daemon_factory()
    assert daemon.cli("pause", "fraud-model", "--reason", "feature store migration").returncode == 0
    set_mode(model, "degraded")
    wait_until(lambda: sent(alerts, "rollback_blocked"), 20, what="the rollback_blocked alert")
    time.sleep(3)  # still firing, still paused: nothing happens, and no second page
    assert rollback_calls(model) == [] and firing(daemon) and len(sent(alerts, "rollback_blocked")) == 1
    assert held(daemon) == 0
    resumed = daemon.cli("resume", "fraud-model", "--reason", "migration done")
    resumed_at = time.time()
    assert resumed.returncode == 0, resumed.stderr
    wait_until(lambda: rollback_calls(model), 10, what="the rollback after resume")
    (decision,) = decisions(daemon)
    assert ts(decision["created_at"]) - resumed_at <= 2.0  # the next tick or the one after
    (blocked,) = sent(alerts, "rollback_blocked", "firing")
    wait_until(lambda: sent(alerts, "rollback_blocked", "resolved"), 10, what="the blocked alert to resolve")
    assert sent(alerts, "rollback_blocked", "resolved")[0]["dedup_key"] == blocked["dedup_key"]
    # Rolled back to v1 (healthy): the rule recovers, verification lifts the hold, the gauge follows.
    wait_until(lambda: not daemon.status()["targets"]["fraud-model"]["held"], 20, what="the hold to lift")
    wait_until(lambda: held(daemon) == 0, 5, what="target_held back to 0 after recovery")
    wait_until(lambda: sent(alerts, "rollback_completed", "resolved"), 10, what="rollback_completed to resolve")


def test_target_held_returns_to_0_after_resume(daemon_factory, model):
    daemon = daemon_factory(with_version=False)  # nothing tells it the rollback worked: held until resume
    set_mode(model, "degraded")
    wait_until(lambda: rollback_calls(model), 20, what="the rollback")
    wait_until(lambda: held(daemon) == 1, 5, what="target_held 1")
    assert daemon.cli("resume", "fraud-model", "--reason", "checked by hand").returncode == 0
    wait_until(lambda: held(daemon) == 0, 5, what="target_held back to 0 after resume")


def test_a_breach_inside_initial_delay_rolls_back_when_the_delay_ends(daemon_factory, model):
    daemon = daemon_factory(target_extra="initial_delay: 6s\n")
    time.sleep(2)
    deploy(model, "v3")
    set_mode(model, "degraded")  # bad from the moment it is deployed
    wait_until(lambda: firing(daemon), 10, what="the rule to fire inside the initial delay")
    assert rollback_calls(model) == []
    wait_until(lambda: rollback_calls(model), 20, what="the rollback when the delay ends")
    (decision,) = decisions(daemon)
    after = ts(decision["created_at"]) - first_seen(daemon, "v3")
    assert 6 <= after <= 7.5, after


def test_a_cooldown_that_ends_while_firing_rolls_back(daemon_factory, model):
    daemon = daemon_factory(target_extra="cooldown: 8s\n")
    set_mode(model, "degraded")
    wait_until(lambda: rollback_calls(model), 20, what="the first rollback")
    wait_until(lambda: not firing(daemon), 20, what="recovery on v1")
    deploy(model, "v3")
    set_mode(model, "degraded")
    wait_until(lambda: len(rollback_calls(model)) == 2, 30, what="the rollback when the cooldown ends")
    first, second = decisions(daemon)
    assert 8 <= ts(second["created_at"]) - ts(first["created_at"]) <= 9.5


def test_an_expired_approval_asks_again_and_the_new_one_can_be_approved(daemon_factory, model, alerts):
    daemon = daemon_factory(target_extra="approve: required\napprove_timeout: 3s\n")
    set_mode(model, "degraded")
    first = wait_until(lambda: sent(alerts, "approval_required", "firing"), 20, what="the approval request")[0]
    wait_until(lambda: sent(alerts, "approval_required", "resolved"), 10, what="the approval to expire")
    expired = sent(alerts, "approval_required", "resolved")[0]
    assert expired["dedup_key"] == first["dedup_key"] and "timed out" in expired["summary"]
    again = wait_until(lambda: sent(alerts, "approval_required", "firing")[1:], 10, what="a new request")[0]
    assert again["decision_id"] != first["decision_id"] and rollback_calls(model) == []
    approved = daemon.cli("approve", again["decision_id"])
    assert approved.returncode == 0, approved.stdout + approved.stderr
    (call,) = wait_until(lambda: rollback_calls(model), 10, what="the approved rollback")
    assert call["body"]["decision_id"] == again["decision_id"]


def test_held_for_equals_for_over_20_firings(daemon_factory, model):
    daemon = daemon_factory(action="alert")
    for _ in range(20):
        set_mode(model, "degraded")
        wait_until(lambda: firing(daemon), 10, what="firing")
        set_mode(model, "healthy")
        wait_until(lambda: not firing(daemon), 10, what="recovery")
    history = daemon.cli("history", "--target", "fraud-model", "--limit", "500").stdout
    held_for = re.findall(r"→ firing: .*?, held for (\S+)", history)
    assert len(held_for) == 20 and set(held_for) == {"2s"}, held_for


def test_target_held_returns_to_0_after_an_escalation_and_a_new_version(daemon_factory, model, alerts):
    daemon = daemon_factory(rules=ERROR_RATE_RULE, target_extra="verify_window: 4s\n")
    set_mode(model, "degraded")
    wait_until(lambda: rollback_calls(model), 30, what="the rollback")
    set_mode(model, "degraded")  # v1 is just as bad: the rollback does not restore health
    (ineffective,) = wait_until(lambda: sent(alerts, "rollback_ineffective", "firing"), 30, what="the escalation")
    assert "no further automatic rollback" in ineffective["summary"]
    assert held(daemon) == 1 and len(rollback_calls(model)) == 1
    deploy(model, "v3")  # a fix goes out: the hold lifts, and with it the gauge and the escalation
    wait_until(lambda: held(daemon) == 0, 10, what="target_held back to 0")
    resolved = wait_until(lambda: sent(alerts, "rollback_ineffective", "resolved"), 10, what="the escalation to resolve")
    assert resolved[0]["dedup_key"] == ineffective["dedup_key"]
