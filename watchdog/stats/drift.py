"""Drift between a current distribution and a reference: PSI and the KS distance.

PSI (population stability index) = Σ (aᵢ − eᵢ)·ln(aᵢ/eᵢ) over bins, with aᵢ, eᵢ the shares of
the current and reference counts. It is the symmetrised Kullback-Leibler (Jeffreys) divergence,
so PSI ≥ 0 and PSI(a, a) = 0. An empty bin would make the logarithm infinite, so shares are
floored at `epsilon` (default 1e-4 = 0.01 %, the usual choice in scorecard monitoring) before
the sum; each term stays ≥ 0 because (a − e) and ln(a/e) always share their sign. Credit-scoring
rule of thumb (Siddiqi, *Credit Risk Scorecards*): < 0.1 stable, 0.1–0.25 some shift, > 0.25
major shift. Small samples inflate PSI: with B bins, n and m observations and no real change,
PSI ≈ (B−1)(1/n + 1/m) on average (Yurdakul 2018) — reported as `expected_if_unchanged`.

KS distance = the largest gap between the two empirical CDFs. For histograms it is taken at
the (aligned) bucket edges only, i.e. the KS statistic of the data rounded to bucket edges; its
p-value uses the asymptotic Kolmogorov distribution, which is conservative for grouped data
(true p-values are smaller), so it errs towards not alerting. Raw samples use scipy's ks_2samp.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

from watchdog.stats._checks import check_confidence, check_count, check_non_negative, check_samples, summary
from watchdog.stats._dist import kolmogorov_sf
from watchdog.stats._scipy import scipy_stats
from watchdog.stats.buckets import INF, Buckets, EdgeMode, align_buckets, bucket_counts, cumulative_buckets, le_label
from watchdog.stats.result import BREACH, OK, StatResult, inconclusive

DEFAULT_EPSILON = 1e-4


def psi(current: Mapping[Hashable, float], reference: Mapping[Hashable, float], *, threshold: float = 0.2,
        epsilon: float = DEFAULT_EPSILON, min_total: float = 100) -> StatResult:
    """PSI between two count vectors (bins or class labels → count); breach when PSI > threshold.

    A label missing on one side counts 0 there. `statistic` and `effect` are the PSI.
    """
    cur = {key: check_count(f"current[{key!r}]", v) for key, v in current.items()}
    ref = {key: check_count(f"reference[{key!r}]", v) for key, v in reference.items()}
    if not 0 < epsilon < 1:
        raise ValueError(f"epsilon must be between 0 and 1, e.g. 1e-4; got {epsilon!r}")
    check_non_negative("threshold", threshold)
    return _psi(cur, ref, threshold, epsilon, min_total, _label, {})


def psi_buckets(current: Buckets, reference: Buckets, *, threshold: float = 0.2, epsilon: float = DEFAULT_EPSILON,
                min_total: float = 100, edges: EdgeMode = "common") -> StatResult:
    """PSI between two cumulative histograms, bins = buckets after alignment (see buckets.py)."""
    cumulative_buckets(current, "current"), cumulative_buckets(reference, "reference")
    check_non_negative("threshold", threshold)
    aligned_current, aligned_reference = align_buckets(current, reference, edges=edges)
    extra = {"edges": edges}
    if len(aligned_current) == 1:
        return inconclusive("psi", "the histograms share no bucket edge but +Inf: nothing to compare "
                            "(use edges='union' to interpolate)", None, extra)
    return _psi(bucket_counts(aligned_current), bucket_counts(aligned_reference), threshold, epsilon,
                min_total, le_label, extra)


def ks_buckets(current: Buckets, reference: Buckets, *, threshold: float = 0.1, confidence: float | None = 0.95,
               min_total: float = 100, edges: EdgeMode = "common") -> StatResult:
    """Largest CDF gap over the aligned bucket edges; breach when it exceeds `threshold` and
    (unless `confidence` is None) is also significant at `confidence`."""
    cumulative_buckets(current, "current"), cumulative_buckets(reference, "reference")
    _check_ks_options(threshold, confidence)
    aligned_current, aligned_reference = align_buckets(current, reference, edges=edges)
    n, m = aligned_current[INF], aligned_reference[INF]
    details: dict[str, Any] = {"le": [le_label(e) for e in aligned_current],
                               "current_cumulative": list(aligned_current.values()),
                               "reference_cumulative": list(aligned_reference.values()),
                               "threshold": threshold, "edges": edges, "min_total": min_total}
    if min(n, m) < min_total:
        return inconclusive("ks", _too_few(n, m, min_total), confidence, details)
    if len(aligned_current) == 1:
        return inconclusive("ks", "the histograms share no bucket edge but +Inf: nothing to compare "
                            "(use edges='union' to interpolate)", confidence, details)
    gaps = {e: aligned_current[e] / n - aligned_reference[e] / m for e in aligned_current}
    at = max(gaps, key=lambda e: abs(gaps[e]))
    distance = abs(gaps[at])
    p_value = kolmogorov_sf(math.sqrt(n * m / (n + m)) * distance)
    where = (f"largest CDF gap {distance:.3f} at le={le_label(at)} "
             f"({aligned_current[at] / n:.1%} vs {aligned_reference[at] / m:.1%} of observations ≤ le)")
    details |= {"largest_gap_le": le_label(at), "p_value_method": "asymptotic Kolmogorov, conservative for buckets"}
    return _ks_result("ks", distance, p_value, threshold, confidence, where, details)


def ks_samples(current: Sequence[float], reference: Sequence[float], *, threshold: float = 0.1,
               confidence: float | None = 0.95, min_samples: int = 20) -> StatResult:
    """Two-sample Kolmogorov-Smirnov on raw observations (scipy.stats.ks_2samp)."""
    cur, ref = check_samples("current", current), check_samples("reference", reference)
    _check_ks_options(threshold, confidence)
    details: dict[str, Any] = {"current": summary(cur), "reference": summary(ref), "threshold": threshold,
                               "min_samples": min_samples}
    if min(len(cur), len(ref)) < min_samples:
        return inconclusive("ks_samples", _too_few(len(cur), len(ref), min_samples), confidence, details)
    result = scipy_stats("the KS test on raw samples").ks_2samp(cur, ref)
    at = float(result.statistic_location)
    where = f"largest CDF gap {result.statistic:.3f} at {at:g}"
    details |= {"largest_gap_at": at, "method": "scipy.stats.ks_2samp"}
    return _ks_result("ks_samples", float(result.statistic), float(result.pvalue), threshold, confidence, where,
                      details)


def _psi(cur: Mapping[Any, float], ref: Mapping[Any, float], threshold: float, epsilon: float,
         min_total: float, label: Any, extra: dict[str, Any]) -> StatResult:
    n, m = math.fsum(cur.values()), math.fsum(ref.values())
    keys = _keys(ref, cur)
    details: dict[str, Any] = {"threshold": threshold, "epsilon": epsilon, "min_total": min_total,
                               "current_total": n, "reference_total": m, **extra}
    if min(n, m) < min_total:
        details["bins"] = [{"bin": label(k), "current": cur.get(k, 0.0), "reference": ref.get(k, 0.0)} for k in keys]
        return inconclusive("psi", _too_few(n, m, min_total), None, details)
    bins = [_psi_bin(label(k), cur.get(k, 0.0), ref.get(k, 0.0), n, m, epsilon) for k in keys]
    value = math.fsum(b["term"] for b in bins)
    occupied = sum(1 for b in bins if b["current"] > 0 or b["reference"] > 0)
    details |= {"bins": bins, "expected_if_unchanged": max(occupied - 1, 0) * (1 / n + 1 / m)}
    top = max(bins, key=lambda b: b["term"])
    describe = (f"PSI {value:.4f} (noise level ≈ {details['expected_if_unchanged']:.4f}); largest term "
                f"{top['term']:.4f} in bin {top['bin']}: {top['current_share']:.1%} now vs "
                f"{top['reference_share']:.1%} before")
    verdict, relation = (BREACH, ">") if value > threshold else (OK, "≤")
    return StatResult(name="psi", statistic=value, p_value=None, effect=value, confidence=None, verdict=verdict,
                      reason=f"{describe}; {relation} threshold {threshold:g}", details=details)


def _psi_bin(name: str, c: float, r: float, n: float, m: float, epsilon: float) -> dict[str, Any]:
    a, e = max(c / n, epsilon), max(r / m, epsilon)
    return {"bin": name, "current": c, "reference": r, "current_share": c / n, "reference_share": r / m,
            "term": (a - e) * math.log(a / e)}


def _ks_result(name: str, distance: float, p_value: float, threshold: float, confidence: float | None,
               where: str, details: dict[str, Any]) -> StatResult:
    above = distance > threshold
    significant = confidence is None or p_value < 1 - confidence
    verdict = BREACH if above and significant else OK
    relation = ">" if above else "≤"
    reason = f"{where}, p={p_value:.4g}; {relation} threshold {threshold:g}"
    if above and not significant:
        reason += f" but not significant at confidence {confidence:g}"
    return StatResult(name=name, statistic=distance, p_value=min(1.0, max(0.0, p_value)), effect=distance,
                      confidence=confidence, verdict=verdict, reason=reason, details=details)


def _check_ks_options(threshold: float, confidence: float | None) -> None:
    check_non_negative("threshold", threshold)
    if confidence is not None:
        check_confidence(confidence)


def _keys(reference: Mapping[Any, float], current: Mapping[Any, float]) -> list[Any]:
    """Bins in a stable order: numeric edges sorted, labels as the reference lists them."""
    keys = list(dict.fromkeys([*reference, *current]))
    if all(isinstance(k, (int, float)) and not isinstance(k, bool) for k in keys):
        return sorted(keys)
    return keys


def _label(key: Hashable) -> str:
    return le_label(key) if isinstance(key, float) else str(key)


def _too_few(n: float, m: float, minimum: float) -> str:
    return f"too little data: {n:g} current and {m:g} reference observations, need {minimum:g} each"
