"""Small builders shared by the dev server tests."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime, timedelta
from typing import Any

_counter = itertools.count()


def unique(prefix: str) -> str:
    """A name no other test in this process uses (tests share a server)."""
    return f"{prefix}_{next(_counter)}"


def iso(moment: datetime) -> str:
    """RFC 3339 with milliseconds and ``Z``."""
    utc = moment.astimezone(UTC)
    return utc.strftime("%Y-%m-%dT%H:%M:%S.") + f"{utc.microsecond // 1000:03d}Z"


def ago(**delta: float) -> str:
    """The time ``delta`` before now, as RFC 3339."""
    return iso(datetime.now(UTC) - timedelta(**delta))


def events(
    count: int,
    *,
    customer_id: str = "cus_1",
    event_name: str = "api.call",
    prefix: str | None = None,
    **fields: Any,
) -> list[dict[str, Any]]:
    """``count`` events with fresh ids; extra ``fields`` (``metadata``, ``timestamp``) go on
    every event."""
    base = prefix or unique("evt")
    return [
        {"event_id": f"{base}_{i}", "customer_id": customer_id, "event_name": event_name, **fields}
        for i in range(count)
    ]
