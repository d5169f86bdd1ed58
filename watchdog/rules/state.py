"""The rule state machine: inactive → pending → firing, one series at a time.

`step(prev, verdict, rule, now)` is the only transition function. It is pure: it returns the
next state and the events that the engine records, alerts on and acts on. `for` lives here,
not in conditions. Time is always passed in.
"""

from __future__ import annotations

import json
from json.encoder import encode_basestring_ascii as _json_string  # json.dumps' (ensure_ascii)
from dataclasses import dataclass, replace
from enum import Enum

from watchdog.config.schema import Rule
from watchdog.rules.evaluate import Outcome, Verdict


class Phase(str, Enum):
    INACTIVE = "inactive"
    PENDING = "pending"
    FIRING = "firing"


class Event(str, Enum):
    PENDING = "pending"  # a breach began; the `for` timer runs
    FIRED = "fired"  # the breach held for `for`
    RESOLVED = "resolved"  # a firing series recovered
    RESET = "reset"  # a pending timer was reset (recovered, no data, too few samples)
    NO_DATA_STARTED = "no_data_started"  # first verdict of a no-data episode (on_no_data: alert)
    NO_DATA_ENDED = "no_data_ended"  # data came back
    INCONCLUSIVE = "inconclusive"  # not judged (inconclusive / too few samples) for max_inconclusive
    JUDGED_AGAIN = "judged_again"  # judged again after an inconclusive episode that was alerted on
    GAP = "gap"  # evaluations too far apart: a pending timer starts again


@dataclass(frozen=True, slots=True)
class SeriesState:
    phase: Phase = Phase.INACTIVE
    pending_since: float | None = None  # when the current breach began
    firing_since: float | None = None
    no_data_since: float | None = None  # start of an alerted no-data episode
    value: float | None = None
    outcome: str = ""
    reason: str = ""
    evaluated_at: float | None = None
    decision_id: str | None = None  # the decision taken for the current firing episode
    errors: int = 0  # consecutive evaluations without data (tolerated up to the rule's error_limit)
    breaches: tuple[float, ...] = ()  # breach times within `for`, when the rule has a failure_limit
    memory: str | None = None  # what a sequential test carries between evaluations
    insufficient_since: float | None = None  # start of a run of inconclusive / too-few-samples verdicts
    insufficient_alerted: bool = False

    def same_course(self, other: "SeriesState") -> bool:
        """Equal but for the fields every evaluation overwrites (`evaluated_at`, `value`,
        `outcome`, `reason`): what an inactive series must keep across a restart."""
        return (self.phase is other.phase and self.pending_since == other.pending_since
                and self.firing_since == other.firing_since and self.no_data_since == other.no_data_since
                and self.decision_id == other.decision_id and self.errors == other.errors
                and self.breaches == other.breaches and self.memory == other.memory
                and self.insufficient_since == other.insufficient_since
                and self.insufficient_alerted == other.insufficient_alerted)

    def course(self) -> tuple:  # type: ignore[type-arg]
        """The fields `same_course` compares, as a tuple (`a.same_course(b)` is
        `a.course() == b.course()`): what the engine keeps of a state as last written. Most
        series' course is the initial one: that is one shared tuple, `QUIET_COURSE`."""
        course = (self.phase, self.pending_since, self.firing_since, self.no_data_since, self.decision_id,
                  self.errors, self.breaches, self.memory, self.insufficient_since, self.insufficient_alerted)
        return QUIET_COURSE if course == QUIET_COURSE else course

    def to_json(self) -> str:
        if self.course() is QUIET_COURSE:
            return _quiet_json(self)  # most states: 10,000 new ones on a fleet's first tick
        # A flat copy, not asdict's recursive deep copy.
        data = {name: getattr(self, name) for name in self.__dataclass_fields__}
        data["phase"] = self.phase.value
        if self.value is not None and self.value != self.value:
            data["value"] = None
        return json.dumps(data, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "SeriesState":
        data = json.loads(text)
        known = {k: v for k, v in data.items() if k in cls.__dataclass_fields__}
        known["phase"] = Phase(known.get("phase", "inactive"))
        known["breaches"] = tuple(known.get("breaches", ()))
        return cls(**known)


QUIET_COURSE = (Phase.INACTIVE, None, None, None, None, 0, (), None, None, False)  # SeriesState().course()


def _json_number(x: object) -> str:
    if x.__class__ is float:  # as json.dumps writes a float (its repr; allow_nan's names)
        return float.__repr__(x) if x - x == 0 else "NaN" if x != x else "Infinity" if x > 0 else "-Infinity"  # type: ignore[operator]
    return "null" if x is None else json.dumps(x)


def _quiet_json(state: SeriesState) -> str:
    """`to_json` of a state whose course is `QUIET_COURSE`, byte for byte (keys sorted, json's
    separators and escapes), without building a dict and running the encoder: only the fields
    every evaluation overwrites vary. (tests/rules/test_state_json.py compares the two.)"""
    value = state.value
    return ('{"breaches": [], "decision_id": null, "errors": 0, "evaluated_at": '
            f'{_json_number(state.evaluated_at)}, "firing_since": null, "insufficient_alerted": false, '
            '"insufficient_since": null, "memory": null, "no_data_since": null, '
            f'"outcome": {_json_string(state.outcome)}, "pending_since": null, "phase": "inactive", '
            f'"reason": {_json_string(state.reason)}, '
            f'"value": {"null" if value is None or value != value else _json_number(value)}}}')


def _is_breach(verdict: Verdict, rule: Rule) -> bool:
    if verdict.outcome is Outcome.BREACH:
        return True
    return verdict.outcome is Outcome.NO_DATA and rule.on_no_data == "rollback"


def step(prev: SeriesState, verdict: Verdict, rule: Rule, now: float,
         max_gap: float | None = None, stepped: bool = False) -> tuple[SeriesState, list[Event]]:
    """The next state of one series after `verdict` at time `now`.

    A breach must be observed continuously for `for`: when the wall clock stepped since the
    previous evaluation, either way (`stepped`: the engine's `watchdog.clock.StepBack` took a
    step on this tick), a pending timer restarts; so it does when the previous evaluation is
    more than `max_gap` ago (the process stopped, a jump) or later than `now` (a step back no
    process saw: the state was written before a restart)."""
    if verdict.outcome is Outcome.OK and prev.phase is Phase.INACTIVE and not prev.errors \
            and prev.no_data_since is None and prev.insufficient_since is None and not prev.insufficient_alerted \
            and not prev.breaches:
        # Most series of a fleet, most of the time: a quiet series judged OK again. Only the
        # fields every evaluation overwrites change (what `_step` gives, in one construction;
        # tests/rules/test_state_fast_path.py compares the two on random inputs).
        return SeriesState(
            phase=prev.phase, pending_since=prev.pending_since, firing_since=prev.firing_since, no_data_since=None,
            value=verdict.value if verdict.value is not None else prev.value, outcome=verdict.outcome._value_,
            reason=verdict.reason, evaluated_at=now, decision_id=prev.decision_id, errors=prev.errors, breaches=(),
            memory=verdict.memory if verdict.memory is not None else prev.memory, insufficient_since=None,
            insufficient_alerted=False), []
    if verdict.outcome is Outcome.WARMING_UP and prev.phase is not Phase.PENDING:
        # No evidence either way (every series of a fleet's first tick whose window is not
        # filled yet): the fields every evaluation overwrites, `errors` back to 0, nothing else
        # (what `_step` gives: a pending timer's gap check is left to it; same test as above).
        return SeriesState(
            phase=prev.phase, pending_since=prev.pending_since, firing_since=prev.firing_since,
            no_data_since=prev.no_data_since, value=verdict.value if verdict.value is not None else prev.value,
            outcome=verdict.outcome._value_, reason=verdict.reason, evaluated_at=now, decision_id=prev.decision_id,
            errors=0, breaches=prev.breaches, memory=verdict.memory if verdict.memory is not None else prev.memory,
            insufficient_since=prev.insufficient_since, insufficient_alerted=prev.insufficient_alerted), []
    return _step(prev, verdict, rule, now, max_gap, stepped)


def _step(prev: SeriesState, verdict: Verdict, rule: Rule, now: float,
          max_gap: float | None = None, stepped: bool = False) -> tuple[SeriesState, list[Event]]:
    events: list[Event] = []
    if prev.phase is Phase.PENDING and (stepped or max_gap is not None and prev.evaluated_at is not None and (
            now - prev.evaluated_at > max_gap or now < prev.evaluated_at)):  # a jump either way
        events.append(Event.GAP)
        prev = replace(prev, phase=Phase.INACTIVE, pending_since=None, breaches=())
    state = replace(prev, evaluated_at=now, outcome=verdict.outcome.value, reason=verdict.reason,
                    value=verdict.value if verdict.value is not None else prev.value,
                    memory=verdict.memory if verdict.memory is not None else prev.memory)
    state = _track_inconclusive(state, verdict, rule, now, events)
    if verdict.outcome is Outcome.NO_DATA:
        state = replace(state, errors=state.errors + 1)
        if state.errors <= rule.error_limit:
            # A failed scrape or two pages nobody: like warming up, no evidence either way.
            return replace(state, reason=f"{verdict.reason} ({state.errors} of {rule.error_limit} tolerated)"), events
    elif state.errors:
        state = replace(state, errors=0)
    state = _track_no_data(state, verdict, rule, now, events)
    if verdict.outcome is Outcome.WARMING_UP:
        return state, events  # no evidence either way: keep timers as they are
    if rule.failure_limit is not None:
        return _count_failures(state, verdict, rule, now, events), events
    if _is_breach(verdict, rule):
        return _breach(state, rule, now, events), events
    if verdict.outcome is Outcome.OK:
        return _recover(state, events), events
    # No data (ignore/alert) or too few samples: a breach must be observed continuously,
    # so a pending timer restarts; a firing series is not proven healthy, so it stays firing.
    if state.phase is Phase.PENDING:
        events.append(Event.RESET)
        state = replace(state, phase=Phase.INACTIVE, pending_since=None)
    return state, events


def _track_inconclusive(state: SeriesState, verdict: Verdict, rule: Rule, now: float, events: list[Event]) -> SeriesState:
    if verdict.outcome is Outcome.INSUFFICIENT:
        since = state.insufficient_since if state.insufficient_since is not None else now
        state = replace(state, insufficient_since=since)
        limit = rule.max_inconclusive
        if limit is not None and not state.insufficient_alerted and now - since >= limit:
            events.append(Event.INCONCLUSIVE)
            state = replace(state, insufficient_alerted=True)
        return state
    if verdict.outcome in (Outcome.OK, Outcome.BREACH):
        if state.insufficient_alerted:
            events.append(Event.JUDGED_AGAIN)
        return replace(state, insufficient_since=None, insufficient_alerted=False)
    return state


def _track_no_data(state: SeriesState, verdict: Verdict, rule: Rule, now: float, events: list[Event]) -> SeriesState:
    if verdict.outcome is Outcome.NO_DATA:
        if rule.on_no_data == "alert" and state.no_data_since is None:
            events.append(Event.NO_DATA_STARTED)
            return replace(state, no_data_since=now)
        return state
    if verdict.outcome is not Outcome.WARMING_UP and state.no_data_since is not None:
        events.append(Event.NO_DATA_ENDED)
        return replace(state, no_data_since=None)
    return state


def _breach(state: SeriesState, rule: Rule, now: float, events: list[Event]) -> SeriesState:
    if state.phase is Phase.FIRING:
        return state
    if state.phase is Phase.INACTIVE:
        events.append(Event.PENDING)
        state = replace(state, phase=Phase.PENDING, pending_since=now)
    assert state.pending_since is not None
    if now - state.pending_since >= rule.for_:
        events.append(Event.FIRED)
        state = replace(state, phase=Phase.FIRING, firing_since=now, decision_id=None)
    return state


def _count_failures(state: SeriesState, verdict: Verdict, rule: Rule, now: float, events: list[Event]) -> SeriesState:
    """Argo-style counting: fire when more than `failure_limit` evaluations within the
    last `for` breached, whether or not they were consecutive."""
    assert rule.failure_limit is not None
    recent = tuple(t for t in state.breaches if 0 <= now - t < rule.for_)  # later than now: a clock stepped back
    if _is_breach(verdict, rule):
        recent += (now,)
        if state.phase is Phase.INACTIVE:
            events.append(Event.PENDING)
            state = replace(state, phase=Phase.PENDING, pending_since=now)
        if state.phase is Phase.PENDING and len(recent) > rule.failure_limit:
            events.append(Event.FIRED)
            state = replace(state, phase=Phase.FIRING, firing_since=now, decision_id=None)
        return replace(state, breaches=recent)
    state = replace(state, breaches=recent)
    if verdict.outcome is Outcome.OK and state.phase is Phase.FIRING:
        return _recover(replace(state, breaches=()), events)
    if state.phase is Phase.PENDING and not recent:
        events.append(Event.RESET)
        return replace(state, phase=Phase.INACTIVE, pending_since=None)
    return state


def _recover(state: SeriesState, events: list[Event]) -> SeriesState:
    if state.phase is Phase.FIRING:
        events.append(Event.RESOLVED)
    elif state.phase is Phase.PENDING:
        events.append(Event.RESET)
    else:
        return state
    return replace(state, phase=Phase.INACTIVE, pending_since=None, firing_since=None, decision_id=None)


def reset_pending(state: SeriesState) -> SeriesState:
    """A new version is running: a breach observed under the old one proves nothing."""
    if state.phase is Phase.PENDING:
        return replace(state, phase=Phase.INACTIVE, pending_since=None)
    return state
