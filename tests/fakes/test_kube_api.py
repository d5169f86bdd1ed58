"""The fake Kubernetes API behaves like the real one where the actuators' tests rely on it."""

from __future__ import annotations

import json
from typing import Any

import pytest
import requests

from tests.fakes.kube_api import FakeKube, deployment

DEPLOY = "/apis/apps/v1/namespaces/ml/deployments/fraud"
SMP = "application/strategic-merge-patch+json"


class ManualClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def patch(kube: FakeKube, body: Any, content_type: str = SMP) -> requests.Response:
    return requests.patch(kube.url + DEPLOY, data=json.dumps(body), headers={"Content-Type": content_type}, timeout=5)


def containers(kube: FakeKube) -> dict[str, dict[str, Any]]:
    return {c["name"]: c for c in kube.get(DEPLOY)["spec"]["template"]["spec"]["containers"]}


@pytest.fixture
def kube():
    with FakeKube() as fake:
        fake.add(deployment(image="registry/fraud:v7", revision=3, sidecar="envoy:1.30"))
        yield fake


def test_strategic_merge_merges_containers_by_name(kube):
    answer = patch(kube, {"spec": {"template": {"spec": {"containers": [
        {"name": "model", "image": "registry/fraud:v6", "env": [{"name": "MODE", "value": "safe"}]}]}}}})

    assert answer.status_code == 200
    found = containers(kube)
    assert found["model"]["image"] == "registry/fraud:v6"
    assert found["model"]["ports"] == [{"containerPort": 8080}]  # untouched fields of the item stay
    assert found["proxy"]["image"] == "envoy:1.30"  # the other item stays (a merge patch would drop it)
    assert found["model"]["env"] == [{"name": "MODE", "value": "safe"}]


def test_strategic_merge_directives_and_lists_without_a_merge_key(kube):
    patch(kube, {"spec": {"template": {"spec": {"containers": [
        {"name": "model", "env": [{"name": "A", "value": "1"}, {"name": "B", "value": "2"}], "args": ["--x"]}]}}}})
    patch(kube, {"spec": {"template": {"spec": {"containers": [
        {"name": "model", "env": [{"name": "A", "$patch": "delete"}], "args": ["--y"]},
        {"name": "proxy", "$patch": "delete"}],
        "$setElementOrder/containers": [{"name": "model"}]}}}})

    found = containers(kube)
    assert list(found) == ["model"]
    assert found["model"]["env"] == [{"name": "B", "value": "2"}]
    assert found["model"]["args"] == ["--y"]  # no merge key: the list is replaced


def test_strategic_merge_needs_the_merge_key(kube):
    answer = patch(kube, {"spec": {"template": {"spec": {"containers": [{"image": "x"}]}}}})
    assert answer.status_code == 422 and "merge key: name" in answer.json()["message"]
    assert containers(kube)["model"]["image"] == "registry/fraud:v7"  # nothing was written


def test_a_rollout_progresses_with_time_not_with_reads():
    clock = ManualClock()
    with FakeKube(clock=clock, stage_seconds=1.0) as kube:
        kube.add(deployment(image="registry/fraud:v7", revision=3, replicas=3))
        patch(kube, {"spec": {"template": {"spec": {"containers": [{"name": "model", "image": "registry/fraud:v6"}]}}}})

        seen = []
        for _ in range(8):
            reads = [requests.get(kube.url + DEPLOY, timeout=5).json()["status"] for _ in range(5)]
            assert all(r == reads[0] for r in reads)  # reading again changes nothing...
            seen.append({k: reads[0].get(k) for k in ("observedGeneration", "replicas", "updatedReplicas",
                                                       "availableReplicas", "terminatingReplicas")})
            clock.now += 1.0  # ...time does

    assert seen == [
        {"observedGeneration": 1, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3, "terminatingReplicas": None},
        {"observedGeneration": 2, "replicas": 4, "updatedReplicas": 1, "availableReplicas": 3, "terminatingReplicas": 0},
        {"observedGeneration": 2, "replicas": 4, "updatedReplicas": 2, "availableReplicas": 3, "terminatingReplicas": 0},
        {"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 3, "terminatingReplicas": 0},
        {"observedGeneration": 2, "replicas": 4, "updatedReplicas": 3, "availableReplicas": 4, "terminatingReplicas": 0},
        {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3, "terminatingReplicas": 1},
        {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3, "terminatingReplicas": 0},
        {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3, "terminatingReplicas": 0},
    ]
