"""The embedded default source: scrape a model server's `/metrics` ourselves.

No Prometheus needed. Each tick scrapes once (or at `scrape_interval`), keeps the samples
for the longest window its rules use, and answers the PromQL subset of `watchdog.promql`
over them. A failed scrape marks every series stale at once, as Prometheus does.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import requests
from prometheus_client.parser import text_string_to_metric_families

from watchdog.config.fields import option
from watchdog.errors import PromQLError, QueryError, SourceError
from watchdog.promql import Expr, SeriesStore, evaluate, parse
from watchdog.redact import redact, redact_url
from watchdog.samples import NAME, Sample, labels_of
from watchdog.sources.base import QueryResult, Source, SourceHealth

_MAX_BODY = 32 * 1024 * 1024
# prometheus_client servers export a `*_created` series per counter/histogram; it is not a
# measurement, and keeping it would only cost memory.
_SKIP_SUFFIXES = ("_created",)


@dataclass(frozen=True)
class ScrapeOptions:
    url: str = option(help="the model server's Prometheus text endpoint")
    timeout: float = option(2.0, duration=True, help="per scrape")
    scrape_interval: float | None = option(None, duration=True, help="scrape at most this often (default: every tick)")
    headers: dict[str, str] = option(default_factory=dict, secret_values=True, help="extra request headers")
    verify_tls: bool = option(True, help="verify the server's TLS certificate")
    ca_file: str | None = option(None, help="CA bundle for the server's certificate")


class ScrapeSource(Source):
    Options = ScrapeOptions

    def __init__(self, name: str, options: ScrapeOptions):
        super().__init__(name, options)
        self.store = SeriesStore()
        self._parsed: dict[str, Expr] = {}
        self._retention = 300.0
        self._session: requests.Session | None = None
        self._last_scrape: float | None = None
        self._first_success: float | None = None
        self._last_success: float | None = None
        self._last_error = ""

    # -- queries ---------------------------------------------------------------------------------

    def _expr(self, query: str) -> Expr:
        expr = self._parsed.get(query)
        if expr is None:
            expr = parse(query)
            self._parsed[query] = expr
            self._retention = max(self._retention, expr.max_range() + 60.0)
        return expr

    def check_query(self, query: str) -> None:
        self._expr(query)

    def window_of(self, query: str) -> float:
        try:
            return self._expr(query).max_range()
        except QueryError:
            return 0.0

    def query(self, query: str, now: float) -> QueryResult:
        expr = self._expr(query)
        try:
            samples = evaluate(expr, self.store, now)
        except PromQLError as exc:
            raise QueryError(f"source {self.name}: {exc.message}") from exc
        window = expr.max_range()
        warming = window > 0 and (self._first_success is None or now - self._first_success < window)
        note = f"last scrape failed: {self._last_error}" if self._last_error else ""
        return QueryResult(samples=samples, warming_up=warming, note=note)

    # -- scraping --------------------------------------------------------------------------------

    def begin_tick(self, now: float) -> SourceError | None:
        interval = self.options.scrape_interval
        if interval and self._last_scrape is not None and now - self._last_scrape < interval * 0.999:
            return None
        self._last_scrape = now
        try:
            samples = self._scrape()
        except SourceError as exc:
            self.store.mark_stale(now)
            self._last_error = str(exc)
            return exc
        self.store.append_scrape(now, samples)
        self.store.prune(self._retention, now)
        self._last_error = ""
        self._last_success = now
        if self._first_success is None:
            self._first_success = now
        return None

    def _scrape(self) -> list[Sample]:
        where = redact_url(self.options.url)
        try:
            response = self._http().get(self.options.url, timeout=self.options.timeout,
                                        headers={"Accept": "text/plain;version=0.0.4;q=1,*/*;q=0.1",
                                                 **self.options.headers})
        except requests.Timeout:
            raise SourceError(f"scrape of {where} timed out after {self.options.timeout:g}s", "timeout") from None
        except requests.ConnectionError as exc:
            raise SourceError(f"cannot connect to {where}: {_reason(exc)}", "connection") from None
        except requests.RequestException as exc:
            raise SourceError(f"scrape of {where} failed: {redact(str(exc))}", "http") from None
        return self._parse(response, where)

    def _parse(self, response: requests.Response, where: str) -> list[Sample]:
        content_type = response.headers.get("Content-Type", "")
        if response.status_code != 200:
            raise SourceError(f"{where} answered HTTP {response.status_code}{_body_hint(response)}", f"http_{response.status_code // 100}xx")
        if "html" in content_type.lower() or response.text.lstrip()[:15].lower().startswith(("<!doctype", "<html")):
            raise SourceError(f"{where} returned an HTML page instead of metrics (Content-Type {content_type or 'none'})", "parse")
        if len(response.content) > _MAX_BODY:
            raise SourceError(f"{where} returned {len(response.content)} bytes, more than the {_MAX_BODY} accepted", "parse")
        try:
            return list(_samples(response.text))
        except Exception as exc:  # the parser raises ValueError, IndexError, ... on garbage
            raise SourceError(f"{where} returned text that is not the Prometheus exposition format: {exc}", "parse") from None

    def _http(self) -> requests.Session:
        if self._session is None:
            session = requests.Session()
            session.verify = self.options.ca_file or self.options.verify_tls
            self._session = session
        return self._session

    def health(self) -> SourceHealth:
        return SourceHealth(up=not self._last_error and self._last_success is not None,
                            last_success=self._last_success, last_error=self._last_error,
                            details={"url": redact_url(self.options.url)})

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


def _samples(text: str) -> Any:
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            if s.name.endswith(_SKIP_SUFFIXES):
                continue
            yield Sample(labels_of({**s.labels, NAME: s.name}), float(s.value))


def _reason(exc: Exception) -> str:
    text = str(exc)
    for marker in ("Connection refused", "Name or service not known", "timed out", "Connection reset",
                   "Remote end closed connection"):
        if marker in text:
            return marker.lower()
    return redact(text[:200])


def _body_hint(response: requests.Response) -> str:
    body = " ".join(response.text[:200].split())
    return f": {redact(body)}" if body else ""
