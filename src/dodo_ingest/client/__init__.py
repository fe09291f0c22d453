"""Typed client of the Dodo Payments billing API (usage events, meters, credit balances,
grants and ledgers, subscriptions' usage history, webhook endpoints)."""

import importlib
from typing import TYPE_CHECKING, Any

from .. import _present_as
from ._errors import (
    APIConnectionError,
    APIStatusError,
    APITimeoutError,
    AuthenticationError,
    BadRequestError,
    ConfigurationError,
    ConflictError,
    DodoError,
    EventValidationError,
    InternalServerError,
    NotFoundError,
    PayloadTooLargeError,
    PermissionDeniedError,
    RateLimitError,
    UnexpectedResponseError,
    UnprocessableEntityError,
    WebhookPayloadError,
    WebhookVerificationError,
)
from ._models import (
    CreditBalance,
    CreditEntitlement,
    CreditGrant,
    CreditLedgerEntry,
    Event,
    EventInput,
    FilterCondition,
    GrantStatus,
    IngestResult,
    LedgerTransactionType,
    Metadata,
    MetadataValue,
    Meter,
    MeterAggregation,
    MeterFilter,
    MeterUsage,
    OverageBehavior,
    TimeInterval,
    UsagePeriod,
    WebhookEndpoint,
)

__all__ = [
    "DEFAULT_MAX_RETRIES",
    "DEFAULT_TIMEOUT",
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncDodoClient",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "CreditBalance",
    "CreditEntitlement",
    "CreditGrant",
    "CreditLedgerEntry",
    "DodoClient",
    "DodoError",
    "Event",
    "EventInput",
    "EventValidationError",
    "FilterCondition",
    "GrantStatus",
    "IngestResult",
    "InternalServerError",
    "LedgerTransactionType",
    "Metadata",
    "MetadataValue",
    "Meter",
    "MeterAggregation",
    "MeterFilter",
    "MeterUsage",
    "NotFoundError",
    "OverageBehavior",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "TimeInterval",
    "UnexpectedResponseError",
    "UnprocessableEntityError",
    "UsagePeriod",
    "WebhookEndpoint",
    "WebhookPayloadError",
    "WebhookVerificationError",
]

if TYPE_CHECKING:
    from ._client import DEFAULT_MAX_RETRIES, DEFAULT_TIMEOUT, AsyncDodoClient, DodoClient

_CLIENTS = ("DEFAULT_MAX_RETRIES", "DEFAULT_TIMEOUT", "AsyncDodoClient", "DodoClient")
"""Loaded on first use, with the HTTP stack: the models and errors do not need it (so
``from dodo_ingest import Ingestion`` does not pay for it in the caller's thread)."""

_present_as(__name__, globals(), __all__)


def __getattr__(name: str) -> Any:
    if name not in _CLIENTS:
        raise AttributeError(f"module 'dodo_ingest.client' has no attribute {name!r}")
    module = importlib.import_module("._client", __name__)
    for loaded in _CLIENTS:
        globals()[loaded] = getattr(module, loaded)
    _present_as(__name__, globals(), _CLIENTS)
    return globals()[name]
