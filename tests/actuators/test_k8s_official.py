"""Kubeconfigs with credential plugins (EKS/GKE-style `exec`) go through the official
`kubernetes` client's loader when the `kubernetes` extra is installed; without it the error
names the extra. Kubeconfigs without a plugin never touch the official client.

The plugin is a real executable printing an ExecCredential (client.authentication.k8s.io/v1),
like `aws eks get-token`; the API server is the fake of tests/fakes/kube_api.py."""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path

import pytest

from tests.actuators.kube_fixtures import make_context
from tests.fakes.kube_api import FakeKube, deployment
from tests.needs import require_module
from watchdog.actuators import k8s_client
from watchdog.actuators.k8s_client import Access, KubeClient
from watchdog.actuators.kubernetes import KubernetesActuator
from watchdog.errors import ActuatorError

pytestmark = pytest.mark.timeout(60)
GET = Access("get", "deployments", "apps")
PATH = "/apis/apps/v1/namespaces/ml/deployments/fraud"

PLUGIN = """\
#!{python}
import datetime, json, pathlib, sys
counter = pathlib.Path({counter!r})
n = int(counter.read_text()) + 1 if counter.exists() else 1
counter.write_text(str(n))
if {fail!r}:
    sys.stderr.write("could not get a token: ExpiredToken\\n")
    sys.exit(1)
expires = datetime.datetime.now(datetime.timezone.utc) + datetime.timedelta(seconds={lifetime})
print(json.dumps({{"apiVersion": "client.authentication.k8s.io/v1", "kind": "ExecCredential",
                  "status": {{"token": "eks-token-%d-abcdefgh" % n,
                             "expirationTimestamp": expires.strftime("%Y-%m-%dT%H:%M:%SZ")}}}}))
"""


def official_client_installed() -> None:
    require_module("kubernetes")


def exec_kubeconfig(folder: Path, server: str, lifetime: int = 3600, fail: bool = False) -> Path:
    plugin = folder / "get-token"
    plugin.write_text(PLUGIN.format(python=sys.executable, counter=str(folder / "runs"), lifetime=lifetime, fail=fail))
    plugin.chmod(0o755)
    config = {"apiVersion": "v1", "kind": "Config", "current-context": "eks",
              "clusters": [{"name": "eks-cluster", "cluster": {"server": server}}],
              "users": [{"name": "eks-user", "user": {"exec": {
                  "apiVersion": "client.authentication.k8s.io/v1", "command": str(plugin),
                  "args": ["--cluster-name", "fraud"], "interactiveMode": "Never"}}}],
              "contexts": [{"name": "eks", "context": {"cluster": "eks-cluster", "user": "eks-user", "namespace": "ml"}}]}
    path = folder / "kubeconfig"
    path.write_text(json.dumps(config))
    return path


def runs(folder: Path) -> int:
    return int((folder / "runs").read_text())


def test_an_exec_plugin_kubeconfig_works_through_the_official_client(tmp_path: Path) -> None:
    official_client_installed()
    with FakeKube(token="eks-token-1-abcdefgh") as kube:
        kube.add(deployment(image="registry/fraud:v7", revision=1))
        config = exec_kubeconfig(tmp_path, kube.url)
        act = KubernetesActuator("deploy", KubernetesActuator.Options(deployment="fraud", kubeconfig=str(config)))
        assert act.current_version(make_context()) == "v7"
        assert act.current_version(make_context()) == "v7"
    assert kube.calls[-1].headers["Authorization"] == "Bearer eks-token-1-abcdefgh"
    assert runs(tmp_path) == 1  # a token valid for an hour is reused
    creds = k8s_client.from_kubeconfig(config, None)
    assert creds.namespace == "ml" and "exec plugin via the kubernetes client" in creds.source


def test_an_expiring_token_is_fetched_again(tmp_path: Path) -> None:
    official_client_installed()
    with FakeKube() as kube:  # accepts any token; we look at what was sent
        kube.add(deployment(image="registry/fraud:v7", revision=1))
        # Expires within the loader's skew margin: every request asks the plugin again.
        client = KubeClient(k8s_client.from_kubeconfig(exec_kubeconfig(tmp_path, kube.url, lifetime=30), None))
        client.get(PATH, GET, threading.Event())
        client.get(PATH, GET, threading.Event())
    sent = [c.headers["Authorization"] for c in kube.calls]
    assert len(set(sent)) == 2 and all(s.startswith("Bearer eks-token-") for s in sent)


def test_a_failing_plugin_is_an_actuator_error(tmp_path: Path) -> None:
    official_client_installed()
    with pytest.raises(ActuatorError, match="exec/auth-provider credential plugin \\(exec\\).*neither a token"):
        k8s_client.from_kubeconfig(exec_kubeconfig(tmp_path, "https://10.0.0.1:6443", fail=True), None)


def test_without_the_extra_the_error_names_it(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("kubernetes", "kubernetes.config", "kubernetes.client"):
        monkeypatch.setitem(sys.modules, module, None)  # what `import kubernetes` does when not installed
    with pytest.raises(ActuatorError) as err:
        k8s_client.from_kubeconfig(exec_kubeconfig(tmp_path, "https://10.0.0.1:6443"), None)
    assert "pip install 'model-watchdog[kubernetes]'" in str(err.value)
    assert "user 'eks-user' uses an exec/auth-provider credential plugin (exec)" in str(err.value)
    assert not (tmp_path / "runs").exists()  # the plugin was not run


def test_a_token_kubeconfig_never_uses_the_official_client(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("kubernetes", "kubernetes.config", "kubernetes.client"):
        monkeypatch.setitem(sys.modules, module, None)
    with FakeKube(token="plain-token-0123456789") as kube:
        kube.add(deployment(image="registry/fraud:v7", revision=1))
        config = kube.kubeconfig(tmp_path, namespace="ml")
        act = KubernetesActuator("deploy", KubernetesActuator.Options(deployment="fraud", kubeconfig=str(config)))
        assert act.current_version(make_context()) == "v7"
    assert k8s_client.from_kubeconfig(config, None).authorization is None


def test_auth_provider_users_are_handed_over_too(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for module in ("kubernetes", "kubernetes.config", "kubernetes.client"):
        monkeypatch.setitem(sys.modules, module, None)
    config = {"current-context": "gke", "clusters": [{"name": "c", "cluster": {"server": "https://10.0.0.1"}}],
              "users": [{"name": "u", "user": {"auth-provider": {"name": "oidc", "config": {"id-token": "x"}}}}],
              "contexts": [{"name": "gke", "context": {"cluster": "c", "user": "u"}}]}
    path = tmp_path / "kubeconfig"
    path.write_text(json.dumps(config))
    with pytest.raises(ActuatorError, match=r"\(auth-provider\).*model-watchdog\[kubernetes\]"):
        k8s_client.from_kubeconfig(path, None)

