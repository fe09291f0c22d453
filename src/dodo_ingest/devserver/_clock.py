"""The dev server's clock: the system time plus an offset that a test moves forward.

Everything time-dependent in the server reads it: the timestamp window of ingestion, the time
an event arrived (and so the deduction lag), the times of created objects and ledger entries,
grant expiry and webhook retries. Moving it forward lets a test or a demo let days and months
pass at once; it never moves back, so what happened stays in the past.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable
from datetime import UTC, datetime, timedelta

from ._time import format_us, now_us

__all__ = ["MAX_MOVE", "Clock"]

_US_PER_SECOND = 1_000_000
MAX_MOVE = timedelta(days=3660)
"""The largest move of one call (about ten years): what happens in between is replayed step by
step, so an unbounded jump could keep the server busy for a very long time."""
_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


class Clock:
    """The dev server's clock (``server.clock``): the system time shifted by an offset.

    It keeps ticking with the system clock; :meth:`advance` and :meth:`set` move it forward
    (never back). What the server does at the new time (grants expiring, deductions due,
    webhooks) happens before the call returns, in the order it would have happened.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._offset_us = 0
        self._on_change: Callable[[], None] | None = None

    def now_us(self) -> int:
        """The clock's time in microseconds since the epoch."""
        return now_us() + self._offset_us

    def now(self) -> datetime:
        """The clock's time, an aware UTC ``datetime``."""
        return _EPOCH + timedelta(microseconds=self.now_us())

    @property
    def offset(self) -> timedelta:
        """How far ahead of the system clock this clock runs."""
        return timedelta(microseconds=self._offset_us)

    def advance(
        self, *, days: float = 0, hours: float = 0, minutes: float = 0, seconds: float = 0
    ) -> datetime:
        """Move the clock forward by the sum of the amounts; return the new time.

        Raises :class:`ValueError` naming an amount that is negative or not a finite number,
        or for a move of more than :data:`MAX_MOVE` (3660 days).
        """
        total = 0.0
        for name, amount, unit in (
            ("days", days, 86400),
            ("hours", hours, 3600),
            ("minutes", minutes, 60),
            ("seconds", seconds, 1),
        ):
            if (
                isinstance(amount, bool)
                or not isinstance(amount, (int, float))
                or not math.isfinite(amount)
                or amount < 0
            ):
                raise ValueError(f"{name} must be a finite number >= 0, got {amount!r}")
            total += amount * unit
        if total > MAX_MOVE.total_seconds():
            raise ValueError(f"the clock moves at most {MAX_MOVE.days} days at a time")
        with self._lock:
            self._offset_us += round(total * _US_PER_SECOND)
        return self._changed()

    def set(self, moment: datetime) -> datetime:
        """Move the clock forward to ``moment`` (an aware ``datetime``); return the new time.

        Raises :class:`ValueError` for a naive ``datetime``, a moment before the clock's
        current time (the clock never moves back) or more than :data:`MAX_MOVE` ahead.
        """
        if not isinstance(moment, datetime) or moment.utcoffset() is None:
            raise ValueError(f"the clock is set to an aware datetime, got {moment!r}")
        target = (moment - _EPOCH) // timedelta(microseconds=1)
        with self._lock:
            current = self.now_us()
            if target < current:
                raise ValueError(
                    f"the clock only moves forward: {format_us(target)} is before "
                    f"its time {format_us(current)}"
                )
            if target - current > MAX_MOVE // timedelta(microseconds=1):
                raise ValueError(f"the clock moves at most {MAX_MOVE.days} days at a time")
            self._offset_us += target - current
        return self._changed()

    def restore(self, offset_us: int) -> None:
        """Run at least ``offset_us`` ahead of the system clock (a saved offset, at start)."""
        with self._lock:
            self._offset_us = max(self._offset_us, offset_us)

    @property
    def offset_us(self) -> int:
        """:attr:`offset` in microseconds."""
        return self._offset_us

    def on_change(self, callback: Callable[[], None] | None) -> None:
        """Call ``callback`` after every move (the running server's; ``None`` removes it)."""
        self._on_change = callback

    def _changed(self) -> datetime:
        callback = self._on_change
        if callback is not None:
            callback()
        return self.now()
