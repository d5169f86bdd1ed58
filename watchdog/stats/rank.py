"""Mann-Whitney U: are the current version's latencies larger than the baseline's?

Raw samples go to scipy.stats.mannwhitneyu. Histograms are handled here in pure Python as
*grouped data*: every observation in a bucket is treated as tied with every other one in the
same bucket (as if rounded to the bucket's upper edge), U counts the pairs current > baseline
plus half the tied pairs, and the variance gets the usual tie correction. This is exactly the
U test on the rounded data, so it stays a valid test of "same distribution" — coarse buckets
only cost power. The p-value is the normal approximation with continuity correction (as
scipy's `method="asymptotic"`), fine for the sample sizes the default `min_samples` demands.

`effect` is Cliff's delta = P(current > baseline) − P(current < baseline) ∈ [−1, 1]
(= 2·U/(n₁n₂) − 1); 0 means no shift. Rough guide (Romano et al. 2006): 0.15 small,
0.33 medium, 0.47 large. `min_effect` is compared with it in the tested direction.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

from watchdog.stats._checks import check_alternative, check_confidence, check_non_negative, check_samples, summary
from watchdog.stats._dist import normal_sf
from watchdog.stats._scipy import scipy_stats
from watchdog.stats.buckets import Buckets, EdgeMode, align_buckets, bucket_counts, cumulative_buckets, le_label
from watchdog.stats.result import Alternative, StatResult, directional, inconclusive, significance_verdict


def mann_whitney_samples(current: Sequence[float], baseline: Sequence[float], *, confidence: float = 0.95,
                         alternative: Alternative = "greater", min_effect: float = 0.0,
                         min_samples: int = 20) -> StatResult:
    """Rank test on raw observations (scipy); `greater` = current stochastically larger."""
    cur, base = check_samples("current", current), check_samples("baseline", baseline)
    _check_options(confidence, alternative, min_effect)
    details: dict[str, Any] = {"current": summary(cur), "baseline": summary(base), "alternative": alternative,
                               "min_effect": min_effect, "min_samples": min_samples}
    if min(len(cur), len(base)) < min_samples:
        return inconclusive("mann_whitney", _too_few(len(cur), len(base), min_samples), confidence, details)
    stats = scipy_stats("the Mann-Whitney test on raw samples")
    result = stats.mannwhitneyu(cur, base, alternative=alternative, use_continuity=True, method="auto")
    u_current = float(result.statistic)
    return _result("mann_whitney", u_current, float(result.pvalue), len(cur), len(base), confidence,
                   alternative, min_effect, {**details, "method": "scipy.stats.mannwhitneyu"})


def mann_whitney_buckets(current: Buckets, baseline: Buckets, *, confidence: float = 0.95,
                         alternative: Alternative = "greater", min_effect: float = 0.0,
                         min_samples: int = 20, edges: EdgeMode = "common") -> StatResult:
    """Rank test on two cumulative histograms (grouped data, pure Python; see module docstring)."""
    cumulative_buckets(current, "current"), cumulative_buckets(baseline, "baseline")
    _check_options(confidence, alternative, min_effect)
    aligned_current, aligned_baseline = align_buckets(current, baseline, edges=edges)
    cur, base = list(bucket_counts(aligned_current).values()), list(bucket_counts(aligned_baseline).values())
    n1, n2 = sum(cur), sum(base)
    details: dict[str, Any] = {
        "le": [le_label(e) for e in aligned_current], "current_counts": cur, "baseline_counts": base,
        "edges": edges, "alternative": alternative, "min_effect": min_effect, "min_samples": min_samples,
        "method": "grouped (ties within a bucket), normal approximation with continuity correction",
    }
    if min(n1, n2) < min_samples:
        return inconclusive("mann_whitney_grouped", _too_few(n1, n2, min_samples), confidence, details)
    u_current = grouped_u(cur, base)
    sigma = _sigma(cur, base)
    if sigma == 0:
        return inconclusive("mann_whitney_grouped", "all observations fall into one bucket: ranks cannot "
                            "tell the versions apart (finer buckets needed)", confidence, details)
    p_value = normal_sf(_z(u_current, n1, n2, sigma, alternative))
    if alternative == "two-sided":
        p_value = min(1.0, 2.0 * p_value)
    return _result("mann_whitney_grouped", u_current, p_value, n1, n2, confidence, alternative,
                   min_effect, details)


def grouped_u(current: Sequence[float], baseline: Sequence[float]) -> float:
    """U of `current` from per-bucket counts in edge order: pairs current > baseline + ½ ties."""
    u, below = 0.0, 0.0
    for c, b in zip(current, baseline, strict=True):
        u += c * (below + b / 2.0)
        below += b
    return u


def _sigma(current: Sequence[float], baseline: Sequence[float]) -> float:
    """Standard deviation of U under H0 with the tie correction (ties = whole buckets)."""
    n1, n2 = sum(current), sum(baseline)
    n = n1 + n2
    ties = math.fsum(t**3 - t for t in (c + b for c, b in zip(current, baseline)))
    variance = n1 * n2 / 12.0 * ((n + 1) - ties / (n * (n - 1)))
    return math.sqrt(max(variance, 0.0))


def _z(u_current: float, n1: float, n2: float, sigma: float, alternative: Alternative) -> float:
    """As scipy: z of the U of the side under test (the larger U for two-sided), minus ½ for
    continuity; its upper tail is the one-sided p-value."""
    u_other = n1 * n2 - u_current
    u = {"greater": u_current, "less": u_other, "two-sided": max(u_current, u_other)}[alternative]
    return (u - n1 * n2 / 2.0 - 0.5) / sigma


def _check_options(confidence: float, alternative: Alternative, min_effect: float) -> None:
    check_confidence(confidence)
    check_alternative(alternative)
    check_non_negative("min_effect", min_effect)


def _too_few(n1: float, n2: float, min_samples: float) -> str:
    return f"too little data: {n1:g} current and {n2:g} baseline observations, need {min_samples:g} each"


def _result(name: str, u_current: float, p_value: float, n1: float, n2: float, confidence: float,
            alternative: Alternative, min_effect: float, details: dict[str, Any]) -> StatResult:
    p_value = min(1.0, max(0.0, p_value))
    delta = 2.0 * u_current / (n1 * n2) - 1.0
    describe = (f"current > baseline in {u_current / (n1 * n2):.1%} of pairs (Cliff's delta {delta:+.3f}, "
                f"n={n1:g} vs {n2:g})")
    verdict, reason = significance_verdict(p_value, 1 - confidence, directional(delta, alternative),
                                           min_effect, describe)
    details = {**details, "u_current": u_current, "n_current": n1, "n_baseline": n2,
               "probability_current_larger": u_current / (n1 * n2)}
    return StatResult(name=name, statistic=u_current, p_value=p_value, effect=delta, confidence=confidence,
                      verdict=verdict, reason=reason, details=details)
