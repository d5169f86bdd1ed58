"""Daemon.last_report (what the demo prints) is the last tick's report in compact columns:
the same rows as the report's verdicts (random values incl. None, NaN, -0.0, ±inf; every
outcome and phase), no Verdict kept, and the demo's lines from it as from the report."""

from __future__ import annotations

import gc
import math
import random
import sys
from types import SimpleNamespace

from watchdog.daemon import LastTick
from watchdog.demo import run as demo
from watchdog.engine import TickReport
from watchdog.rules.state import Phase, SeriesState
from watchdog.rules.verdict import Outcome, Verdict

VALUES = [None, 0.0, -0.0, 1.0, 0.05, -2.5, 1e300, float("inf"), float("-inf"), float("nan"), 3]


def random_report(rng: random.Random, n: int) -> TickReport:
    report = TickReport(at=rng.uniform(0, 2e9), decisions=["rollback of t1"], source_errors={"model": "down"})
    for i in range(n):
        value = rng.choice(VALUES) if rng.random() < 0.6 else rng.uniform(-1e6, 1e6)
        verdict = Verdict((("a", str(i)),), rng.choice(list(Outcome)), value, "reason %d" % i)
        state = SeriesState(phase=rng.choice(list(Phase)))
        report.verdicts.append((f"t{rng.randint(0, 3)}", f"rule-{rng.randint(0, 9)}", verdict, state))
    return report


def same(a: object, b: object) -> bool:
    return repr(a) == repr(b) if isinstance(a, float) and math.isnan(a) else (a == b and repr(a) == repr(b))


def test_rows_are_the_reports_verdicts_in_order() -> None:
    for seed in range(30):
        rng = random.Random(seed)
        report = random_report(rng, rng.randint(0, 60))
        kept = LastTick(report)
        rows = list(kept.rows())
        assert len(kept) == len(rows) == len(report.verdicts)
        assert (kept.at, kept.decisions, kept.source_errors) == (report.at, report.decisions, report.source_errors)
        for row, (target, rule, verdict, state) in zip(rows, report.verdicts):
            assert (row.target, row.rule, row.outcome, row.phase) == (target, rule, verdict.outcome, state.phase)
            assert same(row.value, None if verdict.value is None else float(verdict.value)), (row, verdict)


def test_no_verdict_is_kept_and_it_is_a_fraction_of_the_report() -> None:
    report = random_report(random.Random(1), 2000)
    kept = LastTick(report)
    reachable, stack, seen = 0, [kept], set()
    while stack:
        obj = stack.pop()
        if id(obj) in seen or isinstance(obj, type):
            continue
        seen.add(id(obj))
        assert not isinstance(obj, (Verdict, SeriesState)), obj
        if not isinstance(obj, str):  # target and rule names are the configuration's
            reachable += sys.getsizeof(obj)
            stack.extend(gc.get_referents(obj))
    assert reachable < 40 * len(report.verdicts)


def test_the_demo_prints_the_same_from_it() -> None:
    for seed in range(20):
        rng = random.Random(seed)
        report = random_report(rng, rng.randint(0, 8))
        if seed % 3 == 0:  # all quiet
            report.verdicts = [(t, r, Verdict(v.labels, Outcome.OK, v.value, ""), SeriesState(phase=Phase.INACTIVE))
                               for t, r, v, _ in report.verdicts]
        daemon = SimpleNamespace(last_report=LastTick(report), engine=SimpleNamespace(versions={"fraud-model": "v2"}))
        parts = [f"{rule}={v.value:.3f}" if v.value is not None else f"{rule}=({v.outcome.value})"
                 for _, rule, v, _ in report.verdicts]  # what the demo printed from the report itself
        assert demo._values(daemon) == "  ".join(parts) + "  version=v2"  # type: ignore[arg-type]
        quiet = all(s.phase.value == "inactive" and v.outcome.value == "ok" for _, _, v, s in report.verdicts)
        assert demo._all_quiet(daemon) is quiet  # type: ignore[arg-type]
