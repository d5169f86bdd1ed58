"""CI searches the same examples every run; a nightly run searches far more, at random."""

from hypothesis import settings

from tests.fuzzing import examples, profile_name


def test_ci_selects_the_derandomized_profile(monkeypatch):
    monkeypatch.setenv("CI", "true")
    monkeypatch.delenv("HYPOTHESIS_PROFILE", raising=False)
    assert profile_name() == "ci"
    ci = settings.get_profile("ci")
    assert ci.derandomize is True and ci.database is None
    assert examples(300) == 600


def test_the_nightly_profile_is_chosen_by_name_and_searches_longer(monkeypatch):
    monkeypatch.setenv("CI", "true")
    monkeypatch.setenv("HYPOTHESIS_PROFILE", "nightly")
    assert profile_name() == "nightly"
    assert settings.get_profile("nightly").derandomize is False
    assert examples(300) == 6000


def test_outside_ci_the_search_is_random(monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    monkeypatch.delenv("HYPOTHESIS_PROFILE", raising=False)
    assert profile_name() == "dev" and examples(300) == 300
    assert settings.get_profile("dev").derandomize is False
