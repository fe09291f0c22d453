"""The error hierarchy.

Everything this package raises on purpose derives from :class:`DodoError`::

    DodoError
    ├── ConfigurationError          bad settings, found when a client/tracker is built
    ├── EventValidationError        an event breaks a documented limit (never sent)
    ├── WebhookVerificationError    a webhook's signature or timestamp does not check out
    ├── WebhookPayloadError         a verified webhook body has the wrong shape
    ├── APIConnectionError          the request got no usable answer (retried)
    │   ├── APITimeoutError
    │   └── UnexpectedResponseError a 2xx that is not the answer the endpoint promises
    └── APIStatusError              the API answered with a non-2xx status
        ├── BadRequestError (400)   ├── ConflictError (409)
        ├── AuthenticationError (401) ├── PayloadTooLargeError (413)
        ├── PermissionDeniedError (403) ├── UnprocessableEntityError (422)
        ├── NotFoundError (404)     ├── RateLimitError (429, ``retry_after``)
        └── InternalServerError (5xx)

No message, ``repr`` or attribute of these errors holds an API key: they are built from
status codes, server messages, bodies and request ids, from which the client blanks out its
key (``***``) in case a server or proxy echoes the request's ``Authorization`` header.
"""

from __future__ import annotations

__all__ = [
    "APIConnectionError",
    "APIStatusError",
    "APITimeoutError",
    "AuthenticationError",
    "BadRequestError",
    "ConfigurationError",
    "ConflictError",
    "DodoError",
    "EventValidationError",
    "InternalServerError",
    "NotFoundError",
    "PayloadTooLargeError",
    "PermissionDeniedError",
    "RateLimitError",
    "UnexpectedResponseError",
    "UnprocessableEntityError",
    "WebhookPayloadError",
    "WebhookVerificationError",
]


class DodoError(Exception):
    """Base class of every error raised by dodo-ingest."""


class ConfigurationError(DodoError, ValueError):
    """A setting is missing or invalid (API key, environment, base URL, option value)."""


class EventValidationError(DodoError, ValueError):
    """An event breaks one of the billing API's documented limits.

    Raised in the caller, before anything is queued or sent. ``field`` names the offending
    field (``"metadata.prompt"``, ``"event_id"``...), ``limit`` states the rule that failed.
    """

    def __init__(self, field: str, limit: str, *, index: int | None = None) -> None:
        self.field = field
        self.limit = limit
        self.index = index
        where = f"events[{index}].{field}" if index is not None else field
        super().__init__(f"{where}: {limit}")


class WebhookVerificationError(DodoError):
    """A webhook request failed verification (signature, timestamp or headers)."""


class WebhookPayloadError(DodoError, ValueError):
    """A verified webhook body is not the JSON shape its event type promises.

    ``field`` names the offending field (``"data.amount"``, ``"timestamp"``...).
    """

    def __init__(self, field: str, problem: str) -> None:
        self.field = field
        super().__init__(f"webhook payload {field}: {problem}")


class APIConnectionError(DodoError):
    """The request got no usable answer (DNS, refused or reset connection, protocol error, a
    timeout, a 2xx that is not the answer the endpoint promises); retried by default.

    ``request_sent`` is ``False`` when no connection was made (so the server cannot have
    acted on the request), ``True`` when it may have been sent, ``None`` when unknown.
    """

    status_code: int | None = None
    request_id: str | None = None

    def __init__(
        self, message: str = "connection error", *, request_sent: bool | None = None
    ) -> None:
        self.message = message
        self.request_sent = request_sent
        super().__init__(message)


class APITimeoutError(APIConnectionError):
    """The request timed out."""

    def __init__(
        self, message: str = "request timed out", *, request_sent: bool | None = None
    ) -> None:
        super().__init__(message, request_sent=request_sent)


class UnexpectedResponseError(APIConnectionError):
    """A 2xx answer that is not the answer the endpoint promises, so nothing is acknowledged.

    For ``POST /events/ingest`` the only acknowledgement is a JSON object with an integer
    ``ingested_count`` >= 0; an empty 202/204, an HTML page from a proxy, truncated JSON or
    JSON without the count raise this instead. Something answered, so the request may have
    been acted on (``request_sent`` is ``True``); resending an ingest request is safe because
    event ids are idempotency keys, and the client's retry policy does so.

    ``status_code`` is the HTTP status, ``request_id`` the server's request id header when
    present, ``body_excerpt`` the start of the body (at most 200 characters, whitespace runs
    collapsed); the API key is blanked out of both.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        request_id: str | None = None,
        body_excerpt: str = "",
    ) -> None:
        super().__init__(message, request_sent=True)
        self.status_code = status_code
        self.request_id = request_id
        self.body_excerpt = body_excerpt


class APIStatusError(DodoError):
    """The API answered with a non-success status.

    ``status_code`` is the HTTP status, ``message`` the server's explanation when it gave one,
    ``request_id`` the server's request id header when present, ``body`` the decoded JSON body
    (or ``None``), ``retry_after`` the wait in seconds the server asked for (``Retry-After`` or
    ``retry-after-ms``), ``should_retry`` the server's ``x-should-retry`` verdict if it gave one.
    """

    def __init__(
        self,
        message: str,
        *,
        status_code: int,
        request_id: str | None = None,
        body: object = None,
        retry_after: float | None = None,
        should_retry: bool | None = None,
    ) -> None:
        self.message = message
        self.status_code = status_code
        self.request_id = request_id
        self.body = body
        self.retry_after = retry_after
        self.should_retry = should_retry
        text = f"HTTP {status_code}: {message}"
        if request_id:
            text += f" (request id {request_id})"
        super().__init__(text)


class BadRequestError(APIStatusError):
    """400: the request was refused as a whole (validation, duplicate ids, bad timestamps)."""


class AuthenticationError(APIStatusError):
    """401: the API key is missing or invalid."""


class PermissionDeniedError(APIStatusError):
    """403: the API key may not do this."""


class NotFoundError(APIStatusError):
    """404: no such resource."""


class ConflictError(APIStatusError):
    """409: the request conflicts with the resource's state (retried by default)."""


class PayloadTooLargeError(APIStatusError):
    """413: the request body is too large; send fewer events per request."""


class UnprocessableEntityError(APIStatusError):
    """422: the body is malformed or does not match the schema."""


class RateLimitError(APIStatusError):
    """429: rate limited. ``retry_after`` is the server's requested wait in seconds, if given."""


class InternalServerError(APIStatusError):
    """5xx: the server failed; retried by default."""


_STATUS_ERRORS: dict[int, type[APIStatusError]] = {
    400: BadRequestError,
    401: AuthenticationError,
    403: PermissionDeniedError,
    404: NotFoundError,
    409: ConflictError,
    413: PayloadTooLargeError,
    422: UnprocessableEntityError,
    429: RateLimitError,
}


def error_class_for_status(status_code: int) -> type[APIStatusError]:
    """The :class:`APIStatusError` subclass that stands for ``status_code``."""
    if status_code >= 500:
        return InternalServerError
    return _STATUS_ERRORS.get(status_code, APIStatusError)
