"""The embedded default source: scrape model servers' `/metrics` ourselves.

No Prometheus needed. Each tick scrapes once (or at `scrape_interval`), keeps the samples
for the longest window its rules use, and answers the PromQL subset of `watchdog.promql`
over them. A failed scrape marks every series of that target stale at once, as Prometheus does.

`url` scrapes one target, and its series keep exactly the labels the target exports.
`urls` scrapes several targets concurrently (`concurrency` at a time, 64 by default, so a
fleet of a thousand loopback targets is scraped well within a second), like one Prometheus
job: each target's series
get an `instance` label (`host:port`; a target's own `instance` label is kept as
`exported_instance`). Either way an `up` series per target (1 if its last scrape succeeded,
0 if not; with an `instance` label under `urls`) can be queried, like Prometheus' `up`.
Every scrape of a tick ends by the tick's deadline: a target's timeout is cut to what is left
of the tick's budget, and a target not started by then fails as a timeout. A target that
stalls gives its lane up after its share of the round and times out on its own, so stalling
targets do not cost the healthy ones their tick (`http.scrapeloop`).

A page is read within `max_body` and `timeout` by `http.scrapeloop` (one event loop for all
scrape sources, one kept-alive HTTP/1.1 connection per target, a strict bounded reader; no
thread per scrape) and parsed by the target's `exposition.PageReader`: UTF-8, at most
`sample_limit` samples, and refused whole when malformed (a negative counter, a series twice),
so such a page is no data rather than a counter reset. The reader keeps the parsed, instance-
labelled series of the target's last page, so a page that repeats its series (they all do)
costs a look-up and a float() per line.

Explicit timestamps (`name value 1700000000000`: milliseconds in the Prometheus text format,
seconds in an OpenMetrics page) are honoured as Prometheus' `honor_timestamps: true` does: the
sample is stored at its own time, so a frozen exporter serving an old sample with its old
timestamp is no data once that time is older than the query's lookback or range, a repeated
timestamp is not a new sample (rate() sees one point, not one per scrape), and such a series
gets no stale marker (it fades with the lookback, as in Prometheus). A timestamp more than
`FUTURE_TOLERANCE` ahead of our clock (or not a number) is hostile: the sample is dropped and
counted (`kind="future_timestamp"`), the rest of the page is kept. `honor_timestamps: false`
stores every sample at the scrape's time. A page without timestamps costs nothing more.
"""

from __future__ import annotations

import dataclasses
from bisect import bisect_right
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Iterator
from urllib.parse import SplitResult, urlsplit

from watchdog.clock import StepBack
from watchdog.config.fields import option
from watchdog.clock import rfc3339
from watchdog.errors import PromQLError, QueryError, SourceError
from watchdog.promql import Expr, SeriesStore, evaluate
from watchdog.promql.ast import MatrixSelector, VectorSelector
from watchdog.promql.grouped import evaluate_many
from watchdog.promql.parser import as_tree, parse_kept as parse  # a templated query kept as its skeleton's values
from watchdog.redact import redact_url
from watchdog.text.printable import one_line
from watchdog.samples import NAME, Labels, Sample, format_labels, labels_of, without_name
from watchdog.http import fetch as httpfetch
from watchdog.http.scrapeloop import ScrapeClient, Target as WireTarget
from watchdog.http.transport import HttpFailure
from watchdog.sources import exposition
from watchdog.sources.base import QueryResult, Source, SourceHealth, detached

DEFAULT_CONCURRENCY = 64
ACCEPT = "text/plain;version=0.0.4;q=1,*/*;q=0.1"
UP = "up"
INSTANCE = "instance"
log = logging.getLogger(__name__)
_EXPORTED = "exported_instance"
# How far a sample's own timestamp may lie ahead of our clock (the two hosts' clocks differ a
# little); further ahead, or not a finite number, the sample is dropped as hostile.
FUTURE_TOLERANCE = 60.0
FUTURE = "future_timestamp"  # the source-error kind counting such samples
_OPENMETRICS = "application/openmetrics-text"
# A target's page read: its samples and those with an explicit timestamp (index, seconds)
Page = tuple[list[Sample], exposition.Stamped]


@dataclass(frozen=True)
class ScrapeOptions:
    url: str | None = option(None, help="the model server's Prometheus text endpoint (or urls: for several)")
    urls: list[str] = option(default_factory=list,
                             help="several endpoints, scraped concurrently; series get an instance label (host:port)")
    timeout: float = option(2.0, duration=True, help="per scrape: connect, headers and the whole page")
    concurrency: int = option(DEFAULT_CONCURRENCY, help="urls: most scrapes in flight at once")
    scrape_interval: float | None = option(None, duration=True, help="scrape at most this often (default: every tick)")
    headers: dict[str, str] = option(default_factory=dict, secret_values=True, help="extra request headers")
    verify_tls: bool = option(True, help="verify the server's TLS certificate")
    ca_file: str | None = option(None, help="CA bundle for the server's certificate")
    max_body: int = option(httpfetch.MAX_BODY, size=True,
                           help="largest page accepted, after decompression (e.g. 32MiB); a larger one fails the scrape")
    sample_limit: int = option(50_000, help="most samples a page may have (0: no limit); "
                                            "more fail the whole scrape, as in Prometheus")
    honor_timestamps: bool = option(True, help="store a sample with an explicit timestamp at that time, as "
                                               "Prometheus' honor_timestamps (false: at the scrape's time)")


class PartialScrapeError(SourceError):
    """Some targets of a multi-target source failed, others answered."""

    partial = True


@dataclass
class _Target:
    url: str
    instance: str  # "" for a single `url` source: its series get no instance label
    wire: WireTarget | None = field(default=None, repr=False)  # its request and kept-alive connection
    last_error: str = ""
    last_success: float | None = None
    scraped: bool = field(default=False)
    up_labels: Labels = ()  # its `up` series, made once
    # reads its pages, keeping the parsed (and instance-labelled) series of the last one
    reader: exposition.PageReader = field(default_factory=exposition.PageReader, repr=False)

    @property
    def where(self) -> str:
        return redact_url(self.url)


class ScrapeSource(Source):
    Options = ScrapeOptions
    # per target (instance), by metric name: the explicit timestamp of each of its series that
    # had one on its last page, to say why a query over them is empty (only the series of the
    # query's metric names are looked at); made on the first timestamped page
    _stamps: dict[str, dict[str, dict[Labels, float]]] | None = None

    def __init__(self, name: str, options: ScrapeOptions):
        super().__init__(name, options)
        self.targets, split = _targets(options)
        httpfetch.auth_headers(options.headers, None)  # registers header values as secrets
        # As Prometheus: no proxy or CA bundle from the environment.
        self._client = ScrapeClient(verify_tls=options.verify_tls, ca_file=options.ca_file,
                                    headers=options.headers, accept=ACCEPT)
        for target, parts in zip(self.targets, split):
            try:
                target.wire = self._client.target(target.url, parts)
            except ValueError as exc:
                raise ValueError(f"cannot scrape {target.where}: {exc}") from None
        self._fresh_store()
        self._parsed: dict[str, Expr] = {}
        self._retention = 300.0
        self._last_scrape: float | None = None
        self._busy = threading.Lock()
        self._first_success: float | None = None
        self._last_success: float | None = None
        self._last_error = ""

    def _fresh_store(self) -> None:
        """An empty store, and the targets' page readers relabelling into it."""
        self.store = SeriesStore()
        intern = self.store.intern
        for target in self.targets:  # a relabelled label set is the store's own copy: held once, not per page
            if target.instance:
                target.reader = exposition.PageReader(
                    relabel=lambda labels, instance=target.instance: intern(_labelled(labels, instance)))

    # -- queries ---------------------------------------------------------------------------------

    def _expr(self, query: str) -> Expr:
        expr = self._parsed.get(query)
        if expr is None:
            expr = parse(query)
            self._parsed[query] = expr
            self._retention = max(self._retention, expr.max_range() + 60.0)
        return expr

    def retain(self, seconds: float) -> None:
        self._retention = max(self._retention, seconds + 60.0)

    def check_query(self, query: str) -> None:
        self._expr(query)

    def window_of(self, query: str) -> float:
        try:
            return self._expr(query).max_range()
        except QueryError:
            return 0.0

    def query(self, query: str, now: float) -> QueryResult:
        note = f"last scrape failed: {self._last_error}" if self._last_error else ""
        expr = self._expr(query)
        return self._explained(expr, answer(self.name, expr, self.store, now, self._first_success, note), now)

    def query_many(self, queries: list[str], now: float) -> Iterator[tuple[int, QueryResult | QueryError]]:
        """A tick's queries at once (the runner's batch for in-process sources): the answer or
        error `query` gives for each, those of one template evaluated as one (promql.grouped)."""
        note = f"last scrape failed: {self._last_error}" if self._last_error else ""
        exprs, index = [], []
        for i, query in enumerate(queries):
            try:
                exprs.append(self._expr(query))
                index.append(i)
            except QueryError as exc:
                yield i, detached(exc)
        for j, found in evaluate_many(exprs, self.store, now):
            yield index[j], self._explained(exprs[j], _result(self.name, exprs[j], found, now, self._first_success,
                                                              note), now)

    def _explained(self, expr: Expr, result: QueryResult | QueryError, now: float) -> QueryResult | QueryError:
        """An empty answer whose series carry timestamps too old for the query's windows says so."""
        if not self._stamps or not isinstance(result, QueryResult) or result.samples:
            return result
        tree = as_tree(expr)
        stale = _stale(tree, self.store.lookback, self._stamps.values(), now) or self._alone(tree, now)
        if not stale:
            return result
        return dataclasses.replace(result, note=f"{result.note}; {stale}" if result.note else stale)

    def _alone(self, expr: Expr, now: float) -> str:
        """A range of an empty answer holding one point of a series with its own timestamps
        (the target served no newer one since): a rate needs two."""
        stamps = self._stamps or {}
        for selector, span in _selectors(expr, 0.0):
            if not span:
                continue  # an instant selector: _stale's business
            for labels, points in self.store.window(selector.all_matchers, now - span, now):
                name = dict(labels).get(NAME, "")
                if len(points) == 1 and any(labels in kept.get(name, ()) for kept in stamps.values()):
                    t = points[0][0]
                    return (f"one sample in the query's {span:g} s window: the target's own timestamp "
                            f"{rfc3339(t)} ({now - t:.0f} s old) has not advanced since, and a rate needs two")
        return ""

    # -- scraping --------------------------------------------------------------------------------

    def begin_tick(self, now: float) -> SourceError | None:
        return self.begin_tick_within(now, float("inf"))  # no tick's deadline: each scrape's own timeout

    _steps: StepBack | None = None  # the wall clock's steps: the daemon's (share_steps), else its own
    _own_steps = True
    _step_mark = 0

    def share_steps(self, steps: StepBack) -> None:
        """The wall clock's steps as the daemon sees them (the source runner hands them over)."""
        self._steps, self._own_steps, self._step_mark = steps, False, steps.epoch

    def _stepped_back(self, now: float) -> bool:
        """Whether a tick since the last one took a step back of the wall clock (on its own,
        without a runner: one of its ticks earlier than the one before)."""
        if self._steps is None:
            self._steps = StepBack()
        if self._own_steps:
            self._steps.observe(now)
        stepped, self._step_mark = self._steps.taken(self._step_mark)
        return any(step < 0 for step in stepped)

    def begin_tick_within(self, now: float, deadline: float) -> SourceError | None:
        interval = self.options.scrape_interval
        if self._stepped_back(now) and self._last_scrape is not None and now < self._last_scrape:
            # The wall clock stepped back: the samples held lie in its future, and every new one
            # would be dropped as out of order until it caught up. Start afresh (windows warm up).
            log.warning("source %s: the clock stepped back %.1f s: its samples are dropped and gathered anew",
                        self.name, self._last_scrape - now)
            self._fresh_store()
            self._last_scrape = self._first_success = None
        if interval and self._last_scrape is not None and now - self._last_scrape < interval * 0.999:
            return None
        self._last_scrape = now
        outcomes = self._scrape_all(deadline)
        failures: list[tuple[_Target, SourceError]] = []
        dropped: list[str] = []  # per target: samples dropped for a timestamp in the future
        for target, outcome in zip(self.targets, outcomes):
            if isinstance(outcome, SourceError):
                failures.append((target, outcome))
                target.last_error = str(outcome)
                # only `up 0` remains of this target: every other series of it goes stale now
                self.store.append_scrape(now, [self._up(target, 0.0)], target=target.instance)
                continue
            page, stamped = outcome
            if stamped and self.options.honor_timestamps:
                page, hostile = self._store_stamped(target, page, stamped, now)
                if hostile:
                    dropped.append(hostile)
            elif self._stamps and target.instance in self._stamps:
                del self._stamps[target.instance]  # its page has no timestamps any more
            self.store.append_scrape(now, [*page, self._up(target, 1.0)], target=target.instance)
            target.last_error, target.last_success = "", now
        self.store.prune(self._retention, now)
        if len(failures) < len(self.targets):
            self._last_success = now
            if self._first_success is None:
                self._first_success = now
        self._last_error = "; ".join(str(e) if len(self.targets) == 1 else f"{t.instance}: {e}" for t, e in failures)
        if not failures:
            return PartialScrapeError("; ".join(dropped), FUTURE) if dropped else None
        if len(self.targets) == 1:
            return failures[0][1]
        message = f"{len(failures)} of {len(self.targets)} targets failed: {self._last_error}"
        if dropped:
            message += "; " + "; ".join(dropped)
        if len(failures) < len(self.targets):
            return PartialScrapeError(message, failures[0][1].kind)
        return SourceError(message, failures[0][1].kind)

    def _store_stamped(self, target: _Target, page: list[Sample], stamped: exposition.Stamped,
                       now: float) -> tuple[list[Sample], str]:
        """Store the page's samples that carry a timestamp at that time (one at or before its
        series' last point is not a new sample: the store drops it) and return the others, for
        the scrape's time; a timestamp too far ahead drops its sample. Also a message on those
        dropped ("" if none): label values escaped, as everything a target sends."""
        latest, oldest = now + FUTURE_TOLERANCE, now - max(self._retention, self.store.lookback)
        points: list[tuple[Labels, float, float]] = []
        kept: dict[str, dict[Labels, float]] = {}
        hostile: list[tuple[Sample, float]] = []
        for i, ts in stamped:
            sample = page[i]
            if not math.isfinite(ts) or ts > latest:
                hostile.append((sample, ts))
                continue
            kept.setdefault(sample.label(NAME) or "", {})[sample.labels] = ts
            if ts > oldest:  # an older one would only be pruned at once
                points.append((sample.labels, ts, sample.value))
        self.store.append_stamped(points)
        if self._stamps is None:
            self._stamps = {}
        self._stamps[target.instance] = kept
        at = {i for i, _ in stamped}
        return [s for i, s in enumerate(page) if i not in at], _hostile(target, hostile, now)

    def _scrape_all(self, deadline: float) -> list[Page | SourceError]:
        # One round at a time: a round the runner gave up on may still be running, and it uses
        # the same connections and page readers. The next one waits for it within its own time.
        timeout = self.options.timeout
        shown = min(timeout, deadline - time.monotonic())  # the longest a scrape of this round may take
        if not self._busy.acquire(timeout=max(shown, 0.0)):
            return [SourceError(f"scrape of {t.where} not started: the previous scrape of this source is still "
                                "running", "timeout") for t in self.targets]
        try:
            return self._round(deadline, timeout, shown)
        finally:
            self._busy.release()

    def _round(self, deadline: float, timeout: float, shown: float) -> list[Page | SourceError]:
        """Each target's samples or error; its page read as soon as it comes, while the loop
        thread still waits on other targets."""
        wired = [t for t in self.targets if t.wire is not None]
        outcomes: list[Page | SourceError | None] = [None] * len(wired)
        answers = self._client.fetch_each([t.wire for t in wired if t.wire is not None], timeout=timeout,
                                           deadline=deadline, concurrency=self.options.concurrency,
                                           max_body=self.options.max_body)
        try:
            for i, answer in answers:
                outcomes[i] = self._outcome(wired[i], answer, shown)
        finally:
            answers.close()  # on a failure here: the round is over before `_busy` lets the next one in
        return [self._outcome(target, None, shown) if outcome is None else outcome
                for target, outcome in zip(self.targets, outcomes)]

    def _outcome(self, target: _Target, answer: httpfetch.Fetched | HttpFailure | None,
                 timeout: float) -> Page | SourceError:
        if answer is None:
            return SourceError(f"scrape of {target.where} not started: the tick's time for scraping ran out "
                               f"({len(self.targets)} targets, concurrency {self.options.concurrency})", "timeout")
        try:
            if isinstance(answer, HttpFailure):
                raise httpfetch.source_error(answer, f"scrape of {target.where}", timeout, self.options.max_body)
            return self._parse(answer, target)
        except SourceError as exc:
            return detached(exc)

    def _parse(self, response: httpfetch.Fetched, target: _Target) -> Page:
        if response.status_code != 200:
            raise SourceError(f"{target.where} answered HTTP {response.status_code}{httpfetch.body_hint(response)}",
                              httpfetch.status_kind(response.status_code))
        if httpfetch.is_html(response):
            raise httpfetch.html_error(response, target.where, "metrics")
        reader = target.reader
        try:
            page = reader.samples(response.content, self.options.sample_limit)
        except exposition.PageError as exc:
            raise SourceError(f"{target.where} {exc}", exc.kind) from None
        stamped = reader.stamped
        if stamped and response.headers.get("Content-Type", "").lower().startswith(_OPENMETRICS):
            stamped = [(i, ts * 1000.0) for i, ts in stamped]  # OpenMetrics writes seconds, not milliseconds
        return page, stamped

    def _up(self, target: _Target, value: float) -> Sample:
        if not target.up_labels:
            target.up_labels = labels_of({NAME: UP, INSTANCE: target.instance} if target.instance else {NAME: UP})
        return Sample(target.up_labels, value)

    def health(self) -> SourceHealth:
        details: dict[str, Any]
        if len(self.targets) == 1:
            details = {"url": self.targets[0].where}
        else:
            details = {"targets": {t.instance: {"url": t.where, "up": not t.last_error and t.last_success is not None,
                                                "last_error": t.last_error} for t in self.targets}}
        return SourceHealth(up=not self._last_error and self._last_success is not None,
                            last_success=self._last_success, last_error=self._last_error, details=details)

    def close(self) -> None:
        self._client.close()


def _labelled(labels: Labels, instance: str) -> Labels:
    """A target's series under `urls`: its `instance` label kept as `exported_instance`, ours added.
    A page's label set (sorted, no name twice, neither of those two names: nearly always) gets
    ours inserted in its place; any other goes the reference way (`_relabelled`)."""
    out = sorted(labels)
    names = [name for name, _ in out]
    if INSTANCE in names or _EXPORTED in names or len(set(names)) != len(names):
        return _relabelled(labels, instance)
    out.insert(bisect_right(names, INSTANCE), (INSTANCE, instance))  # names sorted: before the first one after it
    return tuple(out)


def _relabelled(labels: Labels, instance: str) -> Labels:
    """`_labelled`, the reference (tests/sources/test_scrape_source.py compares the two).
    As Prometheus: when the page has an `exported_instance` too, `exported_` is prefixed again
    until the name is free (two series must not become one)."""
    relabelled = dict(labels)
    exposed = relabelled.pop(INSTANCE, None)
    if exposed is not None:
        name = _EXPORTED
        while name in relabelled:
            name = "exported_" + name
        relabelled[name] = exposed
    relabelled[INSTANCE] = instance
    return labels_of(relabelled)


def _hostile(target: _Target, dropped: list[tuple[Sample, float]], now: float) -> str:
    if not dropped:
        return ""
    sample, ts = dropped[0]
    name = sample.label(NAME) or ""
    labels = without_name(sample.labels)
    shown = one_line(name) + (format_labels(labels) if labels else "")
    when = f"{ts - now:.0f} s ahead of our clock" if math.isfinite(ts) else f"{ts!r}, not a time"
    return (f"{target.where}: {len(dropped)} samples dropped, their timestamps more than {FUTURE_TOLERANCE:g} s "
            f"in the future or not a time (e.g. {shown}: {when}); the target's clock or exporter is wrong")


def _stale(expr: Expr, lookback: float, stamps: Iterable[dict[str, dict[Labels, float]]], now: float) -> str:
    """'stale: last sample timestamp …' when the newest own timestamp of the series an empty
    query selects is older than the window it is read in (the lookback, or a range), else ""."""
    newest: float | None = None
    window = 0.0
    for selector, span in _selectors(expr, lookback):
        matchers = selector.all_matchers
        for named in stamps:  # a written name: its series only, not every stamped one of the target
            for series in ((named.get(selector.name) or {},) if selector.name is not None else named.values()):
                for labels, ts in series.items():
                    if ts <= now - span and (newest is None or ts > newest) and _matches(matchers, labels):
                        newest, window = ts, span
    if newest is None:
        return ""
    return (f"stale: last sample timestamp {rfc3339(newest)}, {now - newest:.0f} s old (the target's own "
            f"timestamp; older than the query's {window:g} s window, so no data)")


def _selectors(expr: Expr, lookback: float) -> Iterator[tuple[VectorSelector, float]]:
    if isinstance(expr, MatrixSelector):
        yield expr.selector, expr.range
    elif isinstance(expr, VectorSelector):
        yield expr, lookback
    else:
        for child in expr.children():
            yield from _selectors(child, lookback)


def _matches(matchers: tuple[Any, ...], labels: Labels) -> bool:
    values = dict(labels)
    return all(m.matches(values.get(m.name, "")) for m in matchers)


def _targets(options: ScrapeOptions) -> tuple[list[_Target], list[SplitResult]]:
    """The targets, and each one's `urlsplit` of its URL (split once: at a thousand URLs,
    urlsplit's own cache of 128 never hits)."""
    if (options.url is None) == (not options.urls):
        raise ValueError("give exactly one of url (one target) or urls (several targets)")
    if options.timeout <= 0:
        raise ValueError("timeout must be greater than 0")
    if options.concurrency < 1:
        raise ValueError("concurrency must be at least 1")
    if options.max_body <= 0:
        raise ValueError("max_body must be greater than 0")
    if options.sample_limit < 0:
        raise ValueError("sample_limit must not be negative (0: no limit)")
    urls = [options.url] if options.url is not None else list(options.urls)
    split = [urlsplit(url) for url in urls]
    for url, parts in zip(urls, split):
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"scrape URL must be http:// or https:// with a host, got {redact_url(url)!r}")
    if options.url is not None:
        return [_Target(url=options.url, instance="")], split
    targets = [_Target(url=u, instance=parts.netloc.rpartition("@")[2]) for u, parts in zip(urls, split)]
    seen: dict[str, str] = {}
    for t in targets:
        if t.instance in seen:
            raise ValueError(f"urls {redact_url(seen[t.instance])} and {t.where} have the same instance "
                             f"{t.instance}; scrape each host:port once")
        seen[t.instance] = t.url
    return targets, split


def answer(name: str, expr: Expr, store: SeriesStore, now: float, data_since: float | None, note: str = "") -> QueryResult:
    """Evaluate `expr` over samples we hold ourselves; the result is "warming up" while the
    store has not yet held data for as long as the expression's longest window."""
    try:
        samples = evaluate(expr, store, now)
    except PromQLError as exc:
        raise QueryError(f"source {name}: {exc.message}") from exc
    result = _result(name, expr, samples, now, data_since, note)
    assert isinstance(result, QueryResult)
    return result


def _result(name: str, expr: Expr, found: list[Sample] | PromQLError, now: float, data_since: float | None,
            note: str) -> QueryResult | QueryError:
    if isinstance(found, PromQLError):
        return QueryError(f"source {name}: {found.message}")
    window = expr.max_range()
    warming = window > 0 and (data_since is None or now - data_since < window)
    return QueryResult(samples=found, warming_up=warming, note=note)
