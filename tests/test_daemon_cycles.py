"""A steady daemon leaves nothing to the cyclic collector (tests/cycles.py): the soak's RSS
growth (bench/soak.py, +4.5 MB/h at a 1 s interval) was a reference cycle per tick that the
daemon's rare collections (runtime/gctune.py) left for hours. The demo's scenario in process,
on a fake clock: the real Daemon, scrape source, webhook actuator, releases and a rollback."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.cycles import cyclic_garbage
from watchdog.clock import FakeClock
from watchdog.config.loader import load
from watchdog.daemon import Daemon
from watchdog.demo.model_server import SimulatedModelServer

pytestmark = pytest.mark.timeout(60)

CONFIG = """\
interval: 1s
state: state.db
max_rollbacks: {{count: 1000, window: 1h}}
rule_files: [rules.yaml]
sources:
  model: {{type: scrape, url: "{url}/metrics"}}
actuators:
  hook: {{type: webhook, url: "{url}/rollback"}}
alerters:
  log: {{type: log}}
targets:
  demo:
    version: {{source: model, query: model_info, label: version}}
    rollback: [hook]
    alert: [log]
"""

RULES = """\
target: demo
rules:
  - name: error-ratio
    source: model
    query: sum(rate(requests_total{status="error"}[5s])) / sum(rate(requests_total[5s]))
    above: 0.05
    for: 2s
    action: rollback
  - name: accuracy
    source: model
    query: model_accuracy
    below: 0.9
"""


def test_ticks_releases_and_a_rollback_leave_no_cyclic_garbage(tmp_path: Path) -> None:
    with SimulatedModelServer(version="v2", previous_versions=("v1",)) as model:
        (tmp_path / "watchdog.yaml").write_text(CONFIG.format(url=model.url))
        (tmp_path / "rules.yaml").write_text(RULES)
        clock = FakeClock()
        daemon = Daemon(load(tmp_path / "watchdog.yaml"), clock=clock)
        try:
            for _ in range(3):  # the first ticks build what the daemon keeps
                daemon.run_once()
                clock.advance(1)

            def ticks() -> None:
                for i in range(24):
                    if i % 8 == 0:  # a release; every other one degraded, which the rule rolls back
                        model.deploy(f"v{3 + i // 8}")
                        if i % 16 == 0:
                            model.set_mode("degraded")
                    for _ in range(10):  # the model's traffic of that second (0.1 s steps)
                        model.tick()
                    daemon.run_once()
                    clock.advance(1)

            garbage = cyclic_garbage(ticks)
            assert model.rollbacks(), "the scenario rolls back at least once"
            assert garbage == {}
        finally:
            daemon.close()
