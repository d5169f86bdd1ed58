# Fixtures shared by the whole suite, registered as plugins (not imported by name into each module):
# the Hypothesis profile (loaded before any test module), an HTTP receiver, and the session's real
# PostgreSQL, MLflow and Kubernetes-API servers; a fresh secret registry (`redactor`) for tests
# that register secrets.
pytest_plugins = [
    "tests.fuzzing",
    "tests.http_receiver",
    "tests.servers",
    "tests.actuators.kube_fixtures",
    "tests.fixtures.redaction",
]
