"""The `kubernetes` actuator against a fake API server.

The fake (tests/fakes/kube_api.py) follows the Kubernetes API reference for apps/v1
Deployment and ReplicaSet (paths, label-selector LIST, JSON patch, Status objects, 409 on a
stale resourceVersion) and what `kubectl rollout undo` changes (kubectl
pkg/polymorphichelpers/rollback.go, as summarised in shared/reference/apis.md section 2).
"""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from tests.actuators.kube_fixtures import TOKEN, make_context
from tests.fakes.kube_api import FakeKube, deployment, replicaset
from tests.fakes.test_kube_api import ManualClock
from watchdog.actuators.kubernetes import KubernetesActuator, deployment_rollout_status
from watchdog.errors import ActuatorError

pytestmark = pytest.mark.timeout(60)
DEPLOY = "/apis/apps/v1/namespaces/ml/deployments/fraud"


def history(kube: FakeKube, *, template_annotations: bool = False, sidecar: str | None = None) -> dict:
    """Deployment fraud at v7 (revision 3); ReplicaSets of revisions 1 (v5), 2 (v6), 3 (v7)."""
    def notes(v: str) -> dict[str, str] | None:
        return {"model-watchdog/version": v} if template_annotations else None

    dep = kube.add(deployment(image="registry.local:5000/ml/fraud:v7", revision=3, sidecar=sidecar,
                              template_annotations=notes("v7"),
                              annotations={"kubectl.kubernetes.io/last-applied-configuration": "{…}",
                                           "team": "fraud"}))
    for revision, tag in ((1, "v5"), (2, "v6"), (3, "v7")):
        kube.add(replicaset(dep, revision, image=f"registry.local:5000/ml/fraud:{tag}", sidecar=sidecar,
                            template_annotations=notes(tag),
                            annotations={"deployment.kubernetes.io/desired-replicas": "3",
                                         "change-cause": f"deploy {tag}"}))
    # Not controlled by the Deployment, although its labels match: must be ignored.
    kube.add(replicaset(dep, 9, image="registry.local:5000/ml/fraud:v6", pod_hash="stray", controller=False))
    return dep


def actuator(kubeconfig: str, **options: object) -> KubernetesActuator:
    options.setdefault("poll_interval", 0.02)
    options.setdefault("timeout", 10.0)
    return KubernetesActuator("deploy", KubernetesActuator.Options(deployment="fraud", kubeconfig=kubeconfig, **options))


def test_rolls_back_to_the_revision_whose_image_tag_is_the_version(kube: FakeKube, kubeconfig: str) -> None:
    history(kube)
    act = actuator(kubeconfig)

    result = act.apply(make_context("v6"), threading.Event())

    [patch] = kube.patches()
    assert patch.path == DEPLOY
    assert patch.headers["Content-Type"] == "application/json-patch+json"
    assert patch.headers["Authorization"] == f"Bearer {TOKEN}"
    rs_template = kube.get("/apis/apps/v1/namespaces/ml/replicasets/fraud-h2")["spec"]["template"]
    assert [op["path"] for op in patch.body] == ["/metadata/resourceVersion", "/spec/template", "/metadata/annotations"]
    assert all(op["op"] == "replace" for op in patch.body)
    assert "pod-template-hash" not in patch.body[1]["value"]["metadata"]["labels"]
    assert patch.body[1]["value"]["spec"] == rs_template["spec"]
    # kubectl keeps the Deployment's own skip-list annotations and copies the others from the ReplicaSet.
    assert patch.body[2]["value"] == {"kubectl.kubernetes.io/last-applied-configuration": "{…}",
                                      "deployment.kubernetes.io/revision": "3", "change-cause": "deploy v6"}
    now = kube.get(DEPLOY)
    assert now["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v6")
    assert now["metadata"]["annotations"]["deployment.kubernetes.io/revision"] == "4"
    assert "revision 2 (v6; was v7)" in result and "rollout complete" in result
    # The label selector came from spec.selector.matchLabels.
    lists = [c for c in kube.calls if c.path.endswith("/replicasets")]
    assert lists and lists[0].query == {"labelSelector": "app=fraud"}


def test_apply_waits_until_the_rollout_is_complete(kube: FakeKube, kubeconfig: str) -> None:
    history(kube)
    actuator(kubeconfig).apply(make_context("v6"), threading.Event())

    status = kube.get(DEPLOY)["status"]
    assert status["observedGeneration"] == kube.get(DEPLOY)["metadata"]["generation"] == 2
    assert status["updatedReplicas"] == status["availableReplicas"] == status["replicas"] == 3


def test_apply_again_writes_nothing(kube: FakeKube, kubeconfig: str) -> None:
    history(kube)
    act = actuator(kubeconfig)
    act.apply(make_context("v6"), threading.Event())

    result = act.apply(make_context("v6"), threading.Event())

    assert len(kube.patches()) == 1
    assert "already runs revision 4 (v6)" in result


def test_version_from_a_pod_template_annotation(kube: FakeKube, kubeconfig: str) -> None:
    history(kube, template_annotations=True)
    act = actuator(kubeconfig, version_annotation="model-watchdog/version")

    act.apply(make_context("v5"), threading.Event())

    assert kube.get(DEPLOY)["spec"]["template"]["metadata"]["annotations"] == {"model-watchdog/version": "v5"}
    assert act.current_version(make_context()) == "v5"
    assert act.verify(make_context("v5"), threading.Event()).endswith("rollout is complete")


def test_literal_revision_and_its_verification_after_renumbering(kube: FakeKube, kubeconfig: str) -> None:
    history(kube)
    act = actuator(kubeconfig)

    act.apply(make_context("revision:1"), threading.Event())

    assert kube.get(DEPLOY)["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v5")
    # The controller renumbered revision 1 to 4 and recorded 1 in its revision-history.
    assert act.verify(make_context("revision:1"), threading.Event())
    with pytest.raises(ActuatorError, match="does not run the template of revision 2"):
        act.verify(make_context("revision:2"), threading.Event())


def test_the_container_option_picks_which_image_is_the_version(kube: FakeKube, kubeconfig: str) -> None:
    history(kube, sidecar="envoy:1.30")

    assert actuator(kubeconfig).current_version(make_context()) == "v7"
    assert actuator(kubeconfig, container="proxy").current_version(make_context()) == "1.30"
    with pytest.raises(ActuatorError, match="no container named 'sidecar' .*containers: model, proxy"):
        actuator(kubeconfig, container="sidecar").current_version(make_context())


def test_previous_version_is_used_without_to_version(kube: FakeKube, kubeconfig: str) -> None:
    history(kube)

    actuator(kubeconfig).apply(make_context(None, previous_version="v5"), threading.Event())

    assert kube.get(DEPLOY)["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v5")


def test_no_version_at_all_is_an_error(kube: FakeKube, kubeconfig: str) -> None:
    history(kube)

    with pytest.raises(ActuatorError, match="no version to roll back to"):
        actuator(kubeconfig).apply(make_context(None), threading.Event())
    assert kube.calls == []


def test_a_version_not_in_the_history_lists_what_is_there(kube: FakeKube, kubeconfig: str) -> None:
    history(kube)

    with pytest.raises(ActuatorError) as err:
        actuator(kubeconfig).apply(make_context("v2"), threading.Event())

    assert "unable to find v2" in str(err.value) and "3: v7, 2: v6, 1: v5" in str(err.value)
    assert kube.patches() == []


def test_conflicts_are_retried_after_reading_again(kube: FakeKube, kubeconfig: str) -> None:
    history(kube)
    kube.conflicts = 2  # someone else writes the Deployment just before each of our first two patches

    actuator(kubeconfig).apply(make_context("v6"), threading.Event())

    patches = kube.patches()
    assert len(patches) == 3
    versions = [p.body[0]["value"] for p in patches]
    assert len(set(versions)) == 3  # each attempt re-read the Deployment and used its fresh resourceVersion
    assert kube.get(DEPLOY)["spec"]["template"]["spec"]["containers"][0]["image"].endswith(":v6")


def test_endless_conflicts_give_up_with_a_clear_error(kube: FakeKube, kubeconfig: str) -> None:
    history(kube)
    kube.conflicts = 100

    with pytest.raises(ActuatorError, match="the object has been modified.*after 5 attempts"):
        actuator(kubeconfig).apply(make_context("v6"), threading.Event())


@pytest.mark.parametrize("verb, resource, expected", [
    ("patch", "deployments", 'verb "patch" on resource "deployments" in API group "apps" in namespace "ml"'),
    ("list", "replicasets", 'verb "list" on resource "replicasets" in API group "apps" in namespace "ml"'),
    ("get", "deployments", 'verb "get" on resource "deployments" in API group "apps"'),
])
def test_forbidden_names_the_missing_rbac_permission(kube: FakeKube, kubeconfig: str, verb: str, resource: str,
                                                     expected: str) -> None:
    history(kube)
    kube.forbid(verb, resource)

    with pytest.raises(ActuatorError) as err:
        actuator(kubeconfig).apply(make_context("v6"), threading.Event())

    assert "forbidden" in str(err.value) and expected in str(err.value)
    assert TOKEN not in str(err.value)


def test_missing_deployment_is_reported_clearly(kube: FakeKube, kubeconfig: str) -> None:
    with pytest.raises(ActuatorError, match='deployment "ml/fraud" not found.*check the namespace and name'):
        actuator(kubeconfig).apply(make_context("v6"), threading.Event())


def test_paused_deployment_is_refused(kube: FakeKube, kubeconfig: str) -> None:
    dep = history(kube)
    kube.update(FakeKube.path_of(dep), lambda d: d["spec"].update(paused=True))

    with pytest.raises(ActuatorError, match="paused.*kubectl rollout resume deployment/fraud"):
        actuator(kubeconfig).apply(make_context("v6"), threading.Event())
    assert kube.patches() == []


def test_progress_deadline_exceeded_fails_the_rollback(kubeconfig: str, kube: FakeKube) -> None:
    history(kube)
    kube.deadline_exceeded = True

    with pytest.raises(ActuatorError, match="exceeded its progress deadline"):
        actuator(kubeconfig).apply(make_context("v6"), threading.Event())


def test_a_rollout_that_does_not_finish_times_out(kube: FakeKube, kubeconfig: str) -> None:
    history(kube)
    kube.stuck = True

    started = time.monotonic()
    with pytest.raises(ActuatorError, match="did not finish within 500ms: 1 of 3 new replicas have been updated"):
        actuator(kubeconfig, timeout=0.5).apply(make_context("v6"), threading.Event())
    assert time.monotonic() - started < 5


def test_stop_ends_the_wait_promptly(kube: FakeKube, kubeconfig: str) -> None:
    history(kube)
    kube.stuck = True
    stop = threading.Event()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            actuator(kubeconfig, timeout=60.0, poll_interval=5.0).apply(make_context("v6"), stop)
        except BaseException as exc:  # noqa: BLE001  (handed to the test thread)
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    deadline = time.monotonic() + 10
    while not kube.patches() and time.monotonic() < deadline:
        time.sleep(0.02)
    time.sleep(0.1)
    stopped_at = time.monotonic()
    stop.set()
    thread.join(timeout=10)

    assert time.monotonic() - stopped_at < 1.5
    assert len(outcome) == 1 and "interrupted by shutdown" in str(outcome[0])


def test_verify_and_current_version(kube: FakeKube, kubeconfig: str) -> None:
    history(kube)
    act = actuator(kubeconfig)

    assert act.current_version(make_context()) == "v7"
    with pytest.raises(ActuatorError, match="runs 'v7', expected 'v6'"):
        act.verify(make_context("v6"), threading.Event())

    act.apply(make_context("v6"), threading.Event())

    assert act.current_version(make_context()) == "v6"
    assert "runs v6 and its rollout is complete" in act.verify(make_context("v6"), threading.Event())


def test_in_cluster_service_account_credentials(kube: FakeKube, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from watchdog.actuators import k8s_client

    history(kube)
    account = tmp_path / "serviceaccount"
    account.mkdir()
    (account / "token").write_text(TOKEN + "\n")
    (account / "namespace").write_text("ml")
    host, port = kube.url.removeprefix("http://").split(":")
    credentials = k8s_client.in_cluster({"KUBERNETES_SERVICE_HOST": host, "KUBERNETES_SERVICE_PORT": port}, account)
    assert credentials.server == f"https://{host}:{port}" and credentials.namespace == "ml"

    # The fake speaks plain HTTP; everything else is what a pod would use.
    act = KubernetesActuator("deploy", KubernetesActuator.Options(deployment="fraud", poll_interval=0.02))
    act._client = k8s_client.KubeClient(k8s_client.Credentials(
        server=kube.url, namespace=credentials.namespace, source=credentials.source,
        token_file=credentials.token_file))

    assert act.current_version(make_context()) == "v7"
    assert kube.calls[-1].path == DEPLOY


def test_plan_describes_the_rollback_without_calling_the_api(kube: FakeKube, kubeconfig: str) -> None:
    text = actuator(kubeconfig, namespace="ml").plan(make_context("v6"))

    assert text == ('roll deployment "ml/fraud" back to the ReplicaSet that ran v6 (as kubectl rollout undo '
                    "--to-revision), then wait up to 10s for the rollout")
    assert kube.calls == []


@pytest.mark.parametrize("options, message", [
    ({"deployment": ""}, "deployment must name"),
    ({"deployment": "x", "timeout": 0.0}, "greater than 0"),
    ({"deployment": "x", "poll_interval": 0.0}, "greater than 0"),
])
def test_unusable_options_are_rejected(options: dict[str, object], message: str) -> None:
    with pytest.raises(ValueError, match=message):
        KubernetesActuator("deploy", KubernetesActuator.Options(**options))  # type: ignore[arg-type]


# --- when is a rollout complete (kubectl's DeploymentStatusViewer, plus terminating pods) -----

def _deployment_status(**status: int) -> dict:
    full = {"observedGeneration": 2, "replicas": 3, "updatedReplicas": 3, "availableReplicas": 3, **status}
    return {"metadata": {"generation": 2}, "spec": {"replicas": 3}, "status": full}


@pytest.mark.parametrize(("status", "progress"), [
    ({"observedGeneration": 1}, "waiting for the deployment spec update to be observed"),
    ({"updatedReplicas": 2, "replicas": 4}, "2 of 3 new replicas have been updated"),
    # All new replicas are up, but an old one has not been scaled away yet.
    ({"replicas": 4}, "1 old replicas are pending termination"),
    ({"availableReplicas": 2}, "2 of 3 updated replicas are available"),
    # Scaled away, but its pod is still shutting down (and may still answer requests).
    ({"terminatingReplicas": 2}, "2 old replicas are still terminating"),
])
def test_a_rollout_with_old_replicas_left_is_not_complete(status: dict, progress: str) -> None:
    assert deployment_rollout_status(_deployment_status(**status), 2, "deployment ml/fraud") == (False, progress)


def test_a_rollout_is_complete_once_only_updated_available_replicas_remain() -> None:
    assert deployment_rollout_status(_deployment_status(terminatingReplicas=0), 2, "d") == (True, "complete")


def test_apply_returns_only_once_no_old_replica_is_left_or_terminating(tmp_path: Path) -> None:
    # The fake's controller moves one stage per clock step; the test advances the clock only
    # after the actuator has looked at the current stage, so it sees every one of them.
    clock = ManualClock()
    with FakeKube(token=TOKEN, clock=clock, stage_seconds=1.0) as kube:
        history(kube)
        act = actuator(str(kube.kubeconfig(tmp_path, namespace="ml")), poll_interval=0.01)
        done = threading.Event()
        thread = threading.Thread(target=lambda: (act.apply(make_context("v6"), threading.Event()), done.set()))
        thread.start()
        for _ in range(20):
            looked = len(kube.served)
            deadline = time.monotonic() + 10
            while len(kube.served) == looked and not done.is_set() and time.monotonic() < deadline:
                time.sleep(0.005)
            if done.wait(0.05):
                break
            clock.now += 1.0
        thread.join(10)

    statuses = [body["status"] for path, body in kube.served if path == DEPLOY]
    assert any(s.get("replicas", 0) > s.get("updatedReplicas", 0) == 3 for s in statuses)  # it saw an old one left
    assert any(s.get("terminatingReplicas") for s in statuses)  # and one terminating
    last = statuses[-1]  # what it decided on
    assert (last["replicas"], last["updatedReplicas"], last["availableReplicas"], last["terminatingReplicas"]) == (3, 3, 3, 0)
