"""Mann-Whitney U: raw samples through scipy, histograms through the grouped computation,
checked against scipy on the same data expanded back to one value per observation."""

from __future__ import annotations

import math

import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.fuzzing import examples

from watchdog.stats import mann_whitney_buckets, mann_whitney_samples
from watchdog.stats.rank import grouped_u

EDGES = [0.05, 0.1, 0.25, 0.5, 1.0, 2.5, math.inf]


def cumulative(counts: list[int], edges: list[float] = EDGES) -> dict[float, float]:
    total, out = 0, {}
    for edge, count in zip(edges, counts):
        total += count
        out[edge] = total
    return out


def expand(counts: list[int], edges: list[float] = EDGES) -> list[float]:
    """One observation per count at its bucket's upper edge (+Inf bucket: beyond the last edge)."""
    values = [e if math.isfinite(e) else edges[-2] * 10 for e in edges]
    return [v for v, c in zip(values, counts) for _ in range(c)]


def test_tortoise_and_hare():
    # Wikipedia, "Mann–Whitney U test", illustration: finishing order T H H H H H T T T T T H.
    # Counting the hares each tortoise beats gives U_T = 11; the hares' count is U_H = 25.
    order = "THHHHHTTTTTH"
    tortoises = [i + 1 for i, a in enumerate(order) if a == "T"]  # finishing positions = "times"
    hares = [i + 1 for i, a in enumerate(order) if a == "H"]
    result = mann_whitney_samples(tortoises, hares, alternative="two-sided", min_samples=6)
    # statistic = pairs with tortoise time > hare time = hares beating tortoises = U_H
    assert result.statistic == 25 and 36 - result.statistic == 11
    assert result.p_value == pytest.approx(scipy.stats.mannwhitneyu(tortoises, hares).pvalue)
    assert result.verdict == "ok"
    one_per_bucket = [1 if a == "T" else 0 for a in order], [1 if a == "H" else 0 for a in order]
    assert grouped_u(*one_per_bucket) == 25


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
@pytest.mark.parametrize("cur,base", [
    ([10, 30, 80, 60, 15, 4, 1], [20, 50, 90, 30, 8, 2, 0]),
    ([0, 5, 5, 5, 5, 0, 3], [4, 6, 2, 7, 3, 1, 0]),
    ([100, 0, 0, 0, 0, 0, 30], [90, 0, 0, 0, 0, 0, 45]),
])
def test_grouped_matches_scipy_on_expanded_data(cur, base, alternative):
    result = mann_whitney_buckets(cumulative(cur), cumulative(base), alternative=alternative)
    expected = scipy.stats.mannwhitneyu(expand(cur), expand(base), alternative=alternative,
                                        method="asymptotic", use_continuity=True)
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-15)


@settings(max_examples=examples(60), deadline=None)
@given(cur=st.lists(st.integers(0, 40), min_size=7, max_size=7),
       base=st.lists(st.integers(0, 40), min_size=7, max_size=7),
       alternative=st.sampled_from(["greater", "less", "two-sided"]))
def test_grouped_matches_scipy_property(cur, base, alternative):
    result = mann_whitney_buckets(cumulative(cur), cumulative(base), alternative=alternative)
    if result.verdict == "inconclusive":
        assert min(sum(cur), sum(base)) < 20 or len({i for i, (c, b) in enumerate(zip(cur, base)) if c + b}) == 1
        return
    expected = scipy.stats.mannwhitneyu(expand(cur), expand(base), alternative=alternative, method="asymptotic")
    assert result.statistic == pytest.approx(expected.statistic)
    assert result.p_value == pytest.approx(expected.pvalue, rel=1e-9, abs=1e-15)
    assert -1.0 <= result.effect <= 1.0


def test_slower_version_breaches_and_same_version_does_not():
    baseline = [20, 50, 90, 30, 8, 2, 0]
    slower = [2, 10, 60, 90, 30, 6, 2]
    breach = mann_whitney_buckets(cumulative(slower), cumulative(baseline))
    assert breach.verdict == "breach" and breach.effect > 0.3 and "Cliff's delta" in breach.reason
    same = mann_whitney_buckets(cumulative(baseline), cumulative(baseline))
    assert same.verdict == "ok" and same.effect == 0.0 and same.p_value > 0.4
    faster = mann_whitney_buckets(cumulative(baseline), cumulative(slower))
    assert faster.verdict == "ok"


def test_min_effect_in_cliffs_delta_units():
    baseline = [200, 500, 900, 300, 80, 20, 0]
    slightly = [190, 480, 890, 330, 95, 25, 0]
    result = mann_whitney_buckets(cumulative(slightly), cumulative(baseline))
    assert result.p_value < 0.05 and 0 < result.effect < 0.05
    assert mann_whitney_buckets(cumulative(slightly), cumulative(baseline), min_effect=0.15).verdict == "ok"


def test_different_edges_are_merged_to_common_ones():
    fine = {0.1: 10, 0.2: 40, 0.5: 90, 1.0: 100, "+Inf": 100}
    coarse = {"0.2": 30, "1.0": 95, "+Inf": 100}
    result = mann_whitney_buckets(fine, coarse)
    assert result.details["le"] == ["0.2", "1.0", "+Inf"]
    assert result.details["current_counts"] == [40, 60, 0] and result.details["baseline_counts"] == [30, 65, 5]


def test_too_little_data_and_one_bucket_are_inconclusive():
    few = mann_whitney_buckets(cumulative([1, 2, 3, 0, 0, 0, 0]), cumulative([5] * 7))
    assert few.verdict == "inconclusive" and "too little data" in few.reason
    one = mann_whitney_buckets(cumulative([0, 0, 50, 0, 0, 0, 0]), cumulative([0, 0, 70, 0, 0, 0, 0]))
    assert one.verdict == "inconclusive" and "one bucket" in one.reason
    raw = mann_whitney_samples([0.1] * 5, [0.2] * 50)
    assert raw.verdict == "inconclusive" and raw.details["current"]["n"] == 5


def test_raw_samples_match_scipy_and_summarise_inputs():
    cur = [0.11, 0.35, 0.2, 0.4, 0.52, 0.33, 0.29, 0.61, 0.48, 0.27] * 3
    base = [0.1, 0.2, 0.15, 0.22, 0.3, 0.18, 0.25, 0.12, 0.28, 0.21] * 3
    result = mann_whitney_samples(cur, base)
    expected = scipy.stats.mannwhitneyu(cur, base, alternative="greater")
    assert result.statistic == expected.statistic and result.p_value == pytest.approx(expected.pvalue)
    assert result.verdict == "breach" and result.details["current"]["n"] == 30
    assert result.details["baseline"]["median"] == pytest.approx(0.205)


def test_bad_samples_raise():
    with pytest.raises(ValueError, match=r"current\[2\].*NULL"):
        mann_whitney_samples([0.1, 0.2, float("nan")], [0.1])
    with pytest.raises(ValueError, match="cumulative"):
        mann_whitney_buckets({0.1: 5, 0.2: 3, "+Inf": 9}, cumulative([1] * 7))
