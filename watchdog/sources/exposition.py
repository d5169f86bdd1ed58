"""Read one scraped page of the Prometheus text format into samples, refusing hostile pages.

    samples(body, sample_limit) -> list[Sample]     raises PageError (kind below)

- The body is decoded as UTF-8 whatever the Content-Type's charset says (the format is
  UTF-8 by definition), one line at a time, so no second copy of the page is made.
- `sample_limit` (0: none) is counted while the lines are read, before the parser builds the
  samples: a page with a million series fails after `sample_limit + 1` lines, as Prometheus'
  scrape `sample_limit` fails the whole scrape.            kind sample_limit
- A page is malformed, and the whole scrape is refused, when a series appears twice (same
  name and labels) or a counter (or a histogram's buckets and count, a summary's count) is
  negative: such values are not counter resets to compute rates from.   kind malformed
- Text that is not the format at all, or not UTF-8.        kind parse

`PageReader` reads the pages of one target and is what the scrape source uses: a target sends
the same series every scrape, only their values change, so the labels parsed from a line's
series part (`name{labels}`, the text before the value) are kept from one page to the next
and a known series costs a dict look-up and a float(). The first sight of a series part, every
comment line and every line of an unusual shape are read by prometheus_client's own line
functions, and any page the fast path finds wrong or unusual is read again whole by
`reference_samples` (prometheus_client's parser), so the answer, or the error, is always the
reference's (tests/sources/test_exposition_fast.py compares them on random pages). The
kept series parts are those of the last page only: at most `sample_limit` of them.

Explicit timestamps (`name{labels} value timestamp`) are not part of a `Sample`: after a page
the reader's `stamped` lists `(index, timestamp)` for the samples that had one, the timestamp as
the reference reads it (the number written / 1000: seconds for the Prometheus text format's
milliseconds; an OpenMetrics page writes seconds, so its caller multiplies by 1000). A line
with no timestamp is read as before: only a line with more than a value after its series part
takes the slower path that finds one. What a timestamp means is the scrape source's business.
"""

from __future__ import annotations

import io
import re
import sys
from typing import Callable, Iterator

from prometheus_client.parser import text_fd_to_metric_families
from prometheus_client.parser import (  # the reference's own line functions, so a line reads as it would
    _is_valid_legacy_metric_name, _next_unquoted_char, _parse_sample, _parse_value_and_timestamp, _split_quoted,
    _unquote_unescape)

from watchdog.errors import WatchdogError
from watchdog.samples import NAME, Labels, Sample, format_labels, labels_of, without_name

# prometheus_client servers export a `*_created` series per counter/histogram; it is not a
# measurement, and keeping it would only cost memory.
_SKIP_SUFFIXES = ("_created",)
_MONOTONIC = {"counter": ("",), "histogram": ("_bucket", "_count"), "summary": ("_count",)}
_UNTYPED = ("untyped", "unknown")


class PageError(WatchdogError, ValueError):
    def __init__(self, message: str, kind: str):
        super().__init__(message)
        self.kind = kind


def reference_samples(body: bytes, sample_limit: int, stamped: Stamped | None = None) -> list[Sample]:
    """prometheus_client's parser, family by family: the reference the fast path is tested against.
    `stamped` (when given) gets `(index, timestamp)` for each sample with an explicit timestamp."""
    out: list[Sample] = []
    seen: set[Labels] = set()
    families = text_fd_to_metric_families(_lines(body, sample_limit))  # type: ignore[arg-type]
    while True:  # one family at a time: the parser's samples of a family are dropped once ours are made
        try:
            family = next(families, None)
        except PageError:
            raise
        except Exception as exc:  # the parser raises ValueError, IndexError, ... on garbage
            raise PageError(f"returned text that is not the Prometheus exposition format: {exc}", "parse") from None
        if family is None:
            return out
        for s in family.samples:
            if s.name.endswith(_SKIP_SUFFIXES):
                continue
            try:
                value = float(s.value)
            except OverflowError:  # an integer of hundreds of digits
                raise PageError(f"returned a value too large for a float in series {s.name}", "parse") from None
            sample = Sample(labels_of({**s.labels, NAME: s.name}), value)
            _check(sample, s.name, family.type, seen)
            if stamped is not None and s.timestamp is not None:
                stamped.append((len(out), float(s.timestamp)))
            out.append(sample)


def _lines(body: bytes, sample_limit: int) -> Iterator[str]:
    count = 0
    for number, raw in enumerate(io.BytesIO(body), start=1):
        try:
            line = raw.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise PageError(f"returned a page that is not UTF-8 (line {number}, byte {exc.start + 1})", "parse") from None
        text = line.strip()
        if text and not text.startswith("#"):
            count += 1
            if sample_limit and count > sample_limit:
                raise _limit_error(sample_limit)
        yield line


def _check(sample: Sample, name: str, family_type: str, seen: set[Labels]) -> None:
    if sample.labels in seen:
        raise PageError(f"returned a malformed page: series {_shown(sample, name)} appears twice", "malformed")
    seen.add(sample.labels)
    # NaN passes: a NaN counter is no data, not a reset
    if sample.value < 0 and _monotonic(name, family_type):
        raise PageError(f"returned a malformed page: counter {_shown(sample, name)} is negative ({sample.value:g}); "
                        "a counter never goes below 0, so this is not a counter reset", "malformed")


def _monotonic(name: str, family_type: str) -> bool:
    if family_type in _UNTYPED:
        return name.endswith("_total")
    return any(name.endswith(suffix) for suffix in _MONOTONIC.get(family_type, ()))


def _shown(sample: Sample, name: str) -> str:
    labels = without_name(sample.labels)
    return f"{name}{format_labels(labels) if labels else ''}"



# -- the fast path -------------------------------------------------------------------------------

# A series part whose end the reference finds where we do: a legacy metric name, then labels
# `name="value"` (escapes inside the quotes) separated by commas, then the closing brace.
_HEAD = re.compile(r'([a-zA-Z_:][a-zA-Z0-9_:]*)\{((?:[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*"(?:,[a-zA-Z_][a-zA-Z0-9_]*="(?:[^"\\]|\\.)*")*,?)?)\}')
_LABEL = re.compile(r'([a-zA-Z_][a-zA-Z0-9_]*)="([^"]*)"')  # in a head without backslashes
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_ALLOWED = {"counter": ("",), "gauge": ("",), "untyped": ("",), "unknown": ("",),
            "summary": ("_count", "_sum", ""), "histogram": ("_count", "_sum", "_bucket")}
_SMALL_PAGE = 1 << 20  # decoded whole below this; larger pages line by line (no second copy)
_SKIP = ("skip", "", "")
Relabel = Callable[[Labels], Labels]
# (index in the page's samples, explicit timestamp as the reference reads it: the line's number / 1000)
Stamped = list[tuple[int, float]]
# What a comment line does (`_comment`), for every reader: a fleet's pages repeat the same few
# TYPE and HELP lines (one dict per reader held each target's copies: 0.5 MB at 1,000 targets).
# Bounded: lines up to _COMMENT_KEPT_LENGTH characters, emptied when _COMMENTS_KEPT are held.
_COMMENTS: dict[str, tuple[str, str, str]] = {}
_COMMENTS_KEPT = 4096
_COMMENT_KEPT_LENGTH = 512


class _Unusual(WatchdogError):
    """The fast path does not read this page as the reference would: read it with the reference."""


class _Series:
    """What the fast path keeps of one series part: the reference's name and labels, and the
    label set last made of them (for the sample name the family gave). Once that is made the
    labels are dropped (`None`; ≈ 0.4 KB a series, 11,000 a fleet of 1,000 targets keeps): a
    family that renames the sample reads them again from the line (`_labels_again`)."""

    __slots__ = ("name", "labels", "out_name", "out")

    def __init__(self, name: str, labels: dict[str, str]):
        self.name = sys.intern(name)  # one copy per metric name, not one per series
        self.labels: dict[str, str] | None = labels
        self.out_name = ""
        self.out: Labels = ()


class PageReader:
    """The pages of one target, read into samples; `relabel` maps each series' label set
    (e.g. adds `instance`) and its result is kept with the series part too."""

    def __init__(self, relabel: Relabel | None = None):
        self.relabel = relabel
        self._series: dict[str, _Series] = {}
        # the last page's samples that carry an explicit timestamp: (index in its samples, the
        # reference's timestamp, i.e. the number written / 1000); empty for a page without any
        self.stamped: Stamped = []

    def samples(self, body: bytes, sample_limit: int) -> list[Sample]:
        """The page's samples, as `reference_samples` reads them (relabelled); raises PageError.
        Their explicit timestamps, if any, are in `stamped` afterwards."""
        self.stamped = []
        try:
            return self._fast(body, sample_limit)
        except _Unusual:
            pass
        except PageError as exc:
            if exc.kind == "sample_limit":
                raise
        self._series = {}
        self.stamped = []
        page = reference_samples(body, sample_limit, self.stamped)
        if self.relabel is None:
            return page
        return [Sample(self.relabel(s.labels), s.value) for s in page]

    def _fast(self, body: bytes, sample_limit: int) -> list[Sample]:
        known, comments, relabel = self._series, _COMMENTS, self.relabel
        now: dict[str, _Series] = {}
        seen: set[Labels] = set()
        out: list[Sample] = []
        stamped: Stamped = []
        family, family_type, allowed = "", "untyped", ()  # the reference's state between lines
        rename = False  # a counter family whose samples the reference renames to `<name>_total`
        members = 0  # samples of the current family so far
        count = 0
        for line in _decoded_lines(body):
            line = line.strip()
            if not line:
                continue
            if line[0] == "#":
                action = comments.get(line)
                if action is None:
                    action = _comment(line)
                    if len(line) <= _COMMENT_KEPT_LENGTH:
                        if len(comments) >= _COMMENTS_KEPT:
                            comments.clear()
                        comments[line] = action
                kind, name, typ = action
                if kind == "skip":
                    continue
                if name != family:
                    family, family_type, allowed, members = name, "untyped", (name,), 0
                if kind == "type":
                    if members:  # the reference types the family by its last TYPE line: not ours to guess
                        raise _Unusual()
                    family_type = typ
                    allowed = tuple(name + suffix for suffix in _ALLOWED[typ])
                rename = family_type == "counter" and not family.endswith("_total")
                continue
            count += 1
            if sample_limit and count > sample_limit:
                raise _limit_error(sample_limit)
            series, value, stamp = _sample(line, known, now)
            name = series.name
            if name in allowed:
                members += 1
                sample_type = family_type
                if rename:
                    name += "_total"
            else:  # the reference makes it a family of its own and forgets the current one
                family, family_type, allowed, rename = "", "untyped", (), False
                sample_type = "untyped"
            if name.endswith(_SKIP_SUFFIXES):
                continue
            if series.out_name != name:
                parsed = series.labels if series.labels is not None else _labels_again(line)
                pairs = [*parsed.items(), (NAME, name)]  # as labels_of({**labels, NAME: name})
                pairs.sort()
                labels = tuple(pairs)
                series.out_name, series.out = name, relabel(labels) if relabel is not None else labels
                series.labels = None
            labels = series.out
            if labels in seen or (value < 0 and _monotonic(name, sample_type)):
                raise _Unusual()  # a malformed page: the reference says how
            seen.add(labels)
            if stamp is not None:  # only a line with more than a value after its series part
                stamped.append((len(out), stamp))
            out.append(Sample(labels, value))
        self._series = now
        self.stamped = stamped
        return out


def samples(body: bytes, sample_limit: int) -> list[Sample]:
    """One page, read by a fresh `PageReader` (nothing kept)."""
    return PageReader().samples(body, sample_limit)


def _decoded_lines(body: bytes) -> Iterator[str] | list[str]:
    try:
        if len(body) <= _SMALL_PAGE:
            return body.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        raise _Unusual() from None  # the reference names the line and byte
    return _lines_of(body)


def _lines_of(body: bytes) -> Iterator[str]:
    for raw in io.BytesIO(body):
        try:
            yield raw.decode("utf-8")
        except UnicodeDecodeError:
            raise _Unusual() from None


def _sample(line: str, known: dict[str, _Series],
            now: dict[str, _Series]) -> tuple[_Series, float, float | None]:
    """The series of a sample line, its value and its timestamp (None: none written), as the
    reference's `_parse_sample` reads them. A line without a timestamp never pays for one."""
    brace = line.find("{")
    if brace >= 0:
        end = line.rfind("}") + 1
        head, rest = line[:end], line[end:]
    elif "\t" not in line:
        head, _, rest = line.partition(" ")
    else:
        head, rest = "", ""
    series = now.get(head) or known.get(head)
    if series is None:
        series = _new_series(line, head, rest, brace >= 0)
    now[head] = series
    token = rest.lstrip()
    if not token or len(token) > 24 or " " in token or "\t" in token or "_" in token:
        value, stamp = _value(rest)
        return series, value, stamp
    try:
        return series, float(token), None
    except ValueError:
        raise _Unusual() from None


def _labels_again(line: str) -> dict[str, str]:
    """The labels of a line's series part, read again (its `_Series` dropped them)."""
    labels = _sample(line, {}, {})[0].labels
    assert labels is not None
    return labels


def _new_series(line: str, head: str, rest: str, braces: bool) -> _Series:
    """A series part seen for the first time: its name and labels, as the reference reads them."""
    if not head or not rest:
        return _odd(line)[0]
    if not braces:
        if not _NAME.fullmatch(head):
            return _odd(line)[0]
        return _Series(head, {})
    match = _HEAD.fullmatch(head)
    if match is None:
        if _reference_head_end(line) != len(head):  # e.g. an exemplar `# {trace_id="…"} 0.3` after the value
            raise _Unusual()
        return _odd(line)[0]
    if "\\" in head:  # escapes: the reference unescapes
        return _odd(line)[0]
    inner = match.group(2)
    pairs = _LABEL.findall(inner)
    labels = dict(pairs)
    # No `__` anywhere in the labels' text: no name starts with it (the scan only when one might).
    if len(labels) != len(pairs) or "__" in inner and any(k.startswith("__") for k in labels):
        raise _Unusual()  # a label twice, a reserved name: the reference says what is wrong
    return _Series(match.group(1), labels)


def _reference_head_end(line: str) -> int:
    """Where the reference ends a line's series part: after its labels' first unquoted `}` (the
    fast path cuts at the last `}`, right only when nothing after the labels has one); -1 when
    the reference sees no labels (a `{` only after ` # `)."""
    start = _next_unquoted_char(line, "{")
    if start < 0 or " # " in line[:start]:
        return -1
    end = _next_unquoted_char(line[start:], "}")  # as the reference looks for it
    return start + end + 1 if end >= 0 else -1


def _odd(line: str) -> tuple[_Series, float]:
    """A line of a shape the fast path does not cache: the reference reads it."""
    try:
        parsed = _parse_sample(line)
        return _Series(parsed.name, parsed.labels), float(parsed.value)
    except Exception:  # noqa: BLE001
        raise _Unusual() from None


def _value(rest: str) -> tuple[float, float | None]:
    try:
        value, stamp = _parse_value_and_timestamp(rest)
        return float(value), None if stamp is None else float(stamp)
    except Exception:  # noqa: BLE001
        raise _Unusual() from None


def _comment(line: str) -> tuple[str, str, str]:
    """What a comment line does to the reference's family state: skip, help NAME, type NAME TYPE."""
    parts = _split_quoted(line, None, 3)
    if len(parts) < 2 or parts[1] not in ("TYPE", "HELP"):
        return _SKIP
    if len(parts) < 3:
        raise _Unusual()
    name, quoted = _unquote_unescape(parts[2])
    if quoted or not _is_valid_legacy_metric_name(name):
        raise _Unusual()
    if parts[1] == "HELP":
        return "help", name, ""
    if len(parts) < 4 or parts[3] not in _ALLOWED or (parts[3] == "counter" and name == "_total"):
        raise _Unusual()
    return "type", name, parts[3]


def _limit_error(sample_limit: int) -> PageError:
    return PageError(f"sample limit exceeded: the page has more than {sample_limit} samples "
                     "(sample_limit; the whole scrape is refused, as Prometheus does)", "sample_limit")
