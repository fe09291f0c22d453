"""UsageMiddleware and track_api_call through the real delivery pipeline to the dev server,
the app served by uvicorn on 127.0.0.1."""

from __future__ import annotations

from typing import Any

import httpx2
from fastapi import FastAPI

from dodo_ingest.blueprints.api_gateway import UsageMiddleware, track_api_call

from .conftest import delivered, serve_asgi


def test_track_api_call_is_stored(ingestion: Any, dev_server: Any, customer: str) -> None:
    event_id = track_api_call(
        ingestion, customer, {"route": "/v1/chat", "method": "POST"}, "api.call", event_id="call-1"
    )
    [event] = delivered(ingestion, dev_server, customer)
    assert (event.event_id, event.event_name) == (event_id, "api.call") == ("call-1", "api.call")
    assert event.metadata == {"route": "/v1/chat", "method": "POST"}


def test_middleware_events_are_stored(ingestion: Any, dev_server: Any, customer: str) -> None:
    api = FastAPI()

    @api.get("/v1/images/{image_id}")
    async def image(image_id: str) -> dict[str, str]:
        return {"id": image_id}

    @api.post("/v1/images")
    async def create(body: dict[str, Any]) -> dict[str, Any]:
        return {"created": True, **body}

    @api.get("/healthz")
    async def health() -> str:
        return "ok"

    api.add_middleware(
        UsageMiddleware,
        ingestion=ingestion,
        customer_id=lambda request: request.headers.get("x-customer"),
        event_name="api.request",
        metadata={"service": "images"},
        exclude=["/healthz"],
    )
    with serve_asgi(api) as url, httpx2.Client(base_url=url, headers={"x-customer": customer}) as c:
        assert c.get("/v1/images/img_123").json() == {"id": "img_123"}
        assert c.post("/v1/images", json={"n": 2}).json() == {"created": True, "n": 2}
        assert c.get("/healthz").status_code == 200
        assert c.get("/v1/images/img_456", headers={"x-customer": ""}).status_code == 200
    events = delivered(ingestion, dev_server, customer)
    assert len(events) == 2
    assert {e.event_name for e in events} == {"api.request"}
    metas = sorted((dict(e.metadata) for e in events), key=lambda m: m["method"])
    for meta in metas:
        assert 0 < meta.pop("durationMs") < 5000
    assert metas == [
        {
            "method": "GET",
            "route": "/v1/images/{image_id}",
            "statusCode": 200,
            "requestBytes": 0,
            "responseBytes": len(b'{"id":"img_123"}'),
            "service": "images",
        },
        {
            "method": "POST",
            "route": "/v1/images",
            "statusCode": 200,
            "requestBytes": len(b'{"n":2}'),
            "responseBytes": len(b'{"created":true,"n":2}'),
            "service": "images",
        },
    ]
