"""The retry policy: which failures are transient, and how long to wait before trying again.

One :class:`RetryPolicy` value decides the waits of both the typed client and the delivery
pipeline, so the two never disagree about backoff or ``Retry-After``.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from tenacity import RetryCallState  # only the client's retry loop uses tenacity

from ._errors import APIConnectionError, APIStatusError

__all__ = [
    "DEFAULT_RETRY_POLICY",
    "RETRYABLE_STATUSES",
    "RetryPolicy",
    "is_retryable",
    "is_safe_to_resend",
    "parse_retry_after",
    "retry_wait",
]

RETRYABLE_STATUSES = frozenset({408, 409, 429})
"""Statuses retried besides every 5xx."""

INITIAL_DELAY = 0.5
MAX_DELAY = 8.0
MAX_RETRY_AFTER = 60.0
"""The longest wait a server's ``Retry-After`` gets by default."""


@dataclass(frozen=True)
class RetryPolicy:
    """How long to wait before trying again, as one value.

    Before retry number ``attempt`` (counted from 0): the server's ``retry-after-ms`` or
    ``Retry-After`` when it gave one, capped at ``max_retry_after`` (a server asking for an
    hour gets ``max_retry_after``, not a short backoff that would hammer it); otherwise
    exponential backoff with full jitter, uniform in
    ``[0, min(max_delay, initial_delay * 2**attempt)]``. Which failures are retried at all is
    :func:`is_retryable`'s decision.
    """

    initial_delay: float = INITIAL_DELAY
    max_delay: float = MAX_DELAY
    max_retry_after: float = MAX_RETRY_AFTER

    def delay(
        self,
        attempt: int,
        error: BaseException | None = None,
        *,
        jitter: Callable[[float, float], float] = random.uniform,
    ) -> float:
        """Seconds to wait before retry number ``attempt`` after ``error``."""
        if isinstance(error, APIStatusError) and error.retry_after is not None:
            return min(error.retry_after, self.max_retry_after)
        ceiling = self.initial_delay * 2.0 ** min(attempt, 60)
        return jitter(0.0, min(self.max_delay, ceiling))


DEFAULT_RETRY_POLICY = RetryPolicy()
"""The typed client's policy: 0.5 s doubling up to 8 s, ``Retry-After`` up to 60 s."""


def is_retryable(error: BaseException) -> bool:
    """True for failures worth trying again: no answer, a timeout, a 2xx that is not the
    promised answer (:class:`~dodo_ingest.UnexpectedResponseError`), 408, 409, 429 or 5xx.

    The server can override the status with ``x-should-retry: true|false``.
    """
    if isinstance(error, APIConnectionError):
        return True
    if isinstance(error, APIStatusError):
        if error.should_retry is not None:
            return error.should_retry
        return error.status_code in RETRYABLE_STATUSES or error.status_code >= 500
    return False


def is_safe_to_resend(error: BaseException) -> bool:
    """For requests that are not idempotent (creating a meter, a ledger entry...): True only
    when the server cannot have acted on the request: no connection was made, or 429."""
    if isinstance(error, APIConnectionError):
        return error.request_sent is False
    return isinstance(error, APIStatusError) and error.status_code == 429


def parse_retry_after(headers: Mapping[str, str], *, now: float | None = None) -> float | None:
    """Seconds the server asks to wait: ``retry-after-ms``, else ``Retry-After`` (seconds or
    an HTTP date). ``None`` when absent, unparsable or not positive."""
    raw_ms = headers.get("retry-after-ms")
    if raw_ms:
        try:
            value = float(raw_ms) / 1000.0
        except ValueError:
            value = 0.0
        if value > 0:
            return value
    raw = headers.get("retry-after")
    if not raw:
        return None
    try:
        seconds = float(raw)
    except ValueError:
        try:
            from email.utils import parsedate_to_datetime  # rare: not loaded at import

            when = parsedate_to_datetime(raw)
        except (TypeError, ValueError):
            return None
        seconds = when.timestamp() - (time.time() if now is None else now)
    return seconds if seconds > 0 else None


def retry_wait(state: RetryCallState) -> float:
    """Tenacity wait of the typed client: :data:`DEFAULT_RETRY_POLICY`."""
    outcome = state.outcome
    error = outcome.exception() if outcome is not None else None
    return DEFAULT_RETRY_POLICY.delay(state.attempt_number - 1, error)
