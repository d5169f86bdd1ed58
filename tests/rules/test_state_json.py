"""`SeriesState.to_json`'s template for quiet states (`_quiet_json`, most of a fleet's states
and all 10,000 new ones on its first tick) against the general encoding (`json.dumps` of every
field, keys sorted): byte for byte, on random values, reasons and memories — and every state
round-trips through `from_json`."""

from __future__ import annotations

import dataclasses
import json
import math
import random

import pytest

from watchdog.rules.state import QUIET_COURSE, Phase, SeriesState, _quiet_json

TEXTS = ["", "ok", "x", 'quote " and \\ backslash', "≤ 0.05 ünïcode", "tab\tnew\nline\x00\x1f", "emoji 🙂", "\ud800"]
NUMBERS = [None, 0.0, -0.0, 1.0, 0.1, 1e-300, 1e300, 1764780000.123, -3.5, math.inf, -math.inf, math.nan, 0, 7, -2, True]


def reference(state: SeriesState) -> str:
    """What to_json wrote for every state before the template (main 31c1c8d)."""
    data = {name: getattr(state, name) for name in state.__dataclass_fields__}
    data["phase"] = state.phase.value
    if state.value is not None and state.value != state.value:
        data["value"] = None
    return json.dumps(data, sort_keys=True)


def quiet_state(rng: random.Random) -> SeriesState:
    def number() -> object:
        return rng.choice(NUMBERS) if rng.random() < 0.5 else rng.uniform(-1e6, 1e6) * 10 ** rng.randint(-20, 20)

    return SeriesState(value=number(), evaluated_at=number(), outcome=rng.choice(TEXTS + ["ok", "warming_up"]),  # type: ignore[arg-type]
                       reason=rng.choice(TEXTS) + rng.choice(TEXTS))


@pytest.mark.parametrize("seed", range(10))
def test_the_quiet_template_writes_what_json_dumps_writes(seed: int) -> None:
    rng = random.Random(seed)
    for _ in range(300):
        state = quiet_state(rng)
        assert state.course() is QUIET_COURSE
        assert _quiet_json(state) == state.to_json() == reference(state)
        back = SeriesState.from_json(state.to_json())
        assert back.course() == QUIET_COURSE and back.reason == state.reason and back.outcome == state.outcome


@pytest.mark.parametrize("seed", range(5))
def test_other_states_are_written_as_before(seed: int) -> None:
    rng = random.Random(seed)
    changes = [dict(phase=Phase.PENDING, pending_since=1.0), dict(phase=Phase.FIRING, firing_since=2.0, decision_id="d"),
               dict(errors=2), dict(breaches=(1.0, 2.5)), dict(no_data_since=3.0), dict(insufficient_since=4.0),
               dict(insufficient_alerted=True), dict(memory=rng.choice(TEXTS)), dict(memory='{"n": 1}')]
    for _ in range(100):
        state = dataclasses.replace(quiet_state(rng), **rng.choice(changes))
        assert state.course() != QUIET_COURSE
        assert state.to_json() == reference(state)
        assert SeriesState.from_json(state.to_json()).course() == state.course()
