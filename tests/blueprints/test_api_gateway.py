"""UsageMiddleware on real Starlette and FastAPI apps served by uvicorn on 127.0.0.1."""

from __future__ import annotations

import logging
import socket
from collections.abc import AsyncIterator, Iterator
from decimal import Decimal
from typing import Any

import httpx2
import pytest
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse
from starlette.routing import Mount, Route, Router

from dodo_ingest import CreditGate, DodoClient, InsufficientCreditsError
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


# --- credit gate refusals: 402/503 answers, not billed -----------------------------------


def gated_app(sink: RecordingSink, gate: CreditGate, **options: Any) -> Starlette:
    """``POST /generate`` reserves 1 credit of the customer (header) through ``gate``;
    ``/stream`` refuses after its response started; ``/ping`` is free."""

    async def generate(request: Request) -> Response:
        customer = request.headers["x-customer"]
        async with gate.areserve(customer, 1) as hold:
            hold.settle(1)
        return JSONResponse({"generated": True})

    async def late_refusal(request: Request) -> Response:
        async def chunks() -> AsyncIterator[bytes]:
            yield b"first chunk"
            raise InsufficientCreditsError(request.headers["x-customer"], Decimal(1), Decimal(0))

        return StreamingResponse(chunks())

    app = Starlette(
        routes=[
            Route("/generate", generate, methods=["POST"]),
            Route("/stream", late_refusal),
            Route("/ping", lambda request: PlainTextResponse("pong")),
        ]
    )
    options.setdefault("customer_id", lambda request: request.headers.get("x-customer"))
    app.add_middleware(UsageMiddleware, ingestion=sink, event_name="api.call", **options)
    return app


@pytest.fixture
def gate_client(dev_server: Any) -> Iterator[DodoClient]:
    with DodoClient(api_key="k", base_url=dev_server.base_url, max_retries=0) as client:
        yield client


def test_a_request_the_gate_refuses_is_answered_402_and_not_billed(
    sink: RecordingSink, gate_client: DodoClient, customer: str
) -> None:
    credits = gate_client.credits.create_entitlement(name="Calls", unit="calls", precision=0).id
    gate_client.credits.create_ledger_entry(credits, customer, amount=2)
    gate = CreditGate(gate_client, credit_entitlement_id=credits, refresh_interval=60)
    app = gated_app(sink, gate)
    with (
        serve_asgi(app) as url,
        httpx2.Client(base_url=url, headers={"x-customer": customer}) as client,
    ):
        statuses = [client.post("/generate").status_code for _ in range(2)]
        refused = client.post("/generate")
        assert client.get("/ping").text == "pong"  # served after the refusal was settled
    assert statuses == [200, 200]
    assert refused.status_code == 402
    assert refused.headers["content-type"] == "application/json"
    assert refused.json() == {
        "error": {
            "code": "insufficient_credits",
            "message": f"customer {customer!r} cannot pay for 1 credit(s): 0 available",
            "customer_id": customer,
            "requested": "1",
            "available": "0",
        }
    }
    # The served calls are billed; the refusal is counted, not tracked.
    sink.wait_for(3)
    assert [(m["route"], m["statusCode"]) for m in sink.metadata] == [
        ("/generate", 200),
        ("/generate", 200),
        ("/ping", 200),
    ]
    middleware = usage_middleware(app)
    assert (middleware.credit_refusals, middleware.tracking_errors) == (1, 0)
    assert gate.stats.refused == 1


def test_an_unreadable_balance_with_deny_is_answered_503_and_not_billed(
    sink: RecordingSink,
) -> None:
    with socket.socket() as probe:  # a port nothing listens on: the balance cannot be read
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with DodoClient(api_key="k", base_url=f"http://127.0.0.1:{port}", max_retries=0) as dead:
        gate = CreditGate(dead, credit_entitlement_id="cent_1", on_unavailable="deny")
        app = gated_app(sink, gate)
        with serve_asgi(app) as url, httpx2.Client(base_url=url) as client:
            answer = client.post("/generate", headers={"x-customer": "cus_503"})
            assert client.get("/ping", headers={"x-customer": "cus_503"}).text == "pong"
    assert answer.status_code == 503
    error = answer.json()["error"]
    assert (error["code"], error["customer_id"]) == ("credit_check_unavailable", "cus_503")
    assert "cannot be read" in error["message"]
    assert usage_middleware(app).credit_refusals == 1
    assert [m["route"] for m in sink.metadata] == ["/ping"]  # the refusal is not billed


def test_a_refusal_after_the_response_started_propagates_and_is_billed(
    sink: RecordingSink, gate_client: DodoClient
) -> None:
    gate = CreditGate(gate_client, credit_entitlement_id="cent_unused")
    app = gated_app(sink, gate)
    with (
        serve_asgi(app) as url,
        httpx2.Client(base_url=url, headers={"x-customer": "cus_late"}) as client,
        pytest.raises(httpx2.HTTPError),  # the stream breaks off: its status was sent
    ):
        client.get("/stream").read()
    assert [e.customer_id for e in sink.wait_for(1)] == ["cus_late"]
    assert (sink.metadata[0]["statusCode"], sink.metadata[0]["responseBytes"]) == (
        200,
        len(b"first chunk"),
    )
    assert usage_middleware(app).credit_refusals == 0


def test_fastapi_endpoint_refused_by_the_gate(sink: RecordingSink) -> None:
    from fastapi import FastAPI

    api = FastAPI()

    @api.post("/v1/images")
    async def images() -> dict[str, Any]:
        raise InsufficientCreditsError("cus_f", Decimal("2.5"), Decimal("-1"))

    @api.get("/v1/ok")
    async def ok() -> dict[str, Any]:
        return {"ok": True}

    api.add_middleware(UsageMiddleware, ingestion=sink, customer_id=lambda request: "cus_f")
    with serve_asgi(api) as url, httpx2.Client(base_url=url) as client:
        refused = client.post("/v1/images")
        assert client.get("/v1/ok").json() == {"ok": True}
    assert refused.status_code == 402
    assert refused.json()["error"]["requested"] == "2.5"
    assert refused.json()["error"]["available"] == "0"  # never negative in the body
    sink.wait_for(1)
    assert [m["route"] for m in sink.metadata] == ["/v1/ok"]
