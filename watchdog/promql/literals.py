"""Lexical values of PromQL: numbers, durations and strings, read and written back.

Reading and writing live side by side so that `str(parse(q))` always re-parses
to the same tree (the round-trip property the tests check).
"""

from __future__ import annotations

import math
import re

# Prometheus durations: integer amounts, units from largest to smallest, each at most once.
_DURATION_UNITS: dict[str, int] = {
    "y": 365 * 86_400_000,
    "w": 7 * 86_400_000,
    "d": 86_400_000,
    "h": 3_600_000,
    "m": 60_000,
    "s": 1_000,
    "ms": 1,
}
_DURATION_ORDER = list(_DURATION_UNITS)
_DURATION_PART = re.compile(r"(\d+)(ms|[ywdhms])")


def parse_duration(text: str) -> float:
    """`1m30s` -> 90.0 seconds. Raises ValueError with the reason."""
    pos = 0
    total_ms = 0
    last_rank = -1
    for m in _DURATION_PART.finditer(text):
        if m.start() != pos:
            break
        rank = _DURATION_ORDER.index(m.group(2))
        if rank <= last_rank:
            raise ValueError(
                f"invalid duration {text!r}: units must go from largest to smallest (y w d h m s ms), each once"
            )
        last_rank = rank
        total_ms += int(m.group(1)) * _DURATION_UNITS[m.group(2)]
        pos = m.end()
    if pos == 0 or pos != len(text):
        raise ValueError(f"invalid duration {text!r}: expected e.g. 30s, 5m, 1h30m or 500ms")
    return total_ms / 1000.0


def format_duration(seconds: float) -> str:
    """90.0 -> `1m30s`; whole milliseconds only, as PromQL cannot write finer ranges."""
    ms = round(seconds * 1000)
    if ms <= 0:
        return "0s"
    parts = []
    for unit, size in _DURATION_UNITS.items():
        if ms >= size:
            parts.append(f"{ms // size}{unit}")
            ms %= size
    return "".join(parts)


def parse_number(text: str) -> float:
    """Decimal, scientific, hex (`0x1f`), `Inf` and `NaN` (any case), as PromQL's lexer accepts."""
    lowered = str(text).lower()
    if lowered.startswith("0x"):
        try:
            return float(int(lowered, 16))
        except OverflowError:
            raise ValueError(f"hexadecimal number {lowered[:20]}... is too large") from None
    return float(lowered)


def format_number(value: float) -> str:
    """Shortest text that reads back to exactly `value`."""
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "Inf" if value > 0 else "-Inf"
    if value == int(value) and abs(value) < 1e15:
        return str(int(value)) if not (value == 0 and math.copysign(1.0, value) < 0) else "-0"
    return repr(value)


_ESCAPES = {
    "a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
    "\\": "\\", "'": "'", '"': '"',
}
_ESCAPE_RE = re.compile(r"\\(x[0-9a-fA-F]{2}|u[0-9a-fA-F]{4}|U[0-9a-fA-F]{8}|[0-7]{3}|.)", re.DOTALL)


def unquote(token: str) -> str:
    """The value of a PromQL string literal (Go syntax: "…", '…' or `raw`)."""
    quote, body = token[0], token[1:-1]
    if quote == "`" or "\\" not in body:
        return body  # no escape sequence: the regex below would change nothing

    def replace(m: re.Match[str]) -> str:
        esc = m.group(1)
        if esc[0] in "xuU" and len(esc) > 1:
            if int(esc[1:], 16) > 0x10FFFF:
                raise ValueError(f"escape sequence '\\{esc}' in string {token} is not a valid character")
            return chr(int(esc[1:], 16))
        if esc[0] in "01234567" and len(esc) == 3:
            return chr(int(esc, 8))
        if esc in _ESCAPES and (esc not in "'\"" or esc == quote):
            return _ESCAPES[esc]
        # Go rejects unknown escapes; a silently different regex would be worse.
        raise ValueError(
            f"unknown escape sequence '\\{esc}' in string {token}: write '\\\\{esc}' or use a `raw` string"
        )

    return _ESCAPE_RE.sub(replace, body)


def quote(value: str) -> str:
    """A double-quoted literal that `unquote` reads back to `value`."""
    out = ['"']
    for ch in value:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\t":
            out.append("\\t")
        elif ch == "\r":
            out.append("\\r")
        elif ord(ch) < 0x20 or ord(ch) == 0x7F:
            out.append(f"\\x{ord(ch):02x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)
