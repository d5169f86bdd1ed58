"""`model-watchdog demo`: watch a degrading model being rolled back, live, in under a minute.

Starts the simulated model server (version v2, previous v1), runs the real daemon on
`rules/demo/` against it, degrades the model after a healthy spell, and prints each step
from the audit history as it happens: pending → firing → rollback → recovery.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import TextIO

import requests

import watchdog
from watchdog.clock import Clock, SystemClock, rfc3339
from watchdog.config.loader import load
from watchdog.daemon import Daemon
from watchdog.demo.model_server import SimulatedModelServer

HEALTHY_FOR = 6.0
DEADLINE = 50.0


def rules_dir() -> Path:
    """The bundled `rules/` folder: in a wheel it is packaged, in a checkout it is beside."""
    here = Path(watchdog.__file__).resolve().parent
    for candidate in (here.parent / "rules", here / "_bundled" / "rules"):
        if (candidate / "demo" / "watchdog.yaml").is_file():
            return candidate
    raise FileNotFoundError("the bundled rules/demo folder is missing from this installation")


class _Printer:
    def __init__(self, out: TextIO, clock: Clock, quiet: bool):
        self.out, self.clock, self.quiet, self.last_id = out, clock, quiet, 0
        self.start = clock.now()

    def say(self, text: str) -> None:
        if not self.quiet:
            print(f"[{self.clock.now() - self.start:5.1f}s] {text}", file=self.out, flush=True)

    def new_events(self, daemon: Daemon) -> list[str]:
        events = daemon.store.history(limit=200, since_id=self.last_id)
        kinds = []
        for event in reversed(events):
            self.last_id = max(self.last_id, event.id or 0)
            kinds.append(event.kind + ":" + event.message)
            if event.kind in ("state", "decision", "step", "version", "resume", "no_data") or (
                    event.kind == "alert" and "could not" in event.message):
                rule = f"/{event.rule}" if event.rule else ""
                self.say(f"{event.kind:<8} {event.target}{rule}: {event.message}")
        return kinds


def _values(daemon: Daemon) -> str:
    report = daemon.last_report
    if report is None:
        return "waiting for the first evaluation"
    parts = [f"{row.rule}={row.value:.3f}" if row.value is not None else f"{row.rule}=({row.outcome.value})"
             for row in report.rows()]
    return "  ".join(parts) + f"  version={daemon.engine.versions.get('fraud-model')}"


def run_demo(out: TextIO, quiet: bool = False, clock: Clock | None = None) -> int:
    clock = clock or SystemClock()
    start = clock.now()
    with tempfile.TemporaryDirectory(prefix="model-watchdog-demo-") as tmp, \
            SimulatedModelServer(version="v2", previous_versions=("v1",)) as model:
        env = dict(os.environ, DEMO_MODEL_URL=model.url, DEMO_STATE=str(Path(tmp) / "state.db"))
        loaded = load(rules_dir() / "demo" / "watchdog.yaml", environ=env)
        daemon = Daemon(loaded, clock=clock)
        printer = _Printer(out, clock, quiet)
        printer.say(f"simulated model server at {model.url} running version v2 (v1 before it); healthy")
        printer.say(f"daemon started: {len(loaded.rules)} rules, evaluating every {loaded.config.interval:g}s, "
                    f"status API at {daemon.start()}/api/v1/status")
        try:
            outcome = _story(daemon, model.url, printer)
        finally:
            daemon.shutdown()
        rollbacks = requests.get(model.url + "/rollbacks", timeout=5).json()
    effective = [r for r in rollbacks if r.get("effective")]
    print(f"demo finished in {clock.now() - start:.0f}s: {outcome}; the rollback hook was called "
          f"{len(rollbacks)} time(s), {len(effective)} effective.", file=out, flush=True)
    return 0 if outcome == "rolled back and recovered" and len(effective) == 1 else 1


def _story(daemon: Daemon, model_url: str, printer: _Printer) -> str:
    degraded = rolled_back = False
    last_values = 0.0
    clock = printer.clock
    while clock.now() - printer.start < DEADLINE:
        clock.sleep(0.25)
        kinds = printer.new_events(daemon)
        if clock.now() - last_values >= 2.0:
            last_values = clock.now()
            printer.say(_values(daemon))
        if not degraded and clock.now() - printer.start >= HEALTHY_FOR:
            requests.post(model_url + "/control", json={"mode": "degraded"}, timeout=5)
            degraded = True
            printer.say("*** the model degrades: 20% errors, p99 latency 0.8s, accuracy 0.80 ***")
        rolled_back = rolled_back or any(k.startswith("decision:rollback completed") for k in kinds)
        if rolled_back and _all_quiet(daemon):
            printer.say(_values(daemon))
            printer.say(f"all rules inactive again at {rfc3339(clock.now())}: the target recovered")
            return "rolled back and recovered"
    return "rolled back but did not recover in time" if rolled_back else "no rollback happened"


def _all_quiet(daemon: Daemon) -> bool:
    report = daemon.last_report
    return report is not None and all(row.phase.value == "inactive" and row.outcome.value == "ok"
                                      for row in report.rows())
