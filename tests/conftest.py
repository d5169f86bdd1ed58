# Fixtures shared by the whole suite, registered as plugins (not imported by name into each module):
# the Hypothesis profile (loaded before any test module), an HTTP receiver, and the session's real
# PostgreSQL, MLflow and Kubernetes-API servers.
pytest_plugins = [
    "tests.fuzzing",
    "tests.http_receiver",
    "tests.servers",
    "tests.actuators.kube_fixtures",
]

import pytest

from watchdog import redact


@pytest.fixture(autouse=True)
def _secrets_registered_by_this_test_only():
    """The redactor's registry is process-wide (as in the daemon); a secret URL one test
    registers (a webhook path like `/watchdog`) must not mask another test's output."""
    with redact._lock:
        before = set(redact._secrets)
    yield
    with redact._lock:
        redact._secrets.clear()
        redact._secrets.update(before)
