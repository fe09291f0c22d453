"""Bill API calls: one usage event per request your API serves.

- :func:`track_api_call` sends one event for a call you describe yourself.
- :class:`UsageMiddleware` is an ASGI middleware for Starlette and FastAPI that tracks every
  served request with the keys ``method``, ``route`` (the route template such as
  ``/v1/users/{user_id}``, never the raw path with ids), ``statusCode``, ``durationMs``,
  ``requestBytes`` and ``responseBytes``, for the customer your resolver finds in the request.
  Tracking never fails or delays the request: errors are logged and counted. A request a
  :class:`~dodo_ingest.CreditGate` refused (``InsufficientCreditsError`` or
  ``CreditCheckUnavailableError`` raised by the app) is answered 402 or 503 with the error's
  JSON body, and not billed.

Needs Starlette (``pip install 'dodo-ingest[server]'``; FastAPI brings it too).
"""

from __future__ import annotations

import inspect
import os
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping
from datetime import datetime
from typing import Any

from starlette.requests import Request
from starlette.responses import JSONResponse
from starlette.routing import Mount
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from ..client._models import MetadataValue, validate_metadata
from ..gate import CreditCheckUnavailableError, InsufficientCreditsError
from ._common import (
    EventSink,
    FailureCounter,
    check_customer_id,
    check_event_name,
    check_metadata,
)

__all__ = ["CustomerResolver", "UsageMiddleware", "track_api_call"]

CustomerResolver = Callable[[Request], "str | Awaitable[str | None] | None"]
"""Finds the customer of a request (header, API-key lookup, auth state); ``None`` skips it."""

_RESERVED = ("method", "route", "statusCode", "durationMs", "requestBytes", "responseBytes")


def track_api_call(
    ingestion: EventSink,
    customer_id: str,
    metadata: Mapping[str, MetadataValue] | None = None,
    event_name: str | None = None,
    *,
    event_id: str | None = None,
    timestamp: datetime | None = None,
) -> str:
    """Track one API call with your ``metadata`` (e.g. ``{"route": "/v1/x", "method": "GET"}``).

    Returns the ``event_id``; bad input raises ``EventValidationError`` (nothing is queued).
    """
    return ingestion.track(
        check_customer_id(customer_id),
        check_event_name(event_name),
        None if metadata is None else validate_metadata(metadata),
        event_id=event_id,
        timestamp=timestamp,
    )


def route_template(scope: Scope, root_path: str) -> str | None:
    """The template of the route Starlette matched (``/users/{user_id}``), mounts included.

    ``root_path`` is the scope's ``root_path`` before routing. ``None`` when no route matched.
    """
    route = scope.get("route")
    path = getattr(route, "path", None)
    if not isinstance(path, str):
        return None
    if scope.get("root_path", "") == root_path:
        return path
    prefix = _mount_prefix(scope.get("router"), scope, root_path)
    return prefix + path if prefix is not None else path


def _mount_prefix(router: Any, scope: Scope, root_path: str) -> str | None:
    """Replay the routing through ``Mount``s to rebuild their templates (``/orgs/{org}``)."""
    probe: dict[str, Any] = {
        "type": scope["type"],
        "path": scope["path"],
        "root_path": root_path,
        "method": scope.get("method"),
    }
    prefix = ""
    routes = getattr(router, "routes", None)
    while routes:
        for candidate in routes:
            if isinstance(candidate, Mount):
                _, child = candidate.matches(probe)
                if child:
                    prefix += candidate.path
                    probe.update(child)
                    routes = candidate.routes
                    break
        else:
            return prefix
    return prefix


class UsageMiddleware(FailureCounter):
    """ASGI middleware tracking one usage event per HTTP request served.

    ``customer_id(request)`` (sync or async) runs after the app answered, so it sees state set
    by authentication (``request.state``, ``request.user``) and headers; returning ``None``
    skips the request. ``exclude`` holds route templates or paths to skip (a trailing ``*``
    matches a prefix: ``"/internal/*"``) or is a callable ``(request, status_code) -> bool``;
    ``exclude_methods`` defaults to ``OPTIONS`` (CORS preflights). Requests no route matched
    (404s) are skipped unless ``track_unmatched`` is set, then ``route`` is the raw path.
    ``metadata`` is added to every event (a mapping, or a callable of the request).

    Event keys: ``method``, ``route``, ``statusCode``, ``durationMs`` (float, until the app
    returned, streaming included), ``requestBytes`` (body bytes the app read),
    ``responseBytes`` (body bytes sent). A request whose app raised is tracked with
    ``statusCode`` 500 unless a response had started; the exception propagates unchanged.
    ``tracking_errors`` counts requests that could not be tracked (each logged on the
    ``dodo_ingest`` logger).

    Credit gate refusals: when the app raises :class:`~dodo_ingest.InsufficientCreditsError`
    before answering, the middleware answers HTTP 402 with ``error.to_dict()`` as the JSON
    body (503 for :class:`~dodo_ingest.gate.CreditCheckUnavailableError`), the exception goes
    no further, and the request is **not billed**: the gate refused it before any work was
    done. ``credit_refusals`` counts them. A 402 the app writes itself is an ordinary
    response (tracked, unless ``exclude`` says otherwise); an error raised after the response
    started cannot change its status and propagates as any other.

    Starlette/FastAPI: ``app.add_middleware(UsageMiddleware, ingestion=..., customer_id=...)``.
    """

    def __init__(
        self,
        app: ASGIApp,
        ingestion: EventSink,
        customer_id: CustomerResolver,
        *,
        event_name: str | None = None,
        metadata: Mapping[str, MetadataValue]
        | Callable[[Request], Mapping[str, MetadataValue]]
        | None = None,
        exclude: Iterable[str] | Callable[[Request, int], bool] = (),
        exclude_methods: Iterable[str] = ("OPTIONS",),
        track_unmatched: bool = False,
    ) -> None:
        if not callable(customer_id):
            raise TypeError("customer_id: must be a callable taking the request")
        self.app = app
        self._ingestion = ingestion
        self._resolve = customer_id
        self._event_name = check_event_name(event_name, ingestion)
        self._metadata = metadata if callable(metadata) else check_metadata(metadata, _RESERVED)
        self._exclude_check: Callable[[Request, int], bool] | None = None
        self._exclude_exact: frozenset[str] = frozenset()
        self._exclude_prefixes: tuple[str, ...] = ()
        if callable(exclude):
            self._exclude_check = exclude
        else:
            patterns = [exclude] if isinstance(exclude, str) else list(exclude)
            self._exclude_exact = frozenset(p for p in patterns if not p.endswith("*"))
            self._exclude_prefixes = tuple(p[:-1] for p in patterns if p.endswith("*"))
        self._exclude_methods = frozenset(m.upper() for m in exclude_methods)
        self._track_unmatched = track_unmatched
        self.credit_refusals = 0
        """Requests answered 402 or 503 because a credit gate refused them (not billed)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] in self._exclude_methods:
            await self.app(scope, receive, send)
            return
        root_path = scope.get("root_path", "")
        path = scope["path"]
        started = time.monotonic_ns()
        status = 0
        request_bytes = 0
        response_bytes = 0

        async def counting_receive() -> Message:
            nonlocal request_bytes
            message = await receive()
            if message["type"] == "http.request":
                request_bytes += len(message.get("body", b""))
            return message

        async def counting_send(message: Message) -> None:
            nonlocal status, response_bytes
            kind = message["type"]
            if kind == "http.response.start":
                status = message["status"]
            elif kind == "http.response.body":
                response_bytes += len(message.get("body", b""))
            elif kind == "http.response.pathsend":
                response_bytes += _file_size(message.get("path"))
            await send(message)

        error: BaseException | None = None
        refused = False
        try:
            await self.app(scope, counting_receive, counting_send)
        except (InsufficientCreditsError, CreditCheckUnavailableError) as refusal:
            if status:  # answered already: the status cannot change
                error = refusal
                raise
            refused = True  # refused before any work: not billed
            self.credit_refusals += 1
            answer = JSONResponse(refusal.to_dict(), status_code=refusal.status_code)
            await answer(scope, receive, send)
        except BaseException as exc:
            error = exc
            raise
        finally:
            if not refused:
                duration_ns = time.monotonic_ns() - started
                try:
                    await self._track(
                        scope,
                        root_path,
                        path,
                        status or 500,
                        duration_ns,
                        request_bytes,
                        response_bytes,
                        cancelled=error is not None and not isinstance(error, Exception),
                    )
                except Exception as exc:
                    self._tracking_failed(f"api call {scope.get('method')} {path}", exc)

    async def _track(
        self,
        scope: Scope,
        root_path: str,
        path: str,
        status: int,
        duration_ns: int,
        request_bytes: int,
        response_bytes: int,
        *,
        cancelled: bool,
    ) -> None:
        route = route_template(scope, root_path)
        if route is None:
            if not self._track_unmatched:
                return
            route = path
        if route in self._exclude_exact or route.startswith(self._exclude_prefixes):
            return
        if path != route and (
            path in self._exclude_exact or path.startswith(self._exclude_prefixes)
        ):
            return
        request = Request(scope)
        if self._exclude_check is not None and self._exclude_check(request, status):
            return
        customer = self._resolve(request)
        if inspect.isawaitable(customer):
            if cancelled:
                # The request was cancelled (client gone): awaiting now would be cancelled too.
                if inspect.iscoroutine(customer):
                    customer.close()
                raise RuntimeError("request cancelled before its customer could be resolved")
            customer = await customer
        if customer is None:
            return
        extra = self._metadata
        if callable(extra):
            extra = check_metadata(extra(request), _RESERVED)
        metadata: dict[str, MetadataValue] = {
            "method": scope["method"],
            "route": route,
            "statusCode": status,
            "durationMs": round(duration_ns / 1e6, 3),
            "requestBytes": request_bytes,
            "responseBytes": response_bytes,
        }
        metadata.update(extra)
        self._ingestion.track(check_customer_id(customer), self._event_name, metadata)


def _file_size(path: object) -> int:
    try:
        return os.stat(path).st_size  # type: ignore[arg-type]
    except (OSError, TypeError, ValueError):
        return 0
