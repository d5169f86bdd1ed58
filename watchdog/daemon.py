"""The running daemon: builds the plugins from a loaded config and wires engine, scheduler,
HTTP server and signals together. Behaviour lives in the engine; this module only assembles.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import threading
from array import array
from typing import TYPE_CHECKING, Any, Callable, Iterator, NamedTuple

from watchdog.config import plugins
from watchdog.http import body as httpbody
from watchdog.rollback.executor import RollbackExecutor
from watchdog.alerters.base import Alert
from watchdog.clock import Clock, StepBack, SystemClock, rfc3339
from watchdog.config.loader import LoadedConfig
from watchdog.rollback.drill import Drill, DrillMetrics, prepare_drill, probe_drill, record_drill
from watchdog.rollback.drill_schedule import DrillAlerts, DrillJob, DrillSchedule, DrillWorker
from watchdog.engine import Engine, TickAbandoned, TickReport
from watchdog.config.loader import load
from watchdog.errors import ConfigError, StateError
from watchdog.metrics import DaemonMetrics
from watchdog.runtime import gctune, memory
from watchdog.runtime.retention import Retention
from watchdog.runtime.notify import Notifier
from watchdog.runtime.ownership import Owner
from watchdog import redact as redaction
from watchdog.redact import Redactor
from watchdog.rules.state import Phase
from watchdog.rules.verdict import Outcome
from watchdog.state import open_store
from watchdog.state.base import HistoryEvent, StateStore
from watchdog.state.processes import ProcessJournal

if TYPE_CHECKING:
    from watchdog.web.server import ApiServer, AuthPolicy

log = logging.getLogger("watchdog.daemon")

RELOAD_FAILED = "reload_failed"  # meta: targets alerted on a rejected reload (JSON list), until a good one
SHUTDOWN_GRACE = 8.0  # seconds a tick in progress may take to finish after SIGTERM
LOST_MARKER = ".lost"  # beside a SQLite state file: the state_lost alerts sent, resolved by the next daemon on it


class Row(NamedTuple):
    """One verdict of the last tick as `LastTick` keeps it."""

    target: str
    rule: str
    value: float | None
    outcome: Outcome
    phase: Phase


_OUTCOMES, _PHASES = tuple(Outcome), tuple(Phase)
_CODE = {(o, p): i * len(_PHASES) + j for i, o in enumerate(_OUTCOMES) for j, p in enumerate(_PHASES)}
_NO_VALUE = 128  # in a code: the verdict had no value


class LastTick:
    """What the daemon keeps of its last tick's report (`Daemon.last_report`; the demo prints it):
    when, its decisions and source errors, and per verdict its target, rule, value, outcome and
    phase, in columns — ≈ 25 bytes a verdict, where the report's tuples with their Verdicts were
    ≈ 180 (1.8 MB at 10,000 rules, kept from one tick to the next). `rows()` gives them back."""

    __slots__ = ("at", "decisions", "source_errors", "_targets", "_rules", "_values", "_codes")

    def __init__(self, report: TickReport):
        self.at = report.at
        self.decisions = report.decisions
        self.source_errors = report.source_errors
        verdicts = report.verdicts
        self._targets = [target for target, _, _, _ in verdicts]  # the configuration's strings, not copies
        self._rules = [rule for _, rule, _, _ in verdicts]
        self._values = array("d", [0.0 if v.value is None else v.value for _, _, v, _ in verdicts])
        code = _CODE
        self._codes = bytes([code[v.outcome, s.phase] | (_NO_VALUE if v.value is None else 0)
                             for _, _, v, s in verdicts])

    def __len__(self) -> int:
        return len(self._codes)

    def rows(self) -> Iterator[Row]:
        width = len(_PHASES)
        for target, rule, value, code in zip(self._targets, self._rules, self._values, self._codes):
            kind = code & ~_NO_VALUE
            yield Row(target, rule, None if code & _NO_VALUE else value, _OUTCOMES[kind // width], _PHASES[kind % width])


class Daemon:
    def __init__(self, loaded: LoadedConfig, clock: Clock | None = None, metrics: DaemonMetrics | None = None,
                 store: StateStore | None = None, redactor: Redactor | None = None):
        self.clock = clock or SystemClock()
        # The wall clock's steps, one for the daemon's lifetime (across reloads): the scheduler's
        # watcher and every tick feed it; the engine hands it on (watchdog/clock.py)
        self.steps = StepBack()
        # The secrets of the running configuration: the process's redactor while this daemon
        # runs (plugins and the log filter use it), renewed on every reload.
        self.redactor = redactor or Redactor()
        self.redactor.update(loaded.secrets)
        self._previous_redactor = redaction.install(self.redactor)
        self.stop = threading.Event()
        self.reload_requested = threading.Event()
        self.metrics = metrics or DaemonMetrics()
        self.store = store or _open_exclusive(loaded.state_path)
        self._tick_lock = threading.Lock()
        self.last_tick: float | None = None
        self.last_report: LastTick | None = None  # the last tick's verdicts, compact (run_once returns the whole report)
        self.last_error = ""
        self.store_lost = ""  # why the state store is gone (deleted, replaced); "" while it is there
        self._lost_lock = threading.Lock()  # the tick and API handler threads both check the store
        self._install(loaded)
        self.metrics.config_last_reload_success.set(1)
        self._reload_good()
        self._resolve_state_lost()
        self._drills = DrillMetrics(self.store, self.metrics, on_drill=DrillAlerts(self._alert_target).observe)
        self.drill_worker = DrillWorker()  # scheduled drills (and the hourly prune) run there, off the tick thread
        self.retention = Retention(self.store, lambda: self.loaded.config.history_retention, self.metrics.history_pruned)
        self._export_drills()  # the drills before this start: the gauges, and whether the last one failed

    def _install(self, loaded: LoadedConfig) -> None:
        """Build every plugin and the engine for `loaded` (at start and on reload)."""
        cfg = loaded.config
        if hasattr(self, "engine") and not self.store_lost:
            self.engine.flush_states()  # the quiet states' last values, before the new engine reads them
        self.loaded = loaded
        built = loaded.take_plugins()  # the instances validation built, if no one took them yet
        if built is not None:
            self.sources, self.actuators, self.alerters = built.sources, built.actuators, built.alerters
        else:
            self.sources = {n: plugins.create(plugins.SOURCES, s) for n, s in cfg.sources.items()}
            self.actuators = {n: plugins.create(plugins.ACTUATORS, s) for n, s in cfg.actuators.items()}
            self.alerters = {n: plugins.create(plugins.ALERTERS, s) for n, s in cfg.alerters.items()}
        if hasattr(self, "notifier"):
            self.notifier.replace_alerters(self.alerters)
            self.notifier.max_age = cfg.alert_max_age
        else:
            self.notifier = Notifier(self.alerters, self.metrics, self.stop, on_failure=self._alert_failed,
                                     on_sent=self._alert_sent, store=self.store, clock=self.clock.now,
                                     on_expired=self._alert_expired, max_age=cfg.alert_max_age, steps=self.steps)
        self.executor = RollbackExecutor(self.store, self.actuators, self.metrics, self.stop)
        self.executor.step_scope = ProcessJournal(self.store, clock=self.clock).step
        if not hasattr(self, "owner"):
            self.owner = Owner(self.store, loaded.config.replica_id or None,
                               live_window=max(30.0, 3 * loaded.config.interval))
        self.owner.owned = set()  # a new engine adopts its targets' state on its first tick
        self.engine = Engine(loaded, self.store, self.sources, self.executor, self.notifier, self.metrics, self.owner,
                             clock=self.clock, steps=self.steps)
        self.drill_schedule = DrillSchedule(loaded, self.store)

    def reload(self) -> tuple[bool, str]:
        """Re-read config and rule files; on any problem keep running the last good ones.
        Never raises: whatever goes wrong (even a loader bug) is a rejected reload."""
        if self.store_lost:  # nothing is evaluated any more, and the store must not be written
            return False, f"not reloaded: {self.store_lost}"
        try:
            return self._reload()
        except Exception as exc:
            log.exception("reload failed")
            return self._reload_failed(f"{type(exc).__name__}: {exc}")

    def _reload(self) -> tuple[bool, str]:
        self.redactor.begin()  # the old secrets stay masked until the new configuration runs
        try:
            with redaction.collecting(self.redactor):  # the config's, the API tokens', the plugins'
                ok, message = self._reload_locked()
        except BaseException:
            self.redactor.abort()
            raise
        if ok:
            self.redactor.commit()  # secrets only the old configuration had are forgotten
            if hasattr(self, "_server"):  # serving: the old configuration's objects are freed, the new frozen
                gctune.settle()
        else:
            self.redactor.abort()
        return ok, message

    def _reload_locked(self) -> tuple[bool, str]:
        try:
            loaded = load(self.loaded.path)
            if loaded.state_path != self.loaded.state_path:
                log.warning("state moved to %s in the config: takes effect at the next restart", loaded.state_path)
            auth = _auth_policy(loaded) if hasattr(self, "_server") else None  # API tokens are re-read too
        except ConfigError as exc:
            return self._reload_failed(str(exc))
        with self._tick_lock:
            old_rules = {(lr.target, lr.rule.name): lr.rule for lr in self.loaded.rules}
            old_targets = set(self.loaded.config.targets)
            old_names = (set(self.sources), set(self.alerters))
            old_plugins = [*self.sources.values(), *self.actuators.values(), *self.alerters.values()]
            installed = {k: getattr(self, k) for k in ("loaded", "sources", "actuators", "alerters", "executor", "engine")}
            try:
                self._install(loaded)
            except Exception as exc:  # a plugin refusing its options at start-up
                fresh = [p for p in (*self.sources.values(), *self.actuators.values(), *self.alerters.values())
                         if not any(p is old for old in old_plugins)]
                self.__dict__.update(installed)  # the last good configuration stays in place, whole
                for plugin in fresh:
                    _close_quietly(plugin)
                self.notifier.replace_alerters(self.alerters)
                return self._reload_failed(f"{type(exc).__name__}: {exc}")
            try:
                changed = self._forget_changed_rules(old_rules, old_targets)
                self.metrics.forget_plugins(old_names[0] - set(self.sources), old_names[1] - set(self.alerters))
            except Exception:  # the new rules run; only their state could not be reset
                log.exception("configuration reloaded, but resetting the state of changed rules failed")
                changed = []
            for plugin in old_plugins:
                _close_quietly(plugin)
            if auth is not None:
                self._server.auth = auth
        self.metrics.config_reloads.labels("success").inc()
        self.metrics.config_last_reload_success.set(1)
        message = f"configuration reloaded: {len(loaded.rules)} rules; state reset for {len(changed)} changed or removed rules"
        log.info(message)
        self.store.append(HistoryEvent(None, self.clock.now(), "*", None, {}, "reload", message, {"reset": sorted(changed)}))
        self._reload_good()
        return True, message

    def _reload_good(self) -> None:
        """A good configuration runs: resolve the alerts of a rejected reload (even one
        rejected before a restart)."""
        failed = self.store.get_meta(RELOAD_FAILED)
        if not failed:
            return
        now = self.clock.now()
        with self.store.transaction():
            for target in json.loads(failed):
                if target in self.loaded.config.targets:
                    self.engine.alert(target, Alert(
                        status="resolved", kind="config_reload_failed", dedup_key=f"{target}/reload", target=target,
                        rule="", severity="warning", summary="configuration reloaded: the rejected one was fixed",
                        at=rfc3339(now)))
            self.store.set_meta(RELOAD_FAILED, "")

    def _forget_changed_rules(self, old_rules: dict[tuple[str, str], object], old_targets: set[str]) -> list[str]:
        new_rules = {(lr.target, lr.rule.name): lr.rule for lr in self.loaded.rules}
        stale = {key for key, rule in old_rules.items() if new_rules.get(key) != rule}
        doomed = [k for k in self.engine.states if (k[0], k[1]) in stale]
        for key in doomed:
            del self.engine.states[key]
        with self.store.transaction():
            self.store.save_rule_states({}, doomed)
        # their series' metrics go with their state (a changed rule's come back at its next tick)
        self.metrics.rules.retain_rules(set(new_rules) - stale)
        # every removed target's children, rules or not (a rollback by hand leaves decisions of its own)
        self.metrics.forget_targets((old_targets | {t for t, _ in old_rules}) - set(self.loaded.config.targets))
        return [f"{t}/{r}" for t, r in sorted(stale)]

    def _reload_failed(self, problems: str) -> tuple[bool, str]:
        self.metrics.config_reloads.labels("failure").inc()
        self.metrics.config_last_reload_success.set(0)
        message = f"reload rejected, the previous configuration keeps running:\n{problems}"
        log.error(self.redactor.redact(message))
        now = self.clock.now()
        try:
            self.store.append(HistoryEvent(None, now, "*", None, {}, "reload", self.redactor.redact(message), {}))
        except Exception:  # the alert below still goes out
            log.exception("cannot record the rejected reload")
        try:
            with self.store.transaction():
                for target in self.loaded.config.targets:
                    self.engine.alert(target, Alert(status="firing", kind="config_reload_failed", dedup_key=f"{target}/reload",
                                                    target=target, rule="", severity="warning",
                                                    summary=self.redactor.redact(message.splitlines()[0] + " " + problems.splitlines()[0]),
                                                    at=rfc3339(now)))
                self.store.set_meta(RELOAD_FAILED, json.dumps(sorted(self.loaded.config.targets)))
        except Exception:  # a rejected reload never stops the daemon, whatever the store says
            log.exception("cannot queue the reload-failed alert")
        return False, self.redactor.redact(message)

    def _alert_sent(self, alerter: str, alert: Alert) -> None:
        self._record_alert(alert, f"{alert.status} alert sent to {alerter}: {alert.summary}")

    def _alert_failed(self, alerter: str, alert: Alert, message: str) -> None:
        self._record_alert(alert, f"alerter {alerter} could not deliver {alert.status} alert: {message} "
                           "(kept and retried)")

    def _alert_expired(self, alerter: str, alert: Alert, why: str) -> None:
        self._record_alert(alert, f"alerter {alerter}: {alert.status} alert not delivered, {why}", "alert_expired")

    def _record_alert(self, alert: Alert, message: str, kind: str = "alert") -> None:
        if self.store_lost:  # the file is gone: a write would vanish with it
            log.info("not recorded (state store lost): %s", message)
            return
        try:
            self.store.append(HistoryEvent(None, self.clock.now(), alert.target, alert.rule or None, alert.labels,
                                           kind, message, {"dedup_key": alert.dedup_key, "status": alert.status,
                                                              "decision_id": alert.decision_id}))
        except StateError as exc:
            log.error("cannot record alert delivery: %s", exc)

    # -- one tick ---------------------------------------------------------------------------------

    def run_once(self, at: float | None = None) -> TickReport | None:
        """One tick standing for the scheduled time `at` (the tick scheduler's grid point;
        default: the clock's time rounded to the interval's grid)."""
        if self.stop.is_set():
            return None
        with self._tick_lock:
            started = self.clock.now()
            now = scheduled_time(started, self.loaded.config.interval) if at is None else at
            if self._store_is_lost(now):
                return None
            # The log record's own time says when the tick really began (bench/latency.py --trace).
            log.debug("tick %.3f: starting, %+.3f s from its scheduled time", now, started - now)
            try:
                report = self.engine.tick(now)
            except TickAbandoned:
                log.info("evaluation at %s abandoned: shutting down (nothing of it was half-written)", rfc3339(now))
                return None
            except Exception as exc:  # one bad tick must not end the daemon
                self.metrics.evaluation_failures.inc()
                self.last_error = self.redactor.redact(f"{type(exc).__name__}: {exc}")
                log.exception("evaluation at %s failed: %s", rfc3339(now), self.last_error)
                return None
            self.last_tick, self.last_report, self.last_error = now, LastTick(report), ""
            log.debug("tick %.3f: done, %d decisions", now, len(report.decisions))
            jobs = self._export_drills(now)
            cutoff = self.retention.claim(now)
            schedule = self.drill_schedule
            memory.trim()  # what the tick freed goes back to the OS (runtime/memory.py)
        for job in jobs:  # their actuator reads must not hold the tick lock (a slow API would stall ticks)
            self.drill_worker.submit(lambda job=job: schedule.run(job, self._record_drill))
        if cutoff is not None:  # history_retention: batches of short transactions, off the tick thread
            self.drill_worker.submit(lambda: self.retention.prune(cutoff))
        return report

    def _export_drills(self, now: float | None = None) -> list[DrillJob]:
        """The scheduled drills due at `now` (watchdog.rollback.drill_schedule), then drills on /metrics and
        their alerts as the history has them: the CLI or another replica may have run them.
        (`model_watchdog_target_held` follows the store in the tick: Desk.sync.)"""
        jobs: list[DrillJob] = []
        try:
            if now is not None:
                jobs = self.drill_schedule.due(now, self.engine.owned, self.engine.version_gate.invalid.get)
            self._drills.refresh()
        except StateError as exc:  # not worth failing a tick over
            log.warning("cannot run or read drills in the state store: %s", exc)
        return jobs

    def _record_drill(self, write: Callable[[], None]) -> None:
        """A drill's record, under the tick lock (its reads happened without it), exported at once."""
        with self._tick_lock:
            if self.store_lost or self.stop.is_set():  # not recorded: due again after the restart
                return
            write()
            self._export_drills()

    def drill_now(self, target: str, by: str) -> Drill:
        """`POST /api/v1/targets/{t}/drill`: one drill now, exported at once. The store and
        actuator reads happen outside the tick lock; only the record takes it."""
        now, loaded = self.clock.now(), self.loaded
        prepared = prepare_drill(loaded, self.store, target, now, by, self.engine.version_gate.invalid.get(target))
        drill = probe_drill(loaded, prepared)
        self._record_drill(lambda: record_drill(self.store, drill, now, by))
        return drill

    def _alert_target(self, target: str, alert: Alert) -> None:
        if target in self.loaded.config.targets:
            self.notifier.notify(self.loaded.config.targets[target].alert, alert)

    def writes_refused(self) -> str:
        """Why the API must not change anything now (the state store is lost), or "".
        Asked afresh before each mutating request, not only at the tick: a pause written to a
        deleted file between two ticks would be acknowledged and vanish."""
        return self.store_lost if self._store_is_lost(self.clock.now()) else ""

    def _store_is_lost(self, now: float) -> bool:
        """Check the state store is still the one opened; when it is gone, stop acting, alert once."""
        if self.store_lost:
            return True
        with self._lost_lock:
            if self.store_lost:
                return True
            reason = self.store.lost()
            if not reason:
                return False
            self._lost(reason, now)
            return True

    def _lost(self, reason: str, now: float) -> None:
        self.store_lost = reason
        self.metrics.evaluation_failures.inc()
        log.critical("not evaluating or acting any more: %s", reason)
        # Alerts are queued in the store; this one cannot be (the queue is in the lost file, and
        # a replaced file must not be written through the old connection): from now on the
        # notifier delivers from memory, straight to the alerters.
        self.notifier.detach_store()
        for target, settings in self.loaded.config.targets.items():
            self.notifier.notify(settings.alert, Alert(
                status="firing", kind="state_lost", dedup_key=f"{target}/state_lost", target=target, rule="",
                severity="critical", summary=f"{target}: model-watchdog stopped guarding: {reason}", at=rfc3339(now)))
        self._mark_state_lost(reason, now)

    # The lost store cannot remember that `state_lost` fired, so a file beside it does: the next
    # daemon on this path (after a restore and a restart) resolves those alerts and removes it.

    def _lost_marker(self) -> str | None:
        path = getattr(self.store, "path", None)
        return path + LOST_MARKER if isinstance(path, str) and path != ":memory:" else None

    def _mark_state_lost(self, reason: str, now: float) -> None:
        marker = self._lost_marker()
        if marker is None:
            return
        try:
            with open(marker + ".tmp", "w", encoding="utf-8") as f:
                json.dump({"at": rfc3339(now), "reason": reason, "targets": sorted(self.loaded.config.targets)}, f)
            os.replace(marker + ".tmp", marker)
        except OSError as exc:
            log.warning("cannot write %s (the state_lost alerts will not be resolved by the next daemon): %s",
                        marker, exc)

    def _resolve_state_lost(self) -> None:
        marker = self._lost_marker()
        if marker is None or not os.path.isfile(marker):
            return
        try:
            with open(marker, "rb") as f:
                data = json.loads(f.read(65536))
            targets = [t for t in data["targets"] if isinstance(t, str)]
            reason = str(data.get("reason", ""))[:500]
        except (OSError, ValueError, RecursionError, KeyError, TypeError) as exc:
            log.warning("%s is unreadable (%s): resolving state_lost for every target", marker, exc)
            targets, reason = list(self.loaded.config.targets), ""
        now = self.clock.now()
        with self.store.transaction():
            for target in targets:
                if target in self.loaded.config.targets:
                    self.engine.alert(target, Alert(
                        status="resolved", kind="state_lost", dedup_key=f"{target}/state_lost", target=target, rule="",
                        severity="critical", summary=f"{target}: model-watchdog is guarding again (it had stopped: "
                                                     f"{reason or 'state store lost'})", at=rfc3339(now)))
        try:
            os.unlink(marker)
        except OSError as exc:
            log.warning("cannot remove %s: %s", marker, exc)

    # -- health -------------------------------------------------------------------------------------

    def health(self) -> tuple[bool, str]:
        if self._store_is_lost(self.clock.now()):
            return False, self.store_lost
        interval = self.loaded.config.interval
        if self.last_tick is not None and self.clock.now() - self.last_tick > max(3 * interval, 30) + SHUTDOWN_GRACE:
            return False, f"no evaluation since {rfc3339(self.last_tick)}"
        return True, "ok"

    def ready(self) -> tuple[bool, str]:
        if self.last_tick is None:
            return False, "no evaluation completed yet" + (f": {self.last_error}" if self.last_error else "")
        return True, "ok"

    def status(self) -> dict[str, Any]:
        from watchdog.web.status import snapshot
        return snapshot(self)

    # -- the long-running form ------------------------------------------------------------------------

    def start(self) -> str:
        """Start HTTP, alert delivery and the tick scheduler in the background; returns the URL."""
        from watchdog.runtime.phase import PhaseFollower
        from watchdog.runtime.scheduler import TickScheduler

        self._server = self.api_server()
        self._server.start()
        self.notifier.start()
        gctune.settle(full=False)  # start-up's objects frozen, fewer young collections: see runtime/gctune.py
        # APScheduler fires on the real wall clock: its grid is aligned on that one, not on self.clock.
        cfg = self.loaded.config
        follower = PhaseFollower(cfg.align_ticks, lambda: self.sources, cfg.interval) if cfg.align_ticks else None
        self._scheduler = TickScheduler(cfg.interval, self.run_once, steps=self.steps)
        self._scheduler.start()
        if follower is not None:  # shifts the grid once it knows the phase (align_ticks changes at the next start)
            threading.Thread(target=follower.follow, args=(self._scheduler.shift, self.stop, SystemClock()),
                             name="tick-phase", daemon=True).start()
        log.info("model-watchdog running: %d rules, %d targets, evaluating every %gs, listening on %s",
                 len(self.loaded.rules), len(self.loaded.config.targets), self.loaded.config.interval,
                 self._server.address)
        return self._server.address

    def api_server(self) -> "ApiServer":
        """The HTTP API on `listen` (bound, not yet serving): mutating requests are refused
        while the state store is lost; connections ended by a limit are counted."""
        from watchdog.web.api import routes
        from watchdog.web.server import REJECT_REASONS, ApiServer, Limits

        api = self.loaded.config.api
        limits = Limits(max_body=api.max_body, idle_timeout=api.idle_timeout, request_timeout=api.request_timeout,
                        max_connections=api.max_connections, handler_threads=api.handler_threads)
        rejected = self.metrics.api_connections_rejected
        for reason in REJECT_REASONS:  # every reason on /metrics from the start, at 0: rate() and alerts see them
            rejected.labels(reason)
        return ApiServer(self.loaded.config.listen, routes(self), _auth_policy(self.loaded), limits,
                         on_reject=lambda reason: rejected.labels(reason).inc(), writes_refused=self.writes_refused)

    def shutdown(self) -> None:
        """Finish the tick in progress (retries are cut short by `stop`), then close everything."""
        self.stop.set()
        self._scheduler.stop()
        finished = self._tick_lock.acquire(timeout=SHUTDOWN_GRACE)
        self.notifier.drain(timeout=1.0)
        self._server.stop()
        if finished:
            self.close()
            self._tick_lock.release()
        else:
            log.error("the evaluation in progress did not finish within %gs; exiting anyway", SHUTDOWN_GRACE)

    def serve(self) -> int:
        from watchdog.runtime import systemd

        self._install_signals()
        address = self.start()
        systemd.ready(f"guarding {len(self.loaded.config.targets)} targets; API at {address}")
        ping_every = systemd.watchdog_interval()
        last_ping = 0.0
        while not self.stop.wait(min(0.5, ping_every or 0.5)):
            if self.reload_requested.is_set():
                self.reload_requested.clear()
                systemd.reloading()
                ok, message = self.reload()
                systemd.ready(message.splitlines()[0])
            # Keep-alive only while evaluations happen: a stuck engine gets restarted by systemd.
            if ping_every and self.clock.monotonic() - last_ping >= ping_every and self.health()[0]:
                systemd.ping()
                last_ping = self.clock.monotonic()
        log.info("shutting down: finishing the evaluation in progress")
        systemd.stopping()
        self.shutdown()
        log.info("stopped")
        return 0

    def _install_signals(self) -> None:
        def handle(signum: int, _frame: Any) -> None:
            log.info("received %s", signal.Signals(signum).name)
            self.stop.set()

        def hup(_signum: int, _frame: Any) -> None:
            log.info("received SIGHUP: reloading configuration")
            self.reload_requested.set()

        signal.signal(signal.SIGTERM, handle)
        signal.signal(signal.SIGINT, handle)
        signal.signal(signal.SIGHUP, hup)

    def close(self) -> None:
        self.drill_worker.close()
        self.engine.runner.close()
        if not self.store_lost:
            _flush_quietly(self.engine)
        for plugin in [*self.sources.values(), *self.actuators.values(), *self.alerters.values()]:
            _close_quietly(plugin)
        httpbody.abort_all()  # scrapes still in flight end now: their threads would hold the exit
        _close_quietly(self.owner)  # releases this replica's targets at once
        self.store.close()
        redaction.uninstall(self.redactor, self._previous_redactor)


def _flush_quietly(engine: Engine) -> None:
    try:
        engine.flush_states()
    except Exception:  # closing goes on: the store has every state's course already
        log.exception("could not write the quiet rule states at close")


def _open_exclusive(state_path: str) -> StateStore:
    """Open the store for a daemon: one daemon per SQLite file (StateError, exit 3, otherwise)."""
    store = open_store(state_path)
    try:
        store.lock_for_daemon()
    except BaseException:
        store.close()
        raise
    return store


def scheduled_time(now: float, interval: float) -> float:
    """The tick time an evaluation stands for: `now` on the `interval` grid the scheduler
    runs on. Rules are judged at the scheduled times, not at jittery wall-clock reads, so
    `for: 2s` at a 1 s interval fires on exactly the second tick after pending."""
    return round(round(now / interval) * interval, 6)
def _auth_policy(loaded: LoadedConfig) -> "AuthPolicy":
    """The API's tokens (ConfigError if a token file is missing, short or too open)."""
    from watchdog.web.apitokens import require_tokens
    from watchdog.web.server import AuthPolicy

    tokens = require_tokens(loaded)
    return AuthPolicy(tokens.single, loaded.config.api.read_requires_token, tuple(tokens.named))


def _close_quietly(plugin: Any) -> None:
    try:
        plugin.close()
    except Exception:  # closing is best effort
        log.debug("closing %s failed", plugin, exc_info=True)


def wait_for(predicate: Any, timeout: float, interval: float = 0.05, clock: Clock | None = None) -> bool:
    """Poll `predicate` until true or `timeout` elapses (for the demo and tests)."""
    clock = clock or SystemClock()
    deadline = clock.monotonic() + timeout
    while clock.monotonic() < deadline:
        if predicate():
            return True
        clock.sleep(interval)
    return bool(predicate())
