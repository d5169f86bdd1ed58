"""The `argo-rollouts` actuator against a fake API server.

The fake (tests/fakes/kube_api.py) follows the Kubernetes API contract (JSON and merge patch,
the `/status` subresource of a CRD, Status objects) and what the `kubectl argo rollouts`
plugin sends for `abort` and `undo` (argoproj/argo-rollouts
pkg/kubectl-argo-rollouts/cmd/{abort,undo}, as summarised in shared/reference/apis.md section 3).
"""

from __future__ import annotations

import threading

import pytest

from tests.actuators.kube_fixtures import make_context
from tests.fakes.kube_api import FakeKube, deployment, pod_template, replicaset, rollout
from watchdog.actuators.argo import ArgoRolloutsActuator
from watchdog.errors import ActuatorError

pytestmark = pytest.mark.timeout(60)
ROLLOUT = "/apis/argoproj.io/v1alpha1/namespaces/ml/rollouts/fraud"


def canary_in_progress(kube: FakeKube, **kwargs: object) -> dict:
    """Rollout at v7 (revision 2, canary h2 paused at 20 %); stable ReplicaSet h1 runs v6."""
    ro = kube.add(rollout(image="registry/fraud:v7", revision=2, stable_hash="h1", current_hash="h2", **kwargs))
    kube.add(replicaset(ro, 1, image="registry/fraud:v6", argo=True))
    kube.add(replicaset(ro, 2, image="registry/fraud:v7", argo=True))
    return ro


def actuator(kubeconfig: str, **options: object) -> ArgoRolloutsActuator:
    options.setdefault("poll_interval", 0.02)
    options.setdefault("timeout", 10.0)
    return ArgoRolloutsActuator("argo", ArgoRolloutsActuator.Options(rollout="fraud", kubeconfig=kubeconfig, **options))


def test_undo_sets_the_template_back_and_waits_until_healthy(kube: FakeKube, kubeconfig: str) -> None:
    canary_in_progress(kube)
    act = actuator(kubeconfig)

    result = act.apply(make_context("v6"), threading.Event())

    [patch] = kube.patches()
    assert patch.path == ROLLOUT and patch.headers["Content-Type"] == "application/json-patch+json"
    assert [op["path"] for op in patch.body] == ["/metadata/resourceVersion", "/spec/template"]
    assert "rollouts-pod-template-hash" not in patch.body[1]["value"]["metadata"]["labels"]
    now = kube.get(ROLLOUT)
    assert now["spec"]["template"]["spec"]["containers"][0]["image"] == "registry/fraud:v6"
    assert now["metadata"]["annotations"] == {"rollout.argoproj.io/revision": "2"}  # annotations are not copied
    assert now["status"]["phase"] == "Healthy"
    assert "revision 1 (v6; was v7)" in result and "Healthy" in result
    assert "runs v6 and is Healthy" in act.verify(make_context("v6"), threading.Event())
    assert act.current_version(make_context()) == "v6"


def test_undo_again_writes_nothing(kube: FakeKube, kubeconfig: str) -> None:
    canary_in_progress(kube)
    act = actuator(kubeconfig)
    act.apply(make_context("v6"), threading.Event())

    assert "already runs revision 3 (v6)" in act.apply(make_context("v6"), threading.Event())
    assert len(kube.patches()) == 1


def test_undo_through_a_workload_ref_patches_the_deployment(kube: FakeKube, kubeconfig: str) -> None:
    ro = kube.add(rollout(image="", revision=2, stable_hash="h1", current_hash="h2", workload_ref="fraud-template"))
    dep = deployment("fraud-template", image="registry/fraud:v7", revision=1)
    dep["spec"]["replicas"] = 0
    kube.add(dep)
    kube.add(replicaset(ro, 1, template=pod_template("registry/fraud:v6"), argo=True))
    kube.add(replicaset(ro, 2, template=pod_template("registry/fraud:v7"), argo=True))

    act = actuator(kubeconfig)
    with pytest.raises(ActuatorError, match="did not finish"):
        # The fake has no controller that copies workloadRef templates; the patch is what matters here.
        actuator(kubeconfig, timeout=0.3).apply(make_context("v6"), threading.Event())

    [patch] = kube.patches()
    assert patch.path == "/apis/apps/v1/namespaces/ml/deployments/fraud-template"
    assert act.current_version(make_context()) == "v6"


def test_abort_patches_the_status_subresource(kube: FakeKube, kubeconfig: str) -> None:
    canary_in_progress(kube)
    act = actuator(kubeconfig, mode="abort")

    result = act.apply(make_context("v6"), threading.Event())

    [patch] = kube.patches()
    assert patch.path == ROLLOUT + "/status"
    assert patch.headers["Content-Type"] == "application/merge-patch+json"
    assert patch.body == {"status": {"abort": True}}
    assert kube.get(ROLLOUT)["spec"]["template"]["spec"]["containers"][0]["image"] == "registry/fraud:v7"
    assert result == 'aborted the update of rollout "ml/fraud"'
    assert "is aborted" in act.verify(make_context("v6"), threading.Event())
    assert act.current_version(make_context()) == "v6"  # the stable ReplicaSet serves
    assert "already aborted" in act.apply(make_context("v6"), threading.Event())


def test_abort_falls_back_to_the_object_without_a_status_subresource(kube: FakeKube, kubeconfig: str) -> None:
    canary_in_progress(kube)
    kube.no_status_subresource.add("rollouts")

    actuator(kubeconfig, mode="abort").apply(make_context(None), threading.Event())

    assert [p.path for p in kube.patches()] == [ROLLOUT + "/status", ROLLOUT]
    assert kube.get(ROLLOUT)["status"]["abort"] is True


def test_abort_refuses_when_the_stable_version_is_not_the_target(kube: FakeKube, kubeconfig: str) -> None:
    canary_in_progress(kube)

    with pytest.raises(ActuatorError, match="would go back to its stable version 'v6', not 'v5'; use mode: undo"):
        actuator(kubeconfig, mode="abort").apply(make_context("v5"), threading.Event())
    assert kube.patches() == []


def test_forbidden_status_patch_names_the_subresource(kube: FakeKube, kubeconfig: str) -> None:
    canary_in_progress(kube)
    kube.forbid("patch", "rollouts/status")

    with pytest.raises(ActuatorError, match='verb "patch" on resource "rollouts/status" in API group "argoproj.io"'):
        actuator(kubeconfig, mode="abort").apply(make_context("v6"), threading.Event())


def test_undo_to_an_unknown_version(kube: FakeKube, kubeconfig: str) -> None:
    canary_in_progress(kube)

    with pytest.raises(ActuatorError, match="unable to find v1 .*2: v7, 1: v6"):
        actuator(kubeconfig).apply(make_context("v1"), threading.Event())


def test_mode_is_checked() -> None:
    from watchdog.config.fields import BuildContext, build
    from watchdog.config.yamlnodes import parse_yaml

    ctx = BuildContext("watchdog.yaml")
    node, _ = parse_yaml("rollout: fraud\nmode: rollback\n", "watchdog.yaml")
    assert node is not None
    build(ArgoRolloutsActuator.Options, node, ctx, "actuators.argo")

    assert [p.message for p in ctx.problems] == \
        ["actuators.argo.mode: must be one of undo, abort, got 'rollback'"]
