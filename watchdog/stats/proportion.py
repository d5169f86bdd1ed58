"""Comparing two error rates: current version vs baseline.

The pooled two-proportion z-test is pure Python; with small expected counts the normal
approximation is poor, so `method="auto"` switches to Fisher's exact test (scipy). The interval
for the difference is Newcombe's hybrid score interval (Newcombe 1998, method 10), which stays
sensible with zero counts where the textbook Wald interval collapses.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, Literal

from watchdog.stats._checks import check_alternative, check_confidence, check_counts, check_non_negative
from watchdog.stats._dist import normal_quantile, p_from_z
from watchdog.stats._scipy import INSTALL_HINT, scipy_available, scipy_stats
from watchdog.stats.result import (
    Alternative,
    Counts,
    StatResult,
    directional,
    finite_or_none,
    inconclusive,
    significance_verdict,
)

ProportionMethod = Literal["auto", "z", "fisher", "boschloo", "barnard"]
METHODS: tuple[ProportionMethod, ...] = ("auto", "z", "fisher", "boschloo", "barnard")

# The usual rule of thumb for the normal approximation: every expected cell count ≥ 5.
MIN_EXPECTED = 5.0


def proportion_test(current: Counts, baseline: Counts, *, confidence: float = 0.95,
                    alternative: Alternative = "greater", min_effect: float = 0.0,
                    method: ProportionMethod = "auto", min_total: float = 30) -> StatResult:
    """Is the current error rate different from (by default: worse than) the baseline's?

    `min_effect` is *relative* (0.2: the current rate must be ≥ 20 % above the baseline's) and
    guards against rolling back for statistically significant but negligible differences.
    `effect` is the absolute difference current − baseline; `interval` its confidence interval.
    `verdict` is `breach` (significant and ≥ min_effect in the tested direction), `ok`, or
    `inconclusive` (fewer than `min_total` events on either side, or no scipy for small counts).
    """
    current, baseline = check_counts("current", current), check_counts("baseline", baseline)
    check_confidence(confidence)
    check_alternative(alternative)
    check_non_negative("min_effect", min_effect)
    if method not in METHODS:
        raise ValueError(f"method must be one of {', '.join(METHODS)}; got {method!r}")
    details = _describe(current, baseline, alternative, min_effect, min_total)
    if min(current.total, baseline.total) < min_total:
        return inconclusive(f"proportion_{method}", f"too little data: {current.total:g} current and "
                            f"{baseline.total:g} baseline events, need {min_total:g} each", confidence, details)
    chosen = _choose(method, current, baseline)
    if chosen is None:
        return inconclusive("proportion_auto", f"counts too small for the z-test and the exact test "
                            f"needs scipy: {INSTALL_HINT}", confidence, details)
    statistic, p_value = _TESTS[chosen](current, baseline, alternative)
    return _result(chosen, statistic, p_value, current, baseline, confidence, alternative, min_effect, details)


def newcombe_interval(current: Counts, baseline: Counts, confidence: float = 0.95) -> tuple[float, float]:
    """Two-sided interval for current.rate − baseline.rate (Newcombe's method 10, Wilson-based)."""
    z = normal_quantile(1.0 - (1.0 - confidence) / 2.0)
    p1, p2 = current.rate, baseline.rate
    l1, u1 = _wilson(current, z)
    l2, u2 = _wilson(baseline, z)
    diff = p1 - p2
    low = diff - math.sqrt((p1 - l1) ** 2 + (u2 - p2) ** 2)
    high = diff + math.sqrt((u1 - p1) ** 2 + (p2 - l2) ** 2)
    return max(-1.0, low), min(1.0, high)


def _wilson(counts: Counts, z: float) -> tuple[float, float]:
    n, p = counts.total, counts.rate
    denominator = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denominator
    half = z / denominator * math.sqrt(p * (1 - p) / n + z * z / (4 * n * n))
    return max(0.0, centre - half), min(1.0, centre + half)


def _choose(method: ProportionMethod, current: Counts, baseline: Counts) -> ProportionMethod | None:
    if method != "auto":
        return method
    if _min_expected(current, baseline) >= MIN_EXPECTED:
        return "z"
    # Without scipy the caller gets `inconclusive` with the fix, rather than a crash at low traffic.
    return "fisher" if scipy_available() else None


def _min_expected(current: Counts, baseline: Counts) -> float:
    pooled = (current.errors + baseline.errors) / (current.total + baseline.total)
    return min(n * share for n in (current.total, baseline.total) for share in (pooled, 1 - pooled))


def _z_test(current: Counts, baseline: Counts, alternative: Alternative) -> tuple[float, float]:
    """Pooled two-proportion z-test: the standard error assumes H0 (one common rate)."""
    pooled = (current.errors + baseline.errors) / (current.total + baseline.total)
    variance = pooled * (1 - pooled) * (1 / current.total + 1 / baseline.total)
    # No variation at all (no errors anywhere, or only errors): the rates are identical.
    z = 0.0 if variance == 0 else (current.rate - baseline.rate) / math.sqrt(variance)
    return z, p_from_z(z, alternative)


def _table(current: Counts, baseline: Counts) -> list[list[int]]:
    """Columns are the two samples, as boschloo/barnard expect; Fisher's odds ratio is the same."""
    ce, be = round(current.errors), round(baseline.errors)
    return [[ce, be], [round(current.total) - ce, round(baseline.total) - be]]


def _fisher(current: Counts, baseline: Counts, alternative: Alternative) -> tuple[float, float]:
    result = scipy_stats("the Fisher exact test").fisher_exact(_table(current, baseline), alternative=alternative)
    return float(result.statistic), float(result.pvalue)


def _boschloo(current: Counts, baseline: Counts, alternative: Alternative) -> tuple[float, float]:
    result = scipy_stats("Boschloo's exact test").boschloo_exact(_table(current, baseline), alternative=alternative)
    return float(result.statistic), float(result.pvalue)


def _barnard(current: Counts, baseline: Counts, alternative: Alternative) -> tuple[float, float]:
    result = scipy_stats("Barnard's exact test").barnard_exact(_table(current, baseline), alternative=alternative)
    return float(result.statistic), float(result.pvalue)


_TESTS: dict[str, Callable[[Counts, Counts, Alternative], tuple[float, float]]] = {
    "z": _z_test, "fisher": _fisher, "boschloo": _boschloo, "barnard": _barnard,
}

_STATISTIC_KIND = {"z": "z score (pooled)", "fisher": "sample odds ratio",
                   "boschloo": "Fisher p-value (Boschloo's statistic)", "barnard": "Wald statistic"}


def _relative(current: Counts, baseline: Counts) -> float:
    """(current − baseline) / baseline; infinite when the baseline had no errors but current has."""
    if baseline.rate > 0:
        return (current.rate - baseline.rate) / baseline.rate
    return math.inf if current.rate > 0 else 0.0


def _percent(rate: float) -> str:
    """4 significant digits: error rates live anywhere from 30 % to 0.001 %."""
    return f"{rate * 100:.4g}%"


def _describe(current: Counts, baseline: Counts, alternative: Alternative, min_effect: float,
              min_total: float) -> dict[str, Any]:
    return {
        "current_errors": current.errors, "current_total": current.total, "current_rate": current.rate,
        "baseline_errors": baseline.errors, "baseline_total": baseline.total, "baseline_rate": baseline.rate,
        "absolute_difference": current.rate - baseline.rate,
        "relative_difference": finite_or_none(_relative(current, baseline)),
        "alternative": alternative, "min_effect": min_effect, "min_total": min_total,
    }


def _result(method: str, statistic: float, p_value: float, current: Counts, baseline: Counts,
            confidence: float, alternative: Alternative, min_effect: float,
            details: dict[str, Any]) -> StatResult:
    relative = _relative(current, baseline)
    shown = "+∞" if math.isinf(relative) else f"{relative:+.1%}"
    describe = f"error rate {_percent(current.rate)} vs baseline {_percent(baseline.rate)} ({shown})"
    verdict, reason = significance_verdict(p_value, 1 - confidence, directional(relative, alternative),
                                           min_effect, describe)
    interval = newcombe_interval(current, baseline, confidence)
    details = {**details, "method": method, "statistic_kind": _STATISTIC_KIND[method],
               "interval_method": "newcombe-wilson", "interval_low": interval[0], "interval_high": interval[1],
               "rounded_for_exact_test": method != "z" and not all(
                   float(v).is_integer() for v in (*current, *baseline))}
    return StatResult(name=f"proportion_{method}", statistic=finite_or_none(statistic),
                      p_value=min(1.0, max(0.0, p_value)), effect=current.rate - baseline.rate,
                      confidence=confidence, verdict=verdict, reason=reason, interval=interval, details=details)
