"""The one result type every test returns, and the small value types they share.

A decision that rolls a model back must be explainable from the numbers behind it, so a
`StatResult` carries the statistic, the p-value, the effect, a one-line reason and a `details`
dict with every input number — ready for the audit history as JSON (no NaN, no infinity).
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any, Literal, NamedTuple

Decision = Literal["breach", "ok", "inconclusive"]
BREACH: Decision = "breach"
OK: Decision = "ok"
INCONCLUSIVE: Decision = "inconclusive"

# scipy's names, so a reader who knows scipy needs no translation table.
Alternative = Literal["greater", "less", "two-sided"]
ALTERNATIVES: tuple[Alternative, ...] = ("greater", "less", "two-sided")


class Counts(NamedTuple):
    """`errors` out of `total` events over one window (floats allowed: `increase()` extrapolates)."""

    errors: float
    total: float

    @property
    def rate(self) -> float:
        return self.errors / self.total if self.total > 0 else 0.0


@dataclass(frozen=True)
class StatResult:
    """The outcome of one statistical test, with everything needed to explain it.

    `effect` is in the test's natural unit (documented per function); `interval` is a
    confidence interval for that effect when the test provides one.
    """

    name: str
    statistic: float | None
    p_value: float | None
    effect: float | None
    confidence: float | None
    verdict: Decision
    reason: str = ""
    interval: tuple[float, float] | None = None
    details: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict (lists for tuples); `json.dumps(..., allow_nan=False)` accepts it."""
        data = asdict(self)
        if self.interval is not None:
            data["interval"] = list(self.interval)
        return data


def inconclusive(name: str, reason: str, confidence: float | None, details: dict[str, Any]) -> StatResult:
    """Too little (or degenerate) data: never an exception, always a reason."""
    return StatResult(name=name, statistic=None, p_value=None, effect=None, confidence=confidence,
                      verdict=INCONCLUSIVE, reason=reason, details=details)


def finite_or_none(value: float | None) -> float | None:
    """JSON has no NaN or infinity; the audit history stores `null` instead."""
    if value is None or not math.isfinite(value):
        return None
    return float(value)


def directional(effect: float, alternative: Alternative) -> float:
    """The size of `effect` in the direction the test looks for (negative: the other way)."""
    if alternative == "greater":
        return effect
    if alternative == "less":
        return -effect
    return abs(effect)


def significance_verdict(p_value: float, alpha: float, size: float, min_effect: float,
                         describe: str) -> tuple[Decision, str]:
    """breach only when the evidence is significant *and* the effect is large enough to matter.

    `size` is the effect in the tested direction; `describe` is the observed comparison,
    already formatted for people ("error rate 1.6% vs 1.2% (+35%)").
    """
    if p_value >= alpha:
        return OK, f"{describe}; p={p_value:.4g} ≥ {alpha:g}: not significant"
    if size <= 0 or size < min_effect:
        return OK, f"{describe}; p={p_value:.4g} < {alpha:g} but the effect is below min_effect {min_effect:g}"
    return BREACH, f"{describe}; p={p_value:.4g} < {alpha:g} and the effect reaches min_effect {min_effect:g}"
