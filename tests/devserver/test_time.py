"""RFC 3339 parsing and formatting of the dev server (both parsing paths)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from dodo_ingest.devserver._time import _RFC3339, _from_groups, format_us, parse_rfc3339_us

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2026-11-25T08:04:06Z", "2026-11-25T08:04:06.000Z"),
        ("2026-11-25T08:04:06.9Z", "2026-11-25T08:04:06.900Z"),
        ("2026-11-25T08:04:06.123456789Z", "2026-11-25T08:04:06.123456Z"),
        ("2026-11-25t08:04:06+01:00", "2026-11-25T07:04:06.000Z"),
        ("2026-11-25T08:04:06.12-05:30", "2026-11-25T13:34:06.120Z"),
        ("2026-11-25T08:04:06.5z", "2026-11-25T08:04:06.500Z"),
    ],
)
def test_both_parsing_paths_agree(text: str, expected: str) -> None:
    match = _RFC3339.fullmatch(text)
    assert match is not None
    slow = (_from_groups(match.groups()) - EPOCH).total_seconds()
    assert format_us(parse_rfc3339_us(text)) == expected
    assert parse_rfc3339_us(text) == round(slow * 1_000_000)


@pytest.mark.parametrize(
    "text",
    ["2026-02-30T00:00:00Z", "2026-11-25", "2026-11-25T08:04:06", "2026-11-25 08:04:06Z", ""],
)
def test_anything_else_is_refused(text: str) -> None:
    with pytest.raises(ValueError, match=r"RFC 3339|day is out of range"):
        parse_rfc3339_us(text)
