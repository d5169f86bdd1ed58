"""The small Kubernetes client: where credentials come from, and that TLS is verified.

The API server is the fake of tests/fakes/kube_api.py (Kubernetes API reference for apps/v1;
Status objects for errors), served over HTTPS with a self-signed certificate for the TLS tests.
"""

from __future__ import annotations

import base64
import json
import threading
from pathlib import Path
from typing import Iterator

import pytest

from tests.actuators.kube_fixtures import TOKEN, make_context
from tests.fakes.kube_api import FakeKube, deployment, self_signed_cert
from watchdog.actuators import k8s_client
from watchdog.actuators.k8s_client import Access, KubeClient
from watchdog.actuators.kubernetes import KubernetesActuator
from watchdog.errors import ActuatorError

pytestmark = pytest.mark.timeout(60)
GET = Access("get", "deployments", "apps")


def write_kubeconfig(folder: Path, **parts: object) -> Path:
    cluster = {"server": "https://10.0.0.1:6443", **parts.pop("cluster", {})}  # type: ignore[dict-item]
    user = parts.pop("user", {"token": "t0ken-abcdef-123456"})
    config = {"current-context": parts.pop("current", "prod"),
              "clusters": [{"name": "c1", "cluster": cluster}, {"name": "c2", "cluster": {"server": "https://c2:443"}}],
              "users": [{"name": "u1", "user": user}],
              "contexts": [{"name": "prod", "context": {"cluster": "c1", "user": "u1", "namespace": "ml"}},
                           {"name": "staging", "context": {"cluster": "c2", "user": "u1"}}]}
    path = folder / "config"
    path.write_text(json.dumps(config))
    return path


def test_kubeconfig_current_context_cluster_and_token(tmp_path: Path) -> None:
    ca = tmp_path / "ca.pem"
    ca.write_text("---")
    path = write_kubeconfig(tmp_path, cluster={"certificate-authority": "ca.pem"})

    creds = k8s_client.from_kubeconfig(path, None)

    assert creds.server == "https://10.0.0.1:6443"
    assert creds.namespace == "ml"
    assert creds.token == "t0ken-abcdef-123456"
    assert creds.ca_file == str(ca)  # relative to the kubeconfig's folder
    assert creds.insecure is False


def test_kubeconfig_context_option_and_inline_data(tmp_path: Path) -> None:
    data = base64.b64encode(b"PEM DATA").decode()
    path = write_kubeconfig(tmp_path, user={"client-certificate-data": data, "client-key-data": data})

    creds = k8s_client.from_kubeconfig(path, "staging")

    assert creds.server == "https://c2:443" and creds.namespace == "default"
    assert creds.client_cert is not None
    assert Path(creds.client_cert[0]).read_bytes() == b"PEM DATA"
    assert Path(creds.client_cert[0]).stat().st_mode & 0o777 == 0o600


@pytest.mark.parametrize("parts, message", [
    ({"current": "nope"}, "no context named 'nope' \\(defined: prod, staging\\)"),
    ({"user": {"exec": {"command": "aws"}}}, "exec/auth-provider credential plugin"),
    ({"cluster": {"certificate-authority": "missing.pem"}}, "certificate-authority .*missing.pem does not exist"),
    ({"user": {"client-certificate-data": "QUJD"}}, "needs both a client certificate and key"),
])
def test_kubeconfig_problems_are_explained(tmp_path: Path, parts: dict[str, object], message: str) -> None:
    with pytest.raises(ActuatorError, match=message):
        k8s_client.from_kubeconfig(write_kubeconfig(tmp_path, **parts), None)


def test_credentials_order_in_cluster_then_kubeconfig(tmp_path: Path) -> None:
    account = tmp_path / "sa"
    account.mkdir()
    (account / "token").write_text("sa-token-0123456789")
    (account / "ca.crt").write_text("---")
    env = {"KUBERNETES_SERVICE_HOST": "fd00::1", "KUBERNETES_SERVICE_PORT": "443", "HOME": str(tmp_path)}

    creds = k8s_client.load_credentials(environ=env, service_account_dir=account)
    assert creds.server == "https://[fd00::1]:443" and creds.token_file == str(account / "token")
    assert creds.ca_file == str(account / "ca.crt") and creds.namespace == "default"

    config = write_kubeconfig(tmp_path)
    outside = {"KUBECONFIG": str(config), "HOME": str(tmp_path)}
    assert k8s_client.load_credentials(environ=outside, service_account_dir=account).source.startswith("kubeconfig")

    with pytest.raises(ActuatorError, match="no Kubernetes credentials"):
        k8s_client.load_credentials(environ={"HOME": str(tmp_path / "nowhere")}, service_account_dir=tmp_path / "none")


def test_rotated_service_account_token_is_read_for_each_request(tmp_path: Path) -> None:
    token = tmp_path / "token"
    token.write_text(TOKEN)
    with FakeKube(token=TOKEN) as kube:
        kube.add(deployment(image="m:v1", revision=1))
        client = KubeClient(k8s_client.Credentials(server=kube.url, namespace="ml", source="test",
                                                   token_file=str(token)))
        client.get("/apis/apps/v1/namespaces/ml/deployments/fraud", GET, threading.Event())
        token.write_text("rotated-token-9876543210")
        with pytest.raises(ActuatorError, match="unauthorized"):
            client.get("/apis/apps/v1/namespaces/ml/deployments/fraud", GET, threading.Event())

    assert kube.calls[-1].headers["Authorization"] == "Bearer rotated-token-9876543210"


@pytest.fixture(scope="module")
def https_kube(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[FakeKube, bytes]]:
    folder = tmp_path_factory.mktemp("tls")
    cert, key = self_signed_cert(folder)
    with FakeKube(tls=(str(cert), str(key)), token=TOKEN) as kube:
        kube.add(deployment(image="registry/fraud:v7", revision=1))
        yield kube, cert.read_bytes()


def test_tls_is_verified_by_default(https_kube: tuple[FakeKube, bytes], tmp_path: Path) -> None:
    kube, _ = https_kube
    config = kube.kubeconfig(tmp_path, namespace="ml")  # no certificate-authority: system CAs only
    act = KubernetesActuator("deploy", KubernetesActuator.Options(deployment="fraud", kubeconfig=str(config)))

    with pytest.raises(ActuatorError) as err:
        act.current_version(make_context())

    message = str(err.value)
    assert "TLS error" in message and "certificate verify failed" in message
    assert "not trusted with the CA from kubeconfig" in message


def test_tls_with_the_cluster_ca_from_the_kubeconfig(https_kube: tuple[FakeKube, bytes], tmp_path: Path) -> None:
    kube, ca = https_kube
    config = kube.kubeconfig(tmp_path, namespace="ml", ca_data=ca)
    act = KubernetesActuator("deploy", KubernetesActuator.Options(deployment="fraud", kubeconfig=str(config)))

    assert act.current_version(make_context()) == "v7"


def test_selector_string() -> None:
    selector = {"matchLabels": {"app": "fraud", "tier": "model"},
                "matchExpressions": [{"key": "track", "operator": "In", "values": ["stable", "canary"]},
                                     {"key": "legacy", "operator": "DoesNotExist"},
                                     {"key": "env", "operator": "NotIn", "values": ["dev"]},
                                     {"key": "owner", "operator": "Exists"}]}

    assert k8s_client.selector_string(selector) == \
        "app=fraud,tier=model,track in (canary,stable),!legacy,env notin (dev),owner"
    with pytest.raises(ActuatorError, match="empty selector"):
        k8s_client.selector_string({})
