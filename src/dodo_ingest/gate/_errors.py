"""Errors a :class:`~dodo_ingest.CreditGate` raises before any work is done."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from ..client import DodoError

__all__ = ["CreditCheckUnavailableError", "InsufficientCreditsError"]


class InsufficientCreditsError(DodoError):
    """The customer cannot pay for the work asked: nothing was reserved, nothing was done.

    ``customer_id``, ``requested`` (the amount asked) and ``available`` (what was left: the
    balance and the overage allowed, minus the work in progress and the usage the API has not
    deducted yet) say why. ``status_code`` is 402 (Payment Required); :meth:`to_dict` is the
    JSON body an HTTP API answers with.
    """

    status_code = 402
    code = "insufficient_credits"

    def __init__(self, customer_id: str, requested: Decimal, available: Decimal) -> None:
        self.customer_id = customer_id
        self.requested = requested
        self.available = available
        super().__init__(
            f"customer {customer_id!r} cannot pay for {requested} credit(s): "
            f"{max(available, Decimal(0))} available"
        )

    def to_dict(self) -> dict[str, Any]:
        """``{"error": {"code", "message", "customer_id", "requested", "available"}}`` with
        the amounts as decimal strings."""
        return {
            "error": {
                "code": self.code,
                "message": str(self),
                "customer_id": self.customer_id,
                "requested": str(self.requested),
                "available": str(max(self.available, Decimal(0))),
            }
        }


class CreditCheckUnavailableError(DodoError):
    """The balance could not be read and the gate is set to deny (``on_unavailable="deny"``).

    ``status_code`` is 503 (the customer may well have credits); ``cause`` is the error of
    the failed read.
    """

    status_code = 503
    code = "credit_check_unavailable"

    def __init__(self, customer_id: str, cause: BaseException) -> None:
        self.customer_id = customer_id
        self.cause = cause
        super().__init__(
            f"the balance of customer {customer_id!r} cannot be read ({type(cause).__name__}); "
            "refused (on_unavailable='deny')"
        )

    def to_dict(self) -> dict[str, Any]:
        """``{"error": {"code", "message", "customer_id"}}``."""
        return {"error": {"code": self.code, "message": str(self), "customer_id": self.customer_id}}
