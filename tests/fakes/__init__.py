"""Local fakes of external systems for tests."""
