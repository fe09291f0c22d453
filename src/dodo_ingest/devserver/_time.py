"""RFC 3339 timestamps as integer microseconds since the Unix epoch (how events are stored)."""

from __future__ import annotations

import re
import time
from datetime import UTC, datetime, timedelta, timezone

__all__ = ["format_us", "now_us", "parse_rfc3339_us"]

_RFC3339 = re.compile(
    r"(\d{4})-(\d{2})-(\d{2})[Tt](\d{2}):(\d{2}):(\d{2})(?:\.(\d{1,9}))?(?:([Zz])|([+-])(\d{2}):(\d{2}))"
)
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
_US_PER_SECOND = 1_000_000
_ONE_US = timedelta(microseconds=1)


def now_us() -> int:
    """The current time in microseconds since the epoch."""
    return time.time_ns() // 1000


def parse_rfc3339_us(value: str) -> int:
    """Parse an RFC 3339 date-time with a ``Z`` or ``+hh:mm`` offset into epoch microseconds.

    Digits beyond microseconds are truncated. Raises :class:`ValueError` for anything else
    (a date alone, no offset, an impossible date such as February 30).
    """
    match = _RFC3339.fullmatch(value)
    if match is None:
        raise ValueError(f"not an RFC 3339 date-time: {value!r}")
    try:
        moment = datetime.fromisoformat(value)  # Python 3.11+ reads every RFC 3339 form
    except ValueError:
        moment = _from_groups(match.groups())
    return (moment - _EPOCH) // _ONE_US


def _from_groups(groups: tuple[str, ...]) -> datetime:
    """The slow path for Pythons whose ``fromisoformat`` is narrower (3.10)."""
    year, month, day, hour, minute, second, fraction, _, sign, off_h, off_m = groups
    offset = timedelta(0)
    if sign:
        offset = timedelta(hours=int(off_h), minutes=int(off_m)) * (-1 if sign == "-" else 1)
    return datetime(
        int(year),
        int(month),
        int(day),
        int(hour),
        int(minute),
        int(second),
        int((fraction or "0")[:6].ljust(6, "0")),
        tzinfo=timezone(offset),
    )


def format_us(micros: int) -> str:
    """Format epoch microseconds as RFC 3339 in UTC: milliseconds, or microseconds if needed."""
    moment = _EPOCH + timedelta(microseconds=micros)
    text = moment.strftime("%Y-%m-%dT%H:%M:%S")
    fraction = micros % _US_PER_SECOND
    if fraction % 1000 == 0:
        return f"{text}.{fraction // 1000:03d}Z"
    return f"{text}.{fraction:06d}Z"
