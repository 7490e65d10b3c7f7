"""Durations as SOP authors write them, including milliseconds for retry backoffs."""

from __future__ import annotations

import pytest

from storeops.durations import parse_duration


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("90s", 90.0),
        ("15m", 900.0),
        ("2h30m", 9000.0),
        ("1d", 86400.0),
        ("1w", 604800.0),
        ("250ms", 0.25),
        ("1s500ms", 1.5),
        ("1m", 60.0),
        ("PT15M", 900.0),
        ("P1DT2H", 93600.0),
        (3, 3.0),
    ],
)
def test_accepted_forms(text: str | int, seconds: float) -> None:
    assert seconds == parse_duration(text)


@pytest.mark.parametrize(
    "text", ["", "ms", "1.5s", "5mss", "10 minutes", "PT0.5S", "-1s", "11000d"]
)
def test_refused_forms_name_the_accepted_ones(text: str) -> None:
    with pytest.raises(ValueError) as caught:
        parse_duration(text)
    message = str(caught.value)
    assert "500ms" in message or "10 years" in message


@pytest.mark.parametrize("text", ["9" * 400 + "d", "P" + "9" * 400 + "D", 10**400])
def test_absurdly_long_durations_are_refused_not_crashed_on(text: object) -> None:
    with pytest.raises(ValueError, match="between 0 and 10 years"):
        parse_duration(text)  # type: ignore[arg-type]
