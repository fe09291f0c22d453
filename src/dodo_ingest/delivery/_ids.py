"""Event ids and the timestamps the API expects, made cheaply enough for ``track()``."""

from __future__ import annotations

import math
import os
import random
import time

__all__ = ["format_epoch", "new_event_id", "random_bits"]

_now_ns = time.time_ns
_modf = math.modf
_ulp = math.ulp

_source = random.Random()
"""Private generator seeded from ``os.urandom``: application code that seeds :mod:`random`
(``random.seed(...)`` per request, in tests...) cannot make it repeat itself."""
random_bits = _source.getrandbits
"""``random_bits(k)``: ``k`` random bits from this module's private generator.

Unique ids, not secrets: use :mod:`secrets` for anything that must be unpredictable."""

if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    # A forked child starts with a copy of the parent's state: reseed it from os.urandom, or
    # parent and child would mint the same sequence of ids.
    os.register_at_fork(after_in_child=_source.seed)


def new_event_id() -> str:
    """A new unique, time-ordered event id: ``evt_`` and 32 lowercase hex digits.

    The first 12 digits are the Unix time in milliseconds, the other 20 are 80 random bits, so
    ids sort by creation time (to the millisecond) and collide with negligible probability.
    The random bits come from a private generator seeded from ``os.urandom`` and reseeded in
    a forked child, so neither ``random.seed()`` nor ``os.fork()`` makes ids repeat.
    """
    return f"evt_{(_now_ns() // 1_000_000) << 80 | random_bits(80):032x}"


_last_second: tuple[int, str] = (-1, "")
"""The last second formatted, as one tuple so that threads never see a mixed pair."""
_last_milli: tuple[float, float, str] = (0.0, 0.0, "")
"""The last millisecond formatted, with the floats ``[low, high)`` that all format to it, so
that the events of one millisecond cost two comparisons."""
_MILLI_TEXT = tuple(f"{milli:03d}Z" for milli in range(1000))
_SPAN_MILLIS = range(1000, 2**53 // 1000)
"""Milliseconds whose span is computed (from 1 s after the epoch to the year 2255)."""


def format_epoch(timestamp: float) -> str:
    """Format a Unix time as RFC 3339 UTC with milliseconds (``2026-11-25T08:00:00.123Z``).

    The text is that of ``datetime.fromtimestamp(timestamp, UTC)`` cut to milliseconds: the
    time is rounded to the microsecond (half to even, as :mod:`datetime` does), then the
    microseconds are truncated, like ``isoformat(timespec="milliseconds")``. So
    ``1700000000.123`` gives ``.123Z`` although the float is slightly below it, and an event
    with a ``datetime`` timestamp gets the same text as ``EventInput.to_dict()`` gives it.
    """
    global _last_second, _last_milli
    low, high, text = _last_milli
    if low <= timestamp < high:
        return text
    fraction, whole = _modf(timestamp)
    milli = int(whole) * 1000 + round(fraction * 1e6) // 1000
    second, fraction_ms = divmod(milli, 1000)
    cached_second, prefix = _last_second
    if second != cached_second:
        t = time.gmtime(second)
        prefix = (
            f"{t.tm_year:04d}-{t.tm_mon:02d}-{t.tm_mday:02d}T"
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d}."
        )
        _last_second = (second, prefix)
    text = prefix + _MILLI_TEXT[fraction_ms]
    if milli in _SPAN_MILLIS:
        # The floats of this millisecond: those whose microseconds, rounded half to even, are
        # in [1000 * milli, 1000 * milli + 999], i.e. in [milli - 0.0005, milli + 0.9995) ms.
        # Both bounds are computed to within half a unit in the last place; two units in the
        # last place taken off each side cover that and the rounding of fraction * 1e6 above.
        micro = milli * 1000
        high = (micro + 999.5) / 1e6
        margin = 2 * _ulp(high)
        _last_milli = ((micro - 0.5) / 1e6 + margin, high - margin, text)
    return text
