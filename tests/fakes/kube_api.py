"""A local fake Kubernetes API server for the Kubernetes-backed actuators' tests.

It follows the Kubernetes API contract for the calls the actuators make (Kubernetes API
reference for apps/v1 Deployment and ReplicaSet, argoproj.io/v1alpha1 Rollout,
serving.kserve.io/v1beta1 InferenceService; the apiserver's patch handler and generic
registry store for patch and conflict semantics; kubectl `rollback.go` for what a rollback
changes):

- paths `/apis/{group}/{version}/namespaces/{ns}/{plural}[/{name}[/status]]`; GET one object,
  LIST with `?labelSelector=` (`k=v`, `k!=v`, `k in (a,b)`, `k notin (a,b)`, `k`, `!k`);
- PATCH with `application/json-patch+json` (add/replace/remove/test; a failed op → 422),
  `application/merge-patch+json` (RFC 7386) and `application/strategic-merge-patch+json`
  (built-in kinds only; CRDs answer 415 like the real server): lists with a patch merge key
  in the Kubernetes API (containers and volumes by `name`, ports by `containerPort`, env by
  `name`, volumeMounts by `mountPath`, conditions by `type`, …) are merged item by item,
  other lists replaced; `$patch: delete` / `$patch: replace` and `$setElementOrder`
  directives are honoured;
- a patched object whose `metadata.resourceVersion` differs from the stored one → 409
  Conflict Status ("the object has been modified; …"); every write bumps resourceVersion,
  and a spec change bumps `metadata.generation`;
- errors are `Status` objects (`kind: Status`, `reason`, `code`, `details`): 401, 403
  (`forbid(verb, resource)`), 404, 409, 415, 422;
- `/status` of a CRD with the status subresource changes only `status`; a patch of the main
  resource ignores `status`;
- a minimal controller: changing a Deployment's or Rollout's pod template re-uses the owned
  ReplicaSet with the same template (revision → max+1, old number appended to
  `deployment.kubernetes.io/revision-history`) or makes a new one, and the status then
  progresses *with time* (`stage_seconds` per stage on `clock`, however often it is read):
  not yet observed → one new replica more per stage (maxSurge 1) → all updated but an old
  replica not yet scaled away (`replicas` > `updatedReplicas`) → old pods still terminating
  (`terminatingReplicas`, Kubernetes ≥ 1.33) → complete. An InferenceService's
  `canaryTrafficPercent: 0` moves traffic in one or two stages; an Argo abort turns
  Degraded/RolloutAborted one stage later.

Plain HTTP by default; `tls=(cert, key)` serves HTTPS (see `self_signed_cert`).
"""

from __future__ import annotations

import copy
import datetime
import hashlib
import ipaddress
import json
import re
import shutil
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Callable
from urllib.parse import parse_qs, urlsplit

_PATH = re.compile(r"^/apis/(?P<group>[^/]+)/(?P<version>[^/]+)/namespaces/(?P<ns>[^/]+)/(?P<plural>[^/]+)"
                   r"(?:/(?P<name>[^/]+))?(?:/(?P<sub>status))?$")
KINDS = {"Deployment": "deployments", "ReplicaSet": "replicasets", "Rollout": "rollouts",
         "InferenceService": "inferenceservices"}
CRD_GROUPS = {"argoproj.io", "serving.kserve.io"}
DEPLOY_REVISION = "deployment.kubernetes.io/revision"
DEPLOY_HISTORY = "deployment.kubernetes.io/revision-history"
ARGO_REVISION = "rollout.argoproj.io/revision"


@dataclass(frozen=True)
class Call:
    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: Any


class _Failure(Exception):
    def __init__(self, code: int, reason: str, message: str, details: dict[str, Any] | None = None):
        super().__init__(message)
        self.code, self.reason, self.details = code, reason, details or {}

    def status(self) -> dict[str, Any]:
        return {"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
                "message": str(self), "reason": self.reason, "details": self.details, "code": self.code}


@dataclass
class FakeKube:
    tls: tuple[str, str] | None = None
    token: str | None = None  # when set, requests must carry `Authorization: Bearer <token>`
    stage_seconds: float = 0.05  # how long each controller stage lasts (see the module docstring)
    clock: Callable[[], float] = time.monotonic  # what the controller measures stages by
    stuck: bool = False  # the rollout never completes
    deadline_exceeded: bool = False  # the rollout fails with ProgressDeadlineExceeded
    calls: list[Call] = field(default_factory=list)
    objects: dict[str, dict[str, Any]] = field(default_factory=dict)
    forbidden: set[tuple[str, str]] = field(default_factory=set)
    conflicts: int = 0  # the next N PATCHes find the object changed by someone else first
    no_status_subresource: set[str] = field(default_factory=set)  # plurals whose CRD lacks /status
    pending: dict[str, list[tuple[float, Callable[[dict[str, Any]], None]]]] = field(default_factory=dict)
    served: list[tuple[str, dict[str, Any]]] = field(default_factory=list)  # (path, object) of every GET answered

    def __post_init__(self) -> None:
        self._lock = threading.RLock()
        self._rv = 100
        self._uid = 0
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), self._handler())
        self._server.daemon_threads = True
        if self.tls:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(*self.tls)
            self._server.socket = context.wrap_socket(self._server.socket, server_side=True)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-kube-api", daemon=True)

    # --- lifecycle ----------------------------------------------------------------------------

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self._server.server_address[1]}"

    def __enter__(self) -> "FakeKube":
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)

    def kubeconfig(self, folder: Path, namespace: str = "default", ca_data: bytes | None = None,
                   token: str | None = None) -> Path:
        cluster: dict[str, Any] = {"server": self.url}
        if ca_data is not None:
            import base64
            cluster["certificate-authority-data"] = base64.b64encode(ca_data).decode()
        user = {"token": token or self.token} if (token or self.token) else {}
        config = {"apiVersion": "v1", "kind": "Config", "current-context": "fake",
                  "clusters": [{"name": "fake-cluster", "cluster": cluster}],
                  "users": [{"name": "fake-user", "user": user}],
                  "contexts": [{"name": "fake", "context": {"cluster": "fake-cluster", "user": "fake-user",
                                                            "namespace": namespace}}]}
        path = folder / "kubeconfig"
        path.write_text(json.dumps(config))  # JSON is YAML
        return path

    # --- objects ------------------------------------------------------------------------------

    def add(self, obj: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            obj = copy.deepcopy(obj)
            meta = obj.setdefault("metadata", {})
            self._uid += 1
            meta.setdefault("uid", f"uid-{self._uid}")
            meta.setdefault("generation", 1)
            meta["resourceVersion"] = self._next_rv()
            self.objects[self.path_of(obj)] = obj
            return copy.deepcopy(obj)

    def get(self, path: str) -> dict[str, Any]:
        with self._lock:
            self._reconcile(path)
            return copy.deepcopy(self.objects[path])

    def update(self, path: str, change: Callable[[dict[str, Any]], None]) -> None:
        """Change a stored object as another client would (bumps resourceVersion)."""
        with self._lock:
            change(self.objects[path])
            self.objects[path]["metadata"]["resourceVersion"] = self._next_rv()

    def forbid(self, verb: str, resource: str) -> None:
        self.forbidden.add((verb, resource))

    @staticmethod
    def path_of(obj: dict[str, Any]) -> str:
        meta = obj["metadata"]
        return f"/apis/{obj['apiVersion']}/namespaces/{meta['namespace']}/{KINDS[obj['kind']]}/{meta['name']}"

    def patches(self) -> list[Call]:
        return [c for c in self.calls if c.method == "PATCH"]

    def _next_rv(self) -> str:
        self._rv += 1
        return str(self._rv)

    # --- request handling ---------------------------------------------------------------------

    def _handler(self) -> type[BaseHTTPRequestHandler]:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            def _serve(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                raw = self.rfile.read(length) if length else b""
                split = urlsplit(self.path)
                query = {k: v[0] for k, v in parse_qs(split.query).items()}
                try:
                    body = json.loads(raw) if raw else None
                except ValueError:
                    body = raw.decode(errors="replace")
                call = Call(self.command, split.path, query, dict(self.headers.items()), body)
                try:
                    status, answer = fake._dispatch(call)
                except _Failure as failure:
                    status, answer = failure.code, failure.status()
                payload = json.dumps(answer).encode()
                try:
                    self.send_response(status)
                    self.send_header("Content-Type", "application/json")
                    self.send_header("Content-Length", str(len(payload)))
                    self.end_headers()
                    self.wfile.write(payload)
                except (BrokenPipeError, ConnectionResetError):
                    pass

            do_GET = do_PATCH = do_POST = do_PUT = do_DELETE = _serve

            def log_message(self, format: str, *args: Any) -> None:
                pass

        return Handler

    def _dispatch(self, call: Call) -> tuple[int, Any]:
        with self._lock:
            self.calls.append(call)
            if self.token is not None and call.headers.get("Authorization") != f"Bearer {self.token}":
                raise _Failure(401, "Unauthorized", "Unauthorized")
            m = _PATH.match(call.path)
            if not m:
                raise _Failure(404, "NotFound", "the server could not find the requested resource")
            group, plural, ns, name, sub = m["group"], m["plural"], m["ns"], m["name"], m["sub"]
            verb = {"GET": "get" if name else "list", "PATCH": "patch"}.get(call.method)
            if verb is None:
                raise _Failure(405, "MethodNotAllowed", f"method {call.method} is not supported by this fake")
            resource = f"{plural}/{sub}" if sub else plural
            if (verb, resource) in self.forbidden:
                what = f'{plural}.{group} "{name}"' if name else f"{plural}.{group}"
                raise _Failure(403, "Forbidden",
                               f'{what} is forbidden: User "system:serviceaccount:watchdog:model-watchdog" cannot '
                               f'{verb} resource "{resource}" in API group "{group}" in the namespace "{ns}"',
                               {"name": name or "", "group": group, "kind": plural})
            if verb == "list":
                return 200, self._list(call, plural, ns)
            base = call.path[: -len("/status")] if sub else call.path
            if base not in self.objects or (sub and plural in self.no_status_subresource):
                raise _Failure(404, "NotFound", f'{plural}.{group} "{name}" not found',
                               {"name": name, "group": group, "kind": plural})
            if verb == "get":
                self._reconcile(base)
                self.served.append((call.path, copy.deepcopy(self.objects[base])))
                return 200, copy.deepcopy(self.objects[base])
            return 200, self._patch(call, base, group, plural, name, bool(sub))

    def _list(self, call: Call, plural: str, ns: str) -> dict[str, Any]:
        match = _selector(call.query.get("labelSelector", ""))
        for path in list(self.pending):
            self._reconcile(path)
        items = [copy.deepcopy(o) for p, o in sorted(self.objects.items())
                 if KINDS[o["kind"]] == plural and o["metadata"]["namespace"] == ns
                 and match(o["metadata"].get("labels") or {})]
        kind = next((k for k, v in KINDS.items() if v == plural), "Object")
        return {"kind": f"{kind}List", "apiVersion": "v1", "metadata": {"resourceVersion": str(self._rv)},
                "items": items}

    def _patch(self, call: Call, path: str, group: str, plural: str, name: str, status_only: bool) -> dict[str, Any]:
        content_type = call.headers.get("Content-Type", "").split(";")[0].strip()
        crd = group in CRD_GROUPS
        supported = {"application/json-patch+json", "application/merge-patch+json"}
        if not crd:
            supported.add("application/strategic-merge-patch+json")
        if content_type not in supported:
            raise _Failure(415, "UnsupportedMediaType", f"the body of the request was in an unknown format - "
                           f"accepted media types include: {', '.join(sorted(supported))}")
        if self.conflicts > 0:  # someone else wrote first
            self.conflicts -= 1
            self.objects[path]["metadata"]["resourceVersion"] = self._next_rv()
        current = self.objects[path]
        self._reconcile(path)
        if content_type == "application/json-patch+json":
            patched = _json_patch(current, call.body)
        elif content_type == "application/strategic-merge-patch+json":
            patched = _strategic_merge(current, call.body)
        else:
            patched = _merge_patch(current, call.body)
        if patched["metadata"].get("resourceVersion") != current["metadata"]["resourceVersion"]:
            raise _Failure(409, "Conflict", f'Operation cannot be fulfilled on {plural}.{group} "{name}": the object '
                           "has been modified; please apply your changes to the latest version and try again",
                           {"name": name, "group": group, "kind": plural})
        has_status_sub = crd and plural not in self.no_status_subresource
        if status_only:
            patched = {**copy.deepcopy(current), "status": patched.get("status", {})}
        elif has_status_sub:
            patched["status"] = copy.deepcopy(current.get("status", {}))
        spec_changed = patched.get("spec") != current.get("spec")
        if spec_changed:
            patched["metadata"]["generation"] = current["metadata"].get("generation", 1) + 1
        patched["metadata"]["resourceVersion"] = self._next_rv()
        self.objects[path] = patched
        self._controller(path, current, patched)
        return copy.deepcopy(patched)

    # --- the simulated controllers ------------------------------------------------------------

    def _reconcile(self, path: str) -> None:
        """Apply every controller stage whose time has come (none, however often it is read, before)."""
        steps = self.pending.get(path)
        now = self.clock()
        while steps and steps[0][0] <= now:
            steps.pop(0)[1](self.objects[path])

    def _schedule(self, path: str, steps: list[Callable[[dict[str, Any]], None]]) -> None:
        """Stage i takes effect (i + 1) × stage_seconds from now."""
        start = self.clock()
        self.pending[path] = [(start + (i + 1) * self.stage_seconds, step) for i, step in enumerate(steps)]

    def _controller(self, path: str, before: dict[str, Any], after: dict[str, Any]) -> None:
        kind = after["kind"]
        if kind in ("Deployment", "Rollout") and before["spec"].get("template") != after["spec"].get("template"):
            self._new_revision(after)
            self._schedule(path, self._progress(after))
        elif kind == "Deployment":
            return
        if kind == "Rollout" and after.get("status", {}).get("abort") and not before.get("status", {}).get("abort"):
            self._schedule(path, [_aborted])
        if kind == "InferenceService":
            self._kserve(path, before, after)

    def _new_revision(self, owner: dict[str, Any]) -> None:
        argo = owner["kind"] == "Rollout"
        annotation, hash_label = (ARGO_REVISION, "rollouts-pod-template-hash") if argo else (DEPLOY_REVISION, "pod-template-hash")
        owned = [o for o in self.objects.values() if o["kind"] == "ReplicaSet" and any(
            r.get("uid") == owner["metadata"]["uid"] and r.get("controller")
            for r in o["metadata"].get("ownerReferences") or [])]
        top = max([int(o["metadata"].get("annotations", {}).get(annotation, "0")) for o in owned] or [0])
        template = _strip(owner["spec"]["template"], hash_label)
        same = next((o for o in owned if _strip(o["spec"]["template"], hash_label) == template), None)
        if same is not None:
            notes = same["metadata"].setdefault("annotations", {})
            old = notes.get(annotation, "0")
            notes[annotation] = str(top + 1)
            if not argo:
                notes[DEPLOY_HISTORY] = ",".join(filter(None, [notes.get(DEPLOY_HISTORY, ""), old]))
            same["metadata"]["resourceVersion"] = self._next_rv()
            pod_hash = same["spec"]["template"]["metadata"]["labels"][hash_label]
        else:
            pod_hash = hashlib.sha256(json.dumps(template, sort_keys=True).encode()).hexdigest()[:10]
            self.add(replicaset(owner, top + 1, template=template, pod_hash=pod_hash, argo=argo))
        if not argo:
            owner["metadata"].setdefault("annotations", {})[annotation] = str(top + 1)
        owner.setdefault("status", {})["_target_hash"] = pod_hash

    def _progress(self, owner: dict[str, Any]) -> list[Callable[[dict[str, Any]], None]]:
        generation = owner["metadata"]["generation"]
        replicas = owner["spec"].get("replicas", 1)
        argo = owner["kind"] == "Rollout"

        def rolling(updated: int) -> Callable[[dict[str, Any]], None]:
            def stage(obj: dict[str, Any]) -> None:  # maxSurge 1, maxUnavailable 0
                status = obj.setdefault("status", {})
                if argo:
                    status.update(observedGeneration=str(generation), phase="Progressing",
                                  message="more replicas need to be updated")
                    status.pop("abort", None)
                else:
                    status.update(observedGeneration=generation, replicas=replicas + 1, updatedReplicas=updated,
                                  availableReplicas=replicas, terminatingReplicas=0)
            return stage

        def old_not_scaled_down(obj: dict[str, Any]) -> None:  # every replica updated, one old still counted
            obj["status"].update(replicas=replicas + 1, updatedReplicas=replicas, availableReplicas=replicas + 1)

        def old_terminating(obj: dict[str, Any]) -> None:  # scaled away; its pod is still shutting down
            obj["status"].update(replicas=replicas, updatedReplicas=replicas, availableReplicas=replicas,
                                 terminatingReplicas=1)

        def fail(obj: dict[str, Any]) -> None:
            obj["status"]["conditions"] = [{"type": "Progressing", "status": "False", "reason": "ProgressDeadlineExceeded",
                                            "message": f'ReplicaSet "{obj["metadata"]["name"]}-x" has timed out progressing.'}]
            if argo:
                obj["status"].update(phase="Degraded", message="ProgressDeadlineExceeded")

        def complete(obj: dict[str, Any]) -> None:
            status = obj.setdefault("status", {})
            if argo:
                status.update(phase="Healthy", message="", stableRS=status.get("_target_hash"),
                              currentPodHash=status.get("_target_hash"), conditions=[])
            else:
                status.update(replicas=replicas, updatedReplicas=replicas, availableReplicas=replicas,
                              terminatingReplicas=0)

        # Stage 0 (until the first stage is due): the spec change is not observed yet.
        steps: list[Callable[[dict[str, Any]], None]] = [rolling(1)]
        if self.deadline_exceeded:
            return steps + [fail]
        if self.stuck:
            return steps
        if argo:
            return steps + [complete]
        steps += [rolling(n) for n in range(2, replicas + 1)]
        return steps + [old_not_scaled_down, old_terminating, complete]

    def _kserve(self, path: str, before: dict[str, Any], after: dict[str, Any]) -> None:
        for component, spec in after["spec"].items():
            if not isinstance(spec, dict) or spec.get("canaryTrafficPercent") != 0:
                continue
            if (before["spec"].get(component) or {}).get("canaryTrafficPercent") == 0:
                continue
            status = after["status"]["components"][component]
            ready, rolled, previous = (status.get("latestReadyRevision"), status.get("latestRolledoutRevision"),
                                       status.get("previousRolledoutRevision"))
            pinned = [{"revisionName": None, "latestRevision": True, "percent": 0},
                      {"revisionName": None, "latestRevision": False, "percent": 100, "tag": "prev"}]

            def route(to: str) -> Callable[[dict[str, Any]], None]:
                def step(obj: dict[str, Any]) -> None:
                    s = obj["status"]["components"][component]
                    s["latestRolledoutRevision"] = to
                    s["traffic"] = [{**pinned[0], "revisionName": ready}, {**pinned[1], "revisionName": to}]
                return step

            def same_revision(obj: dict[str, Any]) -> None:  # first reconcile after a full promotion
                obj["status"]["components"][component]["traffic"] = [
                    {"revisionName": ready, "latestRevision": True, "percent": 0},
                    {"revisionName": ready, "latestRevision": False, "percent": 100, "tag": "prev"}]

            if ready == rolled:
                self._schedule(path, [same_revision, route(previous)])
            else:
                self._schedule(path, [route(rolled)])


def _aborted(obj: dict[str, Any]) -> None:
    status = obj.setdefault("status", {})
    revision = obj["metadata"].get("annotations", {}).get(ARGO_REVISION, "?")
    status.update(phase="Degraded", message=f"RolloutAborted: Rollout aborted update to revision {revision}",
                  abortedAt="2026-01-02T03:04:05Z", currentPodHash=status.get("stableRS"),
                  conditions=[{"type": "Progressing", "status": "False", "reason": "RolloutAborted",
                               "message": f"Rollout aborted update to revision {revision}"}])


# --- object builders --------------------------------------------------------------------------

def pod_template(image: str, *, labels: dict[str, str] | None = None, annotations: dict[str, str] | None = None,
                 pod_hash: str | None = None, hash_label: str = "pod-template-hash",
                 sidecar: str | None = None) -> dict[str, Any]:
    meta: dict[str, Any] = {"labels": {"app": "fraud", **(labels or {})}}
    if pod_hash:
        meta["labels"][hash_label] = pod_hash
    if annotations:
        meta["annotations"] = dict(annotations)
    containers = [{"name": "model", "image": image, "ports": [{"containerPort": 8080}]}]
    if sidecar:
        containers.append({"name": "proxy", "image": sidecar})
    return {"metadata": meta, "spec": {"containers": containers}}


def deployment(name: str = "fraud", namespace: str = "ml", *, image: str, revision: int, replicas: int = 3,
               template_annotations: dict[str, str] | None = None, sidecar: str | None = None,
               annotations: dict[str, str] | None = None) -> dict[str, Any]:
    return {"apiVersion": "apps/v1", "kind": "Deployment",
            "metadata": {"name": name, "namespace": namespace, "labels": {"app": "fraud"},
                         "annotations": {DEPLOY_REVISION: str(revision), **(annotations or {})}},
            "spec": {"replicas": replicas, "selector": {"matchLabels": {"app": "fraud"}},
                     "template": pod_template(image, annotations=template_annotations, sidecar=sidecar),
                     "strategy": {"type": "RollingUpdate"}, "revisionHistoryLimit": 10},
            "status": {"observedGeneration": 1, "replicas": replicas, "updatedReplicas": replicas,
                       "readyReplicas": replicas, "availableReplicas": replicas,
                       "conditions": [{"type": "Progressing", "status": "True", "reason": "NewReplicaSetAvailable"}]}}


def replicaset(owner: dict[str, Any], revision: int, *, image: str | None = None, template: dict[str, Any] | None = None,
               pod_hash: str | None = None, argo: bool = False, annotations: dict[str, str] | None = None,
               template_annotations: dict[str, str] | None = None, sidecar: str | None = None,
               controller: bool = True) -> dict[str, Any]:
    hash_label = "rollouts-pod-template-hash" if argo else "pod-template-hash"
    pod_hash = pod_hash or f"h{revision}"
    if template is None:
        assert image is not None
        template = pod_template(image, annotations=template_annotations, sidecar=sidecar)
    template = copy.deepcopy(template)
    template.setdefault("metadata", {}).setdefault("labels", {})[hash_label] = pod_hash
    meta = owner["metadata"]
    notes = {ARGO_REVISION if argo else DEPLOY_REVISION: str(revision), **(annotations or {})}
    return {"apiVersion": "apps/v1", "kind": "ReplicaSet",
            "metadata": {"name": f"{meta['name']}-{pod_hash}", "namespace": meta["namespace"],
                         "labels": dict(template["metadata"]["labels"]), "annotations": notes,
                         "ownerReferences": [{"apiVersion": owner["apiVersion"], "kind": owner["kind"],
                                              "name": meta["name"], "uid": meta["uid"], "controller": controller,
                                              "blockOwnerDeletion": True}]},
            "spec": {"replicas": 0, "selector": {"matchLabels": dict(template["metadata"]["labels"])},
                     "template": template},
            "status": {"replicas": 0}}


def rollout(name: str = "fraud", namespace: str = "ml", *, image: str, revision: int, stable_hash: str,
            current_hash: str | None = None, workload_ref: str | None = None) -> dict[str, Any]:
    spec: dict[str, Any] = {"replicas": 3, "selector": {"matchLabels": {"app": "fraud"}},
                            "strategy": {"canary": {"steps": [{"setWeight": 20}, {"pause": {}}]}}}
    if workload_ref:
        spec["workloadRef"] = {"apiVersion": "apps/v1", "kind": "Deployment", "name": workload_ref}
    else:
        spec["template"] = pod_template(image)
    return {"apiVersion": "argoproj.io/v1alpha1", "kind": "Rollout",
            "metadata": {"name": name, "namespace": namespace, "annotations": {ARGO_REVISION: str(revision)}},
            "spec": spec,
            "status": {"observedGeneration": "1", "phase": "Paused", "stableRS": stable_hash,
                       "currentPodHash": current_hash or stable_hash, "message": "CanaryPauseStep"}}


def inference_service(name: str = "fraud", namespace: str = "ml", *, ready: str, rolled_out: str,
                      previous: str | None, canary_percent: int | None = None,
                      mode: str | None = None) -> dict[str, Any]:
    predictor: dict[str, Any] = {"model": {"modelFormat": {"name": "sklearn"}, "storageUri": "s3://models/fraud/v7"}}
    if canary_percent is not None:
        predictor["canaryTrafficPercent"] = canary_percent
    if ready == rolled_out:
        traffic = [{"revisionName": ready, "latestRevision": True, "percent": 100}]
    else:
        traffic = [{"revisionName": ready, "latestRevision": True, "percent": canary_percent or 0, "tag": "latest"},
                   {"revisionName": rolled_out, "latestRevision": False, "percent": 100 - (canary_percent or 0),
                    "tag": "prev"}]
    status = {"latestReadyRevision": ready, "latestCreatedRevision": ready, "latestRolledoutRevision": rolled_out,
              "traffic": traffic}
    if previous:
        status["previousRolledoutRevision"] = previous
    annotations = {"serving.kserve.io/deploymentMode": mode} if mode else {}
    return {"apiVersion": "serving.kserve.io/v1beta1", "kind": "InferenceService",
            "metadata": {"name": name, "namespace": namespace, "annotations": annotations},
            "spec": {"predictor": predictor},
            "status": {"components": {"predictor": status},
                       "conditions": [{"type": "Ready", "status": "True"}]}}


# --- patch semantics --------------------------------------------------------------------------

def _strip(template: dict[str, Any], hash_label: str) -> dict[str, Any]:
    out = copy.deepcopy(template)
    out.get("metadata", {}).get("labels", {}).pop(hash_label, None)
    return out


def _merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge_patch(out.get(key), value)
    return out


# patchMergeKey of the list fields the built-in kinds' OpenAPI marks `x-kubernetes-patch-strategy: merge`.
MERGE_KEYS = {"containers": "name", "initContainers": "name", "ephemeralContainers": "name", "env": "name",
              "ports": "containerPort", "volumes": "name", "volumeMounts": "mountPath", "volumeDevices": "devicePath",
              "imagePullSecrets": "name", "hostAliases": "ip", "conditions": "type", "ownerReferences": "uid",
              "topologySpreadConstraints": "topologyKey"}
MERGED_PRIMITIVE_LISTS = {"finalizers"}  # strategy merge without a key: a set union


def _strategic_merge(target: Any, patch: Any) -> Any:
    """The apiserver's strategic merge patch (apimachinery strategicpatch) for built-in kinds."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    if patch.get("$patch") == "replace":
        return {k: copy.deepcopy(v) for k, v in patch.items() if k != "$patch"}
    out = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if key.startswith("$setElementOrder/") or key.startswith("$retainKeys"):
            continue  # ordering hints: the fake keeps the server's order
        if key.startswith("$deleteFromPrimitiveList/"):
            name = key.split("/", 1)[1]
            out[name] = [v for v in out.get(name) or [] if v not in value]
        elif value is None:
            out.pop(key, None)
        elif isinstance(value, list) and key in MERGE_KEYS:
            out[key] = _merge_list(out.get(key) or [], value, MERGE_KEYS[key])
        elif isinstance(value, list) and key in MERGED_PRIMITIVE_LISTS:
            out[key] = list(out.get(key) or []) + [v for v in value if v not in (out.get(key) or [])]
        elif isinstance(value, dict):
            out[key] = _strategic_merge(out.get(key), value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _merge_list(current: list[Any], patch: list[Any], merge_key: str) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return [copy.deepcopy(i) for i in patch if not (isinstance(i, dict) and i.get("$patch") == "replace")]
    out = [copy.deepcopy(i) for i in current]
    for item in patch:
        if not isinstance(item, dict) or merge_key not in item:
            raise _Failure(422, "Invalid", f"map: {item!r} does not contain declared merge key: {merge_key}")
        at = next((i for i, existing in enumerate(out) if existing.get(merge_key) == item[merge_key]), None)
        if item.get("$patch") == "delete":
            if at is not None:
                del out[at]
        elif at is None:
            out.append({k: copy.deepcopy(v) for k, v in item.items() if k != "$patch"})
        else:
            out[at] = _strategic_merge(out[at], item)
    return out


def _pointer(path: str) -> list[str]:
    if not path.startswith("/"):
        raise _Failure(422, "Invalid", f"invalid JSON pointer {path!r}")
    return [p.replace("~1", "/").replace("~0", "~") for p in path[1:].split("/")]


def _json_patch(target: dict[str, Any], ops: Any) -> dict[str, Any]:
    """RFC 6902 for the ops the actuators send; a failing op answers 422 like the apiserver."""
    if not isinstance(ops, list):
        raise _Failure(400, "BadRequest", "json: cannot unmarshal object into Go value of type jsonpatch.Patch")
    doc = copy.deepcopy(target)
    for op in ops:
        *parents, last = _pointer(op["path"])
        node: Any = doc
        for part in parents:
            if not isinstance(node, dict) or part not in node:
                raise _Failure(422, "", f"{op['op']} operation does not apply: doc is missing path: {op['path']}")
            node = node[part]
        kind = op["op"]
        if kind == "test":
            if node.get(last) != op.get("value"):
                raise _Failure(422, "", f"testing value {op['path']} failed: test failed")
        elif kind == "replace":
            if last not in node:
                raise _Failure(422, "", f"replace operation does not apply: doc is missing key: {op['path']}")
            node[last] = copy.deepcopy(op["value"])
        elif kind == "add":
            node[last] = copy.deepcopy(op["value"])
        elif kind == "remove":
            if last not in node:
                raise _Failure(422, "", f"remove operation does not apply: doc is missing path: {op['path']}")
            del node[last]
        else:
            raise _Failure(422, "", f"unsupported op {kind!r} in this fake")
    return doc


def _selector(text: str) -> Callable[[dict[str, str]], bool]:
    terms = [t.strip() for t in re.split(r",(?![^()]*\))", text) if t.strip()]

    def one(term: str) -> Callable[[dict[str, str]], bool]:
        m = re.fullmatch(r"(\S+)\s+(in|notin)\s+\(([^)]*)\)", term)
        if m:
            values = {v.strip() for v in m[3].split(",")}
            if m[2] == "in":
                return lambda labels: labels.get(m[1]) in values
            return lambda labels: labels.get(m[1]) not in values
        if "!=" in term:
            k, v = term.split("!=", 1)
            return lambda labels: labels.get(k) != v
        if "=" in term:
            k, v = term.replace("==", "=").split("=", 1)
            return lambda labels: labels.get(k) == v
        if term.startswith("!"):
            return lambda labels: term[1:] not in labels
        return lambda labels: term in labels

    checks = [one(t) for t in terms]
    return lambda labels: all(check(labels) for check in checks)


# --- TLS --------------------------------------------------------------------------------------

def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A self-signed certificate for 127.0.0.1/localhost: (cert.pem, key.pem).

    Made with the `cryptography` package when installed, else the `openssl` CLI.
    """
    cert, key = folder / "cert.pem", folder / "key.pem"
    try:
        from cryptography import x509
        from cryptography.hazmat.primitives import hashes, serialization
        from cryptography.hazmat.primitives.asymmetric import ec
        from cryptography.x509.oid import NameOID
    except ImportError:
        openssl = shutil.which("openssl")
        if openssl is None:
            raise RuntimeError("neither the cryptography package nor the openssl CLI is available")
        subprocess.run([openssl, "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1",
                        "-nodes", "-keyout", str(key), "-out", str(cert), "-days", "2", "-subj", "/CN=fake-kube",
                        "-addext", "subjectAltName=IP:127.0.0.1,DNS:localhost"],
                       check=True, capture_output=True, timeout=60)
        return cert, key
    private = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fake-kube")])
    now = datetime.datetime.now(datetime.timezone.utc)
    certificate = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(private.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(days=2))
                   .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1")),
                                                               x509.DNSName("localhost")]), critical=False)
                   .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
                   .sign(private, hashes.SHA256()))
    cert.write_bytes(certificate.public_bytes(serialization.Encoding.PEM))
    key.write_bytes(private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                          serialization.NoEncryption()))
    return cert, key
