"""The daemon's HTTP API: reads are open, writes need the bearer token; reload is atomic."""

from __future__ import annotations


import pytest
import requests

from watchdog.config.loader import load
from watchdog.daemon import Daemon, wait_for
from watchdog.demo.model_server import SimulatedModelServer

pytestmark = pytest.mark.timeout(60)

TOKEN = "a-long-api-token-0123456789"

CONFIG = """\
interval: 500ms
state: state.db
listen: 127.0.0.1:0
rule_files: [rules.yaml]
api: {{token_file: token}}
sources:
  model: {{type: scrape, url: "{url}/metrics"}}
actuators:
  hook: {{type: webhook, url: "{url}/rollback"}}
alerters:
  ops: {{type: log}}
targets:
  fraud-model:
    rollback: [hook]
    alert: [ops]
"""

RULES = """\
target: fraud-model
rules:
  - name: accuracy
    source: model
    query: model_accuracy
    below: 0.9
    action: rollback
  - name: latency
    source: model
    query: histogram_quantile(0.99, sum by (le) (rate(request_latency_seconds_bucket[5s])))
    above: 0.5
    for: 1h
"""


@pytest.fixture
def running(tmp_path):
    with SimulatedModelServer() as model:
        (tmp_path / "token").write_text(TOKEN + "\n")
        (tmp_path / "token").chmod(0o600)
        (tmp_path / "watchdog.yaml").write_text(CONFIG.format(url=model.url))
        (tmp_path / "rules.yaml").write_text(RULES)
        daemon = Daemon(load(tmp_path / "watchdog.yaml"))
        url = daemon.start()
        assert wait_for(lambda: daemon.last_tick is not None, 20)
        yield daemon, url, tmp_path, model
        daemon.shutdown()


def auth(token: str = TOKEN) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def test_reads_are_open_and_writes_need_the_token(running):
    daemon, url, _, _ = running
    assert requests.get(url + "/api/v1/status", timeout=5).status_code == 200
    assert requests.get(url + "/healthz", timeout=5).text == "ok\n"
    pause = url + "/api/v1/targets/fraud-model/pause"
    body = {"reason": "maintenance", "by": "alice"}
    assert requests.post(pause, json=body, timeout=5).status_code == 401
    assert requests.post(pause, json=body, headers=auth("wrong-token-wrong-token"), timeout=5).status_code == 401
    ok = requests.post(pause, json=body, headers=auth(), timeout=5)
    assert ok.status_code == 200 and "paused by api: maintenance (note: by alice)" in ok.json()["message"]
    assert requests.get(pause, timeout=5).status_code == 405
    assert requests.post(url + "/api/v1/targets/nope/pause", json=body, headers=auth(), timeout=5).status_code == 400


def test_the_token_never_appears_in_responses(running):
    _, url, _, _ = running
    everything = "".join(requests.get(url + p, timeout=5).text for p in ("/metrics", "/api/v1/status", "/api/v1/history", "/nope"))
    assert TOKEN not in everything


def test_a_broken_reload_keeps_the_last_good_configuration(running):
    daemon, url, tmp_path, _ = running
    before = daemon.loaded
    (tmp_path / "rules.yaml").write_text(RULES.replace("below: 0.9", "belo: 0.9"))
    response = requests.post(url + "/api/v1/reload", headers=auth(), timeout=10)
    assert response.status_code == 422
    assert "rules.yaml:6:5" in response.json()["message"] and "unknown key 'belo'" in response.json()["message"]
    assert daemon.loaded is before
    assert "model_watchdog_config_last_reload_successful 0.0" in requests.get(url + "/metrics", timeout=5).text
    ticks = daemon.metrics.evaluations._value.get()
    assert wait_for(lambda: daemon.metrics.evaluations._value.get() > ticks + 1, 10)  # still evaluating


def test_the_reload_alert_resolves_on_the_next_good_reload(running):
    daemon, _, tmp_path, _ = running
    good = (tmp_path / "rules.yaml").read_text()
    (tmp_path / "rules.yaml").write_text(good.replace("below: 0.9", "belo: 0.9"))
    assert daemon.reload()[0] is False
    (tmp_path / "rules.yaml").write_text(good)
    assert daemon.reload()[0] is True

    def sent() -> list[tuple[str, str]]:
        rows = daemon.store.history(kinds=["alert"], limit=50)
        return [(e.data["status"], e.data["dedup_key"]) for e in reversed(rows) if "reload" in e.data["dedup_key"]]
    assert wait_for(lambda: sent() == [("firing", "fraud-model/reload"), ("resolved", "fraud-model/reload")], 10), sent()


def test_a_good_reload_keeps_state_of_unchanged_rules(running):
    daemon, url, tmp_path, model = running
    # Paused, so the accuracy rule's rollback does not heal the model (and end the latency
    # rule's pending) between the wait below and the reload on a loaded machine.
    pause = requests.post(url + "/api/v1/targets/fraud-model/pause", json={"reason": "test"}, headers=auth(), timeout=5)
    assert pause.status_code == 200, pause.text
    requests.post(model.url + "/control", json={"mode": "degraded"}, timeout=5)
    assert wait_for(lambda: any(k[1] == "latency" and s.phase.value == "pending" for k, s in daemon.engine.states.items()), 20)
    pending_since = next(s.pending_since for k, s in daemon.engine.states.items() if k[1] == "latency")
    (tmp_path / "rules.yaml").write_text(RULES.replace("below: 0.9", "below: 0.5"))  # only `accuracy` changes
    response = requests.post(url + "/api/v1/reload", headers=auth(), timeout=10)
    assert response.status_code == 200, response.text
    latency = [s for k, s in daemon.engine.states.items() if k[1] == "latency"]
    assert latency and latency[0].pending_since == pending_since
    assert response.json()["message"] == "configuration reloaded: 2 rules; state reset for 1 changed or removed rules"
    (event,) = daemon.store.history(kinds=["reload"], limit=5)
    assert event.data == {"reset": ["fraud-model/accuracy"]}  # which rule lost its state, and only that one
