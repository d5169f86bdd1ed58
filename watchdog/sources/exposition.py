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
"""

from __future__ import annotations

import io
from typing import Iterator

from prometheus_client.parser import text_fd_to_metric_families

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


def samples(body: bytes, sample_limit: int) -> list[Sample]:
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
            sample = Sample(labels_of({**s.labels, NAME: s.name}), float(s.value))
            _check(sample, s.name, family.type, seen)
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
                raise PageError(f"sample limit exceeded: the page has more than {sample_limit} samples "
                                "(sample_limit; the whole scrape is refused, as Prometheus does)", "sample_limit")
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
