"""Config values that are more than a number or a string, parsed once when the config loads.

A rule's `compare.baseline` / `drift.reference` (`previous_version`, an offset like `1d`, or a
fixed RFC 3339 time) becomes a `Baseline`; `max_increase`, `max_decrease` and `min_effect`
(`20%` relative, `0.02` absolute) become a `Change`. Evaluation uses these, never the text.
`parse` raises ValueError with the reason; the loader reports it at the value's line.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Literal

from watchdog.durations import parse_duration

PREVIOUS_VERSION = "previous_version"


def fixed_time(value: str) -> float | None:
    """'2026-11-20T12:00:00Z' → epoch seconds; None when `value` is not an RFC 3339 time with a zone."""
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.timestamp() if parsed.tzinfo is not None else None


@dataclass(frozen=True)
class Baseline:
    """Where a comparison's reference comes from: the previous version now, the same query
    `seconds` ago, or the same query at the fixed time `at`."""

    kind: Literal["previous_version", "offset", "at"]
    text: str  # as written, for messages
    seconds: float = 0.0  # offset
    at: float = 0.0  # fixed time

    @classmethod
    def parse(cls, text: str) -> Baseline:
        if text == PREVIOUS_VERSION:
            return cls("previous_version", text)
        fixed = fixed_time(text)
        if fixed is not None:
            return cls("at", text, at=fixed)
        try:
            seconds = parse_duration(text)
        except ValueError:
            seconds = 0.0
        if seconds <= 0:
            raise ValueError(f"must be 'previous_version', a time offset like 1d or an RFC 3339 time "
                             f"with a zone (2026-11-20T12:00:00Z), got {text!r}")
        return cls("offset", text, seconds=seconds)

    def when(self, now: float) -> float:
        """The time the reference is read at (now for the previous version)."""
        return self.at if self.kind == "at" else now - self.seconds

    def lookback(self, now: float) -> float:
        """How far back from `now` the reference lies (0 for the previous version)."""
        return max(0.0, now - self.at) if self.kind == "at" else self.seconds

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Change:
    """How far a value may move: `amount` of the baseline when `relative`, else absolute."""

    amount: float
    relative: bool

    @classmethod
    def parse(cls, text: str | float) -> Change:
        """'20%' → 0.2 relative; '0.02' → 0.02 absolute. Raises ValueError."""
        raw = str(text).strip()
        relative = raw.endswith("%")
        value = float(raw[:-1]) / 100 if relative else float(raw)
        if value < 0 or value != value:
            raise ValueError(f"must be a non-negative number or percentage, got {text!r}")
        return cls(value, relative)

    def above(self, base: float) -> float:
        return base * (1 + self.amount) if self.relative else base + self.amount

    def below(self, base: float) -> float:
        return base * (1 - self.amount) if self.relative else base - self.amount


def baseline_or_none(text: str) -> Baseline | None:
    """For the config objects' own fields: a value that does not parse is reported by the loader."""
    try:
        return Baseline.parse(text)
    except ValueError:
        return None


def change_or_none(text: str | float | None) -> Change | None:
    if text is None:
        return None
    try:
        return Change.parse(text)
    except ValueError:
        return None
