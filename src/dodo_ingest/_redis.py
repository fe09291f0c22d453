"""What the parts on Redis share (the fleet outbox, the credit gate's store): a client built
from a URL with bounded waits, and a URL fit to be shown. Needs ``redis`` (the ``redis``
extra)."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit, urlunsplit

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

__all__ = ["client_from_url", "redacted"]


def client_from_url(url: str, timeout: float) -> Any:
    """A ``redis.Redis`` on ``url`` whose connects and reads wait at most ``timeout`` seconds
    and that never retries by itself (the caller decides what a failure means). Raises
    ``ValueError`` for a URL redis-py cannot read. Typed ``Any``: redis-py's replies are
    untyped unions."""
    return redis.Redis.from_url(
        url,
        socket_timeout=timeout,
        socket_connect_timeout=timeout,
        retry=Retry(NoBackoff(), 0),
        health_check_interval=0,
    )


def redacted(url: str) -> str:
    """``url`` without its password and its query (which may hold one), for messages and
    ``repr``."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password is not None:
        user = f"{parts.username}:***@" if parts.username else ":***@"
        netloc = user + netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=netloc, query="", fragment=""))
