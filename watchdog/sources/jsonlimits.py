"""Caps on what a JSON answer may build, checked before it is built.

`json.loads` builds every value of a document before anyone can look at it: a 32 MiB answer
of tiny series peaks at about 385 MB. So an answer is first *counted* — one pass over its
parse events (ijson's C backend; no value is kept) that stops at the first cap passed — and
only an answer within its caps is handed to `json.loads`. What that builds is then bounded
by the caps, whatever the server sends within `max_body`.

    load_prometheus(response, where, caps)  a Prometheus API answer within series, samples,
                                            labels per series and other values
    load_values(response, where, limit)      any document of at most `limit` values (http_json)

A body up to `SMALL` (1 MiB) is decoded at once and its counts checked on what was built
(json.loads of 1 MiB peaks at ~16 MB; counting first would cost more time than it saves).

A cap passed is a `SourceError` whose kind names the cap (`series_limit`, `sample_limit`,
`label_limit`, `value_limit`): no data, never a breach. A large body that is not JSON is
refused (kind `parse`) at the first error the count meets; the rest of it is never built.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Iterator

import ijson

from watchdog.errors import SourceError
from watchdog.http import fetch as httpfetch

#: labels one series of a Prometheus answer may carry (Prometheus' own `label_limit` idea;
#: real series carry a dozen or two)
LABEL_LIMIT = 64
#: values of a Prometheus answer outside its series: status, errorType, error, warnings, …
OTHER_LIMIT = 10_000
#: deeper than this is not an answer of ours (json.loads would say "nested too deeply")
DEPTH_LIMIT = 64
#: a body up to this size is decoded at once, then counted
SMALL = 1024 * 1024

_OPEN = ("start_map", "start_array")
_CLOSE = ("end_map", "end_array")
_SAMPLES = ("data.result.item.value", "data.result.item.values.item")  # [t, "v"] of a vector, of a matrix
_SAMPLE_ITEMS = ("data.result.item.value.item", "data.result.item.values.item.item")
_SERIES_PARTS = ("data.result.item.metric", "data.result.item.values")


@dataclass(frozen=True)
class PrometheusCaps:
    series_limit: int  # 0: none
    sample_limit: int  # 0: none


def load_prometheus(response: httpfetch.Fetched, where: str, caps: PrometheusCaps) -> Any:
    """The answer as JSON (`http.fetch.decode_json`), refused as SourceError when it has more
    series, samples, labels on one series, or other values than allowed."""
    if len(response.content) > SMALL:
        count_prometheus(response.content, where, caps)
        return httpfetch.decode_json(response, where)
    doc = httpfetch.decode_json(response, where)
    data = doc.get("data") if isinstance(doc, dict) else None
    result = data.get("result") if isinstance(data, dict) else None
    if isinstance(result, list) and data.get("resultType") in ("vector", "matrix"):
        _check(len(result), caps.series_limit, "series_limit", where, "series")
        samples = sum(len(s.get("values") or ()) if isinstance(s, dict) and isinstance(s.get("values"), list)
                      else 1 for s in result)
        _check(samples, caps.sample_limit, "sample_limit", where, "samples")
        labels = max((len(s["metric"]) for s in result if isinstance(s, dict) and isinstance(s.get("metric"), dict)),
                     default=0)
        _check(labels, LABEL_LIMIT, "label_limit", where, "labels on one series", fixed=True)
    return doc


def load_values(response: httpfetch.Fetched, where: str, limit: int) -> Any:
    """The answer as JSON, refused as SourceError when it has more than `limit` values."""
    if len(response.content) > SMALL:
        count_values(response.content, where, limit)
        return httpfetch.decode_json(response, where)
    doc = httpfetch.decode_json(response, where)
    if limit and _values(doc, limit) > limit:
        _check(limit + 1, limit, "value_limit", where, "JSON values")
    return doc


def _values(doc: Any, limit: int) -> int:
    """How many values `doc` holds, counting no further than just past `limit`."""
    count, stack = 0, [doc]
    while stack and count <= limit:
        value = stack.pop()
        count += 1
        if isinstance(value, dict):
            count += len(value)  # the keys
            stack.extend(value.values())
        elif isinstance(value, list):
            stack.extend(value)
    return count


def count_prometheus(content: bytes, where: str, caps: PrometheusCaps) -> None:
    """Raise SourceError when a Prometheus API answer (vector, matrix or scalar) has more
    series, samples, labels on one series, or other values than allowed."""
    series = samples = labels = values = other = items = 0
    for prefix, event in _events(content, where):
        if prefix == "data.result.item" and event == "start_map":
            series, labels, values = series + 1, 0, 0
            _check(series, caps.series_limit, "series_limit", where, "series")
        elif event == "start_array" and prefix in _SAMPLES:
            samples, items = samples + 1, 0
            _check(samples, caps.sample_limit, "sample_limit", where, "samples")
        elif prefix in _SAMPLE_ITEMS:
            items += 1
            if items > 2 or event in _OPEN:
                raise SourceError(f"{where} answered a sample that is not [timestamp, \"number\"]", "parse")
        elif event == "map_key" and prefix == "data.result.item.metric":
            labels += 1
            _check(labels, LABEL_LIMIT, "label_limit", where, "labels on one series", fixed=True)
        elif prefix.startswith("data.result.item.metric."):
            if event in _OPEN:
                raise SourceError(f"{where} answered a label value that is not a string", "parse")
            values += 1  # one per label in an object; a list under "metric" has no keys to count
            _check(values, LABEL_LIMIT, "label_limit", where, "labels on one series", fixed=True)
        elif event not in _CLOSE and event != "map_key" and prefix not in _SERIES_PARTS:
            other += 1
            _check(other, OTHER_LIMIT, "value_limit", where, "values besides its series", fixed=True)


def count_values(content: bytes, where: str, limit: int) -> None:
    """Raise SourceError when the document has more than `limit` values (objects, arrays,
    keys, strings, numbers, booleans, nulls; 0: no limit)."""
    if not limit:
        return
    values = 0
    for _, event in _events(content, where):
        if event not in _CLOSE:
            values += 1
            _check(values, limit, "value_limit", where, "JSON values")


def _events(content: bytes, where: str) -> Iterator[tuple[str, str]]:
    depth = 0
    try:
        for prefix, event, _ in ijson.parse(content, use_float=True):
            if event in _OPEN:
                depth += 1
                if depth > DEPTH_LIMIT:
                    raise SourceError(f"{where} returned JSON nested too deeply to read (more than "
                                      f"{DEPTH_LIMIT} levels)", "parse")
            elif event in _CLOSE:
                depth -= 1
            yield prefix, event
    except ijson.JSONError as exc:
        raise SourceError(f"{where} returned invalid JSON ({_first_line(exc)}); the rest of the "
                          f"{len(content)}-byte body was not read", "parse") from None


def _check(count: int, limit: int, kind: str, where: str, what: str, *, fixed: bool = False) -> None:
    """SourceError(kind) when `count` passed `limit` (0: none); `fixed`: not an option to raise."""
    if limit and count > limit:
        hint = "a fixed cap" if fixed else f"raise the source's {kind} if such answers are expected"
        raise SourceError(f"{where} answered more than {limit} {what} ({kind}: {hint}); the answer is refused whole",
                          kind)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[0][:200] if text else type(exc).__name__
