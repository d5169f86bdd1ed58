"""Durations as SREs write them: `500ms`, `15s`, `1m30s`, `2h`, `1d`, or a bare number of seconds."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0, "w": 604800.0}
_PART = re.compile(r"(\d+(?:\.\d+)?)(ms|s|m|h|d|w)")
_ORDER = ["w", "d", "h", "m", "s", "ms"]


def parse_duration(text: object) -> float:
    """Return seconds. Raises ValueError with a message that shows the accepted forms."""
    if isinstance(text, bool):
        raise ValueError(f"expected a duration like 30s, 1m30s or 500ms, got {text!r}")
    if isinstance(text, (int, float)):
        if text < 0 or text != text:
            raise ValueError(f"duration must not be negative, got {text!r}")
        return float(text)
    if not isinstance(text, str):
        raise ValueError(f"expected a duration like 30s, 1m30s or 500ms, got {text!r}")
    s = text.strip()
    if s == "0":
        return 0.0
    pos = 0
    total = 0.0
    last_rank = -1
    for m in _PART.finditer(s):
        if m.start() != pos:
            break
        rank = _ORDER.index(m.group(2))
        if rank <= last_rank:
            raise ValueError(f"invalid duration {text!r}: units must go from largest to smallest, each once")
        last_rank = rank
        total += float(m.group(1)) * _UNITS[m.group(2)]
        pos = m.end()
    if pos != len(s) or pos == 0:
        raise ValueError(f"invalid duration {text!r}: expected a number with a unit (ms, s, m, h, d, w), e.g. 30s, 1m30s, 500ms")
    return total


def format_duration(seconds: float) -> str:
    """The shortest readable form: 90 -> '1m30s', 0.5 -> '500ms'."""
    if seconds == 0:
        return "0s"
    ms = round(seconds * 1000)
    out = []
    for unit in ("w", "d", "h", "m", "s"):
        size = round(_UNITS[unit] * 1000)
        if ms >= size:
            out.append(f"{ms // size}{unit}")
            ms %= size
    if ms:
        out.append(f"{ms}ms")
    return "".join(out)
