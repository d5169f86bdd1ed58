"""The status page's incident timelines: server-rendered SVG, every text escaped."""

from __future__ import annotations

import re

from watchdog.web.statuspage import render

T = 1_700_000_000.0


def incident(rule: str = "<script>alert(1)</script>", points=((T - 60, 0.01), (T, 0.2), (T + 300, 0.01))) -> dict:
    return {"decision_id": "d1", "target": "fraud-model", "rule": rule, "status": "succeeded",
            "breach_started_at": T, "pending_at": T, "fired_at": T + 30, "decided_at": T + 30, "actuated_at": T + 31,
            "verified_at": T + 300, "recovered_at": T + 300, "time_to_detect_s": 30.0, "time_to_act_s": 1.0,
            "time_to_recover_s": 300.0,
            "plot": {"start": T - 600, "end": T + 900, "points": list(points), "threshold": {"above": 0.1}}}


def test_an_incident_is_a_timeline_with_a_plot_and_nothing_unescaped():
    page = render({"targets": {}}, incidents=[incident()])
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "<h2>Incidents</h2>" in page and "2023-11-14T22:13:50Z" in page  # fired_at, as RFC 3339
    svg = re.search(r"<svg.*?</svg>", page).group(0)  # type: ignore[union-attr]
    assert "<polyline" in svg and "stroke-dasharray" in svg  # the values, and the threshold
    assert svg.count("<line") == 1 + 3  # the threshold, fired, rolled back, recovered
    # the value 0.2 is the highest point: at the top margin; the threshold 0.1 below it
    ys = [float(y) for y in re.findall(r",([0-9.]+)", re.search(r"points='([^']*)'", svg).group(1))]  # type: ignore[union-attr]
    assert min(ys) == 6.0 and max(ys) == 114.0


def test_no_values_in_the_history_still_draws_the_threshold():
    page = render({"targets": {}}, incidents=[incident(rule="latency", points=())])
    assert "<polyline" not in page and "stroke-dasharray" in page
