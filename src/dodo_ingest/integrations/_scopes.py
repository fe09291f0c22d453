"""Who a framework's LLM call is billed to, and how its usage reaches the tracker.

Both integrations bill through an :class:`~dodo_ingest.blueprints.llm.LLMTracker`: the
tracker's event name, billing-model hooks, statistics and event ids apply unchanged.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping

from ..blueprints.llm._event_ids import Identity
from ..blueprints.llm._tracker import (
    LLMTracker,
    Scope,
    _validate_customer,
    _validate_user_metadata,
)
from ..blueprints.llm._usage import LLMUsage
from ..client._errors import EventValidationError

__all__ = ["Biller"]

logger = logging.getLogger("dodo_ingest")


class Biller:
    """Bills usage records to the customer of a call through ``tracker``.

    The customer of a call is the first of: the one the call names itself (``named``), the
    current ``tracker.customer()`` scope, the ``customer_id`` given here. Metadata merges
    the same way (here, then the scope's). A call without a customer is not billed: it is
    counted in ``tracker.stats.failures`` and logged once.
    """

    __slots__ = ("customer_id", "metadata", "tracker", "warned")

    def __init__(
        self,
        tracker: LLMTracker,
        customer_id: str | None,
        metadata: Mapping[str, object] | None,
    ) -> None:
        if not isinstance(tracker, LLMTracker):
            raise TypeError(f"tracker must be an LLMTracker, got {type(tracker).__name__}")
        self.tracker = tracker
        self.customer_id = None if customer_id is None else _validate_customer(customer_id)
        self.metadata = _validate_user_metadata(metadata)
        self.warned: set[str] = set()

    def scope(self, named: object = None) -> Scope | None:
        """The scope of a call made now (read the ``tracker.customer()`` block here)."""
        context = self.tracker._context.get()
        metadata = self.metadata
        if context is not None and context.metadata:
            metadata = {**metadata, **context.metadata}
        if named is not None:
            try:
                return Scope(_validate_customer(named), metadata)
            except EventValidationError:
                self.failure("invalid customer", f"a call named customer {named!r}: not billed")
                return None
        if context is not None:
            return Scope(context.customer_id, metadata)
        if self.customer_id is not None:
            return Scope(self.customer_id, metadata)
        self.failure(
            "no customer",
            "LLM call made without a customer (none named by the call, no tracker.customer() "
            "block, no default customer_id): not billed",
        )
        return None

    def bill(self, usage: LLMUsage, scope: Scope, identity: Identity | None = None) -> None:
        """Emit the events of ``usage``; never raises (the tracker counts failures).

        ``identity``: what the event ids hash instead of the usage's own values (those of
        the wrapped client's bill of the same call, see ``blueprints.llm._billed``).
        """
        self.tracker.record(usage, scope, identity)

    def failure(self, kind: str, message: str, exc: BaseException | None = None) -> None:
        """Count a failure in the tracker's stats; log each kind once per integration."""
        self.tracker.stats._count_failure()
        if kind in self.warned:
            return
        self.warned.add(kind)
        if exc is None:
            logger.warning("%s", message)
        else:
            logger.warning("%s: %s: %s", message, type(exc).__name__, exc, exc_info=exc)
