"""Accept / ?f= negotiation as a pure function."""

from __future__ import annotations

import pytest

from service.problems import Problem
from service.representations import JSON, NETCDF, PNG, choose_media_type


@pytest.mark.parametrize(
    ("accept", "f", "expected"),
    [
        (None, None, NETCDF),
        ("", None, NETCDF),
        ("application/json", None, JSON),
        ("image/png", "json", JSON),  # ?f= wins
        ("application/json;q=0.2, application/x-netcdf;q=0.3", None, NETCDF),
        ("image/png, application/json", None, PNG),  # equal q: the first listed
        ("text/csv, */*;q=0.1", None, NETCDF),
        ("application/json;q=abc, image/png;q=0.5", None, PNG),  # malformed q counts as 0
        ("application/x-netcdf;q=0, image/*", None, PNG),
    ],
)
def test_choose_media_type(accept: str | None, f: str | None, expected: str) -> None:
    assert choose_media_type(accept, f) == expected


def test_nothing_acceptable_names_the_alternatives() -> None:
    with pytest.raises(Problem) as caught:
        choose_media_type("text/html, application/xml", None)
    assert caught.value.status == 406 and caught.value.field == "Accept"
    assert "?f=netcdf|json|png" in caught.value.detail
