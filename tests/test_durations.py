"""Durations as SREs write them, with property checks of the parser."""

import pytest
from hypothesis import given
from hypothesis import strategies as st

from watchdog.durations import format_duration, parse_duration


@pytest.mark.parametrize("text, seconds", [("500ms", 0.5), ("15s", 15), ("1m30s", 90), ("2h", 7200), ("1d", 86400),
                                           ("1h1m1s1ms", 3661.001), ("0", 0), (30, 30)])
def test_the_forms_people_write(text, seconds):
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["soon", "1m1h", "5 m", "-5s", "1.5.5s", "", "m", "10x"])
def test_wrong_forms_say_what_is_accepted(text):
    with pytest.raises(ValueError, match="duration"):
        parse_duration(text)


@given(st.integers(min_value=0, max_value=10**9))
def test_formatting_round_trips_through_the_parser(ms):
    assert parse_duration(format_duration(ms / 1000)) == pytest.approx(ms / 1000)


@given(st.text(max_size=12))
def test_any_text_is_a_duration_or_a_value_error(text):
    try:
        assert parse_duration(text) >= 0
    except ValueError:
        pass
