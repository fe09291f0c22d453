"""Event ids and the timestamps the API expects, made cheaply enough for ``track()``."""

from __future__ import annotations

import random
import time

__all__ = ["format_epoch", "new_event_id"]

_now_ns = time.time_ns
_random_bits = random.getrandbits


def new_event_id() -> str:
    """A new unique, time-ordered event id: ``evt_`` and 32 lowercase hex digits.

    The first 12 digits are the Unix time in milliseconds, the other 20 are 80 random bits, so
    ids sort by creation time (to the millisecond) and collide with negligible probability.
    The random source is :mod:`random`, which Python reseeds in a forked child.
    """
    return f"evt_{(_now_ns() // 1_000_000) << 80 | _random_bits(80):032x}"


_last_second: tuple[int, str] = (-1, "")
"""The last second formatted, as one tuple so that threads never see a mixed pair."""
_last_milli: tuple[int, str] = (-1, "")
"""The last millisecond formatted: events tracked in the same millisecond share it."""


def format_epoch(timestamp: float) -> str:
    """Format a Unix time as RFC 3339 UTC with milliseconds (``2026-11-25T08:00:00.123Z``)."""
    global _last_second, _last_milli
    milli = int(timestamp * 1000)
    cached_milli, text = _last_milli
    if milli == cached_milli:
        return text
    second, fraction = divmod(milli, 1000)
    cached_second, prefix = _last_second
    if second != cached_second:
        prefix = time.strftime("%Y-%m-%dT%H:%M:%S.", time.gmtime(second))
        _last_second = (second, prefix)
    text = f"{prefix}{fraction:03d}Z"
    _last_milli = (milli, text)
    return text
