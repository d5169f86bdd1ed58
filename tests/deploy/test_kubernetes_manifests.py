"""The Kubernetes manifests (deploy/kubernetes): valid against the Kubernetes schemas
(`kubernetes-validate --strict`, offline: it ships them), configs the real loader accepts,
and the two shapes keep their promises — the recommended one runs apart from the models on
PostgreSQL with RBAC limited to what its actuators touch; the sidecar one watches only its
own pod and never acts on its own Deployment."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.needs import require_executable
from watchdog.actuators.kubernetes import GET_DEPLOYMENT, LIST_REPLICASETS, PATCH_DEPLOYMENT
from watchdog.config.loader import load

DIR = Path(__file__).resolve().parents[2] / "deploy" / "kubernetes"
MANIFESTS = sorted(DIR.glob("*/*.yaml"))
# The oldest version the sidecar shape needs (native sidecars), and the schemas' newest.
VERSIONS = ["1.29.0", None]
KUBE_ACTUATORS = {"kubernetes", "argo-rollouts", "kserve"}


def kubernetes_validate() -> str:
    return require_executable("kubernetes-validate", "pip install -e '.[test]'")


def validate(*paths: Path, version: str | None = None) -> subprocess.CompletedProcess[str]:
    argv = [kubernetes_validate(), "--strict", *(["-k", version] if version else []), *map(str, paths)]
    # Offline: any attempt to fetch a schema would go to a dead proxy and fail.
    env = {**os.environ, "HTTP_PROXY": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "NO_PROXY": ""}
    return subprocess.run(argv, capture_output=True, text=True, timeout=120, env=env)


def objects(shape: str) -> list[dict[str, Any]]:
    return [doc for path in sorted((DIR / shape).glob("*.yaml")) for doc in yaml.safe_load_all(path.read_text()) if doc]


def one(shape: str, kind: str) -> dict[str, Any]:
    found = [o for o in objects(shape) if o["kind"] == kind]
    assert len(found) == 1, (shape, kind, len(found))
    return found[0]


def test_there_are_two_shapes_and_the_old_sidecar_is_gone():
    assert {p.parent.name for p in MANIFESTS} == {"recommended", "sidecar"}
    assert not (DIR.parent / "kubernetes-sidecar.yaml").exists()


@pytest.mark.parametrize("version", VERSIONS)
def test_every_manifest_validates_strictly(version):
    done = validate(*MANIFESTS, version=version)
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.count("passed for resource") == sum(len(list(filter(None, yaml.safe_load_all(p.read_text()))))
                                                           for p in MANIFESTS)


def test_strict_validation_rejects_an_unknown_field(tmp_path):
    broken = tmp_path / "deployment.yaml"
    broken.write_text((DIR / "recommended" / "deployment.yaml").read_text().replace(
        "terminationGracePeriodSeconds: 30", "terminationGracePeriodSeconds: 30\n      terminationGraceSeconds: 30"))
    done = validate(broken)
    assert done.returncode != 0 and "terminationGraceSeconds" in done.stdout + done.stderr


def materialise(shape: str, tmp_path: Path) -> Path:
    """The watchdog container's /etc/model-watchdog as the manifests mount it, under tmp_path."""
    config_maps = {o["metadata"]["name"]: o["data"] for o in objects(shape) if o["kind"] == "ConfigMap"}
    spec = pod_spec(shape)
    volumes = {v["name"]: v for v in spec["volumes"]}
    for mount in watchdog_container(shape)["volumeMounts"]:
        source = volumes[mount["name"]].get("configMap")
        if source is None or "subPath" not in mount:
            continue
        target = tmp_path / mount["mountPath"].lstrip("/")
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(config_maps[source["name"]][mount["subPath"]])
    return tmp_path / "etc" / "model-watchdog" / "watchdog.yaml"


def pod_spec(shape: str) -> dict[str, Any]:
    return one(shape, "Deployment")["spec"]["template"]["spec"]


def watchdog_container(shape: str) -> dict[str, Any]:
    spec = pod_spec(shape)
    found = [c for c in spec.get("containers", []) + spec.get("initContainers", []) if c["name"] == "model-watchdog"]
    assert len(found) == 1
    return found[0]


@pytest.mark.parametrize("shape", ["recommended", "sidecar"])
def test_the_shipped_configuration_loads(shape, tmp_path):
    loaded = load(materialise(shape, tmp_path), environ={"POD_NAME": "model-watchdog-7d9f-abcde",
                                                         "WATCHDOG_DB_PASSWORD": "s3cret"})
    assert [lr.rule.name for lr in loaded.rules] == ["error-rate"]
    assert loaded.config.listen.startswith("0.0.0.0:")  # reachable by the probes and Prometheus


@pytest.mark.parametrize("shape", ["recommended", "sidecar"])
def test_the_container_is_locked_down_with_writes_only_to_volumes(shape):
    spec, container = pod_spec(shape), watchdog_container(shape)
    context = container["securityContext"]
    assert context["readOnlyRootFilesystem"] is True and context["allowPrivilegeEscalation"] is False
    assert context["capabilities"]["drop"] == ["ALL"]
    assert spec["securityContext"]["runAsNonRoot"] is True
    assert spec["securityContext"]["seccompProfile"] == {"type": "RuntimeDefault"}
    volumes = {v["name"]: v for v in spec["volumes"]}
    writable = {m["mountPath"] for m in container["volumeMounts"] if "emptyDir" in volumes[m["name"]]}
    env = {e["name"]: e.get("value") for e in container["env"]}
    assert env["TMPDIR"] in writable
    probes = {k: container[k]["httpGet"]["path"] for k in ("startupProbe", "livenessProbe", "readinessProbe") if k in container}
    assert probes["livenessProbe"] == "/healthz"


def test_recommended_runs_apart_from_the_models_on_postgresql(tmp_path):
    deployment = one("recommended", "Deployment")
    config = load(materialise("recommended", tmp_path), environ={"POD_NAME": "p", "WATCHDOG_DB_PASSWORD": "x"}).config
    namespace = deployment["metadata"]["namespace"]
    guarded = {a.options.namespace for a in config.actuators.values() if a.type in KUBE_ACTUATORS}
    assert namespace not in guarded  # not inside the namespace (let alone the pods) it rolls back
    assert deployment["spec"]["replicas"] >= 2
    assert config.state.startswith("postgresql://") and "${" not in config.state
    assert config.replica_id == "p"
    container = watchdog_container("recommended")
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"


def test_recommended_has_a_disruption_budget_for_its_pods():
    pdb, deployment = one("recommended", "PodDisruptionBudget"), one("recommended", "Deployment")
    assert pdb["metadata"]["namespace"] == deployment["metadata"]["namespace"]
    assert pdb["spec"]["selector"] == deployment["spec"]["selector"]
    assert 1 <= pdb["spec"]["minAvailable"] < deployment["spec"]["replicas"]


def test_recommended_rbac_grants_exactly_what_the_actuators_touch(tmp_path):
    config = load(materialise("recommended", tmp_path), environ={"POD_NAME": "p", "WATCHDOG_DB_PASSWORD": "x"}).config
    needed: set[tuple[str, str, str, str, str]] = set()
    for actuator in config.actuators.values():
        assert actuator.type == "kubernetes", "extend this test with the other actuators' access"
        ns, name = actuator.options.namespace, actuator.options.deployment
        for access, named in ((GET_DEPLOYMENT, name), (PATCH_DEPLOYMENT, name), (LIST_REPLICASETS, "*")):
            needed.add((ns, access.group, access.resource, access.verb, named))
    granted: set[tuple[str, str, str, str, str]] = set()
    roles = {(o["metadata"]["namespace"], o["metadata"]["name"]): o for o in objects("recommended") if o["kind"] == "Role"}
    account = one("recommended", "ServiceAccount")["metadata"]
    assert watchdog_container("recommended") and pod_spec("recommended")["serviceAccountName"] == account["name"]
    assert not [o for o in objects("recommended") if o["kind"] in ("ClusterRole", "ClusterRoleBinding")]
    for binding in (o for o in objects("recommended") if o["kind"] == "RoleBinding"):
        assert binding["subjects"] == [{"kind": "ServiceAccount", "name": account["name"], "namespace": account["namespace"]}]
        role = roles[(binding["metadata"]["namespace"], binding["roleRef"]["name"])]
        for rule in role["rules"]:
            for group in rule["apiGroups"]:
                for resource in rule["resources"]:
                    for verb in rule["verbs"]:
                        for name in rule.get("resourceNames", ["*"]):
                            granted.add((role["metadata"]["namespace"], group, resource, verb, name))
    assert granted == needed


def test_the_sidecar_is_native_and_acts_only_through_registry_and_alerts(tmp_path):
    spec = pod_spec("sidecar")
    sidecar = watchdog_container("sidecar")
    assert sidecar in spec["initContainers"] and sidecar["restartPolicy"] == "Always"
    assert "readinessProbe" not in sidecar  # its readiness would count towards the model pod's
    assert spec["automountServiceAccountToken"] is False  # no Kubernetes API access at all
    config = load(materialise("sidecar", tmp_path)).config
    assert not [a for a in config.actuators.values() if a.type in KUBE_ACTUATORS]
    assert {a.type for a in config.actuators.values()} <= {"mlflow", "webhook"}
    for source in config.sources.values():
        assert source.type == "scrape" and source.options.url.startswith("http://127.0.0.1:")
    model_ports = {p["containerPort"] for c in spec["containers"] for p in c.get("ports", [])}
    assert {int(s.options.url.split(":")[2].split("/")[0]) for s in config.sources.values()} <= model_ports
