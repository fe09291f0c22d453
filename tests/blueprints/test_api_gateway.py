"""UsageMiddleware on real Starlette and FastAPI apps served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Iterator
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, Router

from dodo_ingest.blueprints.api_gateway import UsageMiddleware, track_api_call
from dodo_ingest.client import EventValidationError

from .conftest import RecordingSink, serve_asgi, wait_until


def test_track_api_call(sink: RecordingSink) -> None:
    event_id = track_api_call(sink, "cus_1", {"route": "/v1/x", "statusCode": 200}, "api.call")
    assert sink.events[0].event_id == event_id
    assert sink.events[0].event_name == "api.call"
    assert sink.metadata == [{"route": "/v1/x", "statusCode": 200}]
    with pytest.raises(EventValidationError, match=r"metadata\.nested"):
        track_api_call(sink, "cus_1", {"nested": {"a": 1}})  # type: ignore[dict-item]
    with pytest.raises(EventValidationError, match="customer_id"):
        track_api_call(sink, "")


async def user(request: Request) -> Response:
    return JSONResponse({"user": request.path_params["user_id"]})


async def upload(request: Request) -> Response:
    body = await request.body()
    return PlainTextResponse(f"got {len(body)}", status_code=201)


async def stream(request: Request) -> Response:
    async def chunks() -> AsyncIterator[bytes]:
        for _ in range(4):
            yield b"x" * 1000

    return StreamingResponse(chunks())


async def crash(request: Request) -> Response:
    raise RuntimeError("handler bug")


async def whoami(request: Request) -> Response:
    request.state.customer = request.headers.get("x-api-key", "").removeprefix("key_")
    return PlainTextResponse("ok")


async def item(request: Request) -> Response:
    return PlainTextResponse(request.path_params["item_id"])


def build_app(sink: RecordingSink, **options: Any) -> Starlette:
    app = Starlette(
        routes=[
            Route("/users/{user_id}", user),
            Route("/upload", upload, methods=["POST"]),
            Route("/stream", stream),
            Route("/crash", crash),
            Route("/whoami", whoami),
            Route("/health", lambda request: PlainTextResponse("up")),
            Mount(
                "/orgs/{org}", routes=[Mount("/v2", app=Router([Route("/items/{item_id}", item)]))]
            ),
        ]
    )
    options.setdefault("customer_id", lambda request: request.headers.get("x-customer"))
    app.add_middleware(UsageMiddleware, ingestion=sink, event_name="api.call", **options)
    return app


def usage_middleware(app: Any) -> UsageMiddleware:
    """The UsageMiddleware instance in a Starlette app's built middleware stack."""
    layer = app.middleware_stack
    while not isinstance(layer, UsageMiddleware):
        layer = layer.app
    return layer


@pytest.fixture
def served(sink: RecordingSink) -> Iterator[tuple[httpx2.Client, Starlette]]:
    app = build_app(sink, exclude=["/health"])
    with (
        serve_asgi(app) as url,
        httpx2.Client(base_url=url, headers={"x-customer": "cus_1"}) as client,
    ):
        yield client, app


def test_tracks_route_template_status_and_sizes(
    sink: RecordingSink, served: tuple[httpx2.Client, Starlette]
) -> None:
    client, _ = served
    assert client.get("/users/42").json() == {"user": "42"}
    assert client.post("/upload", content=b"a" * 300).status_code == 201
    assert len(client.get("/stream").content) == 4000
    assert len(sink.wait_for(3)) == 3
    for event in sink.events:
        assert event.customer_id == "cus_1"
        assert event.event_name == "api.call"
    first, second, third = sink.metadata
    assert {k: first[k] for k in ("method", "route", "statusCode", "requestBytes")} == {
        "method": "GET",
        "route": "/users/{user_id}",
        "statusCode": 200,
        "requestBytes": 0,
    }
    assert first["responseBytes"] == len(b'{"user":"42"}')
    assert isinstance(first["durationMs"], float) and 0 < first["durationMs"] < 5000
    assert (second["method"], second["route"], second["statusCode"]) == ("POST", "/upload", 201)
    assert (second["requestBytes"], second["responseBytes"]) == (300, len(b"got 300"))
    assert (third["route"], third["responseBytes"]) == ("/stream", 4000)
    assert set(first) == {
        "method",
        "route",
        "statusCode",
        "durationMs",
        "requestBytes",
        "responseBytes",
    }


def test_mounted_routes_give_the_full_template(
    sink: RecordingSink, served: tuple[httpx2.Client, Starlette]
) -> None:
    client, _ = served
    assert client.get("/orgs/acme/v2/items/9").text == "9"
    sink.wait_for(1)
    assert sink.metadata[0]["route"] == "/orgs/{org}/v2/items/{item_id}"


def test_failing_handler_is_tracked_as_500_and_still_answers(
    sink: RecordingSink, served: tuple[httpx2.Client, Starlette]
) -> None:
    client, _ = served
    assert client.get("/crash").status_code == 500
    sink.wait_for(1)
    assert (sink.metadata[0]["route"], sink.metadata[0]["statusCode"]) == ("/crash", 500)


def test_exclusions_anonymous_and_unmatched_requests(
    sink: RecordingSink, served: tuple[httpx2.Client, Starlette]
) -> None:
    client, _ = served
    assert client.get("/health").text == "up"
    assert client.options("/users/1").status_code == 405
    assert client.get("/no/such/page").status_code == 404
    assert client.get("/users/1", headers={"x-customer": ""}).status_code == 200
    del client.headers["x-customer"]
    assert client.get("/users/1").status_code == 200
    client.headers["x-customer"] = "cus_2"
    client.get("/users/1")  # served after the requests above were settled (one connection)
    assert [e.customer_id for e in sink.wait_for(1)] == ["cus_2"]


def test_tracking_failures_never_fail_the_request(
    sink: RecordingSink,
    served: tuple[httpx2.Client, Starlette],
    caplog: pytest.LogCaptureFixture,
) -> None:
    client, app = served
    sink.fail = RuntimeError("pipeline closed")
    with caplog.at_level(logging.WARNING, logger="dodo_ingest"):
        assert client.get("/users/5").status_code == 200
        assert len(client.get("/stream").content) == 4000
    assert wait_until(lambda: usage_middleware(app).tracking_errors == 2)
    assert "pipeline closed" in caplog.text


def test_async_resolver_reads_state_set_by_the_endpoint(sink: RecordingSink) -> None:
    async def from_state(request: Request) -> str | None:
        return getattr(request.state, "customer", None) or None

    app = build_app(sink, customer_id=from_state, metadata={"plan": "pro"})
    with serve_asgi(app) as url, httpx2.Client(base_url=url) as client:
        assert client.get("/whoami", headers={"x-api-key": "key_cus_77"}).text == "ok"
        assert client.get("/users/3").status_code == 200  # no state: not tracked
    assert [(e.customer_id, (e.metadata or {})["plan"]) for e in sink.events] == [("cus_77", "pro")]


def test_resolver_errors_are_counted(sink: RecordingSink) -> None:
    def broken(request: Request) -> str:
        raise LookupError("key store down")

    app = build_app(sink, customer_id=broken, exclude=lambda request, status: status >= 500)
    with serve_asgi(app) as url, httpx2.Client(base_url=url) as client:
        assert client.get("/users/3").status_code == 200
        assert client.get("/crash").status_code == 500  # excluded by the callable
    assert usage_middleware(app).tracking_errors == 1
    assert sink.events == []


def test_fastapi_router_prefixes_and_path_params(sink: RecordingSink) -> None:
    from fastapi import APIRouter, FastAPI

    api = FastAPI()
    router = APIRouter(prefix="/v1/projects/{project_id}")

    @router.get("/runs/{run_id}")
    async def get_run(project_id: str, run_id: int) -> dict[str, Any]:
        return {"project": project_id, "run": run_id}

    api.include_router(router)
    api.add_middleware(
        UsageMiddleware,
        ingestion=sink,
        customer_id=lambda request: request.headers["authorization"].removeprefix("Bearer "),
        metadata=lambda request: {"region": request.headers.get("x-region", "eu")},
    )
    with serve_asgi(api) as url, httpx2.Client(base_url=url) as client:
        answer = client.get("/v1/projects/p1/runs/12", headers={"authorization": "Bearer cus_f"})
        assert answer.json() == {"project": "p1", "run": 12}
        assert (
            client.get(
                "/v1/projects/p1/runs/abc", headers={"authorization": "Bearer cus_f"}
            ).status_code
            == 422
        )
    routes = [
        (e.customer_id, m["route"], m["statusCode"], m["region"])
        for e, m in zip(sink.events, sink.metadata, strict=True)
    ]
    assert routes == [
        ("cus_f", "/v1/projects/{project_id}/runs/{run_id}", 200, "eu"),
        ("cus_f", "/v1/projects/{project_id}/runs/{run_id}", 422, "eu"),
    ]


def test_prefix_exclusions_methods_and_unmatched_paths(sink: RecordingSink) -> None:
    app = build_app(
        sink, exclude=["/orgs/*"], exclude_methods=["OPTIONS", "POST"], track_unmatched=True
    )
    with serve_asgi(app) as url, httpx2.Client(base_url=url, headers={"x-customer": "c"}) as client:
        assert client.get("/orgs/acme/v2/items/1").status_code == 200  # excluded by prefix
        assert client.post("/upload", content=b"x").status_code == 201  # excluded method
        assert client.get("/no/such/page").status_code == 404  # tracked: raw path
        assert client.get("/users/8").status_code == 200
    routes = [(m["route"], m["statusCode"]) for m in sink.metadata]
    assert routes == [("/no/such/page", 404), ("/users/{user_id}", 200)]
