"""``Transport``: the one seam between the delivery pipeline and the network.

The pipeline hands a transport one encoded ``POST /events/ingest`` body at a time and reads
the outcome; everything else (batching, retries, splitting, dead letters) stays in the
pipeline. Pass your own to ``Ingestion(transport=...)`` to deliver elsewhere or to test
without sockets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol, runtime_checkable

if TYPE_CHECKING:
    from ..client import DodoClient

__all__ = ["ClientTransport", "Transport"]


@runtime_checkable
class Transport(Protocol):
    """Sends one encoded batch and says how it went.

    ``send(body)`` gets the UTF-8 JSON text ``{"events": [...]}`` (1 to 1000 events, ids
    unique within it) and returns the API's ``ingested_count``: how many of the events were
    new (the others were already ingested; both are acknowledged). It raises
    :class:`~dodo_ingest.APIStatusError` when the API answered with an error status (the
    pipeline decides from the status whether to retry, split or give up), and any other
    exception when there is no valid answer (no connection, a timeout, a 2xx that is not an
    acknowledgement): those are retried with the same ids. It is called from the sender
    thread only, one call at a time. ``close()`` releases its connections.
    """

    def send(self, body: bytes) -> int:
        """Deliver ``body``; return the ``ingested_count`` of the acknowledgement."""
        ...

    def close(self) -> None:
        """Release connections (called once, when the sender stops)."""
        ...


class ClientTransport:
    """The default transport: ``POST /events/ingest`` through a :class:`DodoClient`.

    The client must not retry by itself (``max_retries=0``): the pipeline owns the retry
    policy. ``owns_client`` says whether :meth:`close` closes it.
    """

    def __init__(self, client: DodoClient, *, owns_client: bool) -> None:
        self.client = client
        self._owns_client = owns_client

    def send(self, body: bytes) -> int:
        """Deliver ``body`` and return the API's ``ingested_count``."""
        return self.client.events.ingest_json(body).ingested_count

    def close(self) -> None:
        """Close the client if this transport built it."""
        if self._owns_client:
            self.client.close()

    def __repr__(self) -> str:
        return f"ClientTransport(base_url={self.client.base_url!r})"
