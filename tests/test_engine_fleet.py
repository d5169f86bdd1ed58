"""The tick's work grows with the fleet, not with its square: store reads once per target,
one commit for a tick's history and states, rule states indexed by (target, rule)."""

from __future__ import annotations

from watchdog.rules.state import SeriesState
from watchdog.rules.stateindex import StateIndex
from watchdog.testing import series

from tests.harness import Harness

RULES = "".join(f"""\
- name: r{i}
  source: model
  query: errors{{n="{i}"}}
  above: 1
  for: 1m
""" for i in range(20))


def fleet(tmp_path) -> Harness:  # type: ignore[no-untyped-def]
    h = Harness(tmp_path, RULES)
    for i in range(20):
        h.source.set(f'errors{{n="{i}"}}', [series(5, pod="a"), series(0, pod="b")])
    return h


def counting(h: Harness, method: str) -> list[int]:
    calls = [0]
    original = getattr(h.store, method)

    def counted(*args, **kwargs):  # type: ignore[no-untyped-def]
        calls[0] += 1
        return original(*args, **kwargs)

    setattr(h.store, method, counted)
    return calls


def test_a_tick_reads_the_versions_once_per_target_not_once_per_rule(tmp_path):
    h = fleet(tmp_path)
    h.tick()
    reads = counting(h, "versions")
    h.tick()
    assert reads[0] <= 2  # 20 rules of one target: was one read per rule, twice


def test_a_ticks_history_and_states_are_committed_together_once(tmp_path):
    h = fleet(tmp_path)
    h.tick()  # the version is first seen; pod a goes pending under every rule
    assert set(h.phases("r0").values()) == {"inactive", "pending"}
    for i in range(20):
        h.source.set(f'errors{{n="{i}"}}', [series(5, pod="a"), series(5, pod="b")])
    before = len(h.store.history(limit=500))
    commits = counting(h, "_commit")
    h.tick()  # pod b goes pending under every rule: 20 history events
    assert len(h.store.history(limit=500)) - before == 20
    assert all(p == "pending" for p in h.phases("r0").values())
    assert commits[0] <= 3  # versions observed, rules judged: not one commit per event


def test_the_state_index_finds_a_rules_and_a_targets_series_and_forgets_deleted_ones():
    states = StateIndex()
    a, b, c = ("t1", "r1", "{}"), ("t1", "r2", '{"pod":"a"}'), ("t2", "r1", "{}")
    for key in (a, b, c):
        states[key] = SeriesState()
    assert states.keys_of_rule("t1", "r1") == [a]
    assert list(states.of_target("t1")) == [a, b]
    assert list(states.of_target("t1", rules={"r2"})) == [b]
    del states[b]
    assert list(states.of_target("t1")) == [a] and states.keys_of_rule("t1", "r2") == []
    assert dict(states) == {a: SeriesState(), c: SeriesState()}


def test_between_ticks_no_answers_are_kept_and_quiet_series_share_one_course(tmp_path):
    from watchdog.rules.state import QUIET_COURSE

    h = fleet(tmp_path)
    h.tick()
    h.tick()
    assert h.engine.runner._cache == {}  # answers live for their tick only
    persisted = h.engine._persisted
    quiet = [k for k, s in h.engine.states.items() if s.phase.value == "inactive"]
    assert quiet and all(persisted[k] is QUIET_COURSE for k in quiet)  # one tuple, not a copy of each state
    assert all(persisted[k] == s.course() for k, s in h.engine.states.items() if k in persisted)
