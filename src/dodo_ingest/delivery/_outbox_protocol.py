"""``OutboxBackend``: what the delivery pipeline needs from a durable outbox.

A leaf module (plain types, no I/O), so that backends never import the pipeline that uses
them. :class:`~dodo_ingest.delivery.Outbox` (SQLite, one machine) is the first
implementation; a backend for a shared store (Redis Streams, Kafka) implements the same
methods and is passed as ``Ingestion(outbox=...)``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Protocol, runtime_checkable

from ._dead_letter import DeadLetter

__all__ = ["OutboxBackend", "OutboxRow", "SharedOutboxBackend"]

OutboxRow = tuple[str, float, str, int]
"""A pending event: ``(event_id, timestamp, json_body, seq)``; ``seq`` grows in the order
events were appended (the pipeline reads it into a ``QueuedEvent``)."""


@runtime_checkable
class OutboxBackend(Protocol):
    """A durable outbox, as the pipeline and the ``dodo-ingest outbox`` command use it.

    **Ownership.** Each ``Ingestion`` is one *owner*: it appends events as its own and only
    fetches its own. An owner that is gone (its process died) loses its events to the next
    owner that :meth:`reclaim` s them; :meth:`release` gives them up on purpose.

    **Delivery.** :meth:`fetch` returns the oldest unsettled events of this owner in
    ``seq`` order and returns them again until they are settled: :meth:`delete` once the API
    acknowledged them, :meth:`bury` when it refused them (kept as dead letters with the
    reason). An acknowledged event is never fetched again by this owner, even when the store
    cannot be written at that moment.

    **Threads.** :meth:`append`, :meth:`last_seq` and :meth:`has_other_pending` run in
    ``track()``/``flush()`` callers (any thread, possibly re-entered from a signal handler in
    the same thread); :meth:`fetch`, :meth:`delete`, :meth:`bury`, :meth:`heartbeat`,
    :meth:`reclaim` and :meth:`close_sender` in the sender thread.
    """

    def claim(self, user: object) -> None:
        """Become the outbox of ``user`` (one open ``Ingestion`` per object); raise
        ``ConfigurationError`` when another open one holds it."""

    def register(self) -> None:
        """Record this owner as live (before the first :meth:`append`)."""

    def append(self, event_id: str, timestamp: float, body: str) -> int:
        """Store one encoded event durably; return its ``seq``. Raise on a store error."""

    def last_seq(self) -> int:
        """The highest ``seq`` pending in the store, any owner's, or handed out by this
        object before if higher (0 when none ever was): it never goes down, and a ``seq`` it
        answered is never given to a new event."""

    def has_other_pending(self) -> bool:
        """True when events of other owners wait (maybe orphans to take over)."""

    def heartbeat(self) -> None:
        """Show that this owner is alive."""

    def reclaim(self) -> int:
        """Take over the events of owners that are gone; return how many."""

    def fetch(self, limit: int) -> Sequence[OutboxRow]:
        """The oldest ``limit`` unsettled events of this owner, in ``seq`` order."""

    def delete(self, rows: Sequence[OutboxRow]) -> None:
        """Forget events the API acknowledged."""

    def bury(self, rows: Sequence[OutboxRow], reason: str, status_code: int | None) -> None:
        """Keep refused or expired events as dead letters with the reason."""

    def release(self) -> None:
        """Stop owning: what is still pending becomes free for other owners to take over."""

    def close_sender(self) -> None:
        """Release what the sender thread held (it is exiting)."""

    def after_fork_in_child(self) -> None:
        """Start over in a forked child as a new owner, leaving the parent's handles alone."""

    def count_pending(self) -> int:
        """Events waiting to be delivered, any owner's."""

    def count_dead_letters(self) -> int:
        """Events given up on and kept with their reason."""

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """Dead letters, oldest first (at most ``limit``)."""

    def retry_dead_letters(self, event_ids: Iterable[str] | None = None) -> int:
        """Move dead letters (all, or those ids) back to pending; return how many."""

    def close(self) -> None:
        """Close the store (idempotent)."""


@runtime_checkable
class SharedOutboxBackend(OutboxBackend, Protocol):
    """An outbox shared by many processes: producers append, the consumers of a group
    (relays, or producers that also deliver) settle entries whoever appended them.

    Entries have a *position* (an int that grows in the order the store keeps them). A
    consumer holds what it fetched until it settles it, or until another consumer claims it
    (:meth:`reclaim`) because it went silent. When the store cannot be reached,
    :meth:`append` keeps events in memory (the *spill*, in order) and the sender writes them
    later with :meth:`push_spill`.
    """

    def spilled(self) -> int:
        """Events of this process waiting in memory for the store."""

    def push_spill(self) -> bool:
        """Write the spilled events to the store, oldest first; True when none is left."""

    def take_spill(self) -> list[OutboxRow]:
        """Remove and return the spilled events (they will not be stored)."""

    def last_position(self) -> int:
        """The position of the newest entry this process wrote (0: none yet)."""

    def settled_position(self) -> int:
        """A position up to which every entry is settled, by any consumer."""

    def reread(self) -> None:
        """Fetch what this consumer holds again (a delivery stopped unexpectedly)."""
