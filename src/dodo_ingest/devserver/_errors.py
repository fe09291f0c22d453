"""The dev server's errors: :class:`APIError` (an HTTP status plus a JSON body
``{"code", "message", ...}``) and :class:`DatabaseError` (a ``db`` it cannot use)."""

from __future__ import annotations

from typing import Any

__all__ = ["APIError", "DatabaseError"]


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


class DatabaseError(Exception):
    """The ``db`` given to the dev server cannot be opened as its SQLite database (not a
    SQLite file, a directory, no permission). The file is left as it was."""
