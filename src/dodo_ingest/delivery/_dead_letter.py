"""``DeadLetter``: an event the pipeline gave up on, with the reason."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from ..client import EventInput

__all__ = ["DeadLetter"]


@dataclass(frozen=True)
class DeadLetter:
    """An event that will not be delivered unless retried by hand.

    ``reason`` is the server's message (``"HTTP 400: ..."``) or the pipeline's (expired,
    too large); ``status_code`` is the HTTP status when the API refused the event;
    ``failed_at`` is when it was given up (UTC).
    """

    event: EventInput
    reason: str
    status_code: int | None
    failed_at: datetime
