"""dodo-ingest: usage-based billing for Python on the Dodo Payments billing API.

Wrap an LLM client, decorate a job or meter a stream, and every token, second and byte becomes
a usage event, delivered batched, retried and deduplicated. Under it sits a typed client of the
billing API (:class:`DodoClient`, :class:`AsyncDodoClient`).
"""

from __future__ import annotations

import importlib
import sys
import types
import typing
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from ._version import __version__

if TYPE_CHECKING:
    from .blueprints.llm import CreditCutoffError, LLMTracker
    from .client import (
        APIConnectionError,
        APIStatusError,
        APITimeoutError,
        AsyncDodoClient,
        AuthenticationError,
        BadRequestError,
        ConfigurationError,
        ConflictError,
        CreditBalance,
        CreditEntitlement,
        CreditLedgerEntry,
        DodoClient,
        DodoError,
        Event,
        EventInput,
        EventValidationError,
        FilterCondition,
        IngestResult,
        InternalServerError,
        Meter,
        MeterAggregation,
        MeterFilter,
        NotFoundError,
        PayloadTooLargeError,
        PermissionDeniedError,
        RateLimitError,
        UnexpectedResponseError,
        UnprocessableEntityError,
        WebhookPayloadError,
        WebhookVerificationError,
    )
    from .delivery import (
        DeadLetter,
        DeliveryError,
        DeliveryStats,
        EventExpiredError,
        EventsDroppedError,
        Ingestion,
        Outbox,
        RedisOutbox,
        Relay,
        Transport,
        install_signal_handlers,
    )
    from .gate import CreditGate, InsufficientCreditsError

# Public names resolve on first use, so that ``import dodo_ingest`` stays cheap (it matters
# for serverless cold starts): the HTTP stack is imported only when a client is needed.
_LAZY: dict[str, str] = {
    "Ingestion": "dodo_ingest.delivery",
    "DeliveryStats": "dodo_ingest.delivery",
    "Outbox": "dodo_ingest.delivery",
    "DeadLetter": "dodo_ingest.delivery",
    "DeliveryError": "dodo_ingest.delivery",
    "EventExpiredError": "dodo_ingest.delivery",
    "EventsDroppedError": "dodo_ingest.delivery",
    "Transport": "dodo_ingest.delivery",
    "RedisOutbox": "dodo_ingest.delivery",
    "Relay": "dodo_ingest.delivery",
    "install_signal_handlers": "dodo_ingest.delivery",
    "LLMTracker": "dodo_ingest.blueprints.llm",
    "CreditCutoffError": "dodo_ingest.blueprints.llm",
    "CreditGate": "dodo_ingest.gate",
    "InsufficientCreditsError": "dodo_ingest.gate",
    "APIConnectionError": "dodo_ingest.client",
    "APIStatusError": "dodo_ingest.client",
    "APITimeoutError": "dodo_ingest.client",
    "AsyncDodoClient": "dodo_ingest.client",
    "AuthenticationError": "dodo_ingest.client",
    "BadRequestError": "dodo_ingest.client",
    "ConfigurationError": "dodo_ingest.client",
    "ConflictError": "dodo_ingest.client",
    "CreditBalance": "dodo_ingest.client",
    "CreditEntitlement": "dodo_ingest.client",
    "CreditLedgerEntry": "dodo_ingest.client",
    "DodoClient": "dodo_ingest.client",
    "DodoError": "dodo_ingest.client",
    "Event": "dodo_ingest.client",
    "EventInput": "dodo_ingest.client",
    "EventValidationError": "dodo_ingest.client",
    "FilterCondition": "dodo_ingest.client",
    "IngestResult": "dodo_ingest.client",
    "InternalServerError": "dodo_ingest.client",
    "Meter": "dodo_ingest.client",
    "MeterAggregation": "dodo_ingest.client",
    "MeterFilter": "dodo_ingest.client",
    "NotFoundError": "dodo_ingest.client",
    "PayloadTooLargeError": "dodo_ingest.client",
    "PermissionDeniedError": "dodo_ingest.client",
    "RateLimitError": "dodo_ingest.client",
    "UnexpectedResponseError": "dodo_ingest.client",
    "UnprocessableEntityError": "dodo_ingest.client",
    "WebhookPayloadError": "dodo_ingest.client",
    "WebhookVerificationError": "dodo_ingest.client",
}

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AsyncDodoClient",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "CreditBalance",
    "CreditCutoffError",
    "CreditEntitlement",
    "CreditGate",
    "CreditLedgerEntry",
    "DeadLetter",
    "DeliveryError",
    "DeliveryStats",
    "DodoClient",
    "DodoError",
    "Event",
    "EventExpiredError",
    "EventInput",
    "EventValidationError",
    "EventsDroppedError",
    "FilterCondition",
    "IngestResult",
    "Ingestion",
    "InsufficientCreditsError",
    "InternalServerError",
    "LLMTracker",
    "Meter",
    "MeterAggregation",
    "MeterFilter",
    "NotFoundError",
    "Outbox",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "RedisOutbox",
    "Relay",
    "Transport",
    "UnexpectedResponseError",
    "UnprocessableEntityError",
    "WebhookPayloadError",
    "WebhookVerificationError",
    "__version__",
    "install_signal_handlers",
]


def _present_as(module: str, namespace: dict[str, Any], names: Iterable[str]) -> None:
    """Give the classes and functions ``names`` of ``namespace`` that are defined in a
    private module of this package (``dodo_ingest.client._errors``) the public path
    ``module`` as their ``__module__``, as tracebacks, reprs and pickles then show it. A
    name already presented by another package (imported first) keeps that path.

    A class's own string annotations are evaluated first, where they can be, in the module
    that defines it, so that ``typing.get_type_hints`` keeps working on it.
    """
    for name in names:
        value = namespace.get(name)
        if not isinstance(value, type | types.FunctionType):
            continue
        path = value.__module__
        if not path.startswith(__name__ + ".") or "._" not in path:
            continue
        if isinstance(value, type):
            _resolve_annotations(value)
        value.__module__ = module


def _resolve_annotations(cls: type) -> None:
    own = cls.__dict__.get("__annotations__")  # noqa: RUF063 (inspect: a slow import)
    if not own or not any(isinstance(hint, str | typing.ForwardRef) for hint in own.values()):
        return
    try:
        hints = typing.get_type_hints(cls, vars(sys.modules[cls.__module__]), include_extras=True)
    except Exception:  # a name imported only for type checkers: left as the author wrote it
        return
    cls.__annotations__ = {key: hints.get(key, hint) for key, hint in own.items()}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'dodo_ingest' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(__all__)
