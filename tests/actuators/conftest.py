from tests.actuators.kube_fixtures import kube, kubeconfig  # noqa: F401  (fixtures for this folder)
