"""APScheduler wiring, and nothing else: run `job` every `interval` seconds.

`coalesce` and `max_instances=1` mean a slow tick (a rollback in flight) delays the next one
instead of stacking evaluations on top of each other.
"""

from __future__ import annotations

import logging
import math
from datetime import datetime, timezone
from typing import Callable

from apscheduler.schedulers.background import BackgroundScheduler

from watchdog.clock import Clock, SystemClock

log = logging.getLogger("watchdog.scheduler")


class TickScheduler:
    def __init__(self, interval: float, job: Callable[[], None], clock: Clock | None = None):
        clock = clock or SystemClock()  # the clock APScheduler runs on (the system's, unless testing this class)
        self._scheduler = BackgroundScheduler(timezone=timezone.utc, job_defaults={
            "coalesce": True, "max_instances": 1, "misfire_grace_time": max(1, int(interval))})
        # Ticks on the grid of `interval` (as Prometheus aligns evaluations), so that each run
        # is near the scheduled time the daemon evaluates at (`daemon.scheduled_time`).
        first = datetime.fromtimestamp(math.ceil(clock.now() / interval) * interval, timezone.utc)
        self._scheduler.add_job(job, "interval", seconds=interval, id="evaluate", start_date=first, next_run_time=first)
        now = clock.now()
        if first.timestamp() - now > 0.5:  # and one at once, so the daemon is soon ready
            self._scheduler.add_job(job, "date", id="first", run_date=datetime.fromtimestamp(now, timezone.utc))
        # APScheduler logs every skipped run at WARNING; a long rollback makes that noise.
        logging.getLogger("apscheduler.scheduler").setLevel(logging.ERROR)
        logging.getLogger("apscheduler.executors.default").setLevel(logging.ERROR)

    def start(self) -> None:
        self._scheduler.start()

    def stop(self) -> None:
        if self._scheduler.running:
            self._scheduler.shutdown(wait=False)
