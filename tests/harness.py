"""An engine on fakes, driven by a fake clock: the production Engine, RollbackExecutor,
Notifier and SQLite store, with FakeSource/FakeActuator/FakeAlerter at the edges."""

from __future__ import annotations

import threading
import textwrap
from pathlib import Path

from watchdog.rollback.executor import RollbackExecutor
from watchdog.clock import FakeClock
from watchdog.config.loader import load
from watchdog.engine import Engine, TickReport
from watchdog.metrics import DaemonMetrics
from watchdog.runtime.notify import Notifier
from watchdog.state.sqlite import SQLiteStateStore
from watchdog.testing import FakeActuator, FakeAlerter, FakeSource

CONFIG = """\
interval: 10s
state: state.db
rule_files: [rules.yaml]
sources:
  model: {{type: scrape, url: "http://127.0.0.1:9/metrics"}}
actuators:
  first: {{type: webhook, url: "http://127.0.0.1:9/first"}}
  second: {{type: webhook, url: "http://127.0.0.1:9/second"}}
  third: {{type: webhook, url: "http://127.0.0.1:9/third"}}
alerters:
  ops: {{type: log}}
targets:
  fraud-model:
{target}
"""

DEFAULT_TARGET = """\
    version: {source: model, query: model_info, label: version}
    rollback: [first, second]
    alert: [ops]
"""


class Harness:
    def __init__(self, tmp_path: Path, rules: str, target: str = DEFAULT_TARGET, interval: float = 10.0):
        self.dir = tmp_path
        (tmp_path / "watchdog.yaml").write_text(CONFIG.format(target=textwrap.indent(textwrap.dedent(target), "    ").rstrip()))
        (tmp_path / "rules.yaml").write_text("target: fraud-model\nrules:\n" + textwrap.indent(textwrap.dedent(rules), "  "))
        self.loaded = load(tmp_path / "watchdog.yaml")
        self.clock = FakeClock()
        self.interval = interval
        self.source = FakeSource("model")
        self.source.set("model_info", lambda now: self._version_series())
        self.version: str | None = "v2"
        self.actuators = {name: FakeActuator(name) for name in ("first", "second", "third")}
        self.alerter = FakeAlerter("ops")
        self.start()

    def _version_series(self):  # type: ignore[no-untyped-def]
        from watchdog.testing import series
        return [series(1, version=self.version)] if self.version else None

    def start(self) -> None:
        """(Re)start the engine on the same state file: what a daemon restart does."""
        self.stop = threading.Event()
        self.metrics = DaemonMetrics()
        self.store = SQLiteStateStore(str(self.dir / "state.db"))
        self.notifier = Notifier({"ops": self.alerter}, self.metrics, self.stop, store=self.store, clock=self.clock.now)
        self.executor = RollbackExecutor(self.store, self.actuators, self.metrics, self.stop)
        self.engine = Engine(self.loaded, self.store, {"model": self.source}, self.executor, self.notifier, self.metrics,
                             clock=self.clock)

    def restart(self) -> None:
        self.store.close()
        self.start()

    def tick(self) -> TickReport:
        report = self.engine.tick(self.clock.now())
        self.notifier.drain(timeout=0)
        self.clock.advance(self.interval)
        return report

    def run_for(self, seconds: float) -> list[TickReport]:
        return [self.tick() for _ in range(int(seconds // self.interval))]

    def phases(self, rule: str) -> dict[str, str]:
        return {k[2]: s.phase.value for k, s in self.engine.states.items() if k[1] == rule}

    def rollbacks(self) -> int:
        return len(self.actuators["first"].calls)

    def alerts(self, kind: str | None = None, status: str | None = None) -> list:  # type: ignore[type-arg]
        return [a for a in self.alerter.sent if (kind is None or a.kind == kind) and (status is None or a.status == status)]
