import tests.fuzzing  # noqa: F401  (loads the Hypothesis profile before any test module is imported)
from tests.http_receiver import receiver  # noqa: F401  (a shared fixture)
from tests.servers import mlflow_server  # noqa: F401  (one real MLflow server per session)
