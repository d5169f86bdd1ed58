"""Alert delivery off the evaluation path.

Alerts are queued and sent by one worker thread, so a slow or dead alerting endpoint never
delays the detection of the next breach. Each delivery outcome is counted and failures are
written to the history.

With a state store, the queue *is* the store's alert queue: an alert is queued in the same
transaction as the state change it reports, survives a restart until delivered, and an
operator's CLI command (approve, resume, …) queues alerts that the running daemon delivers.
Without one (rule tests, benchmarks) the queue lives in memory.

A delivery that still fails after the alerter's own retries stays in the store's queue and is
tried again by the worker, after RETRY_FIRST doubling up to RETRY_MAX, until it goes out or
is `max_age` old (`alert_max_age`, default 24h): then it is given up, counted as
`model_watchdog_alerts_total{outcome="expired"}` and reported through `on_expired` (the
daemon's history, kind `alert_expired`). It survives a restart like any queued alert. The
deliveries of one alerter and dedup key go out in the order queued: a resolve waits behind
its firing, even while the firing waits for a retry; a retry with the same status as a newer
alert of its key is replaced by the newer one.

When the store is lost (its file deleted or replaced, `detach_store`), alerts from then on —
above all `state_lost` itself — are delivered from memory, and a delivery that fails is tried
again (RETRY_FIRST, doubling up to RETRY_MAX) until it goes out or the daemon stops: there is
no queue left to keep it for a later attempt.
"""

from __future__ import annotations

import contextlib
import heapq
import itertools
import json
import logging
import queue
import threading
import uuid
from dataclasses import dataclass
from typing import Callable, Iterator

from watchdog.alerters.base import Alert, Alerter
from watchdog.clock import STEP_TOLERANCE, StepBack, SystemClock
from watchdog.durations import format_duration
from watchdog.errors import StateError, WatchdogError
from watchdog.metrics import DaemonMetrics
from watchdog.redact import redact
from watchdog.state.base import AlertQueue

log = logging.getLogger("watchdog.notify")

#: a delivery claimed by a notifier that died is delivered by another after this long
CLAIM_STALE_AFTER = 60.0
#: while a batch is being delivered, its claims are renewed this often: one delivery may take
#: minutes (retries honouring Retry-After), and a live claimant must not look like a dead one
CLAIM_RENEW_EVERY = CLAIM_STALE_AFTER / 4
POLL_SECONDS = 1.0  # how often the worker looks for alerts queued by other processes
RETRY_FIRST, RETRY_MAX = 5.0, 300.0  # a failed delivery is tried again after these (doubling)
MAX_AGE = 24 * 3600.0  # a failed delivery is given up when it is this old (`alert_max_age`)
#: a retry planned further ahead than this was planned before the wall clock stepped back: due now
RETRY_AHEAD = RETRY_MAX + STEP_TOLERANCE


@dataclass(frozen=True)
class _Delivery:
    alerter: str
    alert: Alert
    queued_id: int | None = None
    attempt: int = 0  # failed attempts so far
    queued_at: float | None = None  # in the store's queue since (None: from memory)


def enqueue(store: AlertQueue, alerter_names: list[str], alert: Alert, now: float) -> None:
    """Queue `alert` for each alerter in the store (for a daemon's notifier to deliver)."""
    text = json.dumps(alert.as_json(), sort_keys=True)
    with store.transaction():
        for name in alerter_names:
            store.enqueue_alert(name, text, now, alert.dedup_key)


def _alert_of(text: str) -> Alert:
    data = json.loads(text)
    known = {k: v for k, v in data.items() if k in Alert.__dataclass_fields__}
    return Alert(**known)


class Notifier:
    def __init__(self, alerters: dict[str, Alerter], metrics: DaemonMetrics, stop: threading.Event,
                 on_failure: Callable[[str, Alert, str], None] | None = None,
                 on_sent: Callable[[str, Alert], None] | None = None,
                 store: AlertQueue | None = None, clock: Callable[[], float] | None = None,
                 on_expired: Callable[[str, Alert, str], None] | None = None, max_age: float = MAX_AGE,
                 steps: StepBack | None = None):
        self._alerters = alerters
        self._on_expired = on_expired
        self.max_age = max_age  # a reload may change it
        self._metrics = metrics
        self._stop = stop
        self._on_failure = on_failure
        self._on_sent = on_sent
        self._store = store
        self._clock = clock or SystemClock().now
        # The wall clock's steps (for `queued_at`): the daemon's, fed by the scheduler and the
        # ticks; without one (a command, a test), one of its own fed by its own clock readings.
        self._steps = steps or StepBack()
        self._observes = steps is None
        self._claimant = f"notifier-{uuid.uuid4().hex[:12]}"
        self._queue: queue.Queue[_Delivery | None] = queue.Queue()
        self._detached = False  # the store was lost: deliveries from memory are retried until they go out
        self._later: list[tuple[float, int, _Delivery]] = []  # (due, order, delivery): retries, by due time
        self._later_lock = threading.Lock()
        self._order = itertools.count()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._thread: threading.Thread | None = None

    def replace_alerters(self, alerters: dict[str, Alerter]) -> None:
        """After a reload: deliveries still queued go to the new alerters of the same name."""
        self._alerters = alerters

    def detach_store(self) -> None:
        """The store is lost (its file deleted or replaced): stop reading and writing its queue;
        alerts from now on are delivered from memory. Deliveries still queued in the lost
        store stay there, undelivered."""
        if self._store is not None:
            log.error("alert queue in the state store abandoned (store lost): alerts are delivered from memory "
                      "and retried until they go out; deliveries still queued in the lost store stay there")
        self._store = None
        self._detached = True
        self._wake.set()

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="alerts", daemon=True)
        self._thread.start()

    def notify(self, alerter_names: list[str], alert: Alert) -> None:
        log.info("alert %s %s: %s", alert.status, alert.dedup_key, alert.summary)
        store = self._store
        if store is not None:
            enqueue(store, alerter_names, alert, self._clock())
            self._wake.set()
            return
        for name in alerter_names:
            self._queue.put(_Delivery(name, alert))

    def drain(self, timeout: float) -> None:
        """Send what is queued (used on shutdown and by tests); gives up after `timeout`."""
        if self._thread is None:
            self._deliver_all()
            return
        self._closing.set()
        self._wake.set()
        self._queue.put(None)
        self._thread.join(timeout)

    def _run(self) -> None:
        while True:
            if self._store is None:
                try:
                    item = self._queue.get(timeout=self._until_retry())
                except queue.Empty:
                    self._retry_due()
                    continue
                if item is None:
                    self._give_up_retries()
                    return
                self._deliver(item)
                self._retry_due()
                continue
            self._deliver_all()
            if self._closing.is_set():
                return
            self._wake.wait(POLL_SECONDS)
            self._wake.clear()

    def _deliver_all(self) -> None:
        if self._store is not None:
            while not (self._stop.is_set() and not self._closing.is_set()):
                batch = self._claim()
                if not batch:
                    break
                with self._renewing(batch):
                    for item in batch:
                        self._deliver(item)
            if self._store is not None:
                return
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                self._deliver(item)
        self._retry_due()

    # -- retries of deliveries from memory (the store is lost) ----------------------------------------

    def _until_retry(self) -> float | None:
        """Seconds until the next retry is due (None: no retry waits)."""
        with self._later_lock:
            if not self._later:
                return None
            return min(max(self._later[0][0] - self._clock(), 0.05), POLL_SECONDS)

    def _now(self) -> float:
        now = self._clock()
        if self._observes:  # (a shared StepBack is fed by the ticks only: their `now` is a grid point)
            self._steps.observe(now)
        return now

    def _retry_due(self) -> None:
        while not self._stop.is_set():
            with self._later_lock:
                now = self._now()  # a retry further ahead than RETRY_AHEAD was planned before a step back
                if not self._later or now < self._later[0][0] <= now + RETRY_AHEAD:
                    return
                _, _, item = heapq.heappop(self._later)
            self._deliver(item)

    def _retry_later(self, item: _Delivery) -> float:
        wait = min(RETRY_FIRST * 2 ** item.attempt, RETRY_MAX)
        with self._later_lock:
            heapq.heappush(self._later, (self._clock() + wait, next(self._order),
                                         _Delivery(item.alerter, item.alert, None, item.attempt + 1)))
        return wait

    def _give_up_retries(self) -> None:
        with self._later_lock:
            left, self._later = self._later, []
        for _, _, item in left:
            log.error("alerter %s: %s alert %s not delivered before shutdown (the state store was lost, so it "
                      "was not kept)", item.alerter, item.alert.status, item.alert.dedup_key)

    def _claim(self) -> list[_Delivery]:
        store = self._store
        if store is None:  # detached meanwhile (store lost)
            return []
        try:
            rows = store.claim_alerts(self._claimant, self._now(), stale_after=CLAIM_STALE_AFTER, retry_within=RETRY_AHEAD)
        except StateError as exc:
            log.error("cannot read the alert queue: %s", exc)
            return []
        out = []
        for row in rows:
            try:
                out.append(_Delivery(row.alerter, _alert_of(row.alert), row.id, row.attempts, row.queued_at))
            except (ValueError, TypeError) as exc:  # a row nobody can deliver: drop it, say so
                log.error("dropping unreadable queued alert %d: %s", row.id, exc)
                self._done(row.id)
        return out

    @contextlib.contextmanager
    def _renewing(self, batch: list[_Delivery]) -> Iterator[None]:
        """While the batch is delivered, renew its claims every CLAIM_RENEW_EVERY seconds (from
        a small thread): another replica takes a claim older than CLAIM_STALE_AFTER for a dead
        claimant's and would deliver the same alert again."""
        store, ids = self._store, [item.queued_id for item in batch if item.queued_id is not None]
        if store is None or not ids:
            yield
            return
        done = threading.Event()

        def renew() -> None:
            while not done.wait(CLAIM_RENEW_EVERY):
                try:
                    store.renew_alert_claims(self._claimant, ids, self._clock())
                except StateError as exc:
                    log.warning("cannot renew the claims of alerts being delivered: %s", exc)

        threading.Thread(target=renew, name="alert-claims", daemon=True).start()
        try:
            yield
        finally:
            done.set()

    def _done(self, queued_id: int | None) -> None:
        store = self._store
        if store is None or queued_id is None:
            return
        try:
            store.delete_alert(queued_id)
        except StateError as exc:
            log.error("cannot remove delivered alert %d from the queue: %s", queued_id, exc)

    def _deliver(self, item: _Delivery) -> None:
        alerter = self._alerters.get(item.alerter)
        if alerter is None:
            self._done(item.queued_id)
            return
        try:
            alerter.send(item.alert, self._stop)
        except WatchdogError as exc:
            self._failed(item, str(exc))
        except Exception as exc:  # a third-party alerter's bug must not kill alerting
            self._failed(item, f"{type(exc).__name__}: {exc}")
        else:
            self._done(item.queued_id)
            self._metrics.alerts.labels(item.alerter, "sent").inc()
            if self._on_sent is not None:
                self._on_sent(item.alerter, item.alert)

    def _failed(self, item: _Delivery, message: str) -> None:
        if self._stop.is_set() and self._store is not None:
            return  # cut short by shutdown: stays queued, delivered after the restart
        message = redact(message)
        self._metrics.alerts.labels(item.alerter, "failed").inc()
        if item.queued_id is not None and self._store is not None:
            self._keep(item, message)  # the queue keeps it for a later attempt
        elif self._detached and not self._stop.is_set():  # no queue keeps it: try again from memory
            self._done(item.queued_id)
            wait = self._retry_later(item)
            log.error("alerter %s could not deliver %s (attempt %d): %s; trying again in %gs", item.alerter,
                      item.alert.dedup_key, item.attempt + 1, message, wait)
        else:
            self._done(item.queued_id)
            log.error("alerter %s could not deliver %s: %s", item.alerter, item.alert.dedup_key, message)
        if self._on_failure is not None and item.attempt == 0:
            self._on_failure(item.alerter, item.alert, message)

    def _keep(self, item: _Delivery, message: str) -> None:
        """Retry a queued delivery later, or give it up when it is `max_age` old."""
        assert item.queued_id is not None and self._store is not None
        now = self._now()
        age = now - (self._steps.seen(item.queued_at, now) if item.queued_at is not None else now)
        wait = min(RETRY_FIRST * 2 ** item.attempt, RETRY_MAX)
        if age + wait > self.max_age:
            self._done(item.queued_id)
            self._metrics.alerts.labels(item.alerter, "expired").inc()
            why = (f"given up after {item.attempt + 1} attempts over {format_duration(age)} (alert_max_age "
                   f"{format_duration(self.max_age)}); last error: {message}")
            log.error("alerter %s: %s alert %s %s", item.alerter, item.alert.status, item.alert.dedup_key, why)
            if self._on_expired is not None:
                self._on_expired(item.alerter, item.alert, why)
            return
        try:
            self._store.retry_alert(item.queued_id, now + wait, message)
        except StateError as exc:  # stays claimed: another attempt once the claim is stale
            log.error("cannot keep failed alert %d for a retry: %s", item.queued_id, exc)
        log.error("alerter %s could not deliver %s (attempt %d): %s; trying again in %gs", item.alerter,
                  item.alert.dedup_key, item.attempt + 1, message, wait)
