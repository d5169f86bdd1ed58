"""The status page: one server-rendered HTML page over the same snapshot as /api/v1/status.

No JavaScript and no external assets (the daemon often runs where nothing else is reachable);
the page refreshes itself. Everything shown is escaped.
"""

from __future__ import annotations

from html import escape
from typing import Any

STYLE = """
body{font:14px/1.4 system-ui,sans-serif;margin:1.5em;color:#1d232a;background:#fafbfc}
h1{font-size:20px;margin:0 0 .2em}h2{font-size:16px;margin:1.4em 0 .4em}
.meta{color:#57606a;margin-bottom:1em}
table{border-collapse:collapse;width:100%;background:#fff;margin-bottom:.6em}
th,td{border:1px solid #d0d7de;padding:4px 8px;text-align:left;vertical-align:top}
th{background:#f0f3f6;font-weight:600}
.state{font-weight:600;border-radius:3px;padding:1px 6px;color:#fff}
.inactive{background:#2da44e}.pending{background:#bf8700}.firing{background:#cf222e}
.badge{display:inline-block;border-radius:3px;padding:1px 6px;margin-left:.5em;font-size:12px}
.held{background:#cf222e;color:#fff}.guarding{background:#2da44e;color:#fff}.bad{color:#cf222e;font-weight:600}
.down{color:#cf222e;font-weight:600}.up{color:#2da44e;font-weight:600}
h3{font-size:14px;margin:1em 0 .2em}.timeline{display:flex;gap:1em;align-items:flex-start}.timeline table{width:auto}
"""


def _cell(value: Any) -> str:
    if value is None or value == {}:
        return "–"
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, dict):
        return escape(", ".join(f"{k}={v}" for k, v in sorted(value.items())))
    return escape(str(value))


def _rules(rules: list[dict[str, Any]]) -> str:
    rows = []
    for rule in rules:
        series = rule["series"] or [{"labels": {}, "state": "inactive", "value": None, "reason": "not evaluated yet"}]
        for s in series:
            state = escape(s["state"])
            rows.append(f"<tr><td>{escape(rule['rule'])}</td><td>{_cell(s['labels'])}</td>"
                        f"<td><span class='state {state}'>{state}</span></td><td>{_cell(s['value'])}</td>"
                        f"<td>{_cell(rule['threshold'])}</td><td>{escape(rule['action'])}</td>"
                        f"<td>{_cell(s.get('reason'))}</td></tr>")
    return ("<table><tr><th>rule</th><th>series</th><th>state</th><th>value</th><th>threshold</th>"
            "<th>action</th><th>why</th></tr>" + "".join(rows) + "</table>")


def _target(name: str, t: dict[str, Any]) -> str:
    badge = ("<span class='badge held'>HELD</span>" if t["held"] else "<span class='badge guarding'>guarding</span>")
    hold = f"<p class='meta'>Held since {_cell(t['hold']['since'])}: {_cell(t['hold']['reason'])}</p>" if t["held"] else ""
    versions = ", ".join(f"<span class='bad'>{escape(v['version'])} (bad)</span>" if v["bad"] else escape(v["version"])
                         for v in t["versions"][:6]) or "–"
    decisions = "".join(f"<tr><td>{_cell(d['created_at'])}</td><td>{_cell(d['rule'])}</td><td>{_cell(d['status'])}</td>"
                        f"<td><code>{_cell(d['id'])}</code></td></tr>" for d in t["decisions"])
    decision_table = ("<table><tr><th>decided</th><th>rule</th><th>status</th><th>decision</th></tr>"
                      f"{decisions}</table>") if decisions else ""
    return (f"<h2>{escape(name)}{badge}</h2>{hold}<p class='meta'>version {_cell(t['version'])} · seen: {versions}</p>"
            f"{_rules(t['rules'])}{decision_table}")


def _sources(sources: dict[str, Any]) -> str:
    rows = "".join(f"<tr><td>{escape(n)}</td><td class='{'up' if s['up'] else 'down'}'>{'up' if s['up'] else 'DOWN'}</td>"
                   f"<td>{_cell(s.get('last_success'))}</td><td>{_cell(s.get('last_error'))}</td></tr>"
                   for n, s in sorted(sources.items()))
    return ("<h2>Sources</h2><table><tr><th>source</th><th>status</th><th>last success</th><th>last error</th></tr>"
            f"{rows}</table>")


W, H, M = 480, 120, 6  # the incident plot: width, height, margin (px)
MARKS = (("fired_at", "#cf222e", "fired"), ("actuated_at", "#0969da", "rolled back"),
         ("recovered_at", "#2da44e", "recovered"))


def _plot(item: dict[str, Any]) -> str:
    """The rule's value (a step line) against its threshold (dashed) around the incident, with
    the moments it fired, was rolled back and recovered; server-rendered SVG."""
    plot = item["plot"]
    start, end = float(plot["start"]), float(plot["end"])
    values = [v for _, v in plot["points"]] + list(plot["threshold"].values())
    low, high = (min(values), max(values)) if values else (0.0, 1.0)
    if high - low < 1e-12:
        low, high = low - 1, high + 1
    x = lambda t: M + (W - 2 * M) * (min(max(t, start), end) - start) / max(end - start, 1e-9)  # noqa: E731
    y = lambda v: H - M - (H - 2 * M) * (v - low) / (high - low)  # noqa: E731
    parts = [f"<svg xmlns='http://www.w3.org/2000/svg' width='{W}' height='{H}' viewBox='0 0 {W} {H}' role='img' "
             f"aria-label='{escape(item['rule'])} around the incident'><rect width='{W}' height='{H}' fill='#fff' "
             "stroke='#d0d7de'/>"]
    for bound, value in plot["threshold"].items():
        parts.append(f"<line x1='{M}' x2='{W - M}' y1='{y(value):.1f}' y2='{y(value):.1f}' stroke='#bf8700' "
                     f"stroke-dasharray='4 3'><title>{escape(bound)} {value:.4g}</title></line>")
    line, last = [], None
    for t, v in plot["points"]:
        if last is not None:
            line.append(f"{x(t):.1f},{y(last):.1f}")
        line.append(f"{x(t):.1f},{y(v):.1f}")
        last = v
    if last is not None:
        line.append(f"{x(end):.1f},{y(last):.1f}")
        parts.append(f"<polyline fill='none' stroke='#1d232a' stroke-width='1.5' points='{' '.join(line)}'/>")
    for key, colour, label in MARKS:
        if item.get(key) is not None:
            parts.append(f"<line x1='{x(item[key]):.1f}' x2='{x(item[key]):.1f}' y1='{M}' y2='{H - M}' "
                         f"stroke='{colour}'><title>{label}</title></line>")
    return "".join(parts) + "</svg>"


def _incidents(items: list[dict[str, Any]]) -> str:
    from watchdog.rollback.timeline import as_json

    if not items:
        return ""
    rows = []
    for item in items:
        shown = as_json({k: v for k, v in item.items() if k != "plot"})
        marks = "".join(f"<tr><td>{escape(k.removesuffix('_at').replace('_', ' '))}</td><td>{_cell(shown[k])}</td></tr>"
                        for k in ("breach_started_at", "pending_at", "fired_at", "decided_at", "actuated_at",
                                  "verified_at", "recovered_at"))
        spans = " · ".join(f"{k.removesuffix('_s').replace('_', ' ')} {_cell(shown[k])}s"
                           for k in ("time_to_detect_s", "time_to_act_s", "time_to_recover_s"))
        rows.append(f"<div class='incident'><h3>{escape(item['target'])} / {escape(item['rule'])} "
                    f"<code>{escape(item['decision_id'])}</code> ({escape(item['status'])})</h3>"
                    f"<p class='meta'>{spans}</p><div class='timeline'><table>{marks}</table>{_plot(item)}</div></div>")
    return "<h2>Incidents</h2>" + "".join(rows)


def render(snapshot: dict[str, Any], refresh: int = 10, incidents: list[dict[str, Any]] | None = None) -> str:
    targets = "".join(_target(n, t) for n, t in snapshot["targets"].items()) + _incidents(incidents or [])
    error = f" · last error: {_cell(snapshot.get('last_error'))}" if snapshot.get("last_error") else ""
    return (f"<!doctype html><html lang='en'><head><meta charset='utf-8'><meta http-equiv='refresh' content='{refresh}'>"
            f"<title>model-watchdog</title><style>{STYLE}</style></head><body>"
            f"<h1>model-watchdog</h1><div class='meta'>last evaluation {_cell(snapshot.get('last_evaluation'))}{error}"
            f" · <a href='/api/v1/status'>status JSON</a> · <a href='/api/v1/history'>history</a>"
            f" · <a href='/metrics'>metrics</a></div>{targets}{_sources(snapshot.get('sources', {}))}</body></html>")
