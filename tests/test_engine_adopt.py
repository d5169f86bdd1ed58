"""A daemon's engine adopts every target on its first tick (`Engine._adopt`: the states it
read at start are read again, another replica may have written since). States the store
still holds as they were read are kept, not parsed a second time; any that changed are
taken from the store."""

from __future__ import annotations

import dataclasses
import math
import random

import pytest

from watchdog.engine import Engine
from watchdog.rules.state import Phase, SeriesState
from watchdog.runtime.ownership import Owner

from tests.fixtures.rules import ERROR_RULE
from tests.harness import Harness

RULES = ERROR_RULE + """
- name: latency
  source: model
  query: latency_p99
  above: 0.5
"""


def test_the_first_adoption_keeps_the_states_read_at_start_and_reads_changed_ones(tmp_path, monkeypatch) -> None:
    h = Harness(tmp_path, RULES)
    h.source.set("error_ratio", 0.2)  # pending
    h.source.set("latency_p99", 0.1)  # quiet
    h.run_for(20)
    h.engine.flush_states()
    stored = h.store.load_rule_states()
    assert len(stored) == 2
    h.restart()
    engine = Engine(h.loaded, h.store, {"model": h.source}, h.executor, h.notifier, h.metrics,
                    Owner(h.store, None), clock=h.clock)
    assert engine.owned == set() and len(engine.states) == 2
    # Another replica writes one of them between this engine's start and its first tick.
    key = next(k for k in stored if k[1] == "latency")
    changed = dataclasses.replace(SeriesState.from_json(stored[key]), reason="written by another replica")
    with h.store.transaction():
        h.store.save_rule_states({key: changed.to_json()}, [])
    parsed: list[str] = []
    from_json = SeriesState.from_json
    monkeypatch.setattr(SeriesState, "from_json", classmethod(lambda cls, text: (parsed.append(text), from_json(text))[1]))
    engine._refresh_ownership(h.clock.now())
    assert engine.owned == {"fraud-model"}
    assert parsed == [changed.to_json()]  # only the changed one is parsed again
    assert dict(engine.states) == {k: from_json(v) for k, v in h.store.load_rule_states().items()}
    assert engine.states[key].reason == "written by another replica"
    assert any(s.phase is Phase.PENDING for s in engine.states.values())


def random_state(rng: random.Random) -> SeriesState:
    def number() -> float | None:
        return rng.choice([None, 0.0, -0.0, 1.5, math.inf, -math.inf, 1764780000.123, 7, rng.uniform(-1e9, 1e9)])

    return SeriesState(phase=rng.choice(list(Phase)), pending_since=number(), firing_since=number(),
                       no_data_since=number(), value=number(), outcome=rng.choice(["", "ok", "breach"]),
                       reason=rng.choice(["", "x ≤ 0.05", 'q"\\']), evaluated_at=number(),
                       decision_id=rng.choice([None, "d1"]), errors=rng.choice([0, 2]),
                       breaches=rng.choice([(), (1.0,), (2.5, 3.0)]), memory=rng.choice([None, '{"n": 1}']),
                       insufficient_since=number(), insufficient_alerted=rng.random() < 0.3)


@pytest.mark.parametrize("seed", range(5))
def test_a_state_read_back_from_its_own_json_is_equal_to_it(seed: int) -> None:
    """What keeping a held state instead of parsing the store's equal text relies on."""
    rng = random.Random(seed)
    for _ in range(200):
        state = random_state(rng)
        assert SeriesState.from_json(state.to_json()) == state
