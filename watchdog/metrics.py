"""The daemon's own Prometheus metrics, on a registry it is handed (tests use a fresh one)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

PHASES = ("inactive", "pending", "firing")
# Incident timings run from seconds (detection at a short interval) to hours (a slow recovery).
INCIDENT_BUCKETS = (1, 5, 10, 15, 30, 60, 120, 300, 600, 1200, 1800, 3600, 7200)


class DaemonMetrics:
    def __init__(self, registry: CollectorRegistry | None = None):
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.evaluations = Counter("model_watchdog_evaluations", "Evaluation ticks run", registry=r)
        self.evaluation_failures = Counter("model_watchdog_evaluation_failures", "Evaluation ticks that raised", registry=r)
        self.evaluation_duration = Histogram(
            "model_watchdog_evaluation_duration_seconds", "Time one evaluation tick took",
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        self.rule_value = Gauge("model_watchdog_rule_value", "Last value of a rule per series",
                                ["target", "rule", "series"], registry=r)
        self.rule_threshold = Gauge("model_watchdog_rule_threshold", "A rule's threshold, per bound (above, below)",
                                    ["target", "rule", "bound"], registry=r)
        self.rule_state = Gauge("model_watchdog_rule_state", "1 for the rule's current phase per series",
                                ["target", "rule", "series", "state"], registry=r)
        self.rule_outcomes = Counter("model_watchdog_rule_outcomes", "Verdicts by outcome",
                                     ["target", "rule", "outcome"], registry=r)
        self.actions = Counter("model_watchdog_actions", "Actuator steps by outcome",
                               ["target", "actuator", "outcome"], registry=r)
        self.alerts = Counter("model_watchdog_alerts", "Alert deliveries by outcome",
                              ["alerter", "outcome"], registry=r)
        # Connections the API closed or refused by a limit (watchdog.web.server.REJECT_REASONS).
        self.api_connections_rejected = Counter(
            "model_watchdog_api_connections_rejected", "API connections closed or refused by a limit, by reason",
            ["reason"], registry=r)
        self.source_errors = Counter("model_watchdog_source_errors", "Source failures by kind",
                                     ["source", "kind"], registry=r)
        self.source_last_success = Gauge("model_watchdog_source_last_success_timestamp_seconds",
                                         "Time of the last successful fetch per source", ["source"], registry=r)
        self.source_up = Gauge("model_watchdog_source_up", "1 if the last fetch succeeded", ["source"], registry=r)
        self.target_held = Gauge("model_watchdog_target_held", "1 while a target is held after a rollback",
                                 ["target"], registry=r)
        self.config_reloads = Counter("model_watchdog_config_reloads", "Configuration reloads by outcome",
                                      ["outcome"], registry=r)
        self.config_last_reload_success = Gauge("model_watchdog_config_last_reload_successful",
                                                "1 if the last reload was applied, 0 if it was rejected", registry=r)
        self.last_evaluation = Gauge("model_watchdog_last_evaluation_timestamp_seconds",
                                     "Time of the last completed evaluation tick", registry=r)
        self.source_query_duration = Histogram(
            "model_watchdog_source_query_duration_seconds", "Time one source query took, retries included",
            ["source"], buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30), registry=r)
        # Rollback decisions by how they ended: succeeded, failed (RollbackExecutor), skipped
        # (approval expired or rejected, or overtaken by a new version, resume or a manual rollback),
        # and rules that fired but were not acted on: blocked (a guard; once per blocked episode, a
        # rollback that follows when the guard lifts counts too), shadow (shadow mode).
        self.decisions = Counter("model_watchdog_decisions", "Rollback decisions by outcome",
                                 ["target", "outcome"], registry=r)
        self.time_to_detect = Histogram(
            "model_watchdog_time_to_detect_seconds", "From the first breaching evaluation to the rule firing",
            ["target"], buckets=INCIDENT_BUCKETS, registry=r)
        self.time_to_act = Histogram(
            "model_watchdog_time_to_act_seconds", "From the rule firing to the rollback's last step done",
            ["target"], buckets=INCIDENT_BUCKETS, registry=r)
        self.time_to_recover = Histogram(
            "model_watchdog_time_to_recover_seconds", "From the first breaching evaluation to every rollback rule of the target inactive again",
            ["target"], buckets=INCIDENT_BUCKETS, registry=r)
        # Rollback drills (`model-watchdog drill`) are read back from the history, whoever ran them.
        self.drill_ready = Gauge("model_watchdog_drill_ready", "1 if the latest rollback drill found the target ready, 0 if not",
                                 ["target"], registry=r)
        self.drill_last_success = Gauge("model_watchdog_drill_last_success_timestamp_seconds",
                                        "Time of the latest rollback drill that found the target ready", ["target"], registry=r)

    def set_phase(self, target: str, rule: str, series: str, phase: str) -> None:
        for p in PHASES:
            self.rule_state.labels(target, rule, series, p).set(1 if p == phase else 0)

    def forget_series(self, target: str, rule: str, series: str) -> None:
        for p in PHASES:
            try:
                self.rule_state.remove(target, rule, series, p)
            except KeyError:
                pass
        try:
            self.rule_value.remove(target, rule, series)
        except KeyError:
            pass
