"""The dev server's error type: an HTTP status plus a JSON body ``{"code", "message", ...}``."""

from __future__ import annotations

from typing import Any

__all__ = ["APIError"]


class APIError(Exception):
    """A request the dev server refuses.

    ``status`` is the HTTP status, ``code`` a stable machine-readable name of the rule that
    failed, ``message`` says what was wrong (which event, which field, which limit). ``details``
    adds fields to the JSON body, e.g. ``{"index": 3, "event_id": "evt_1"}``.
    """

    def __init__(self, status: int, code: str, message: str, **details: Any) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details

    def body(self) -> dict[str, Any]:
        """The JSON error body."""
        return {"code": self.code, "message": self.message, **self.details}
