"""`StateIndex` against the plain dict it indexes (random writes and deletes, same answers):
its by-rule index holds a lone series' key itself and an ordered set only for several."""

from __future__ import annotations

import random

from watchdog.rules.state import Phase, SeriesState
from watchdog.rules.stateindex import StateIndex


def test_the_index_answers_as_a_scan_of_the_plain_dict_on_random_writes_and_deletes() -> None:
    rng = random.Random(13)
    for trial in range(200):
        index, plain = StateIndex(), {}
        keys = [(f"t{rng.randrange(3)}", f"r{rng.randrange(3)}", f"s{rng.randrange(4)}") for _ in range(12)]
        for _ in range(rng.randrange(1, 60)):
            key = rng.choice(keys)
            if rng.random() < 0.35 and key in plain:
                del index[key], plain[key]
            else:
                index[key] = plain[key] = SeriesState(phase=rng.choice(list(Phase)), value=rng.random())
            for target in ("t0", "t1", "t2"):
                for rule in ("r0", "r1", "r2"):
                    expected = [k for k in plain if k[:2] == (target, rule)]
                    assert index.keys_of_rule(target, rule) == expected, trial
                    assert index.count_of_rule(target, rule) == len(expected), trial
                assert index.keys_of_target(target) == [k for k in plain if k[0] == target], trial
                assert index.of_target(target, {"r1"}) == {k: v for k, v in plain.items()
                                                           if k[0] == target and k[1] == "r1"}, trial
            assert dict(index) == plain and len(index) == len(plain)


def test_a_rule_with_one_series_keeps_no_set_of_its_own() -> None:
    index = StateIndex()
    index[("t", "r", "{}")] = SeriesState()
    assert index._by_rule["t"]["r"] == ("t", "r", "{}")  # the key itself, not a one-entry dict
    index[("t", "r", "a")] = SeriesState()
    assert index.keys_of_rule("t", "r") == [("t", "r", "{}"), ("t", "r", "a")]
    del index[("t", "r", "{}")], index[("t", "r", "a")]
    assert "t" not in index._by_rule and index.count_of_rule("t", "r") == 0
