"""Errors the delivery pipeline reports through ``on_error`` (never raised into ``track()``)."""

from __future__ import annotations

from ..client import DodoError

__all__ = ["DeliveryError", "EventExpiredError", "EventsDroppedError"]


class DeliveryError(DodoError):
    """Base class of the failures the pipeline itself detects (as opposed to API errors)."""


class EventsDroppedError(DeliveryError):
    """Events were dropped before they could be sent; ``count`` says how many.

    ``reason`` is ``"queue_full"`` (the memory queue stayed full for ``queue_full_timeout``),
    ``"closed"`` (``track()`` after ``close()``), ``"shutdown"`` (still unsent when
    ``close()`` ran out of time, without an outbox) or ``"outbox_error"`` (the outbox file
    could not be written: disk full, file removed...).
    """

    def __init__(self, reason: str, count: int) -> None:
        self.reason = reason
        self.count = count
        super().__init__(f"{count} event(s) dropped ({reason})")


class EventExpiredError(DeliveryError):
    """Events grew older than ``max_event_age`` before the API accepted them.

    They are dead-lettered. ``last_error`` is the failure of the last attempt, if any.
    """

    def __init__(self, max_event_age: float, last_error: BaseException | None) -> None:
        self.max_event_age = max_event_age
        self.last_error = last_error
        detail = f"; last error: {last_error}" if last_error is not None else ""
        super().__init__(f"older than max_event_age={max_event_age:g}s before delivery{detail}")
