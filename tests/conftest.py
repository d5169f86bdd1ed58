from tests.http_receiver import receiver  # noqa: F401  (a shared fixture)
