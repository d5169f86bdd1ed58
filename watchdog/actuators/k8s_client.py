"""A small Kubernetes API client: just the GET, LIST and PATCH calls the actuators make.

Credentials, in this order:
1. `kubeconfig: PATH` when configured (with `context`, else the file's current-context);
2. in-cluster: the pod's service account (`KUBERNETES_SERVICE_HOST`/`_PORT`, the token and
   CA files under /var/run/secrets/kubernetes.io/serviceaccount) — the token file is read
   for every request because bound tokens rotate;
3. `$KUBECONFIG` (its first file), else ~/.kube/config.

From a kubeconfig: the cluster's `server`, `certificate-authority(-data)` and
`insecure-skip-tls-verify`, the user's `token`/`tokenFile` and `client-certificate(-data)`/
`client-key(-data)`. A user with an `exec` or `auth-provider` credential plugin (EKS, GKE, AKS,
OIDC) is handed to the official `kubernetes` client's loader when that extra is installed
(`k8s_official`); otherwise the error names the extra to install. TLS is verified (against
the cluster CA, else the system's CAs) unless the kubeconfig itself says
`insecure-skip-tls-verify: true`.

Errors are `KubeApiError` (an `ActuatorError`) carrying the HTTP status and the API
server's Status reason; 403 names the RBAC verb and resource the credentials lack.
"""

from __future__ import annotations

import atexit
import base64
import logging
import os
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import quote

import yaml

from watchdog import redact
from watchdog.actuators import k8s_official
from watchdog.http import rest
from watchdog.errors import ActuatorError

log = logging.getLogger(__name__)
SERVICE_ACCOUNT_DIR = Path("/var/run/secrets/kubernetes.io/serviceaccount")
JSON_PATCH = "application/json-patch+json"
MERGE_PATCH = "application/merge-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"


class KubeApiError(ActuatorError):
    """The API server refused a call; `status` is the HTTP status, `reason` the Status reason."""

    def __init__(self, message: str, status: int, reason: str = ""):
        super().__init__(message)
        self.status = status
        self.reason = reason


@dataclass(frozen=True)
class Access:
    """What a call needs in RBAC terms, for error messages: `patch` `deployments` in `apps`."""

    verb: str
    resource: str
    group: str = ""
    subresource: str = ""

    def describe(self) -> str:
        resource = f"{self.resource}/{self.subresource}" if self.subresource else self.resource
        group = f' in API group "{self.group}"' if self.group else ' in the core API group ""'
        return f'verb "{self.verb}" on resource "{resource}"{group}'


@dataclass(frozen=True)
class Credentials:
    server: str
    namespace: str  # the default namespace of the context / service account
    source: str  # for messages: where the credentials came from
    token: str | None = None
    token_file: str | None = None
    ca_file: str | None = None
    client_cert: tuple[str, str] | None = None
    insecure: bool = False
    # The Authorization header's value, asked for each request (credential plugins: k8s_official).
    authorization: Callable[[], str | None] | None = None


def load_credentials(kubeconfig: str | None = None, context: str | None = None,
                     environ: Mapping[str, str] | None = None,
                     service_account_dir: Path = SERVICE_ACCOUNT_DIR) -> Credentials:
    """Find credentials as the module docstring says; ActuatorError says what is missing."""
    env = os.environ if environ is None else environ
    if kubeconfig:
        return from_kubeconfig(Path(kubeconfig).expanduser(), context)
    if context is None and env.get("KUBERNETES_SERVICE_HOST") and (service_account_dir / "token").is_file():
        return in_cluster(env, service_account_dir)
    candidates = [p for p in env.get("KUBECONFIG", "").split(os.pathsep) if p]
    candidates.append(str(Path(env.get("HOME", "~")).expanduser() / ".kube" / "config"))
    for candidate in candidates:
        if Path(candidate).is_file():
            return from_kubeconfig(Path(candidate), context)
    raise ActuatorError("no Kubernetes credentials: not running in a pod with a service account "
                        "(KUBERNETES_SERVICE_HOST unset or no token file) and no kubeconfig found; "
                        "set the actuator's kubeconfig option")


def in_cluster(environ: Mapping[str, str], service_account_dir: Path = SERVICE_ACCOUNT_DIR) -> Credentials:
    host, port = environ["KUBERNETES_SERVICE_HOST"], environ.get("KUBERNETES_SERVICE_PORT", "443")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"  # IPv6
    ca = service_account_dir / "ca.crt"
    namespace_file = service_account_dir / "namespace"
    namespace = namespace_file.read_text().strip() if namespace_file.is_file() else "default"
    return Credentials(server=f"https://{host}:{port}", namespace=namespace or "default",
                       source="in-cluster service account", token_file=str(service_account_dir / "token"),
                       ca_file=str(ca) if ca.is_file() else None)


def from_kubeconfig(path: Path, context: str | None) -> Credentials:
    try:
        config = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except OSError as exc:
        raise ActuatorError(f"cannot read kubeconfig {path}: {exc.strerror}") from None
    except yaml.YAMLError as exc:
        raise ActuatorError(f"kubeconfig {path} is not valid YAML: {exc}") from None
    if not isinstance(config, dict):
        raise ActuatorError(f"kubeconfig {path}: expected a mapping at the top")
    name = context or config.get("current-context")
    if not name:
        raise ActuatorError(f"kubeconfig {path} has no current-context; set the actuator's context option")
    ctx = _named(config, "contexts", "context", name, path)
    cluster = _named(config, "clusters", "cluster", ctx.get("cluster"), path)
    user = _named(config, "users", "user", ctx.get("user"), path) if ctx.get("user") else {}
    if not cluster.get("server"):
        raise ActuatorError(f"kubeconfig {path}: cluster {ctx.get('cluster')!r} has no server")
    plugin = k8s_official.needs_plugin(user)
    if plugin is not None:
        found = k8s_official.credentials(path, name, str(ctx.get("user")), plugin)
        return Credentials(server=found.server, namespace=str(ctx.get("namespace") or "default"), source=found.source,
                           ca_file=found.ca_file, client_cert=found.client_cert, insecure=found.insecure,
                           authorization=found.authorization)
    base = path.parent
    files = _MaterialFiles.shared()
    token = user.get("token")
    if token:
        redact.register_secret(str(token))
    insecure = bool(cluster.get("insecure-skip-tls-verify"))
    if insecure:
        log.warning("kubeconfig %s: insecure-skip-tls-verify is set for cluster %s; TLS is NOT verified",
                    path, ctx.get("cluster"))
    cert = _file_or_data(user, "client-certificate", base, files)
    key = _file_or_data(user, "client-key", base, files)
    if (cert is None) != (key is None):
        raise ActuatorError(f"kubeconfig {path}: user {ctx.get('user')!r} needs both a client certificate and key")
    return Credentials(
        server=str(cluster["server"]).rstrip("/"), namespace=str(ctx.get("namespace") or "default"),
        source=f"kubeconfig {path} (context {name})", token=str(token) if token else None,
        token_file=str(_resolve(base, user["tokenFile"])) if user.get("tokenFile") else None,
        ca_file=_file_or_data(cluster, "certificate-authority", base, files),
        client_cert=(cert, key) if cert and key else None, insecure=insecure)


def _named(config: dict[str, Any], section: str, key: str, name: Any, path: Path) -> dict[str, Any]:
    entries = config.get(section) or []
    for entry in entries:
        if isinstance(entry, dict) and entry.get("name") == name:
            return entry.get(key) or {}
    known = ", ".join(str(e.get("name")) for e in entries if isinstance(e, dict)) or "none"
    raise ActuatorError(f"kubeconfig {path}: no {key} named {name!r} (defined: {known})")


def _resolve(base: Path, value: str) -> Path:
    p = Path(value).expanduser()
    return p if p.is_absolute() else base / p


def _file_or_data(section: dict[str, Any], key: str, base: Path, files: "_MaterialFiles") -> str | None:
    if section.get(f"{key}-data"):
        try:
            data = base64.b64decode(section[f"{key}-data"], validate=True)
        except (ValueError, TypeError):
            raise ActuatorError(f"kubeconfig: {key}-data is not valid base64") from None
        return files.write(key, data)
    if section.get(key):
        resolved = _resolve(base, str(section[key]))
        if not resolved.is_file():
            raise ActuatorError(f"kubeconfig: {key} {resolved} does not exist")
        return str(resolved)
    return None


class _MaterialFiles:
    """requests wants certificates in files: `*-data` values go to a private temp folder."""

    _instance: "_MaterialFiles | None" = None
    _lock = threading.Lock()

    def __init__(self) -> None:
        self.folder = tempfile.mkdtemp(prefix="model-watchdog-kube-")
        atexit.register(shutil.rmtree, self.folder, True)
        self.count = 0

    @classmethod
    def shared(cls) -> "_MaterialFiles":
        with cls._lock:
            if cls._instance is None:
                cls._instance = cls()
            return cls._instance

    def write(self, key: str, data: bytes) -> str:
        with self._lock:
            self.count += 1
            path = os.path.join(self.folder, f"{self.count}-{key}.pem")
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        return path


class KubeClient:
    """GET / LIST / PATCH against one API server with the project's retry policy."""

    def __init__(self, credentials: Credentials, timeout: float = 10.0, retries: int = 3, backoff: float = 0.5):
        self.credentials = credentials
        verify: bool | str = False if credentials.insecure else (credentials.ca_file or True)
        self.connection = rest.Connection(
            timeout=timeout, retries=retries, backoff=backoff, verify=verify, cert=credentials.client_cert,
            tls_hint=f"the API server's certificate is not trusted with the CA from {credentials.source}")

    def get(self, path: str, access: Access, stop: threading.Event, params: Mapping[str, str] | None = None,
            what: str = "") -> dict[str, Any]:
        return self._call("GET", path, access, stop, params=params, what=what)

    def patch(self, path: str, body: Any, content_type: str, access: Access, stop: threading.Event,
              what: str = "") -> dict[str, Any]:
        return self._call("PATCH", path, access, stop, json_body=body, content_type=content_type, what=what)

    def _call(self, method: str, path: str, access: Access, stop: threading.Event, what: str,
              **kwargs: Any) -> dict[str, Any]:
        answer = rest.call(self.connection, method, self.credentials.server + path, stop=stop,
                           headers=self._auth(), **kwargs)
        if answer.ok and isinstance(answer.body, dict):
            return answer.body
        if answer.ok:
            raise KubeApiError(f"{rest.describe(method, path)}: the API server answered {answer.status} "
                               f"without a JSON object: {answer.excerpt!r}", answer.status)
        raise self._error(answer, method, path, access, what)

    def _auth(self) -> dict[str, str]:
        if self.credentials.authorization is not None:
            value = self.credentials.authorization()
            return {"Authorization": value} if value else {}
        token = self.credentials.token
        if self.credentials.token_file:
            try:
                token = Path(self.credentials.token_file).read_text(encoding="utf-8").strip()
            except OSError as exc:
                raise ActuatorError(f"cannot read the service-account token {self.credentials.token_file}: "
                                    f"{exc.strerror}") from None
            redact.register_secret(token)
        return {"Authorization": f"Bearer {token}"} if token else {}

    def _error(self, answer: rest.Answer, method: str, path: str, access: Access, what: str) -> KubeApiError:
        status = answer.body if isinstance(answer.body, dict) else {}
        message = redact.redact(str(status.get("message") or answer.excerpt or "no details"))
        reason = str(status.get("reason") or "")
        subject = what or path
        namespace = _namespace_of(path)
        where = f' in namespace "{namespace}"' if namespace else ""
        if answer.status == 403:
            text = (f"forbidden: the credentials ({self.credentials.source}) lack RBAC permission "
                    f"{access.describe()}{where}; grant it in a Role bound to them. API server: {message}")
        elif answer.status == 401:
            text = (f"unauthorized: the API server rejected the credentials from {self.credentials.source} "
                    f"(expired token or wrong certificate?). API server: {message}")
        elif answer.status == 404:
            text = f"{subject} not found (API server: {message}); check the namespace and name"
        elif answer.status == 409:
            text = f"conflict changing {subject}: {message}"
        else:
            text = f"{method} {subject} failed: {answer.status} {reason}: {message}".replace("  ", " ")
        return KubeApiError(text, answer.status, reason)


def _namespace_of(path: str) -> str:
    parts = path.split("?")[0].split("/")
    return parts[parts.index("namespaces") + 1] if "namespaces" in parts[:-1] else ""


def selector_string(selector: Mapping[str, Any]) -> str:
    """A LabelSelector (`matchLabels` + `matchExpressions`) as a `labelSelector` query value."""
    terms = [f"{k}={v}" for k, v in sorted((selector.get("matchLabels") or {}).items())]
    for expr in selector.get("matchExpressions") or []:
        key, op, values = expr["key"], expr["operator"], sorted(expr.get("values") or [])
        if op == "In":
            terms.append(f"{key} in ({','.join(values)})")
        elif op == "NotIn":
            terms.append(f"{key} notin ({','.join(values)})")
        elif op == "Exists":
            terms.append(key)
        elif op == "DoesNotExist":
            terms.append(f"!{key}")
        else:
            raise ActuatorError(f"unsupported label selector operator {op!r}")
    if not terms:
        raise ActuatorError("the workload has an empty selector; refusing to list every ReplicaSet")
    return ",".join(terms)


def api_path(group_version: str, namespace: str, plural: str, name: str = "", subresource: str = "") -> str:
    """`/apis/apps/v1/namespaces/ns/deployments/name[/status]` (core group: `/api/v1/...`)."""
    root = "/api/v1" if group_version == "v1" else f"/apis/{group_version}"
    out = f"{root}/namespaces/{quote(namespace, safe='')}/{plural}"
    if name:
        out += f"/{quote(name, safe='')}"
    if subresource:
        out += f"/{subresource}"
    return out
