"""Byte sizes as people write them: `32MiB`, `512KiB`, `10MB`, `1GiB`, or a bare number of bytes."""

from __future__ import annotations

import re

_UNITS = {"": 1, "b": 1, "kb": 1000, "mb": 1000**2, "gb": 1000**3,
          "kib": 1024, "mib": 1024**2, "gib": 1024**3}
_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([a-z]*)")
#: for the JSON Schema: what parse_size accepts as text
SIZE_PATTERN = r"^\s*\d+(\.\d+)?\s*([bB]|[kKmMgG][iI]?[bB])?\s*$"


def parse_size(text: object) -> int:
    """Return bytes. Raises ValueError with a message that shows the accepted forms."""
    if isinstance(text, bool):
        raise ValueError(f"expected a size like 32MiB, 512KiB or a number of bytes, got {text!r}")
    if isinstance(text, (int, float)):
        if text < 0 or text != text:
            raise ValueError(f"size must not be negative, got {text!r}")
        return int(text)
    if not isinstance(text, str):
        raise ValueError(f"expected a size like 32MiB, 512KiB or a number of bytes, got {text!r}")
    m = _SIZE.fullmatch(text.strip().lower())
    if m is None or m.group(2) not in _UNITS:
        raise ValueError(f"invalid size {text!r}: expected a number with an optional unit "
                         "(B, KB, MB, GB, KiB, MiB, GiB), e.g. 32MiB")
    return int(float(m.group(1)) * _UNITS[m.group(2)])


def format_size(size: int) -> str:
    """`33554432` → `32MiB`; sizes that are no whole number of KiB stay bytes."""
    for unit, factor in (("GiB", 1024**3), ("MiB", 1024**2), ("KiB", 1024)):
        if size and size % factor == 0:
            return f"{size // factor}{unit}"
    return str(size)
