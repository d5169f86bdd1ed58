"""Read numbers out of any JSON HTTP endpoint with JMESPath (https://jmespath.org).

The endpoint is fetched at most once per tick, on the first query of the tick, and every
rule of the source evaluates its JMESPath expression (the rule's `query`) over that one
document. What the expression yields becomes series:

    a number                     one unlabelled series
    null / []                    no series (no data)
    an object with "value"       one series; its other scalar fields are labels
    a list of such objects       one series each (labels must differ between them)
    a list of exactly one number one unlabelled series (what filters like `models[?name=='x'].p99` give)
    a list of several numbers    error: ambiguous — select one (`[0]`), aggregate (`max(@)`) or
                                 project objects (`models[*].{model: name, value: p99}`)
    anything else                SourceError kind "type" (a string, a bool, an object without "value")

An object's "value" may be null (no data for that series, judged as NaN); an optional numeric
"samples" field is the series' sample count for `min_samples` (QueryResult.counts).
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass
from typing import Any, Literal

import jmespath
import jmespath.exceptions

from watchdog import redact
from watchdog.config.fields import option
from watchdog.config.yamlnodes import Node
from watchdog.errors import QueryError, SourceError
from watchdog.http.client import HttpOptions, check_options
from watchdog.samples import Labels, Sample, labels_of
from watchdog.http import fetch as httpfetch
from watchdog.sources import jsonlimits
from watchdog.sources.base import QueryResult, Source, SourceHealth

VALUE, SAMPLES = "value", "samples"
VALUE_LIMIT = 500_000
SERIES_LIMIT = 10_000


@dataclass(frozen=True)
class HttpJsonOptions(HttpOptions):
    url: str = option(help="http(s) URL that answers JSON")
    method: Literal["GET", "POST"] = option("GET", help="HTTP method")
    body: Node | None = option(None, help="POST body: a YAML mapping or list (sent as JSON), or a string of JSON text")
    timeout: float = option(10.0, duration=True, help="per request")
    retries: int = option(2, help="attempts after the first on timeouts, network errors and 5xx (within the tick)")
    backoff: float = option(0.5, duration=True, help="first pause between attempts; doubles each time")
    bearer_token: str | None = option(None, secret=True, help="sent as Authorization: Bearer; or bearer_token_file: PATH")
    max_body: int = option(httpfetch.MAX_BODY, size=True,
                           help="largest answer accepted, after decompression (e.g. 32MiB); a larger one is no data")
    value_limit: int = option(VALUE_LIMIT, help="most JSON values the answer may hold: objects, arrays, keys, "
                              "strings, numbers (0: no limit); counted before it is decoded, a larger one is no data")
    series_limit: int = option(SERIES_LIMIT, help="most series one rule's JMESPath may give (0: no limit)")


class HttpJsonSource(Source):
    Options = HttpJsonOptions

    def __init__(self, name: str, options: HttpJsonOptions):
        check_options(options)
        if options.max_body <= 0:
            raise ValueError("max_body must be greater than 0")
        for key in ("value_limit", "series_limit"):
            if getattr(options, key) < 0:
                raise ValueError(f"{key} must not be negative (0: no limit)")
        httpfetch.check_auth(options.headers, options.bearer_token)
        super().__init__(name, options)
        self.where = redact.redact_url(options.url)
        self._body = _body_text(options.body)
        if self._body is not None and options.method == "GET":
            raise ValueError("body is sent only with method: POST")
        self._headers = {"Accept": "application/json", **httpfetch.auth_headers(options.headers, options.bearer_token)}
        if self._body is not None:
            self._headers["Content-Type"] = "application/json"
        self._compiled: dict[str, Any] = {}
        self._session: httpfetch.Transport | None = None
        self._tick: float | None = None
        # This tick's document, or its failure and the query whose fetch failed (that query
        # asking again is a retry and fetches again; other queries fail fast with the same error).
        self._document: Any = None
        self._failure: tuple[SourceError, str] | None = None
        self._fetched = False
        self._last_success: float | None = None
        self._last_error = ""

    def check_query(self, query: str) -> None:
        self._expression(query)

    def _expression(self, query: str) -> Any:
        compiled = self._compiled.get(query)
        if compiled is None:
            try:
                compiled = jmespath.compile(query)
            except jmespath.exceptions.EmptyExpressionError:
                raise QueryError("empty JMESPath expression") from None
            except jmespath.exceptions.JMESPathError as exc:
                position = getattr(exc, "lex_position", None)
                at = f" at column {position + 1}" if isinstance(position, int) else ""
                message = getattr(exc, "msg", None) or str(exc).splitlines()[0]
                raise QueryError(f"invalid JMESPath{at}: {message}", position) from None
            self._compiled[query] = compiled
        return compiled

    def begin_tick(self, now: float) -> SourceError | None:
        self._tick, self._fetched, self._failure, self._document = now, False, None, None
        return None  # fetched lazily on the first query, so an unused source costs nothing

    def query(self, query: str, now: float) -> QueryResult:
        expression = self._expression(query)
        if self._tick is None:  # called without begin_tick: start a tick of our own
            self.begin_tick(now)
        elif now < self._tick - 1.0:
            raise QueryError(f"source {self.name}: http_json reads the endpoint's current answer and cannot "
                             "answer for an earlier time (a compare baseline with an offset)")
        document = self._fetch(query, now)
        try:
            found = expression.search(document)
        except jmespath.exceptions.JMESPathError as exc:  # e.g. a function given the wrong type
            raise SourceError(f"{self.where}: JMESPath {query!r} failed on the response: {exc}", "type") from None
        return self._result(found, query)

    def _fetch(self, query: str, now: float) -> Any:
        if self._failure is not None:
            error, failed_query = self._failure
            if failed_query != query:
                raise SourceError(f"{error} (this tick's fetch)", error.kind)
        elif self._fetched:
            return self._document
        try:
            self._document = self._get()
        except SourceError as exc:
            self._failure, self._last_error = (exc, query), str(exc)
            raise
        self._fetched, self._failure = True, None
        self._last_success, self._last_error = now, ""
        return self._document

    def _get(self) -> Any:
        options = self.options
        if self._session is None:
            self._session = httpfetch.make_session(options.verify_tls, options.ca_file)
        response = httpfetch.request(self._session, options.method, options.url, timeout=options.timeout,
                                     max_body=options.max_body, what=options.method, headers=self._headers,
                                     data=self._body)
        if httpfetch.is_html(response):
            raise httpfetch.html_error(response, self.where, "JSON")
        if response.status_code >= 300:
            hint = " (check bearer_token or headers)" if response.status_code in (401, 403) else ""
            raise SourceError(f"{options.method} {self.where} answered HTTP {response.status_code}"
                              f"{httpfetch.body_hint(response)}{hint}", httpfetch.status_kind(response.status_code))
        return jsonlimits.load_values(response, self.where, options.value_limit)

    # -- JMESPath result → series ----------------------------------------------------------------

    def _result(self, found: Any, query: str) -> QueryResult:
        if found is None:
            return QueryResult([], note=f"JMESPath {query!r} found nothing (null)")
        if _is_number(found):
            return QueryResult([Sample((), float(found))])
        if isinstance(found, dict):
            found = [found]
        if not isinstance(found, list):
            raise self._type_error(query, found, "a number, an object with \"value\" or a list of such objects")
        if not found:
            return QueryResult([])
        limit = self.options.series_limit
        if limit and len(found) > limit:
            raise SourceError(f"{self.where}: JMESPath {query!r} gave {len(found)} items, more than series_limit "
                              f"{limit} (raise the source's series_limit if that is expected)", "series_limit")
        if all(_is_number(x) for x in found):
            if len(found) == 1:
                return QueryResult([Sample((), float(found[0]))])
            raise SourceError(f"{self.where}: JMESPath {query!r} gave {len(found)} numbers, which is ambiguous: "
                              "select one ([0]), aggregate (max(@)) or project objects with labels "
                              "(items[*].{name: name, value: v})", "type")
        samples: list[Sample] = []
        counts: dict[Labels, float] = {}
        for index, item in enumerate(found):
            sample, count = self._series(item, index, query)
            if any(s.labels == sample.labels for s in samples):
                raise SourceError(f"{self.where}: JMESPath {query!r}: items have the same labels "
                                  f"{dict(sample.labels)}; add a field that tells them apart", "type")
            samples.append(sample)
            if count is not None:
                counts[sample.labels] = count
        return QueryResult(samples, counts=counts or None)

    def _series(self, item: Any, index: int, query: str) -> tuple[Sample, float | None]:
        if not isinstance(item, dict):
            raise self._type_error(query, item, f"an object with \"value\" (item {index})")
        if VALUE not in item:
            raise SourceError(f"{self.where}: JMESPath {query!r}: item {index} has no \"value\" field "
                              f"(fields: {', '.join(sorted(map(str, item))) or 'none'})", "type")
        value = item[VALUE]
        if value is not None and not _is_number(value):
            raise self._type_error(query, value, f"a number in \"value\" of item {index}")
        count = item.get(SAMPLES)
        if count is not None and not _is_number(count):
            raise self._type_error(query, count, f"a number in \"samples\" of item {index}")
        labels = labels_of({k: _label(v) for k, v in item.items()
                            if k not in (VALUE, SAMPLES) and v is not None and not isinstance(v, (dict, list))})
        return Sample(labels, math.nan if value is None else float(value)), (None if count is None else float(count))

    def _type_error(self, query: str, found: Any, expected: str) -> SourceError:
        shown = json.dumps(found)[:80]
        return SourceError(f"{self.where}: JMESPath {query!r} gave {_json_type(found)} {shown}, expected {expected}",
                           "type")

    def health(self) -> SourceHealth:
        return SourceHealth(up=not self._last_error, last_success=self._last_success, last_error=self._last_error,
                            details={"url": self.where})

    def close(self) -> None:
        if self._session is not None:
            self._session.close()
            self._session = None


def _body_text(body: Any) -> str | None:
    if isinstance(body, Node):
        body = body.plain()
    if body is None:
        return None
    if isinstance(body, str):
        try:
            json.loads(body)
        except ValueError as exc:
            raise ValueError(f"body is not valid JSON: {exc}") from None
        return body
    try:
        return json.dumps(body)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"body cannot be sent as JSON: {exc}") from None


def _is_number(x: Any) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool)


def _label(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, float) and v.is_integer():
        return str(int(v))
    return str(v)


def _json_type(x: Any) -> str:
    if isinstance(x, bool):
        return "a boolean"
    if isinstance(x, str):
        return "a string"
    if isinstance(x, list):
        return "a list"
    if isinstance(x, dict):
        return "an object"
    if x is None:
        return "null"
    return "a number"
