"""Roll a Kubernetes Deployment back to the revision that ran the target version.

There is no server-side rollback in apps/v1; this does what `kubectl rollout undo
--to-revision=N` does (kubectl `pkg/polymorphichelpers/rollback.go`):

1. GET the Deployment; refuse a paused one.
2. LIST the ReplicaSets matching its `spec.selector`, keep those it controls
   (`ownerReferences` with `controller: true` and its uid); revision = annotation
   `deployment.kubernetes.io/revision`.
3. Pick the ReplicaSet that ran the version (see `find_revision`: the image tag of a
   container, an annotation of the pod template, or a literal `revision:N`).
4. If its pod template already equals the Deployment's (ignoring the `pod-template-hash`
   label), nothing is written. Else PATCH the Deployment with `application/json-patch+json`:
   replace `/spec/template` with the ReplicaSet's template minus `pod-template-hash`, and
   `/metadata/annotations` with the Deployment's own values of the keys kubectl keeps
   (last-applied-configuration, revision, revision-history, desired-replicas, max-replicas,
   rollback-to) plus every other annotation of the ReplicaSet. Unlike kubectl, a first op
   `replace /metadata/resourceVersion` with the value just read makes the write conditional:
   the API server answers 409 Conflict if the Deployment changed since, and the whole step
   is re-read and re-done (up to 5 times).
5. Wait, within `timeout`, until the rollout is complete by kubectl's `rollout status` rules
   (observedGeneration caught up, all replicas updated and available, no old replica left,
   no ProgressDeadlineExceeded), and also until no replica is still terminating.

`KubeActuator` is the shared base of the Kubernetes-backed actuators (this one, `argo-rollouts`
and `kserve`): options for the connection, lazily loaded credentials, the wait loop.
"""

from __future__ import annotations

import copy
import threading
import time
from dataclasses import dataclass
from typing import Any, Callable

from watchdog.actuators import k8s_client
from watchdog.actuators.base import ActionContext, Actuator
from watchdog.actuators.k8s_client import Access, KubeApiError, KubeClient
from watchdog.actuators.templating import rollback_version
from watchdog.config.fields import option
from watchdog.durations import format_duration
from watchdog.errors import ActuatorError
from watchdog.retrying import Interrupted, call_with_retries

REVISION = "deployment.kubernetes.io/revision"
REVISION_HISTORY = "deployment.kubernetes.io/revision-history"
HASH_LABEL = "pod-template-hash"
# kubectl rollback.go annotationsToSkip: kept from the Deployment, never copied from the ReplicaSet.
ANNOTATIONS_TO_SKIP = frozenset({
    "kubectl.kubernetes.io/last-applied-configuration", REVISION, REVISION_HISTORY,
    "deployment.kubernetes.io/desired-replicas", "deployment.kubernetes.io/max-replicas",
    "deprecated.deployment.rollback.to",
})
CONFLICT_ATTEMPTS = 5

GET_DEPLOYMENT = Access("get", "deployments", "apps")
PATCH_DEPLOYMENT = Access("patch", "deployments", "apps")
LIST_REPLICASETS = Access("list", "replicasets", "apps")


@dataclass(frozen=True)
class KubeOptions:
    """Connection and waiting options shared by the Kubernetes-backed actuators."""

    namespace: str | None = option(None, help="namespace (default: the kubeconfig context's, or the pod's)")
    kubeconfig: str | None = option(None, help="kubeconfig file (default: in-cluster service account, "
                                               "then $KUBECONFIG, then ~/.kube/config)")
    context: str | None = option(None, help="kubeconfig context (default: its current-context)")
    timeout: float = option(300.0, duration=True, help="how long to wait for the rollout to finish")
    poll_interval: float = option(2.0, duration=True, help="pause between two status reads while waiting")
    request_timeout: float = option(10.0, duration=True, help="timeout of one API request")


@dataclass(frozen=True)
class VersionOptions:
    """How a pod template tells its version."""

    container: str | None = option(None, help="container whose image tag is the version (default: the first)")
    version_annotation: str | None = option(None, help="pod-template annotation holding the version, "
                                                       "instead of the image tag")


@dataclass(frozen=True, kw_only=True)
class KubernetesActuatorOptions(KubeOptions, VersionOptions):
    deployment: str = option(help="name of the Deployment")


class KubeActuator(Actuator):
    """Base for actuators that talk to the Kubernetes API."""

    def __init__(self, name: str, options: Any):
        check_kube_options(options)
        super().__init__(name, options)
        self._client: KubeClient | None = None
        self._lock = threading.Lock()

    @property
    def client(self) -> KubeClient:
        """Credentials are loaded on first use, so `validate` works away from the cluster."""
        with self._lock:
            if self._client is None:
                credentials = k8s_client.load_credentials(self.options.kubeconfig, self.options.context)
                self._client = KubeClient(credentials, timeout=self.options.request_timeout)
            return self._client

    @property
    def namespace(self) -> str:
        return self.options.namespace or self.client.credentials.namespace

    def wait_until(self, check: Callable[[], tuple[bool, str]], what: str, stop: threading.Event,
                   deadline: float) -> float:
        """Call `check` (→ done?, progress message) every poll_interval until done; seconds taken.

        `check` raises ActuatorError for a rollout that failed for good. Gives up at
        `deadline` (time.monotonic()) or when `stop` is set.
        """
        started = time.monotonic()
        while True:
            if stop.is_set():
                raise ActuatorError(f"interrupted by shutdown while waiting for {what}")
            done, progress = check()
            if done:
                return time.monotonic() - started
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise ActuatorError(f"{what} did not finish within {format_duration(self.options.timeout)}: "
                                    f"{progress} (raise timeout if it needs longer)")
            if stop.wait(min(self.options.poll_interval, remaining)):
                raise ActuatorError(f"interrupted by shutdown while waiting for {what}: {progress}")

    def close(self) -> None:
        self._client = None


def check_kube_options(options: Any) -> None:
    if options.timeout <= 0 or options.poll_interval <= 0 or options.request_timeout <= 0:
        raise ValueError("timeout, poll_interval and request_timeout must be greater than 0")
    if options.kubeconfig is not None and not options.kubeconfig.strip():
        raise ValueError("kubeconfig must name a file")


class KubernetesActuator(KubeActuator):
    Options = KubernetesActuatorOptions

    def __init__(self, name: str, options: KubernetesActuatorOptions):
        if not options.deployment:
            raise ValueError("deployment must name a Deployment")
        super().__init__(name, options)

    @property
    def _what(self) -> str:
        return f'deployment "{self.namespace}/{self.options.deployment}"'

    def _path(self) -> str:
        return k8s_client.api_path("apps/v1", self.namespace, "deployments", self.options.deployment)

    def plan(self, context: ActionContext) -> str:
        return (f"roll {self._what} back to the ReplicaSet that ran {rollback_version(context)} "
                f"(as kubectl rollout undo --to-revision), then wait up to "
                f"{format_duration(self.options.timeout)} for the rollout")

    def apply(self, context: ActionContext, stop: threading.Event) -> str:
        to = rollback_version(context)
        deadline = time.monotonic() + self.options.timeout
        try:
            done, generation = call_with_retries(
                lambda: self._rollback_once(to, stop), attempts=CONFLICT_ATTEMPTS, initial_wait=0.2, max_wait=2.0,
                stop=stop, describe=f"rolling back {self._what}",
                retry_on=lambda exc: isinstance(exc, KubeApiError) and exc.status == 409)
        except Interrupted as exc:
            raise ActuatorError(str(exc)) from None
        except KubeApiError as exc:
            if exc.status == 409:
                raise ActuatorError(f"{exc} (still conflicting after {CONFLICT_ATTEMPTS} attempts: "
                                    "something else keeps changing the Deployment)") from None
            raise
        took = self.wait_until(lambda: self._rolled_out(generation, stop), f"rollout of {self._what}",
                               stop, deadline)
        return f"{done}; rollout complete after {took:.1f}s"

    def verify(self, context: ActionContext, stop: threading.Event) -> str:
        to = rollback_version(context)
        deployment = self._get(stop)
        template = deployment["spec"]["template"]
        if to.startswith("revision:"):
            self._check_revision_template(deployment, to, stop)
        elif not template_matches(template, to, self.options):
            raise ActuatorError(f"{self._what} runs {template_version(template, self.options)!r}, expected {to!r}")
        generation = deployment["metadata"].get("generation", 0)
        self.wait_until(lambda: self._rolled_out(generation, stop), f"rollout of {self._what}", stop,
                        time.monotonic() + self.options.timeout)
        return f"{self._what} runs {to} and its rollout is complete"

    def current_version(self, context: ActionContext) -> str | None:
        return template_version(self._get(threading.Event())["spec"]["template"], self.options)

    def _get(self, stop: threading.Event) -> dict[str, Any]:
        return self.client.get(self._path(), GET_DEPLOYMENT, stop, what=self._what)

    def _rollback_once(self, to: str, stop: threading.Event) -> tuple[str, int]:
        """One read-decide-write pass; (what was done, generation to wait for)."""
        deployment = self._get(stop)
        meta, spec = deployment["metadata"], deployment["spec"]
        if spec.get("paused"):
            raise ActuatorError(f"{self._what} is paused; you cannot roll back a paused deployment "
                                f"(resume it first: kubectl rollout resume deployment/{self.options.deployment})")
        history = owned_replicasets(self.client, self.namespace, deployment, "deployments", stop)
        rs = find_revision(history, to, self.options, REVISION, self._what)
        revision = revision_of(rs, REVISION)
        if same_template(rs["spec"]["template"], spec["template"], HASH_LABEL):
            return f"{self._what} already runs revision {revision} ({to})", meta.get("generation", 0)
        annotations = {k: v for k, v in (meta.get("annotations") or {}).items() if k in ANNOTATIONS_TO_SKIP}
        annotations.update({k: v for k, v in (rs["metadata"].get("annotations") or {}).items()
                            if k not in ANNOTATIONS_TO_SKIP})
        patch = [
            {"op": "replace", "path": "/metadata/resourceVersion", "value": meta["resourceVersion"]},
            {"op": "replace", "path": "/spec/template", "value": template_without_hash(rs["spec"]["template"], HASH_LABEL)},
            {"op": "replace" if "annotations" in meta else "add", "path": "/metadata/annotations", "value": annotations},
        ]
        updated = self.client.patch(self._path(), patch, k8s_client.JSON_PATCH, PATCH_DEPLOYMENT, stop, what=self._what)
        before = template_version(spec["template"], self.options)
        return (f"rolled {self._what} back to revision {revision} ({to}; was {before})",
                updated["metadata"].get("generation", 0))

    def _rolled_out(self, generation: int, stop: threading.Event) -> tuple[bool, str]:
        return deployment_rollout_status(self._get(stop), generation, self._what)

    def _check_revision_template(self, deployment: dict[str, Any], to: str, stop: threading.Event) -> None:
        """After a rollback to revision N the controller renumbers that ReplicaSet to max+1 and
        appends N to its revision-history annotation; accept either."""
        wanted = _revision_number(to)
        history = owned_replicasets(self.client, self.namespace, deployment, "deployments", stop)
        current = [rs for rs in history if same_template(rs["spec"]["template"], deployment["spec"]["template"], HASH_LABEL)]
        for rs in current:
            past = (rs["metadata"].get("annotations") or {}).get(REVISION_HISTORY, "")
            if revision_of(rs, REVISION) == wanted or str(wanted) in past.split(","):
                return
        raise ActuatorError(f"{self._what} does not run the template of revision {wanted}")


def deployment_rollout_status(deployment: dict[str, Any], generation: int, what: str) -> tuple[bool, str]:
    """kubectl's DeploymentStatusViewer, plus no terminating replicas: (complete?, progress).

    Raises ActuatorError past the progress deadline."""
    meta, spec, status = deployment["metadata"], deployment.get("spec") or {}, deployment.get("status") or {}
    observed = status.get("observedGeneration", 0)
    if meta.get("generation", 0) > observed or observed < generation:
        return False, "waiting for the deployment spec update to be observed"
    for cond in status.get("conditions") or []:
        if cond.get("type") == "Progressing" and cond.get("reason") == "ProgressDeadlineExceeded":
            raise ActuatorError(f"{what} exceeded its progress deadline: {cond.get('message', '')}".rstrip(": "))
    want, updated = spec.get("replicas"), status.get("updatedReplicas", 0)
    if want is not None and updated < want:
        return False, f"{updated} of {want} new replicas have been updated"
    if status.get("replicas", 0) > updated:
        return False, f"{status.get('replicas', 0) - updated} old replicas are pending termination"
    if status.get("availableReplicas", 0) < updated:
        return False, f"{status.get('availableReplicas', 0)} of {updated} updated replicas are available"
    # `replicas` leaves terminating pods out; they may still serve the version rolled away from
    # (Kubernetes >= 1.33 reports them as `terminatingReplicas`, kubectl does not wait for them).
    if status.get("terminatingReplicas", 0) > 0:
        return False, f"{status['terminatingReplicas']} old replicas are still terminating"
    return True, "complete"


def owned_replicasets(client: KubeClient, namespace: str, owner: dict[str, Any], owner_resource: str,
                      stop: threading.Event) -> list[dict[str, Any]]:
    """The ReplicaSets matching `owner`'s selector that `owner` controls (metav1.IsControlledBy)."""
    selector = k8s_client.selector_string(owner["spec"].get("selector") or {})
    path = k8s_client.api_path("apps/v1", namespace, "replicasets")
    listed = client.get(path, LIST_REPLICASETS, stop, params={"labelSelector": selector},
                        what=f"replicasets of {owner_resource} {namespace}/{owner['metadata']['name']}")
    uid = owner["metadata"].get("uid")
    return [rs for rs in listed.get("items") or []
            if any(ref.get("controller") and ref.get("uid") == uid for ref in rs["metadata"].get("ownerReferences") or [])]


def revision_of(rs: dict[str, Any], annotation: str) -> int:
    value = (rs["metadata"].get("annotations") or {}).get(annotation, "0")
    try:
        return int(value)
    except ValueError:
        return 0


def _revision_number(to: str) -> int:
    text = to.split(":", 1)[1].strip()
    if not text.isdigit() or int(text) <= 0:
        raise ActuatorError(f"{to!r}: write revision:N with N a positive revision number")
    return int(text)


def find_revision(history: list[dict[str, Any]], to: str, options: Any, annotation: str,
                  what: str) -> dict[str, Any]:
    """The ReplicaSet to roll back to: `revision:N` exactly, else the newest that ran `to`."""
    if not history:
        raise ActuatorError(f"no rollout history found for {what} (no ReplicaSets it owns; "
                            "revisionHistoryLimit: 0 garbage-collects them)")
    if to.startswith("revision:"):
        wanted = _revision_number(to)
        found = [rs for rs in history if revision_of(rs, annotation) == wanted]
    else:
        found = [rs for rs in history if template_matches(rs["spec"]["template"], to, options)]
    if found:
        return max(found, key=lambda rs: revision_of(rs, annotation))
    shown = ", ".join(f"{revision_of(rs, annotation)}: {template_version(rs['spec']['template'], options)}"
                      for rs in sorted(history, key=lambda rs: -revision_of(rs, annotation)))
    raise ActuatorError(f"unable to find {to} in the rollout history of {what} (revisions: {shown}); "
                        "older ReplicaSets may have been garbage-collected (revisionHistoryLimit)")


def template_without_hash(template: dict[str, Any], hash_label: str) -> dict[str, Any]:
    out = copy.deepcopy(template)
    labels = (out.get("metadata") or {}).get("labels")
    if labels:
        labels.pop(hash_label, None)
    return out


def same_template(a: dict[str, Any], b: dict[str, Any], hash_label: str) -> bool:
    return template_without_hash(a, hash_label) == template_without_hash(b, hash_label)


def _container(template: dict[str, Any], options: Any) -> dict[str, Any]:
    containers = (template.get("spec") or {}).get("containers") or []
    if not containers:
        raise ActuatorError("the pod template has no containers")
    if options.container is None:
        return containers[0]
    for container in containers:
        if container.get("name") == options.container:
            return container
    names = ", ".join(str(c.get("name")) for c in containers)
    raise ActuatorError(f"the pod template has no container named {options.container!r} (containers: {names})")


def image_parts(image: str) -> tuple[str | None, str | None]:
    """(tag, digest) of an image reference; `registry:5000/team/model:v7@sha256:…`."""
    name, _, digest = image.partition("@")
    last = name.rsplit("/", 1)[-1]
    tag = last.rsplit(":", 1)[1] if ":" in last else None
    return tag, (digest or None)


def template_version(template: dict[str, Any], options: Any) -> str | None:
    """The version a pod template runs: its `version_annotation`, else the image tag (else digest)."""
    if options.version_annotation:
        return ((template.get("metadata") or {}).get("annotations") or {}).get(options.version_annotation)
    image = str(_container(template, options).get("image", ""))
    tag, digest = image_parts(image)
    return tag or digest or image or None


def template_matches(template: dict[str, Any], version: str, options: Any) -> bool:
    """Whether a pod template runs `version` (annotation value; or image tag, digest or full image)."""
    if options.version_annotation:
        return template_version(template, options) == version
    image = str(_container(template, options).get("image", ""))
    return version in (image, *[p for p in image_parts(image) if p])
