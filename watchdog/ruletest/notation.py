"""promtool's series notation: `requests_total{status="error"}` and `0+10x40 _ stale 5x3`.

Values, space separated, one per input interval starting at time 0:

    a          one sample                    1.5  -2  0x1f  1e3  NaN  Inf  -Inf
    _          a gap: no sample at that step
    stale      a stale marker: the series ends there (until its next sample)
    a+bxn      a, a+b, a+2b, … a+nb          n+1 samples: 0+10x3 → 0 10 20 30
    a-bxn      a, a-b, … a-nb                1-2x4 → 1 -1 -3 -5 -7
    axn        a repeated n+1 times          1x3 → 1 1 1 1
    _xn        n gaps (not n+1)              1 _x3 stale → 1 _ _ _ stale
    stalexn    n+1 stale markers

As in promtool, `a+bxn` adds b to the running value n times (float addition), so the
values are bit-for-bit those promtool would feed.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from watchdog.errors import QueryError, WatchdogError
from watchdog.promql import parse
from watchdog.promql.ast import VectorSelector
from watchdog.samples import NAME, Labels, labels_of


class _Marker:
    def __init__(self, name: str):
        self.name = name

    def __repr__(self) -> str:
        return self.name


GAP = _Marker("_")  # no sample at this step
STALE = _Marker("stale")  # a stale marker at this step

Value = float | _Marker

_NUM = r"(?:0[xX][0-9a-fA-F]+|(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?|[iI][nN][fF]|[nN][aA][nN])"
_ITEM = re.compile(rf"(?P<start>[+-]?{_NUM}|stale)(?:(?P<step>[+-]{_NUM})?x(?P<times>\d+))?")
_GAPS = re.compile(r"_(?:x(?P<times>\d+))?")


@dataclass(frozen=True)
class NotationError(WatchdogError):
    """`column` is 0-based within the text."""

    message: str
    column: int = 0

    def __str__(self) -> str:
        return self.message


def _number(text: str) -> float:
    sign = -1.0 if text.startswith("-") else 1.0
    body = text.lstrip("+-")
    if body[:2].lower() == "0x":
        return sign * int(body, 16)
    return sign * float(body)  # float() reads inf and nan in any case


def parse_values(text: str) -> list[Value]:
    """Expand `text`; raises NotationError naming the item that is not understood."""
    out: list[Value] = []
    for m in re.finditer(r"\S+", text):
        item, column = m.group(0), m.start()
        if gaps := _GAPS.fullmatch(item):
            out.extend([GAP] * (int(gaps.group("times")) if gaps.group("times") else 1))
            continue
        found = _ITEM.fullmatch(item)
        if found is None:
            raise NotationError(f"cannot read {item!r}: expected a number, '_', 'stale' or an expanding "
                                "form like 0+10x100, 1-2x5 or 1x10", column)
        start, step, times = found.group("start"), found.group("step"), found.group("times")
        if times is None:
            out.append(STALE if start == "stale" else _number(start))
            continue
        if start == "stale":
            if step is not None:
                raise NotationError(f"cannot read {item!r}: a stale marker cannot be incremented", column)
            out.extend([STALE] * (int(times) + 1))
            continue
        value, delta = _number(start), _number(step) if step else 0.0
        for _ in range(int(times) + 1):
            out.append(value)
            value += delta
    return out


def parse_series(text: str) -> Labels:
    """`name{label="value", …}` → labels (with `__name__`); empty label values are dropped."""
    try:
        expr = parse(text)
    except QueryError as exc:
        raise NotationError(f"not a series description: {exc.message}", exc.position or 0) from None
    if not isinstance(expr, VectorSelector):
        raise NotationError("not a series description: write name{label=\"value\", …}")
    labels: dict[str, str] = {NAME: expr.name} if expr.name else {}
    for m in expr.matchers:
        if m.op != "=":
            raise NotationError(f"label {m.name}: a series has exact labels; write {m.name}=\"value\", not {m.op}")
        if m.name in labels:
            raise NotationError(f"label {m.name} is given twice")
        labels[m.name] = m.value
    return labels_of({k: v for k, v in labels.items() if v != ""})


def parse_label_set(text: str) -> Labels:
    """`{code="500"}` → labels; `{}` → no labels (the series of a query without labels)."""
    if text.replace(" ", "") == "{}":
        return ()
    labels = parse_series(text)
    if any(k == NAME for k, _ in labels):
        raise NotationError("rule series are matched without __name__; leave it out")
    return labels


def format_value(value: Value) -> str:
    if isinstance(value, _Marker):
        return value.name
    if math.isnan(value):
        return "NaN"
    return f"{value:g}"
