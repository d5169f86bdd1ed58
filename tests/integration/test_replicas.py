"""Several real daemons sharing one real PostgreSQL: targets are split between them, a
firing target is rolled back once, and when the owner of a target is killed (-9) in the
middle of a rollback, another replica takes the target over and finishes the rollback —
exactly one effective rollback at the receiver."""

from __future__ import annotations

import uuid

import pytest
import requests

from watchdog.demo.model_server import SimulatedModelServer

from tests.integration.daemon_process import DaemonProcess, free_port, wait_until

pytestmark = [pytest.mark.integration, pytest.mark.timeout(180)]

CONFIG = """\
interval: 1s
state: {dsn}
listen: 127.0.0.1:{port}
replica_id: {replica}
rule_files: [rules.yaml]
sources:
  a: {{type: scrape, url: "{a}/metrics", timeout: 1s}}
  b: {{type: scrape, url: "{b}/metrics", timeout: 1s}}
actuators:
  hook-a: {{type: webhook, url: "{a}/rollback", timeout: 30s, backoff: 200ms}}
  hook-b: {{type: webhook, url: "{b}/rollback", timeout: 30s, backoff: 200ms}}
targets:
  model-a: {{rollback: [hook-a]}}
  model-b: {{rollback: [hook-b]}}
"""

RULES = """\
target: {target}
rules:
  - {{name: accuracy, source: {source}, query: model_accuracy, below: 0.9, for: 2s, action: rollback}}
"""


class Replica(DaemonProcess):
    def __init__(self, directory, dsn, a, b, name):  # type: ignore[no-untyped-def]
        directory.mkdir()
        self.dir = directory
        self.port = free_port()
        self.config = directory / "watchdog.yaml"
        self.config.write_text(CONFIG.format(dsn=dsn, port=self.port, replica=name, a=a, b=b))
        (directory / "rules.yaml").write_text(RULES.format(target="model-a", source="a") + "\n")
        (directory / "rules-b.yaml").write_text(RULES.format(target="model-b", source="b"))
        self.config.write_text(self.config.read_text().replace("rule_files: [rules.yaml]", "rule_files: [rules.yaml, rules-b.yaml]"))
        self.proc = None
        self.log = directory / "daemon.log"
        self.name = name

    def guards(self) -> set[str]:
        try:
            return set(self.status()["replica"]["guards"])
        except (requests.RequestException, KeyError):
            return set()


def calls(model: SimulatedModelServer) -> list[dict]:
    return requests.get(model.url + "/rollbacks", timeout=5).json()


def test_replicas_split_targets_and_roll_back_exactly_once_across_a_kill_9(tmp_path, postgres):
    dsn = postgres.create_database(f"replicas_{uuid.uuid4().hex[:8]}")
    with SimulatedModelServer() as a, SimulatedModelServer() as b:
        replicas = [Replica(tmp_path / f"r{i}", dsn, a.url, b.url, f"replica-{i}") for i in range(3)]
        try:
            for r in replicas:
                r.start()
            # Each target is guarded by exactly one replica, and not both by the same one.
            def split() -> bool:
                owned = [r.guards() for r in replicas]
                flat = [t for o in owned for t in o]
                return sorted(flat) == ["model-a", "model-b"] and all(len(o) <= 1 for o in owned)
            wait_until(split, 60, what="the targets to be split between replicas")

            requests.post(a.url + "/control", json={"mode": "degraded"}, timeout=5)
            wait_until(lambda: calls(a), 30, what="model-a's rollback")
            for r in replicas:  # every replica evaluated several times more: none sent it again
                r.wait_evaluations(4)
            assert len(calls(a)) == 1

            owner_b = next(r for r in replicas if "model-b" in r.guards())
            requests.post(b.url + "/control", json={"rollback_delay": 60}, timeout=5)
            requests.post(b.url + "/control", json={"mode": "degraded"}, timeout=5)
            wait_until(lambda: calls(b), 30, what="model-b's rollback to be in flight")
            owner_b.kill()  # -9 while the webhook waits for its answer
            requests.post(b.url + "/control", json={"rollback_delay": 0}, timeout=5)
            survivors = [r for r in replicas if r is not owner_b]
            wait_until(lambda: any("model-b" in r.guards() for r in survivors), 30, what="a takeover of model-b")
            wait_until(lambda: len(calls(b)) == 2, 30, what="the resumed rollback")
            for r in survivors:
                r.wait_evaluations(4)
            keys = [c["idempotency_key"] for c in calls(b)]
            assert len(keys) == 2 and keys[0] == keys[1]
            assert [c["effective"] for c in calls(b)] == [True, False]
            decisions = survivors[0].status()["targets"]["model-b"]["decisions"]
            assert [d["status"] for d in decisions] == ["succeeded"]
        finally:
            for r in replicas:
                r.close()
