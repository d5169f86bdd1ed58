"""Send an InferenceService's traffic back to its previous revision (KServe, Serverless mode).

Resource `serving.kserve.io/v1beta1`, plural `inferenceservices`. The rollback KServe
documents ("Rollback and pin the previous model") is a merge patch
`{"spec": {"<component>": {"canaryTrafficPercent": 0}}}` (`application/merge-patch+json`; CRDs
take no strategic merge): the new model spec stays, and 100 % of the traffic goes to the last
revision that had 100 %. Which revision that is, read from `status.components.<component>`:

- a canary in progress (`latestReadyRevision` ≠ `latestRolledoutRevision`): the
  `latestRolledoutRevision`;
- a completed rollout (they are equal): the `previousRolledoutRevision`.

It is eventually consistent: after a completed rollout the first reconcile still splits over
the same revision, so `apply` and `verify` poll `status.components.<component>.traffic` until
that revision carries 100 %. `canaryTrafficPercent` is only supported in Serverless mode; a
RawDeployment/Standard InferenceService is refused, and so is the new `spec.canary[]` form.

Versions here are revision names (`fraud-predictor-00002`): `current_version` is the revision
that carries the most traffic. A rollback always goes to the revision above, so the decision
needs no version; when it names one that is a known revision, it must be that revision.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass
from typing import Any, Literal

from watchdog.actuators import k8s_client
from watchdog.actuators.base import ActionContext
from watchdog.actuators.k8s_client import Access
from watchdog.actuators.kubernetes import KubeActuator, KubeOptions
from watchdog.config.fields import option
from watchdog.durations import format_duration
from watchdog.errors import ActuatorError

GROUP_VERSION = "serving.kserve.io/v1beta1"
DEPLOYMENT_MODE = "serving.kserve.io/deploymentMode"
GET_ISVC = Access("get", "inferenceservices", "serving.kserve.io")
PATCH_ISVC = Access("patch", "inferenceservices", "serving.kserve.io")


@dataclass(frozen=True, kw_only=True)
class KServeActuatorOptions(KubeOptions):
    inference_service: str = option(help="name of the InferenceService")
    component: Literal["predictor", "transformer", "explainer"] = option(
        "predictor", help="the component whose traffic goes back")


class KServeActuator(KubeActuator):
    Options = KServeActuatorOptions

    def __init__(self, name: str, options: KServeActuatorOptions):
        if not options.inference_service:
            raise ValueError("inference_service must name an InferenceService")
        super().__init__(name, options)

    @property
    def _what(self) -> str:
        return f'inferenceservice "{self.namespace}/{self.options.inference_service}"'

    def _path(self) -> str:
        return k8s_client.api_path(GROUP_VERSION, self.namespace, "inferenceservices", self.options.inference_service)

    def _get(self, stop: threading.Event) -> dict[str, Any]:
        return self.client.get(self._path(), GET_ISVC, stop, what=self._what)

    def plan(self, context: ActionContext) -> str:
        return (f"set {self.options.component}.canaryTrafficPercent of {self._what} to 0 (all traffic to the "
                f"previous revision), then wait up to {format_duration(self.options.timeout)} for the traffic")

    def apply(self, context: ActionContext, stop: threading.Event) -> str:
        deadline = time.monotonic() + self.options.timeout
        isvc = self._get(stop)
        spec = self._component_spec(isvc)
        target = self._previous_revision(isvc)
        self._check_wanted(context, isvc, target)
        if spec.get("canaryTrafficPercent") == 0:
            done = f"{self._what} is already pinned to its previous revision"
        else:
            body = {"spec": {self.options.component: {"canaryTrafficPercent": 0}}}
            self.client.patch(self._path(), body, k8s_client.MERGE_PATCH, PATCH_ISVC, stop, what=self._what)
            done = f"set {self.options.component}.canaryTrafficPercent of {self._what} to 0"
        took = self.wait_until(lambda: self._serves(target, stop), f"traffic of {self._what}", stop, deadline)
        return f"{done}; {target} has 100% of the traffic after {took:.1f}s"

    def verify(self, context: ActionContext, stop: threading.Event) -> str:
        deadline = time.monotonic() + self.options.timeout
        isvc = self._get(stop)
        if self._component_spec(isvc).get("canaryTrafficPercent") != 0:
            raise ActuatorError(f"{self._what}: {self.options.component}.canaryTrafficPercent is "
                                f"{self._component_spec(isvc).get('canaryTrafficPercent')!r}, not 0")
        target = self._previous_revision(isvc)
        self._check_wanted(context, isvc, target)
        self.wait_until(lambda: self._serves(target, stop), f"traffic of {self._what}", stop, deadline)
        return f"{self._what} sends 100% of its traffic to {target}"

    def current_version(self, context: ActionContext) -> str | None:
        status = self._component_status(self._get(threading.Event()))
        best: tuple[int, str] | None = None
        for entry in status.get("traffic") or []:
            revision = entry.get("revisionName") or (status.get("latestReadyRevision") if entry.get("latestRevision") else None)
            if revision and (best is None or entry.get("percent", 0) > best[0]):
                best = (entry.get("percent", 0), revision)
        return best[1] if best else status.get("latestRolledoutRevision")

    def _component_spec(self, isvc: dict[str, Any]) -> dict[str, Any]:
        annotations = isvc["metadata"].get("annotations") or {}
        mode = annotations.get(DEPLOYMENT_MODE, "Serverless")
        if mode in ("RawDeployment", "Standard"):
            raise ActuatorError(f"{self._what} runs in {mode} mode; canaryTrafficPercent is only supported in "
                                "Serverless mode (use the kubernetes actuator on its Deployment instead)")
        if isvc["spec"].get("canary"):
            raise ActuatorError(f"{self._what} uses spec.canary[] (KServe ≥ 0.20 Standard mode), which this "
                                "actuator does not handle yet")
        spec = isvc["spec"].get(self.options.component)
        if not isinstance(spec, dict):
            raise ActuatorError(f"{self._what} has no {self.options.component} component")
        return spec

    def _component_status(self, isvc: dict[str, Any]) -> dict[str, Any]:
        return ((isvc.get("status") or {}).get("components") or {}).get(self.options.component) or {}

    def _previous_revision(self, isvc: dict[str, Any]) -> str:
        status = self._component_status(isvc)
        rolled_out = status.get("latestRolledoutRevision")
        ready = status.get("latestReadyRevision")
        if rolled_out and ready and ready != rolled_out:
            return str(rolled_out)  # a canary in progress (or a rollback already settled)
        previous = status.get("previousRolledoutRevision")
        if not previous:
            raise ActuatorError(f"{self._what} has no previous rolled-out revision of its {self.options.component} "
                                "to send traffic back to")
        return str(previous)

    def _check_wanted(self, context: ActionContext, isvc: dict[str, Any], target: str) -> None:
        wanted = context.extra.get("to_version") or context.previous_version
        status = self._component_status(isvc)
        known = {status.get(k) for k in ("latestRolledoutRevision", "previousRolledoutRevision",
                                         "latestReadyRevision", "latestCreatedRevision")}
        known |= {t.get("revisionName") for t in status.get("traffic") or []}
        if wanted and wanted in known and wanted != target:
            raise ActuatorError(f"{self._what} can only go back to its previous revision {target}, not {wanted}")

    def _serves(self, target: str, stop: threading.Event) -> tuple[bool, str]:
        traffic = self._component_status(self._get(stop)).get("traffic") or []
        if any(t.get("revisionName") == target and t.get("percent") == 100 for t in traffic):
            return True, "done"
        shown = ", ".join(f"{t.get('revisionName') or 'latest'}={t.get('percent', 0)}%" for t in traffic) or "none"
        return False, f"traffic is {shown}"
