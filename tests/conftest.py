import tests.fuzzing  # noqa: F401  (loads the Hypothesis profile before any test module is imported)
from tests.http_receiver import receiver  # noqa: F401  (a shared fixture)
from tests.servers import mlflow_server  # noqa: F401  (one real MLflow server per session)

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
