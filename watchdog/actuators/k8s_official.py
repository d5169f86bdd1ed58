"""Kubeconfig credentials that need a plugin — `exec` (EKS `aws eks get-token`, GKE
`gke-gcloud-auth-plugin`, AKS `kubelogin`) or `auth-provider` (oidc, gcp, azure) — from the
official `kubernetes` client's kubeconfig loader (`pip install 'model-watchdog[kubernetes]'`).

Only the credentials come from it: the server, TLS material and a bearer token (re-fetched by
the loader when the plugin's token expires). The calls themselves still go through
`k8s_client.KubeClient`, with its retries, timeouts and error messages. A kubeconfig without a
plugin never gets here (`k8s_client.from_kubeconfig` reads it itself).
"""

from __future__ import annotations

import importlib
import logging
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, Callable

from watchdog import redact
from watchdog.errors import ActuatorError

log = logging.getLogger(__name__)

EXTRA = "pip install 'model-watchdog[kubernetes]'"


@dataclass(frozen=True)
class PluginCredentials:
    """What the official loader found; `k8s_client.from_kubeconfig` makes `Credentials` of it."""

    server: str
    source: str
    ca_file: str | None
    client_cert: tuple[str, str] | None
    insecure: bool
    authorization: Callable[[], str | None]


def needs_plugin(user: dict[str, Any]) -> str | None:
    """'exec' or 'auth-provider' when the kubeconfig user needs a credential plugin, else None."""
    return next((kind for kind in ("exec", "auth-provider") if user.get(kind)), None)


def official_client(what: str) -> ModuleType:
    """The `kubernetes.config` module; ActuatorError naming the extra when it is not installed."""
    try:
        return importlib.import_module("kubernetes.config")
    except ImportError:
        raise ActuatorError(f"{what}: needs the official Kubernetes client to run it, which is not installed: "
                            f"{EXTRA} (or give model-watchdog a service-account token instead)") from None


def credentials(path: Path, context: str, user_name: str, kind: str) -> PluginCredentials:
    """Credentials for `context` of the kubeconfig at `path`, through the official loader."""
    what = f"kubeconfig {path}: user {user_name!r} uses an exec/auth-provider credential plugin ({kind})"
    config = official_client(what)
    configuration = importlib.import_module("kubernetes.client").Configuration()
    try:
        config.load_kube_config(config_file=str(path), context=context, client_configuration=configuration,
                                persist_config=False)
    except Exception as exc:  # the loader raises ConfigException, OSError, ValueError, ...
        raise ActuatorError(f"{what}, and the kubernetes client could not load it: {redact.redact(str(exc))}") from None
    authorization = _authorization(configuration)
    cert = (configuration.cert_file, configuration.key_file) if configuration.cert_file and configuration.key_file else None
    if authorization() is None and cert is None:
        raise ActuatorError(f"{what}, and it produced neither a token nor a client certificate "
                            "(the plugin's error is in the log above); run it by hand to see why")
    if not configuration.verify_ssl:
        log.warning("kubeconfig %s: insecure-skip-tls-verify is set for context %s; TLS is NOT verified", path, context)
    return PluginCredentials(server=str(configuration.host).rstrip("/"),
                             source=f"kubeconfig {path} (context {context}, {kind} plugin via the kubernetes client)",
                             ca_file=configuration.ssl_ca_cert or None, client_cert=cert,
                             insecure=not configuration.verify_ssl, authorization=authorization)


def _authorization(configuration: Any) -> Callable[[], str | None]:
    """The Authorization header value, refreshed by the loader's hook when the token expired."""

    def current() -> str | None:
        value = configuration.get_api_key_with_prefix("BearerToken")
        if not value:
            return None
        value = str(value)
        redact.register_secret(value.split(" ", 1)[-1])
        return value if value.lower().startswith("bearer ") else f"Bearer {value}"

    return current
