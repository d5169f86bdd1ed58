"""Guards between a firing rule and an actuator: the reasons *not* to act now.

In order: an operator pause, shadow mode, a running version that is unknown (the target
reports an invalid one), the initial delay after a new version, the cooldown, rate limits
per target and for the whole daemon, a rollback target marked bad, and human approval.
Each guard that stops an action says why, with the numbers.

Times recorded before the wall clock stepped back (a rollback, a new version, the start of a
pause for a duration) lie in the new clock's future: the guards move them back by the step
seen (`watchdog.clock.StepBack`), so a step back of D defers a rollback no longer than the
cooldown, delay, window or pause left at the step, give or take a tick, never D more; times
recorded before a step forward the scheduler saw are moved forward by it, so the guard does not
end D early. The StepBack is the daemon's (fed by the scheduler's watcher and each tick); a
command on its own (`model-watchdog rollback`, a drill) gets one of its own, which knows the
last step back a daemon kept in the store.
"""

from __future__ import annotations

import json
import logging
import math
from dataclasses import dataclass
from enum import Enum

from watchdog.clock import StepBack, rfc3339
from watchdog.config.schema import DEFAULT_DAEMON_LIMIT, DEFAULT_TARGET_LIMIT, Config, RateLimit, Rule
from watchdog.durations import format_duration
from watchdog.errors import StateError
from watchdog.rollback.pauses import active_pause
from watchdog.state.base import StateStore

ACTED = ("running", "succeeded", "failed")  # decisions that did (or are doing) something
STEP_KEY = "clock_step_back"  # meta: the last wall-clock step back a daemon saw, for the CLI, replicas, restarts

log = logging.getLogger("watchdog.rollback")


class Outcome(str, Enum):
    ACT = "act"
    BLOCKED = "blocked"
    SHADOW = "shadow"
    AWAIT_APPROVAL = "await_approval"


@dataclass(frozen=True)
class GuardResult:
    outcome: Outcome
    reason: str = ""
    guard: str = ""  # which guard: paused, shadow, version_unknown, initial_delay, cooldown, rate_limit, bad_target, approval
    until: float | None = None  # when the guard lifts by itself, if it does


@dataclass(frozen=True)
class Situation:
    target: str
    rule: Rule | None  # None for a manual rollback
    now: float
    version: str | None
    to_version: str | None
    version_changed_at: float | None
    manual: bool = False
    version_problem: str | None = None  # why the version the target reports now is unusable (invalid), if it is


class Guards:
    def __init__(self, config: Config, store: StateStore, steps: StepBack | None = None):
        self.config = config
        self.store = store
        self.steps = steps or StepBack()
        try:
            seen = json.loads(store.get_meta(STEP_KEY) or "null")
            step, at = (float(seen["step"]), float(seen["at"])) if isinstance(seen, dict) else (0.0, 0.0)
        except (StateError, ValueError, TypeError, KeyError):
            step, at = 0.0, 0.0  # unreadable: as if none was seen
        if math.isfinite(step) and math.isfinite(at):
            self.steps.remember(step, at)
        self._kept = (step, at)  # the step back the store holds

    def keep_step(self) -> None:
        """After a tick that took a step (Engine.tick, once per tick): a step back not yet in the
        store is written there, so that an operator's command and the next start count from it."""
        last = self.steps.last
        if not last[0] or last == self._kept:
            return
        try:
            self.store.set_meta(STEP_KEY, json.dumps({"step": last[0], "at": last[1]}))
            self._kept = last
        except StateError as exc:
            log.warning("cannot remember the clock step in the state store: %s", exc)

    def check(self, s: Situation) -> GuardResult:
        for guard in (self._paused, self._shadow, self._unknown_version, self._initial_delay, self._cooldown,
                      self._limits, self._bad_target, self._approval):
            result = guard(s)
            if result is not None:
                return result
        return GuardResult(Outcome.ACT)

    def _paused(self, s: Situation) -> GuardResult | None:
        if s.manual:
            return None  # a manual rollback is itself the human decision a pause waits for
        pause = active_pause(self.store, s.target, s.now, self.steps.seen)
        if pause is None:
            return None
        until = f" until {rfc3339(pause.until)}" if pause.until else ""
        scope = "all targets are" if pause.target == "*" else f"{s.target} is"
        return GuardResult(Outcome.BLOCKED, f"{scope} paused by {pause.by}{until}: {pause.reason}", "paused", pause.until)

    def _shadow(self, s: Situation) -> GuardResult | None:
        if s.manual:
            return None
        mode = (s.rule.mode if s.rule and s.rule.mode else None) or self.config.targets[s.target].mode
        return GuardResult(Outcome.SHADOW, "shadow mode: would roll back", "shadow") if mode == "shadow" else None

    def _unknown_version(self, s: Situation) -> GuardResult | None:
        """The target reports an invalid version: what runs is unknown, and a rollback planned
        from the last valid one may act on the wrong deployment. Deferred, not dropped: asked
        again every tick, it acts once a valid version is reported (`unknown_version: proceed`
        keeps the old way: roll back from the last valid version)."""
        if s.manual or s.version_problem is None or self.config.targets[s.target].unknown_version == "proceed":
            return None
        return GuardResult(Outcome.BLOCKED, f"the running version is unknown: the target reports an invalid version "
                           f"({s.version_problem}); the last valid one was {s.version or 'never seen'}; deferred until "
                           "a valid version is reported", "version_unknown")

    def _initial_delay(self, s: Situation) -> GuardResult | None:
        if s.manual or s.version_changed_at is None:
            return None
        rule_delay = s.rule.initial_delay if s.rule else None
        delay = rule_delay if rule_delay is not None else self.config.targets[s.target].initial_delay
        changed = self.steps.seen(s.version_changed_at, s.now)
        if delay and s.now - changed < delay:
            return GuardResult(Outcome.BLOCKED, f"initial delay: version {s.version} appeared at "
                               f"{rfc3339(changed)}; acting from {rfc3339(changed + delay)}",
                               "initial_delay", changed + delay)
        return None

    def _cooldown(self, s: Situation) -> GuardResult | None:
        cooldown = self.config.targets[s.target].cooldown
        last = next((d for d in self.store.decisions(target=s.target, limit=20) if d.status in ACTED), None)
        if not cooldown or last is None:
            return None
        at = self.steps.seen(last.created_at, s.now)
        if s.now - at < cooldown:
            return GuardResult(Outcome.BLOCKED, f"cooldown: last rollback {last.id} at {rfc3339(at)}, "
                               f"cooldown {format_duration(cooldown)}", "cooldown", at + cooldown)
        return None

    def _limits(self, s: Situation) -> GuardResult | None:
        target_limit = self.config.targets[s.target].max_rollbacks or DEFAULT_TARGET_LIMIT
        daemon_limit = self.config.max_rollbacks or DEFAULT_DAEMON_LIMIT
        for scope, limit, target in ((f"target {s.target}", target_limit, s.target), ("the daemon", daemon_limit, None)):
            counted = self._counted(target, limit, s.now)
            if len(counted) >= limit.count:
                # The window moves on when the oldest rollback that makes the limit leaves it.
                until = sorted(counted)[len(counted) - limit.count] + limit.window
                return GuardResult(Outcome.BLOCKED, f"rate limit: {len(counted)} rollbacks by {scope} within "
                                   f"{format_duration(limit.window)} (max_rollbacks {limit.count})", "rate_limit", until)
        return None

    def _counted(self, target: str | None, limit: RateLimit, now: float) -> list[float]:
        recent = self.store.decisions(target=target, limit=max(50, limit.count * 5))
        at = [self.steps.seen(d.created_at, now) for d in recent if d.status in ACTED]
        return [t for t in at if now - t < limit.window]

    def _bad_target(self, s: Situation) -> GuardResult | None:
        if s.to_version is None:
            return None
        record = next((v for v in self.store.versions(s.target) if v.version == s.to_version), None)
        if record is not None and record.bad:
            return GuardResult(Outcome.BLOCKED, f"version {s.to_version} is marked bad ({record.bad_reason}); "
                               "not rolling back to it", "bad_target")
        return None

    def _approval(self, s: Situation) -> GuardResult | None:
        if s.manual:
            return None
        rule_setting = s.rule.approve if s.rule else None
        setting = rule_setting or self.config.targets[s.target].approve
        return GuardResult(Outcome.AWAIT_APPROVAL, "approval required", "approval") if setting == "required" else None
