"""Roll back an Argo Rollout (`argoproj.io/v1alpha1`, plural `rollouts`), as the
`kubectl argo rollouts` plugin does it at the API level.

`mode: undo` (default) — like `kubectl argo rollouts undo --to-revision`: GET the Rollout,
LIST the ReplicaSets matching its selector that it controls, revision = annotation
`rollout.argoproj.io/revision`, pick the one that ran the version (image tag, a pod-template
annotation, or `revision:N`), and unless the templates already match (ignoring the
`rollouts-pod-template-hash` label) PATCH `application/json-patch+json`
`replace /spec/template` with that ReplicaSet's template minus the hash label. Annotations are
not copied (the plugin does not). With `spec.workloadRef` the template lives in the referenced
Deployment, which is patched instead. As for Deployments, a first op
`replace /metadata/resourceVersion` makes the write conditional (409 → re-read, re-do).
Then wait until the Rollout is Healthy.

`mode: abort` — like `kubectl argo rollouts abort`: merge-patch `{"status":{"abort":true}}`
on the `/status` subresource (on the Rollout itself when `/status` answers 404, for CRDs
without the subresource). The stable ReplicaSet takes all traffic back, but `spec.template`
still names the new version: the Rollout moves forward again when it leaves the aborted
state. For a durable rollback use `undo` (or list an abort actuator, then an undo actuator).
An abort needs no version; when the decision names one, it must be the stable ReplicaSet's.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from watchdog.actuators import k8s_client
from watchdog.actuators.base import ActionContext
from watchdog.actuators.k8s_client import Access, KubeApiError
from watchdog.actuators.kubernetes import (
    CONFLICT_ATTEMPTS, KubeActuator, KubeOptions, VersionOptions, find_revision, owned_replicasets,
    revision_of, same_template, template_matches, template_version, template_without_hash)
from watchdog.actuators.templating import rollback_version
from watchdog.config.fields import option
from watchdog.durations import format_duration
from watchdog.errors import ActuatorError
from watchdog.retrying import Interrupted, call_with_retries

GROUP_VERSION = "argoproj.io/v1alpha1"
REVISION = "rollout.argoproj.io/revision"
HASH_LABEL = "rollouts-pod-template-hash"
GET_ROLLOUT = Access("get", "rollouts", "argoproj.io")
PATCH_ROLLOUT = Access("patch", "rollouts", "argoproj.io")
PATCH_ROLLOUT_STATUS = Access("patch", "rollouts", "argoproj.io", "status")
GET_DEPLOYMENT = Access("get", "deployments", "apps")
PATCH_DEPLOYMENT = Access("patch", "deployments", "apps")


@dataclass(frozen=True, kw_only=True)
class ArgoRolloutsActuatorOptions(KubeOptions, VersionOptions):
    rollout: str = option(help="name of the Rollout")
    mode: Literal["undo", "abort"] = option("undo", help="undo: template back to the version's revision; "
                                                         "abort: stop the update, stable ReplicaSet takes traffic")


class ArgoRolloutsActuator(KubeActuator):
    Options = ArgoRolloutsActuatorOptions

    def __init__(self, name: str, options: ArgoRolloutsActuatorOptions):
        if not options.rollout:
            raise ValueError("rollout must name a Rollout")
        super().__init__(name, options)

    @property
    def _what(self) -> str:
        return f'rollout "{self.namespace}/{self.options.rollout}"'

    def _path(self, subresource: str = "") -> str:
        return k8s_client.api_path(GROUP_VERSION, self.namespace, "rollouts", self.options.rollout, subresource)

    def _get(self, stop: threading.Event) -> dict[str, Any]:
        return self.client.get(self._path(), GET_ROLLOUT, stop, what=self._what)

    def plan(self, context: ActionContext) -> str:
        if self.options.mode == "abort":
            return f"abort the update of {self._what} (the stable ReplicaSet takes all traffic)"
        return (f"set the pod template of {self._what} back to the revision that ran {rollback_version(context)} "
                f"(as kubectl argo rollouts undo), then wait up to {format_duration(self.options.timeout)}")

    def apply(self, context: ActionContext, stop: threading.Event) -> str:
        if self.options.mode == "abort":
            return self._abort(context, stop)
        to = rollback_version(context)
        deadline = time.monotonic() + self.options.timeout
        try:
            done = call_with_retries(
                lambda: self._undo_once(to, stop), attempts=CONFLICT_ATTEMPTS, initial_wait=0.2, max_wait=2.0,
                stop=stop, describe=f"undoing {self._what}",
                retry_on=lambda exc: isinstance(exc, KubeApiError) and exc.status == 409)
        except Interrupted as exc:
            raise ActuatorError(str(exc)) from None
        took = self.wait_until(lambda: self._healthy(stop), f"rollout of {self._what}", stop, deadline)
        return f"{done}; Healthy after {took:.1f}s"

    def verify(self, context: ActionContext, stop: threading.Event) -> str:
        deadline = time.monotonic() + self.options.timeout
        if self.options.mode == "abort":
            self.wait_until(lambda: self._aborted(stop), f"abort of {self._what}", stop, deadline)
            return f"{self._what} is aborted; its stable ReplicaSet serves"
        to = rollback_version(context)
        rollout = self._get(stop)
        template, _ = self._template(rollout, stop)
        if to.startswith("revision:"):
            pass  # the controller renumbers the revision it goes back to; Healthy below is the check
        elif not template_matches(template, to, self.options):
            raise ActuatorError(f"{self._what} runs {template_version(template, self.options)!r}, expected {to!r}")
        self.wait_until(lambda: self._healthy(stop), f"rollout of {self._what}", stop, deadline)
        return f"{self._what} runs {to} and is Healthy"

    def current_version(self, context: ActionContext) -> str | None:
        """The version of `spec.template`; while aborted, that of the stable ReplicaSet."""
        stop = threading.Event()
        rollout = self._get(stop)
        if (rollout.get("status") or {}).get("abort"):
            stable = self._stable_replicaset(rollout, stop)
            if stable is not None:
                return template_version(stable["spec"]["template"], self.options)
        return template_version(self._template(rollout, stop)[0], self.options)

    # --- undo -------------------------------------------------------------------------------

    def _template(self, rollout: dict[str, Any], stop: threading.Event) -> tuple[dict[str, Any], dict[str, Any] | None]:
        """The pod template and, with spec.workloadRef, the Deployment that holds it."""
        ref = rollout["spec"].get("workloadRef")
        if not ref:
            return rollout["spec"]["template"], None
        if ref.get("kind") != "Deployment":
            raise ActuatorError(f"{self._what}: workloadRef kind {ref.get('kind')!r} is not supported (only Deployment)")
        path = k8s_client.api_path("apps/v1", self.namespace, "deployments", ref["name"])
        deployment = self.client.get(path, GET_DEPLOYMENT, stop,
                                     what=f'deployment "{self.namespace}/{ref["name"]}" (workloadRef of {self._what})')
        return deployment["spec"]["template"], deployment

    def _undo_once(self, to: str, stop: threading.Event) -> str:
        rollout = self._get(stop)
        template, deployment = self._template(rollout, stop)
        history = owned_replicasets(self.client, self.namespace, rollout, "rollouts", stop)
        rs = find_revision(history, to, self.options, REVISION, self._what)
        revision = revision_of(rs, REVISION)
        if same_template(rs["spec"]["template"], template, HASH_LABEL):
            return f"{self._what} already runs revision {revision} ({to})"
        holder = deployment or rollout
        patch = [
            {"op": "replace", "path": "/metadata/resourceVersion", "value": holder["metadata"]["resourceVersion"]},
            {"op": "replace", "path": "/spec/template", "value": template_without_hash(rs["spec"]["template"], HASH_LABEL)},
        ]
        if deployment is None:
            self.client.patch(self._path(), patch, k8s_client.JSON_PATCH, PATCH_ROLLOUT, stop, what=self._what)
        else:
            name = deployment["metadata"]["name"]
            self.client.patch(k8s_client.api_path("apps/v1", self.namespace, "deployments", name), patch,
                              k8s_client.JSON_PATCH, PATCH_DEPLOYMENT, stop, what=f'deployment "{self.namespace}/{name}"')
        before = template_version(template, self.options)
        return f"set {self._what} back to revision {revision} ({to}; was {before})"

    def _healthy(self, stop: threading.Event) -> tuple[bool, str]:
        rollout = self._get(stop)
        status = rollout.get("status") or {}
        # GetRolloutPhase: status.observedGeneration is a *string* in Rollout status.
        if str(status.get("observedGeneration", "")) != str(rollout["metadata"].get("generation", "")):
            return False, "waiting for the rollout spec update to be observed"
        phase, message = status.get("phase", ""), status.get("message", "")
        for cond in status.get("conditions") or []:
            if cond.get("reason") == "ProgressDeadlineExceeded":
                raise ActuatorError(f"{self._what} exceeded its progress deadline: {cond.get('message', '')}")
        if phase == "Healthy":
            return True, "Healthy"
        return False, f"phase {phase or 'unknown'}" + (f": {message}" if message else "")

    # --- abort ------------------------------------------------------------------------------

    def _abort(self, context: ActionContext, stop: threading.Event) -> str:
        rollout = self._get(stop)
        status = rollout.get("status") or {}
        wanted = context.extra.get("to_version") or context.previous_version
        stable = self._stable_replicaset(rollout, stop)
        if wanted and stable is not None and not template_matches(stable["spec"]["template"], wanted, self.options):
            runs = template_version(stable["spec"]["template"], self.options)
            raise ActuatorError(f"aborting {self._what} would go back to its stable version {runs!r}, not {wanted!r}; "
                                "use mode: undo to go to that version")
        if status.get("abort"):
            return f"{self._what} is already aborted"
        body = {"status": {"abort": True}}
        try:
            self.client.patch(self._path("status"), body, k8s_client.MERGE_PATCH, PATCH_ROLLOUT_STATUS, stop,
                              what=f"{self._what} status")
        except KubeApiError as exc:
            if exc.status != 404:
                raise
            # A CRD without the status subresource (Argo Rollouts < v0.10): patch the object itself.
            self.client.patch(self._path(), body, k8s_client.MERGE_PATCH, PATCH_ROLLOUT, stop, what=self._what)
        return f"aborted the update of {self._what}"

    def _aborted(self, stop: threading.Event) -> tuple[bool, str]:
        status = self._get(stop).get("status") or {}
        if not status.get("abort"):
            raise ActuatorError(f"{self._what} is not aborted (status.abort is not set)")
        if any(c.get("reason") == "RolloutAborted" for c in status.get("conditions") or []):
            return True, "aborted"
        return False, f"abort requested; phase {status.get('phase') or 'unknown'}"

    def _stable_replicaset(self, rollout: dict[str, Any], stop: threading.Event) -> dict[str, Any] | None:
        stable = (rollout.get("status") or {}).get("stableRS")
        if not stable:
            return None
        history = owned_replicasets(self.client, self.namespace, rollout, "rollouts", stop)
        return next((rs for rs in history
                     if ((rs["spec"]["template"].get("metadata") or {}).get("labels") or {}).get(HASH_LABEL) == stable
                     or (rs["metadata"].get("labels") or {}).get(HASH_LABEL) == stable), None)
