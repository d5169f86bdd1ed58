"""The `kserve` actuator against a fake API server.

The fake (tests/fakes/kube_api.py) follows the Kubernetes API contract for a CRD (merge patch
only; strategic merge answers 415) and KServe's Serverless canary behaviour for
`canaryTrafficPercent` (kserve pkg/apis/serving/v1beta1 and the knative ksvc reconciler, as
summarised in shared/reference/apis.md section 4): after a completed rollout, pinning to 0
takes two reconciles before the previous revision carries 100 %.
"""

from __future__ import annotations

import threading

import pytest

from tests.actuators.kube_fixtures import make_context
from tests.fakes.kube_api import FakeKube, inference_service
from watchdog.actuators.kserve import KServeActuator
from watchdog.errors import ActuatorError

pytestmark = pytest.mark.timeout(60)
ISVC = "/apis/serving.kserve.io/v1beta1/namespaces/ml/inferenceservices/fraud"


def actuator(kubeconfig: str, **options: object) -> KServeActuator:
    options.setdefault("poll_interval", 0.02)
    options.setdefault("timeout", 10.0)
    return KServeActuator("kserve", KServeActuator.Options(inference_service="fraud", kubeconfig=kubeconfig, **options))


def traffic(kube: FakeKube) -> dict[str, int]:
    status = kube.get(ISVC)["status"]["components"]["predictor"]
    return {t["revisionName"]: t["percent"] for t in status["traffic"]}


def test_after_a_full_rollout_traffic_goes_back_to_the_previous_revision(kube: FakeKube, kubeconfig: str) -> None:
    kube.add(inference_service(ready="fraud-predictor-00002", rolled_out="fraud-predictor-00002",
                               previous="fraud-predictor-00001"))
    act = actuator(kubeconfig)
    assert act.current_version(make_context()) == "fraud-predictor-00002"

    result = act.apply(make_context(None, previous_version="v6"), threading.Event())

    [patch] = kube.patches()
    assert patch.headers["Content-Type"] == "application/merge-patch+json"
    assert patch.body == {"spec": {"predictor": {"canaryTrafficPercent": 0}}}
    assert traffic(kube) == {"fraud-predictor-00002": 0, "fraud-predictor-00001": 100}
    assert "fraud-predictor-00001 has 100% of the traffic" in result
    # The model spec is kept: only the traffic moved.
    assert kube.get(ISVC)["spec"]["predictor"]["model"]["storageUri"] == "s3://models/fraud/v7"
    assert act.current_version(make_context()) == "fraud-predictor-00001"
    assert "100% of its traffic to fraud-predictor-00001" in act.verify(make_context(None), threading.Event())


def test_during_a_canary_traffic_goes_back_to_the_rolled_out_revision(kube: FakeKube, kubeconfig: str) -> None:
    kube.add(inference_service(ready="fraud-predictor-00003", rolled_out="fraud-predictor-00002",
                               previous="fraud-predictor-00001", canary_percent=20))

    actuator(kubeconfig).apply(make_context("fraud-predictor-00002"), threading.Event())

    assert traffic(kube) == {"fraud-predictor-00003": 0, "fraud-predictor-00002": 100}


def test_apply_again_writes_nothing(kube: FakeKube, kubeconfig: str) -> None:
    kube.add(inference_service(ready="r2", rolled_out="r2", previous="r1"))
    act = actuator(kubeconfig)
    act.apply(make_context(None), threading.Event())

    assert "already pinned" in act.apply(make_context(None), threading.Event())
    assert len(kube.patches()) == 1


def test_a_named_revision_that_is_not_the_previous_one_is_refused(kube: FakeKube, kubeconfig: str) -> None:
    kube.add(inference_service(ready="r3", rolled_out="r3", previous="r2"))

    with pytest.raises(ActuatorError, match="can only go back to its previous revision r2, not r3"):
        actuator(kubeconfig).apply(make_context("r3"), threading.Event())
    assert kube.patches() == []


def test_nothing_to_go_back_to(kube: FakeKube, kubeconfig: str) -> None:
    kube.add(inference_service(ready="r1", rolled_out="r1", previous=None))

    with pytest.raises(ActuatorError, match="no previous rolled-out revision"):
        actuator(kubeconfig).apply(make_context(None), threading.Event())


def test_raw_deployment_mode_is_refused(kube: FakeKube, kubeconfig: str) -> None:
    kube.add(inference_service(ready="r2", rolled_out="r2", previous="r1", mode="RawDeployment"))

    with pytest.raises(ActuatorError, match="RawDeployment mode; canaryTrafficPercent is only supported in Serverless"):
        actuator(kubeconfig).apply(make_context(None), threading.Event())


def test_verify_fails_before_the_rollback(kube: FakeKube, kubeconfig: str) -> None:
    kube.add(inference_service(ready="r2", rolled_out="r2", previous="r1"))

    with pytest.raises(ActuatorError, match="canaryTrafficPercent is None, not 0"):
        actuator(kubeconfig).verify(make_context(None), threading.Event())


def test_missing_component(kube: FakeKube, kubeconfig: str) -> None:
    kube.add(inference_service(ready="r2", rolled_out="r2", previous="r1"))

    with pytest.raises(ActuatorError, match="has no transformer component"):
        actuator(kubeconfig, component="transformer").apply(make_context(None), threading.Event())
