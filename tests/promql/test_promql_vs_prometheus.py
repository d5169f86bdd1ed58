"""Differential test: our PromQL subset against a real Prometheus over the same data.

The corpus (tests/promql/differential.py) is backfilled with `promtool tsdb
create-blocks-from openmetrics` into a fresh data directory, a Prometheus is started on it,
and every query (hand-picked edge cases plus queries generated from our grammar) is
evaluated by both at many instants through `/api/v1/query?time=`. Label set for label set,
value for value (relative 1e-9, NaN equals NaN), and an error where Prometheus answers
with an error. Remaining, documented differences: docs/promql.md ("Differences from
Prometheus").
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from tests.promql.differential import BEFORE_2_51, SPAN, corpus, openmetrics, queries, series_store
from tests.servers import backfilled_prometheus
from watchdog.errors import PromQLError
from watchdog.promql import SeriesStore, evaluate, parse
from watchdog.promql.catalogue import ValueType
from watchdog.promql.rangefuncs import RANGE_FUNCTIONS

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

# Plus the hand-picked edge cases. A longer run: PROMQL_DIFF_QUERIES=3000 PROMQL_DIFF_SEED=7 (docs/testing.md).
GENERATED = int(os.environ.get("PROMQL_DIFF_QUERIES", "260"))
SEED = int(os.environ.get("PROMQL_DIFF_SEED", "14"))
# Seconds after the first sample: the start, a late series' start, inside and after a gap
# longer than the lookback, a series that ended (within and past the lookback), the end.
INSTANTS = [0.5, 61.5, 300.5, 601.5, 900.5, 1210.5, 1500.5, 1560.5, 1830.5, 1990.5, 2400.5, SPAN - 0.5, SPAN + 200.5]
REL = 1e-9

Series = dict[tuple[tuple[str, str], ...], float]
Result = tuple[str, Series] | str  # ("vector" | "scalar", value by label set), or "error: …"


@dataclass
class Backfilled:
    url: str
    t0: float
    store: SeriesStore
    version: tuple[int, int]


@pytest.fixture(scope="module")
def prometheus() -> Iterator[Backfilled]:
    # Recent enough that retention keeps it; on the hour so blocks align.
    t0 = float((int(time.time()) // 3600) * 3600 - 3 * 3600)
    series = corpus(t0)
    with backfilled_prometheus(openmetrics(series), prefix="mw-promdiff-", timeout=120) as server:
        build = requests.get(f"{server.url}/api/v1/status/buildinfo", timeout=5).json()["data"]["version"]
        major, minor = (int(x) for x in build.split(".")[:2])
        yield Backfilled(server.url, t0, series_store(series), (major, minor))


def theirs(session: requests.Session, url: str, query: str, at: float) -> Result:
    response = session.post(f"{url}/api/v1/query", data={"query": query, "time": f"{at:.3f}"}, timeout=30)
    body = response.json()
    if body["status"] != "success":
        return f"error: {body.get('error')}"
    data = body["data"]
    if data["resultType"] == "scalar":
        return "scalar", {(): float(data["result"][1])}
    if data["resultType"] != "vector":
        return f"error: unexpected result type {data['resultType']}"
    return "vector", {tuple(sorted(r["metric"].items())): float(r["value"][1]) for r in data["result"]}


def ours(store: SeriesStore, query: str, at: float) -> Result:
    try:
        expr = parse(query)
        samples = evaluate(expr, store, at)
    except PromQLError as exc:
        return f"error: {exc}"
    out: Series = {}
    for s in samples:
        assert s.labels not in out, f"{query}: duplicate label set {s.labels} in our result"
        out[tuple(sorted(s.labels))] = s.value
    return ("scalar" if expr.type is ValueType.SCALAR else "vector"), out


def same_value(a: float, b: float) -> bool:
    if math.isnan(a) or math.isnan(b):
        return math.isnan(a) and math.isnan(b)
    return a == b or math.isclose(a, b, rel_tol=REL)


def difference(mine: Result, real: Result) -> str | None:
    if isinstance(real, str) or isinstance(mine, str):
        if isinstance(real, str) and isinstance(mine, str):
            return None  # both refuse; the wording is ours
        return f"ours {_short(mine)} | prometheus {_short(real)}"
    if mine[0] != real[0]:
        return f"result types differ: ours {mine[0]}, prometheus {real[0]}"
    mine, real = mine[1], real[1]
    if mine.keys() != real.keys():
        only_ours, only_theirs = mine.keys() - real.keys(), real.keys() - mine.keys()
        return f"label sets differ: only ours {sorted(only_ours)[:3]}, only prometheus {sorted(only_theirs)[:3]}"
    wrong = [(k, mine[k], real[k]) for k in mine if not same_value(mine[k], real[k])]
    if wrong:
        return f"values differ (ours, prometheus): {wrong[:3]}"
    return None


def _short(result: Result) -> str:
    return result[:200] if isinstance(result, str) else f"{result[0]} of {len(result[1])} series"


def test_our_promql_agrees_with_prometheus(prometheus: Backfilled) -> None:
    all_queries = queries(GENERATED, SEED)
    session = requests.Session()
    mismatches: list[str] = []
    compared = non_empty = errors = explained = 0
    for query in all_queries:
        for offset in INSTANTS:
            at = prometheus.t0 + offset
            real = theirs(session, prometheus.url, query, at)
            mine = ours(prometheus.store, query, at)
            compared += 1
            non_empty += not isinstance(real, str) and bool(real[1])
            errors += isinstance(real, str)
            problem = difference(mine, real)
            if problem and prometheus.version < (2, 51) and _explained_by_2_51(prometheus.store, query, at, real):
                explained += 1
                continue
            if problem:
                mismatches.append(f"{query}  @ t0+{offset}: {problem}")
    if os.environ.get("PROMQL_DIFF_DUMP"):  # every difference, one a line, for digging in
        Path(os.environ["PROMQL_DIFF_DUMP"]).write_text("\n".join(mismatches) + "\n")
    print(f"{len(all_queries)} queries × {len(INSTANTS)} instants: {compared} compared, {non_empty} with data, "
          f"{errors} refused by both, {explained} explained by the pre-2.51 rate extrapolation")
    assert mismatches == [], f"{len(mismatches)} of {compared} evaluations differ:\n" + "\n".join(mismatches[:40])
    # The comparison means something only if most queries return data and some are refused.
    assert non_empty > compared * 0.6 and errors > 20, (non_empty, errors, compared)
    assert explained < compared * 0.02, f"{explained} differences put down to the pre-2.51 extrapolation"


def _explained_by_2_51(store: SeriesStore, query: str, at: float, real: Result) -> bool:
    """Does the difference vanish with Prometheus' rate extrapolation before 2.51?"""
    with pytest.MonkeyPatch.context() as patch:
        for name, function in BEFORE_2_51.items():
            patch.setitem(RANGE_FUNCTIONS, name, function)
        return difference(ours(store, query, at), real) is None
