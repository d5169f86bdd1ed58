"""proportion_test against worked textbook examples and against scipy on the same inputs."""

from __future__ import annotations

import json
import math
import sys

import pytest
import scipy.stats
from hypothesis import given, settings
from hypothesis import strategies as st
from tests.fuzzing import examples

from watchdog.stats import Counts, newcombe_interval, proportion_test


def test_openstax_hives_example_two_sided_z_test():
    # Illowsky & Dean, "Introductory Statistics" (OpenStax / Connexions m17043), comparing two
    # independent population proportions: 20 of 200 adults on medication A still had hives vs
    # 12 of 200 on medication B; pooled p = 0.08, two-sided p-value = 0.1404, not significant at 1 %.
    result = proportion_test(Counts(20, 200), Counts(12, 200), alternative="two-sided", confidence=0.99, method="z")
    assert result.statistic == pytest.approx(1.4744, abs=1e-4)
    assert result.p_value == pytest.approx(0.1404, abs=1e-4)
    assert result.verdict == "ok" and "not significant" in result.reason
    assert result.details["current_rate"] == 0.1 and result.details["baseline_rate"] == 0.06
    assert result.effect == pytest.approx(0.04) and result.details["relative_difference"] == pytest.approx(2 / 3)


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
@pytest.mark.parametrize("cur,base", [((30, 1000), (18, 1000)), ((7, 120), (40, 900)), ((55, 400), (41, 380))])
def test_z_test_p_value_matches_scipy_norm(cur, base, alternative):
    result = proportion_test(Counts(*cur), Counts(*base), alternative=alternative, method="z")
    p1, p2 = cur[0] / cur[1], base[0] / base[1]
    pooled = (cur[0] + base[0]) / (cur[1] + base[1])
    z = (p1 - p2) / math.sqrt(pooled * (1 - pooled) * (1 / cur[1] + 1 / base[1]))
    expected = {"greater": scipy.stats.norm.sf(z), "less": scipy.stats.norm.cdf(z),
                "two-sided": 2 * scipy.stats.norm.sf(abs(z))}[alternative]
    assert result.statistic == pytest.approx(z, rel=1e-12)
    assert result.p_value == pytest.approx(expected, rel=1e-9)


@pytest.mark.parametrize("cur,base,low,high", [
    # Newcombe (1998), "Interval estimation for the difference between independent proportions",
    # Statistics in Medicine 17:873-890, Table II, method 10 (hybrid score), examples (a), (b), (d).
    ((56, 70), (48, 80), 0.0524, 0.3339),
    ((9, 10), (3, 10), 0.1705, 0.8090),
    ((5, 56), (0, 29), -0.0381, 0.1926),
])
def test_newcombe_interval_matches_published_examples(cur, base, low, high):
    got = newcombe_interval(Counts(*cur), Counts(*base), 0.95)
    assert got == pytest.approx((low, high), abs=1e-4)


def test_fisher_lady_tasting_tea():
    # Fisher (1935), The Design of Experiments: 3 of 4 milk-first cups identified vs 1 of 4
    # wrongly; the one-sided p-value is 17/70 ≈ 0.2429.
    result = proportion_test(Counts(3, 4), Counts(1, 4), method="fisher", min_total=4)
    assert result.p_value == pytest.approx(17 / 70)
    assert result.name == "proportion_fisher" and result.verdict == "ok"


@pytest.mark.parametrize("alternative", ["greater", "less", "two-sided"])
@pytest.mark.parametrize("cur,base", [((9, 400), (2, 410)), ((0, 300), (6, 300)), ((4, 50), (4, 50))])
def test_exact_tests_match_scipy(cur, base, alternative):
    table = [[cur[0], base[0]], [cur[1] - cur[0], base[1] - base[0]]]
    fisher = proportion_test(Counts(*cur), Counts(*base), alternative=alternative, method="fisher")
    assert fisher.p_value == pytest.approx(scipy.stats.fisher_exact(table, alternative=alternative).pvalue)
    small = [[min(cur[0], 9), min(base[0], 9)], [20, 22]]
    current, baseline = Counts(small[0][0], sum(r[0] for r in small)), Counts(small[0][1], sum(r[1] for r in small))
    for method, scipy_test in (("boschloo", scipy.stats.boschloo_exact), ("barnard", scipy.stats.barnard_exact)):
        got = proportion_test(current, baseline, alternative=alternative, method=method, min_total=10)
        assert got.p_value == pytest.approx(scipy_test(small, alternative=alternative).pvalue)


def test_exact_tests_look_in_the_right_direction():
    worse, better = Counts(9, 30), Counts(1, 30)
    for method in ("fisher", "boschloo", "barnard", "z"):
        assert proportion_test(worse, better, method=method).verdict == "breach", method
        assert proportion_test(better, worse, method=method).verdict == "ok", method


def test_auto_uses_z_with_large_counts_and_fisher_with_small():
    assert proportion_test(Counts(60, 2000), Counts(30, 2000)).name == "proportion_z"
    small = proportion_test(Counts(3, 2000), Counts(1, 2000))
    assert small.name == "proportion_fisher" and small.details["method"] == "fisher"


def test_auto_without_scipy_is_inconclusive_with_the_fix(monkeypatch):
    monkeypatch.setitem(sys.modules, "scipy", None)
    result = proportion_test(Counts(3, 2000), Counts(1, 2000))
    assert result.verdict == "inconclusive" and "pip install 'model-watchdog[stats]'" in result.reason
    assert proportion_test(Counts(60, 2000), Counts(30, 2000)).name == "proportion_z"
    with pytest.raises(ImportError, match=r"pip install 'model-watchdog\[stats\]'"):
        proportion_test(Counts(3, 2000), Counts(1, 2000), method="fisher")


def test_breach_needs_significance_and_min_effect():
    current, baseline = Counts(1150, 100_000), Counts(1000, 100_000)  # +15 %, highly significant
    assert proportion_test(current, baseline).verdict == "breach"
    gated = proportion_test(current, baseline, min_effect=0.2)
    assert gated.verdict == "ok" and "min_effect" in gated.reason
    assert gated.p_value < 0.01 and gated.details["relative_difference"] == pytest.approx(0.15)


def test_interval_is_reported_for_the_absolute_difference():
    result = proportion_test(Counts(56, 70), Counts(48, 80), alternative="two-sided")
    assert result.interval == pytest.approx((0.0524, 0.3339), abs=1e-4)
    assert result.details["interval_low"] == result.interval[0]


def test_two_sided_breaches_in_either_direction_one_sided_only_when_worse():
    better, worse = Counts(10, 1000), Counts(40, 1000)
    assert proportion_test(better, worse, alternative="two-sided").verdict == "breach"
    assert proportion_test(better, worse, alternative="greater").verdict == "ok"
    assert proportion_test(better, worse, alternative="less").verdict == "breach"


def test_too_little_data_is_inconclusive_not_an_error():
    result = proportion_test(Counts(2, 10), Counts(0, 5000))
    assert result.verdict == "inconclusive" and "too little data" in result.reason
    assert result.p_value is None and result.details["current_total"] == 10


def test_zero_baseline_errors_keeps_results_json_safe():
    result = proportion_test(Counts(8, 500), Counts(0, 500))
    assert result.details["relative_difference"] is None
    json.dumps(result.to_dict(), allow_nan=False)
    assert result.verdict == "breach"


def test_no_errors_anywhere_is_ok():
    result = proportion_test(Counts(0, 5000), Counts(0, 5000), method="z")
    assert result.verdict == "ok" and result.statistic == 0.0


@pytest.mark.parametrize("current,baseline,message", [
    (Counts(float("nan"), 10), Counts(1, 10), "NaN"),
    (Counts(-1, 10), Counts(1, 10), "≥ 0"),
    (Counts(12, 10), Counts(1, 10), "exceed total"),
    (Counts(1, float("inf")), Counts(1, 10), "finite"),
])
def test_impossible_counts_raise_with_the_fix(current, baseline, message):
    with pytest.raises(ValueError, match=message):
        proportion_test(current, baseline)


def test_bad_options_raise():
    with pytest.raises(ValueError, match="percentage"):
        proportion_test(Counts(1, 100), Counts(1, 100), confidence=95)
    with pytest.raises(ValueError, match="alternative"):
        proportion_test(Counts(1, 100), Counts(1, 100), alternative="worse")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="method"):
        proportion_test(Counts(1, 100), Counts(1, 100), method="chi2")  # type: ignore[arg-type]


def test_fractional_counts_from_increase_are_accepted():
    result = proportion_test(Counts(3.7, 1999.2), Counts(1.2, 2001.5), method="fisher")
    assert result.details["rounded_for_exact_test"] is True and 0 <= result.p_value <= 1


counts = st.integers(min_value=30, max_value=3000)


@settings(max_examples=examples(60), deadline=None)
@given(n1=counts, n2=counts, data=st.data(), method=st.sampled_from(["z", "fisher"]))
def test_p_value_is_a_probability_and_falls_as_current_errors_rise(n1, n2, data, method):
    x2 = data.draw(st.integers(0, n2))
    x1 = data.draw(st.integers(0, n1 - 1))
    lower = proportion_test(Counts(x1, n1), Counts(x2, n2), method=method)
    higher = proportion_test(Counts(x1 + 1, n1), Counts(x2, n2), method=method)
    assert 0.0 <= higher.p_value <= lower.p_value <= 1.0
