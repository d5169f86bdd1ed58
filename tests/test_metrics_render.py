"""`/metrics` rendered by DaemonMetrics.render (the per-rule families from cached lines) against
prometheus_client's own `generate_latest` over the same registry: random and hostile label
values, values that change between reads, entries that go; and the per-target children a
reload drops."""

from __future__ import annotations

import random

from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families

from watchdog.clock import FakeClock
from watchdog.metrics import DaemonMetrics, escape_label_value
from watchdog.web.api import routes
from watchdog.web.server import Request

HOSTILE = ['"', "\\", "\n", '\\"', "\\n", 'a"b\\c\nd', "ünïcødé ☃ 𝄞", "{}", '{a="b"}', " ", "=", ",", "}", "\t", "\r",
           "# HELP", "x 1.0", ""]
SPECIAL_VALUES = [0.0, -0.0, 1.0, -1.0, 0.1, 1e6, 999999.9, 1e16, 1e-7, 123456789.0, -1e6, -2.5e7,
                  float("inf"), float("-inf"), float("nan"), 3, 0]


def families(text: str) -> list[tuple[str, str, str, list[tuple[str, dict[str, str], float]]]]:
    """The parsed exposition, comparable (NaN as a string)."""
    return sorted((f.name, f.type, f.documentation,
                   sorted((s.name, sorted(s.labels.items()), repr(s.value)) for s in f.samples))  # type: ignore[misc]
                  for f in text_string_to_metric_families(text))


def label(rng: random.Random) -> str:
    if rng.random() < 0.4:
        return rng.choice(HOSTILE)
    return "".join(rng.choice('ab-_."\\\n ☃é{}=,') for _ in range(rng.randint(0, 8)))


def value(rng: random.Random) -> float:
    return rng.choice(SPECIAL_VALUES) if rng.random() < 0.5 else rng.uniform(-1e7, 1e7) * rng.choice((1, 1e-9, 1e9))


def mutate(metrics: DaemonMetrics, rng: random.Random, keys: list[tuple[str, str, str]]) -> None:
    r = metrics.rules
    for _ in range(rng.randint(1, 40)):
        target, rule, series = rng.choice(keys)
        action = rng.random()
        if action < 0.15:
            r.set_value(target, rule, series, value(rng))
        elif action < 0.3:
            r.set_series(target, rule, series, rng.choice(("inactive", "pending", "firing")),
                         value(rng) if rng.random() < 0.6 else None)
        elif action < 0.5:
            r.set_phase(target, rule, series, rng.choice(("inactive", "pending", "firing")))
        elif action < 0.65:
            r.set_threshold(target, rule, rng.choice(("above", "below", series)), value(rng))
        elif action < 0.8:
            r.count_outcome(target, rule, rng.choice(("ok", "breach", "no_data", series)))
        elif action < 0.9:
            r.forget_series(target, rule, series)
        elif action < 0.95:
            metrics.decisions.labels(target, "succeeded").inc()
        else:
            r.retain_rules({(t, ru) for t, ru, _ in keys if rng.random() < 0.8})


def test_render_equals_generate_latest_for_random_and_hostile_labels_across_reads():
    for seed in range(25):
        rng = random.Random(seed)
        keys = [(label(rng), label(rng), label(rng)) for _ in range(rng.randint(1, 30))]
        metrics = DaemonMetrics()
        for _ in range(12):  # reads in between changes: the cached lines must follow every change
            mutate(metrics, rng, keys)
            ours = metrics.render()
            reference = generate_latest(metrics.registry)
            assert ours == reference, seed
            assert families(ours.decode()) == families(reference.decode()), seed


def test_a_metric_registered_on_the_registry_by_anyone_is_served_too():
    from prometheus_client import Gauge

    metrics = DaemonMetrics()
    Gauge("model_watchdog_something_new", "Added later, elsewhere", registry=metrics.registry).set(7)
    metrics.rules.set_value("t", "r", "{}", 1.0)
    served = {s.name: s.value for f in text_string_to_metric_families(metrics.render().decode()) for s in f.samples}
    assert served["model_watchdog_something_new"] == 7 and served["model_watchdog_rule_value"] == 1
    assert metrics.registry.get_sample_value("model_watchdog_rule_value", {"target": "t", "rule": "r", "series": "{}"}) == 1


def test_hostile_label_values_come_back_as_they_were():
    metrics = DaemonMetrics()
    for i, hostile in enumerate(HOSTILE):
        metrics.rules.set_value(hostile, f"rule{i}", hostile, float(i))
    parsed = {(s.labels["target"], s.labels["series"]): s.value
              for f in text_string_to_metric_families(metrics.render().decode())
              if f.name == "model_watchdog_rule_value" for s in f.samples}
    assert parsed == {(h, h): float(i) for i, h in enumerate(HOSTILE)}
    assert escape_label_value('a"b\\c\nd') == 'a\\"b\\\\c\\nd'


def test_a_changed_value_is_shown_at_the_next_read():
    metrics = DaemonMetrics()
    rules = metrics.rules
    rules.set_value("fraud-model", "error-rate", "{}", 0.02)
    rules.set_phase("fraud-model", "error-rate", "{}", "inactive")
    rules.count_outcome("fraud-model", "error-rate", "ok")

    def read() -> dict[tuple[str, str], float]:
        return {(s.name, s.labels.get("state", "")): s.value
                for f in text_string_to_metric_families(metrics.render().decode()) for s in f.samples
                if s.name.startswith("model_watchdog_rule_")}

    assert read()[("model_watchdog_rule_value", "")] == 0.02
    rules.set_value("fraud-model", "error-rate", "{}", 0.25)
    rules.set_phase("fraud-model", "error-rate", "{}", "pending")
    rules.count_outcome("fraud-model", "error-rate", "ok")
    after = read()
    assert after[("model_watchdog_rule_value", "")] == 0.25
    assert after[("model_watchdog_rule_state", "pending")] == 1 and after[("model_watchdog_rule_state", "inactive")] == 0
    assert after[("model_watchdog_rule_outcomes_total", "")] == 2
    rules.set_value("fraud-model", "error-rate", "{}", -0.0)  # equal to 0.0, written differently
    assert b'series="{}",target="fraud-model"} -0.0\n' in metrics.render()
    rules.set_value("fraud-model", "error-rate", "{}", 0.0)
    assert b'series="{}",target="fraud-model"} 0.0\n' in metrics.render()
    rules.forget_series("fraud-model", "error-rate", "{}")
    assert ("model_watchdog_rule_value", "") not in read()


def test_the_metrics_route_serves_the_render_whatever_the_accept_header():
    class Daemon:
        metrics = DaemonMetrics()
        clock = FakeClock()
        health = ready = status = reload = drill_now = None

    Daemon.metrics.rules.set_value("t", "r", "{}", 1.5)
    handler = next(r.handler for r in routes(Daemon()) if r.pattern == "/metrics")  # type: ignore[arg-type]
    for accept in ("", "application/openmetrics-text; version=1.0.0", "text/plain"):
        response = handler(Request("GET", "/metrics", {}, {}, None, {"accept": accept}))
        assert response.status == 200 and response.content_type.startswith("text/plain")
        assert b"".join(response.body) == generate_latest(Daemon.metrics.registry)


RELOAD_CONFIG = """\
interval: 10s
state: state.db
listen: 127.0.0.1:0
sources:
  model: {type: scrape, url: "http://127.0.0.1:9/metrics"}
  old: {type: scrape, url: "http://127.0.0.1:9/metrics"}
alerters:
  log: {type: log}
  pager: {type: log}
actuators:
  hook: {type: webhook, url: "http://127.0.0.1:9/rollback"}
targets:
  fraud-model: {rollback: [hook]}
  churn-model: {rollback: [hook]}
"""


def test_a_reload_drops_every_child_of_a_removed_target_source_or_alerter(tmp_path):
    from watchdog.config.loader import load
    from watchdog.daemon import Daemon

    (tmp_path / "watchdog.yaml").write_text(RELOAD_CONFIG)
    daemon = Daemon(load(tmp_path / "watchdog.yaml"), clock=FakeClock())
    try:
        m = daemon.metrics
        for target in ("fraud-model", "churn-model"):
            m.decisions.labels(target, "succeeded").inc()
            m.decisions.labels(target, "blocked").inc()
            m.actions.labels(target, "hook", "succeeded").inc()
            m.time_to_detect.labels(target).observe(30)
        for source in ("model", "old"):
            m.source_errors.labels(source, "timeout").inc()
            m.source_up.labels(source).set(1)
            m.source_last_success.labels(source).set(1.0)
            m.source_query_duration.labels(source).observe(0.1)
        for alerter in ("log", "pager"):
            m.alerts.labels(alerter, "sent").inc()
        removed = ("  churn-model:", "  old:", "  pager:")
        (tmp_path / "watchdog.yaml").write_text("".join(line for line in RELOAD_CONFIG.splitlines(True)
                                                        if not line.startswith(removed)))
        assert daemon.reload()[0] is True
        targets = {s.labels["target"] for f in m.registry.collect() for s in f.samples if "target" in s.labels}
        assert targets == {"fraud-model"}
        sources = {s.labels["source"] for f in m.registry.collect() for s in f.samples if "source" in s.labels}
        assert sources == {"model"}
        alerters = {s.labels["alerter"] for f in m.registry.collect() for s in f.samples if "alerter" in s.labels}
        assert alerters == {"log"}
        value = m.registry.get_sample_value
        assert value("model_watchdog_decisions_total", {"target": "fraud-model", "outcome": "blocked"}) == 1
        assert value("model_watchdog_actions_total", {"target": "fraud-model", "actuator": "hook",
                                                      "outcome": "succeeded"}) == 1
    finally:
        daemon.close()


def test_set_series_is_set_phase_then_set_value_with_one_key_for_both():
    """The engine's `set_series` against the two calls it replaces (random course of series, values
    that come late or go None, forgets, reloads): the same tables in the same order, so the same
    `/metrics` bytes; and a series' phase and value entries share one key tuple."""
    for seed in range(40):
        rng = random.Random(seed)
        keys = [("t%d" % rng.randint(0, 3), "r%d" % rng.randint(0, 3), rng.choice(["{}", '{a="1"}', '{a="2"}']))
                for _ in range(12)]
        ours, reference = DaemonMetrics(), DaemonMetrics()
        for _ in range(300):
            target, rule, series = rng.choice(keys)
            roll = rng.random()
            if roll < 0.85:
                phase = rng.choice(("inactive", "pending", "firing"))
                v = value(rng) if rng.random() < 0.7 else None
                ours.set_series(target, rule, series, phase, v)
                reference.set_phase(target, rule, series, phase)
                if v is not None:
                    reference.rules.set_value(target, rule, series, v)
            elif roll < 0.95:
                for m in (ours, reference):
                    m.forget_series(target, rule, series)
            else:
                keep = {(t, ru) for t, ru, _ in keys if rng.random() < 0.7}
                for m in (ours, reference):
                    m.rules.retain_rules(keep)
            for table in ("phases", "values"):
                got, expected = getattr(ours.rules, table), getattr(reference.rules, table)
                assert [(k, repr(v)) for k, v in got.items()] == [(k, repr(v)) for k, v in expected.items()], seed
        assert b"".join(ours.rules.chunks()) == b"".join(reference.rules.chunks()), seed
        assert ours.render() == generate_latest(ours.registry), seed
        phase_keys = {k: k for k in ours.rules.phases}
        assert all(phase_keys.get(k) is k for k in ours.rules.values), seed  # one tuple, held by both tables
        assert set(ours.rules._unvalued) == set(ours.rules.phases) - set(ours.rules.values), seed
