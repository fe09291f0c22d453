"""An ASGI app that tracks one event per request, for the tests that stop a real server with
SIGTERM (tests/delivery/test_signals_uvicorn.py).

Configured by environment variables, read at import: ``SIGNALS_TEST_SINK`` (the base URL
events go to), ``SIGNALS_TEST_INSTALL=1`` (call ``install_signal_handlers()`` at import),
``SIGNALS_TEST_LIFESPAN=1`` (close the ``Ingestion`` in the lifespan shutdown),
``SIGNALS_TEST_RELEASE`` (the file ``/track-later`` waits for).
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse
from starlette.routing import Route

from dodo_ingest import Ingestion, install_signal_handlers

ingestion = Ingestion(
    api_key="sk_test_signals",
    base_url=os.environ["SIGNALS_TEST_SINK"],
    event_name="request",
    flush_interval=3600,  # nothing is sent before the signal unless something asks for it
    shutdown_timeout=20,
)
if os.environ.get("SIGNALS_TEST_INSTALL") == "1":
    install_signal_handlers()


async def ready(request: Request) -> PlainTextResponse:
    return PlainTextResponse(str(os.getpid()))


async def track(request: Request) -> PlainTextResponse:
    return PlainTextResponse(ingestion.track("cus_1"))


async def track_later(request: Request) -> JSONResponse:
    """Wait for the release file (the test writes it once the server is shutting down),
    track, and say whether the event was delivered within ``wait`` seconds; also when it
    was tracked (``time.monotonic()``), by which process, and how many events that process
    had tracked before (its sender was running), to measure how long the event had."""
    release = Path(os.environ["SIGNALS_TEST_RELEASE"])
    print("waiting for the release file", file=sys.stderr, flush=True)
    deadline = time.monotonic() + 30
    while not release.exists() and time.monotonic() < deadline:
        await asyncio.sleep(0.005)
    before = ingestion.stats
    delivered = before.delivered
    event_id = ingestion.track("cus_1")
    tracked_at = time.monotonic()
    wait = float(request.query_params.get("wait", "0"))
    while ingestion.stats.delivered == delivered and time.monotonic() < tracked_at + wait:
        await asyncio.sleep(0.001)
    return JSONResponse(
        {
            "id": event_id,
            "pid": os.getpid(),
            "tracked_before": before.enqueued,
            "tracked_at": tracked_at,
            "sent": ingestion.stats.delivered > delivered,
        }
    )


@asynccontextmanager
async def lifespan(app: Starlette) -> AsyncIterator[None]:
    yield
    if os.environ.get("SIGNALS_TEST_LIFESPAN") == "1":
        await ingestion.aclose()


app = Starlette(
    routes=[
        Route("/ready", ready),
        Route("/track", track),
        Route("/track-later", track_later),
    ],
    lifespan=lifespan,
)
