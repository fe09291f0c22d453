"""``Settings``: the pipeline's tunables, checked once when an ``Ingestion`` is built."""

from __future__ import annotations

import math
import sys
import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING

from ..client import ConfigurationError
from ..client._models import MAX_BATCH_SIZE

if TYPE_CHECKING:
    import httpx2

__all__ = [
    "API_MAX_EVENT_AGE",
    "API_MAX_FUTURE_SKEW",
    "Settings",
    "request_timeout",
    "wait_timeout",
]

API_MAX_EVENT_AGE = 3600.0
"""The API refuses events whose timestamp is older than this many seconds."""
API_MAX_FUTURE_SKEW = 300.0
"""The API refuses events whose timestamp is more than this many seconds ahead."""


@dataclass(frozen=True)
class Settings:
    """Validated delivery settings (see ``docs/delivery.md`` for each one's meaning)."""

    batch_size: int = MAX_BATCH_SIZE
    flush_interval: float = 1.0
    max_queue_size: int = 100_000
    max_queue_bytes: int = 64 * 1024 * 1024
    shutdown_timeout: float = 5.0
    flush_timeout: float = 30.0
    queue_full_timeout: float = 0.1
    max_event_age: float = 3300.0
    max_request_bytes: int = 4 * 1024 * 1024
    retry_initial_delay: float = 0.5
    retry_max_delay: float = 30.0
    max_retry_after: float = 60.0
    auth_retry_interval: float = 60.0

    def __post_init__(self) -> None:
        _int_range("batch_size", self.batch_size, 1, MAX_BATCH_SIZE)
        _int_range("max_queue_size", self.max_queue_size, 1, None)
        _int_range("max_request_bytes", self.max_request_bytes, 1024, None)
        _int_range("max_queue_bytes", self.max_queue_bytes, self.max_request_bytes, None)
        _positive("flush_interval", self.flush_interval)
        _positive("max_event_age", self.max_event_age)
        _positive("retry_initial_delay", self.retry_initial_delay)
        _positive("retry_max_delay", self.retry_max_delay)
        _positive("max_retry_after", self.max_retry_after)
        _positive("auth_retry_interval", self.auth_retry_interval)
        _non_negative("shutdown_timeout", self.shutdown_timeout)
        _non_negative("flush_timeout", self.flush_timeout)
        _non_negative("queue_full_timeout", self.queue_full_timeout)


def _int_range(name: str, value: object, low: int, high: int | None) -> None:
    if type(value) is not int or value < low or (high is not None and value > high):
        bound = f"from {low} to {high}" if high is not None else f">= {low}"
        raise ConfigurationError(f"{name} must be an int {bound}, got {value!r}")


def _number(name: str, value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not -threading.TIMEOUT_MAX <= value <= threading.TIMEOUT_MAX  # also refuses NaN
    ):
        raise ConfigurationError(
            f"{name} must be a finite number of seconds (at most {threading.TIMEOUT_MAX:g}), "
            f"got {value!r}"
        )
    return float(value)


def _positive(name: str, value: object) -> float:
    seconds = _number(name, value)
    if seconds <= 0:
        raise ConfigurationError(f"{name} must be > 0 seconds, got {value!r}")
    return seconds


def _non_negative(name: str, value: object) -> None:
    if _number(name, value) < 0:
        raise ConfigurationError(f"{name} must be >= 0 seconds, got {value!r}")


def request_timeout(value: object) -> httpx2.Timeout | float | None:
    """The per-request ``timeout`` setting, checked: ``None`` (the default), a number of
    seconds, or an ``httpx2.Timeout`` (made by a caller that loaded ``httpx2``: it is not
    loaded here for this).

    A number must be finite and > 0; an ``httpx2.Timeout`` may leave parts unset (``None``:
    no limit) but its numbers must be finite and > 0. Raises ``ConfigurationError``.
    """
    if value is None:
        return None
    loaded = sys.modules.get("httpx2")
    if loaded is not None and isinstance(value, loaded.Timeout):
        timeout: httpx2.Timeout = value
        for part, seconds in timeout.as_dict().items():
            if seconds is not None:
                _positive(f"timeout.{part}", seconds)
        return timeout
    return _positive("timeout", value)


def wait_timeout(value: float) -> float:
    """A ``timeout`` argument of ``flush()``/``close()`` as seconds a wait can take.

    Negative means 0; ``inf`` (or anything longer than the platform allows) means the
    longest wait the platform allows, ``threading.TIMEOUT_MAX`` (about 292 years on Linux).
    NaN or a non-number raises ``ValueError``.
    """
    if isinstance(value, bool) or not isinstance(value, (int, float)) or math.isnan(value):
        raise ValueError(f"timeout must be a number of seconds, got {value!r}")
    return min(max(float(value), 0.0), threading.TIMEOUT_MAX)
