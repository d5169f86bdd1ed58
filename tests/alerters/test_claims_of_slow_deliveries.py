"""Two replicas share one alert queue. A replica that is still delivering (a slow or rate-limited
endpoint: the alerter's own retries honour Retry-After up to 30 s each, so one delivery can take
minutes, and a batch of 20 longer still) must not look dead to the other: its claims are renewed
while it works, so the other replica never delivers the same alert a second time."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from watchdog.alerters.base import Alert
from watchdog.clock import FakeClock
from watchdog.metrics import DaemonMetrics
from watchdog.runtime import notify
from watchdog.runtime.notify import CLAIM_STALE_AFTER, Notifier, enqueue
from watchdog.state.sqlite import SQLiteStateStore
from watchdog.testing import FakeAlerter

pytestmark = pytest.mark.timeout(30)


class SlowAlerter(FakeAlerter):
    """Sends only once `go` is set; tells `started` when a send begins."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.started = threading.Event()
        self.go = threading.Event()

    def send(self, alert: Alert, stop: threading.Event) -> None:
        self.started.set()
        assert self.go.wait(20)
        super().send(alert, stop)


def test_a_replica_still_delivering_keeps_its_claims_and_the_other_does_not_send_again(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(notify, "CLAIM_RENEW_EVERY", 0.02)
    clock = FakeClock()
    path = str(tmp_path / "state.db")
    store_a, store_b = SQLiteStateStore(path), SQLiteStateStore(path)
    slow, other = SlowAlerter("oncall"), FakeAlerter("oncall")
    replica_a = Notifier({"oncall": slow}, DaemonMetrics(), threading.Event(), store=store_a, clock=clock.now)
    replica_b = Notifier({"oncall": other}, DaemonMetrics(), threading.Event(), store=store_b, clock=clock.now)
    for n in range(3):
        enqueue(store_a, ["oncall"], Alert(status="firing", kind="rule", dedup_key=f"t/r/{n}", target="t", rule="r",
                                           severity="critical", summary=f"alert {n}", at="2026-12-03T16:00:00Z"), clock.now())

    delivering = threading.Thread(target=replica_a.drain, args=(0,))
    delivering.start()  # no worker thread: drain delivers the batch on this thread
    try:
        assert slow.started.wait(10)
        clock.advance(CLAIM_STALE_AFTER + 5)  # the first send has taken longer than a dead claimant's claim lasts
        renewed = clock.now()
        for _ in range(500):  # the renewal is real-time: wait for it (a fake-clock instant, compared exactly)
            claimed = store_b._all("SELECT MIN(claimed_at) FROM alert_queue", ())[0][0]
            if claimed == renewed:
                break
            threading.Event().wait(0.01)
        replica_b.drain(timeout=0)
        assert other.sent == [], "the other replica delivered alerts the first one is still delivering"
    finally:
        slow.go.set()
        delivering.join(10)
    assert sorted(a.summary for a in slow.sent) == ["alert 0", "alert 1", "alert 2"]
    assert store_b._all("SELECT COUNT(*) FROM alert_queue", ())[0][0] == 0
    store_a.close()
    store_b.close()
