"""A local stand-in of the billing API's usage-billing part, for development, demos and tests.

It serves the API's paths, bodies and status codes over real HTTP (Starlette on uvicorn) from
SQLite: event ingestion with every documented rule, event listing, meters, credit
entitlements with their lifecycle (grants that expire, FIFO draws, a ledger, dev-only billing
cycles with rollover and overage handling), webhook endpoints with signed deliveries of credit
events, plus dev-only endpoints under ``/_dev`` (a usage report, meter-to-credits links,
billing cycles, webhook deliveries and a test clock). Fault injection makes ingestion
misbehave on purpose for reliability tests. Start it in-process with :class:`DevServer`, or
with ``dodo-ingest dev-server``.

Needs the ``server`` extra (``pip install 'dodo-ingest[server]'``).
"""

from .. import _present_as
from ._app import MAX_BODY_BYTES, MAX_PAGE_SIZE
from ._clock import Clock
from ._connections import DEFAULT_MAX_CONNECTIONS, DEFAULT_READ_TIMEOUT
from ._errors import DatabaseError
from ._faults import FAULT_KINDS, parse_faults
from ._json import MAX_JSON_DEPTH
from ._server import DevServer
from ._store import BUSINESS_ID

__all__ = [
    "BUSINESS_ID",
    "DEFAULT_MAX_CONNECTIONS",
    "DEFAULT_READ_TIMEOUT",
    "FAULT_KINDS",
    "MAX_BODY_BYTES",
    "MAX_JSON_DEPTH",
    "MAX_PAGE_SIZE",
    "Clock",
    "DatabaseError",
    "DevServer",
    "parse_faults",
]

_present_as(__name__, globals(), __all__)
