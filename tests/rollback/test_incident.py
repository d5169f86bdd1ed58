"""The incident machine, as a table: every signal in every phase (pure, no store, no clock)."""

from __future__ import annotations

from dataclasses import replace

import pytest

from watchdog.rollback.incident import (
    ApprovalExpired, Approved, Decide, DecisionFinished, Execute, Fire, GuardVerdict, Incident, LiftHold,
    ManualRollback, NewVersion, Paused, Phase, PutHold, Record, Rejected, ReleaseBad, Resolve, Resumed, RuleFiring,
    RuleRecovered, SetDecision, Settings, WindowElapsed, advance, due,
)

T = 1_000_000.0
SETTINGS = Settings(verify_window=120, max_depth=1, approve_timeout=300)
REQUEST = object()  # opaque to the machine

BLOCKED_ALERT = ("rollback_blocked", "t/rollback_blocked/err/999990")
INCIDENTS = {
    "clear": Incident("t"),
    "blocked": Incident("t", Phase.BLOCKED, since=T - 10, rule="err", guard="paused", reason="paused by alice",
                        blocked_since=T - 10, version="v2", open_alerts=(BLOCKED_ALERT,)),
    "rejected": Incident("t", Phase.BLOCKED, since=T - 10, rule="err", guard="rejected", reason="rejected by carol",
                         blocked_since=T - 10),
    "awaiting": Incident("t", Phase.AWAITING_APPROVAL, since=T - 10, rule="err", decision_id="d1", until=T + 100,
                         version="v2", to_version="v1", open_alerts=(("approval_required", "t/approval/d1"),)),
    "acting": Incident("t", Phase.ACTING, since=T - 10, rule="err", decision_id="d1", version="v2", to_version="v1"),
    "verifying": Incident("t", Phase.VERIFYING, since=T - 10, rule="err", decision_id="d1", until=T + 100,
                          version="v2", to_version="v1", open_alerts=(("rollback_completed", "t/rollback/d1"),)),
    "held": Incident("t", Phase.HELD, since=T - 10, rule="err", decision_id="d1", version="v2", to_version="v1",
                     reason="rollback d1 failed"),
}


def firing(verdict: GuardVerdict | None, newly_fired: tuple[str, ...] = ()) -> RuleFiring:
    return RuleFiring("err", verdict, REQUEST, version="v2", to_version="v1", newly_fired=newly_fired,
                      summary="err = 0.2 > 0.05", decision_id="d2")


SIGNALS = {
    "fire_act": firing(GuardVerdict("act")),
    "fire_blocked": firing(GuardVerdict("blocked", "cooldown", "cooldown: last rollback …", T + 60)),
    "fire_shadow": firing(GuardVerdict("shadow", "shadow", "shadow mode: would roll back")),
    "fire_await": firing(GuardVerdict("await_approval")),
    "fire_while_held": firing(None, newly_fired=("latency",)),
    "recovered": RuleRecovered(healthy=True, version="v1"),
    "recovered_same_version": RuleRecovered(healthy=True, version="v2"),
    "not_firing_not_healthy": RuleRecovered(healthy=False, version="v1"),
    "approved": Approved("d1", "carol"),
    "rejected": Rejected("d1", "carol", "noisy"),
    "expired": ApprovalExpired("d1"),
    "succeeded": DecisionFinished("d1", "succeeded", "rollback completed: hook"),
    "failed": DecisionFinished("d1", "failed", "rollback step 1 (hook) failed: 500"),
    "version_ours": NewVersion("v1"),
    "version_other": NewVersion("v3"),
    "window": WindowElapsed(),
    "resumed": Resumed("alice", "fixed"),
    "paused": Paused("alice", "migration"),
    "manual": ManualRollback("d9", "dave", "v2", "v1"),
}

# (phase, signal) -> (next phase, effect types in order). Everything not listed: unchanged, no effects.
CHANGES = {
    ("clear", "fire_act"): (Phase.ACTING, [Decide, PutHold, Execute]),
    ("clear", "fire_blocked"): (Phase.BLOCKED, [Record, Fire]),
    ("clear", "fire_shadow"): (Phase.BLOCKED, [Record]),
    ("clear", "fire_await"): (Phase.AWAITING_APPROVAL, [Decide, PutHold, Fire]),
    ("clear", "manual"): (Phase.ACTING, [PutHold]),

    ("blocked", "fire_act"): (Phase.ACTING, [Resolve, Decide, PutHold, Execute]),
    ("blocked", "fire_blocked"): (Phase.BLOCKED, [Record]),  # another guard: recorded, no second page
    ("blocked", "fire_shadow"): (Phase.BLOCKED, [Record]),
    ("blocked", "fire_await"): (Phase.AWAITING_APPROVAL, [Resolve, Decide, PutHold, Fire]),
    ("blocked", "recovered"): (Phase.CLEAR, [Record, Resolve]),
    ("blocked", "recovered_same_version"): (Phase.CLEAR, [Record, Resolve]),
    ("blocked", "not_firing_not_healthy"): (Phase.CLEAR, [Record, Resolve]),
    ("blocked", "version_ours"): (Phase.CLEAR, [Record, Resolve]),
    ("blocked", "version_other"): (Phase.CLEAR, [Record, Resolve]),
    ("blocked", "manual"): (Phase.ACTING, [Resolve, PutHold]),

    ("rejected", "recovered"): (Phase.CLEAR, [Record]),
    ("rejected", "recovered_same_version"): (Phase.CLEAR, [Record]),
    ("rejected", "not_firing_not_healthy"): (Phase.CLEAR, [Record]),
    ("rejected", "version_ours"): (Phase.CLEAR, [Record]),
    ("rejected", "version_other"): (Phase.CLEAR, [Record]),
    ("rejected", "resumed"): (Phase.CLEAR, []),
    ("rejected", "manual"): (Phase.ACTING, [PutHold]),

    ("awaiting", "fire_while_held"): (Phase.AWAITING_APPROVAL, [Record]),
    ("awaiting", "approved"): (Phase.ACTING, [SetDecision, Record, Resolve]),
    ("awaiting", "rejected"): (Phase.BLOCKED, [SetDecision, Record, LiftHold, Resolve]),
    ("awaiting", "expired"): (Phase.CLEAR, [SetDecision, Record, LiftHold, Resolve]),
    ("awaiting", "version_ours"): (Phase.CLEAR, [SetDecision, Record, LiftHold, Resolve]),
    ("awaiting", "version_other"): (Phase.CLEAR, [SetDecision, Record, LiftHold, Resolve]),
    ("awaiting", "resumed"): (Phase.CLEAR, [SetDecision, LiftHold, Resolve]),
    ("awaiting", "manual"): (Phase.ACTING, [SetDecision, Resolve, PutHold]),

    ("acting", "fire_while_held"): (Phase.ACTING, [Record]),
    ("acting", "succeeded"): (Phase.VERIFYING, [Fire]),
    ("acting", "failed"): (Phase.HELD, [Fire]),
    ("acting", "resumed"): (Phase.CLEAR, [LiftHold]),
    ("acting", "manual"): (Phase.ACTING, [PutHold]),

    ("verifying", "fire_while_held"): (Phase.VERIFYING, [Record]),
    ("verifying", "recovered"): (Phase.CLEAR, [Record, LiftHold, Resolve]),
    ("verifying", "recovered_same_version"): (Phase.HELD, [Record, Resolve]),
    ("verifying", "version_other"): (Phase.CLEAR, [Record, LiftHold, Resolve]),
    ("verifying", "window"): (Phase.HELD, [Record, ReleaseBad, Resolve, Fire]),
    ("verifying", "resumed"): (Phase.CLEAR, [LiftHold, Resolve]),
    ("verifying", "manual"): (Phase.ACTING, [Resolve, PutHold]),

    ("held", "fire_while_held"): (Phase.HELD, [Record]),
    ("held", "version_ours"): (Phase.CLEAR, [Record, LiftHold]),
    ("held", "version_other"): (Phase.CLEAR, [Record, LiftHold]),
    ("held", "resumed"): (Phase.CLEAR, [LiftHold]),
    ("held", "manual"): (Phase.ACTING, [PutHold]),
}


@pytest.mark.parametrize("phase", INCIDENTS)
@pytest.mark.parametrize("signal", SIGNALS)
def test_every_signal_in_every_phase(phase: str, signal: str) -> None:
    before = INCIDENTS[phase]
    after, effects = advance(before, SIGNALS[signal], T, SETTINGS)
    expected_phase, expected_effects = CHANGES.get((phase, signal), (before.phase, []))
    assert after.phase is expected_phase
    assert [type(e) for e in effects] == expected_effects
    if not expected_effects and expected_phase is before.phase:
        assert after == before
    # The hold follows the phase: put when entering a holding phase, lifted when leaving one.
    if before.held and not after.held:
        assert LiftHold in [type(e) for e in effects]
    if not before.held and after.held:
        assert PutHold in [type(e) for e in effects]
    # Every alert that was open is still open, or was resolved by this step.
    resolved = {e.key for e in effects if isinstance(e, Resolve)}
    assert {k for _, k in before.open_alerts} <= {k for _, k in after.open_alerts} | resolved
    assert Incident.from_json(after.to_json()) == after


def test_a_blocked_episode_pages_once_and_resolves_with_the_same_key() -> None:
    blocked = SIGNALS["fire_blocked"]
    incident, effects = advance(INCIDENTS["clear"], blocked, T, SETTINGS)
    (page,) = [e for e in effects if isinstance(e, Fire)]
    assert page.kind == "rollback_blocked" and incident.until == T + 60 and incident.guard == "cooldown"
    for tick in range(1, 30):  # re-checked every tick: no new page while the same guard blocks
        incident, effects = advance(incident, blocked, T + tick, SETTINGS)
        assert effects == []
    incident, effects = advance(incident, SIGNALS["fire_act"], T + 60, SETTINGS)
    assert incident.phase is Phase.ACTING and incident.decision_id == "d2"
    (resolved,) = [e for e in effects if isinstance(e, Resolve)]
    assert resolved.key == page.key and resolved.kind == "rollback_blocked"
    (decide,) = [e for e in effects if isinstance(e, Decide)]
    assert decide.decision_id == "d2" and decide.request is REQUEST and decide.awaiting_until is None


def test_approval_has_a_deadline_and_asks_again_after_it() -> None:
    incident, effects = advance(INCIDENTS["clear"], SIGNALS["fire_await"], T, SETTINGS)
    (page,) = [e for e in effects if isinstance(e, Fire)]
    assert page.key == "t/approval/d2" and "model-watchdog approve d2" in page.summary
    assert due(incident, T + 299) == [] and due(incident, T + 300) == [ApprovalExpired("d2")]
    incident, effects = advance(incident, ApprovalExpired("d2"), T + 300, SETTINGS)
    assert incident.phase is Phase.CLEAR
    assert [e for e in effects if isinstance(e, Resolve)][0].key == page.key
    again, effects = advance(incident, replace(SIGNALS["fire_await"], decision_id="d3"), T + 300, SETTINGS)
    assert again.phase is Phase.AWAITING_APPROVAL and again.decision_id == "d3"


def test_a_signal_about_another_decision_changes_nothing() -> None:
    for phase in ("awaiting", "acting"):
        for signal in (Approved("dX", "c"), Rejected("dX", "c"), ApprovalExpired("dX"), DecisionFinished("dX", "succeeded")):
            assert advance(INCIDENTS[phase], signal, T, SETTINGS) == (INCIDENTS[phase], [])


def test_verification_window_escalates_one_release_further_within_max_depth() -> None:
    deeper = Settings(verify_window=120, max_depth=2, approve_timeout=300)
    verifying = INCIDENTS["verifying"]
    assert due(verifying, T + 99) == [] and due(verifying, T + 100) == [WindowElapsed()]
    incident, effects = advance(verifying, WindowElapsed(), T + 100, deeper)
    assert incident.phase is Phase.CLEAR and incident.depth == 2
    assert [type(e) for e in effects] == [Record, ReleaseBad, Resolve, Fire, LiftHold]
    (ineffective,) = [e for e in effects if isinstance(e, Fire)]
    assert ineffective.kind == "rollback_ineffective" and ("rollback_ineffective", ineffective.key) in incident.open_alerts
    incident, effects = advance(incident, SIGNALS["fire_act"], T + 100, deeper)
    assert [e.depth for e in effects if isinstance(e, Decide)] == [2]
    # ...and the ineffective alert resolves when that incident ends.
    incident, _ = advance(incident, DecisionFinished("d2", "succeeded"), T + 110, deeper)
    incident, effects = advance(incident, RuleRecovered(True, "v0"), T + 120, deeper)
    assert incident.phase is Phase.CLEAR
    assert {e.kind for e in effects if isinstance(e, Resolve)} == {"rollback_ineffective", "rollback_completed"}


def test_held_records_each_newly_fired_rule_once() -> None:
    incident, effects = advance(INCIDENTS["held"], firing(None, ("latency",)), T, SETTINGS)
    assert ["rollback not repeated" in e.message for e in effects if isinstance(e, Record)] == [True]
    assert advance(incident, firing(None), T + 10, SETTINGS) == (incident, [])
