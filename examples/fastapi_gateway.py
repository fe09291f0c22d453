"""Per-call API billing with the ``UsageMiddleware`` in a FastAPI app.

Billing model
    An API product charges per successful call, and tracks the bytes it sends back (egress)
    for fair-use limits. Failed calls (4xx, 5xx) are recorded but not charged; health checks,
    unauthenticated requests and unknown paths are not billed at all.

How it is built
    - ``app.add_middleware(UsageMiddleware, ...)`` tracks one ``api.call`` event per request
      served, with ``method``, ``route`` (the route template, never the raw path),
      ``statusCode``, ``durationMs``, ``requestBytes`` and ``responseBytes``.
    - The customer comes from ``request.state.customer_id``, set by the app's API-key
      dependency; the resolver runs after the response went out, so it sees it. Requests
      without a customer are skipped; ``exclude=["/health"]`` skips health checks.
    - Meters: ``API calls`` counts calls with ``statusCode < 400``, ``Failed calls`` counts
      the others, ``Egress bytes`` sums ``responseBytes``.
    - The app runs under uvicorn on 127.0.0.1 (a free port); the script calls it with httpx2
      as two customers would, and prints what the client received next to what the server
      billed.

Run it
    pip install fastapi   # besides dodo-ingest[all]
    python examples/fastapi_gateway.py

    Offline: an embedded dev server stands in for the billing API (or set
    DODO_PAYMENTS_BASE_URL to a running ``dodo-ingest dev-server``). It prints ``call`` lines
    (one per request), ``client`` lines (calls and bytes each customer received), then
    ``usage`` lines with the totals the server computed.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterator

import httpx2
from _local import LocalServer, billing_api, print_result, print_usage
from fastapi import Depends, FastAPI, HTTPException, Request
from fastapi.responses import StreamingResponse
from pydantic import BaseModel

from dodo_ingest import DodoClient, FilterCondition, Ingestion, MeterAggregation, MeterFilter
from dodo_ingest.blueprints.api_gateway import UsageMiddleware

API_KEYS = {"key_acme_live_1": "cus_acme", "key_globex_live_7": "cus_globex"}
# (API key or None, method, path, JSON body or None)
CALLS: list[tuple[str | None, str, str, dict[str, object] | None]] = [
    ("key_acme_live_1", "POST", "/v1/projects/prj_1/runs", {"prompt": "nightly import"}),
    ("key_acme_live_1", "GET", "/v1/projects/prj_1/runs", None),
    ("key_acme_live_1", "GET", "/v1/projects/prj_1/runs/run_1", None),
    ("key_acme_live_1", "POST", "/v1/projects/prj_1/runs", {"wrong": "field"}),  # 422
    ("key_globex_live_7", "GET", "/v1/projects/prj_9/runs", None),
    ("key_globex_live_7", "GET", "/v1/reports/usage.csv", None),  # streamed
    (None, "GET", "/v1/projects/prj_1/runs", None),  # 401: no customer, not billed
    ("key_acme_live_1", "GET", "/health", None),  # excluded
    ("key_acme_live_1", "GET", "/v1/unknown", None),  # 404: no route, not billed
]
REPORT_ROWS = 200


class RunRequest(BaseModel):
    prompt: str


def authenticate(request: Request) -> str:
    """The app's own API-key check; it tells the middleware who the customer is."""
    key = request.headers.get("authorization", "").removeprefix("Bearer ")
    customer_id = API_KEYS.get(key)
    if customer_id is None:
        raise HTTPException(status_code=401, detail="invalid API key")
    request.state.customer_id = customer_id
    return customer_id


def create_app(ingestion: Ingestion) -> FastAPI:
    """The customer-facing API, metered by ``UsageMiddleware``."""
    app = FastAPI()
    app.add_middleware(
        UsageMiddleware,
        ingestion=ingestion,
        customer_id=lambda request: getattr(request.state, "customer_id", None),
        event_name="api.call",
        exclude=["/health"],
    )

    @app.get("/health")
    def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.post("/v1/projects/{project_id}/runs", status_code=201)
    def create_run(
        project_id: str, body: RunRequest, customer: str = Depends(authenticate)
    ) -> dict[str, str]:
        return {"id": "run_2", "project_id": project_id, "prompt": body.prompt, "status": "queued"}

    @app.get("/v1/projects/{project_id}/runs")
    def list_runs(project_id: str, customer: str = Depends(authenticate)) -> dict[str, object]:
        return {"items": [{"id": "run_1", "project_id": project_id, "status": "succeeded"}]}

    @app.get("/v1/projects/{project_id}/runs/{run_id}")
    def get_run(
        project_id: str, run_id: str, customer: str = Depends(authenticate)
    ) -> dict[str, str]:
        return {"id": run_id, "project_id": project_id, "status": "succeeded"}

    @app.get("/v1/reports/usage.csv")
    def usage_report(customer: str = Depends(authenticate)) -> StreamingResponse:
        def rows() -> Iterator[bytes]:
            yield b"day,calls\n"
            for day in range(REPORT_ROWS):
                yield f"2026-{day // 28 % 12 + 1:02d}-{day % 28 + 1:02d},{day * 7 % 100}\n".encode()

        return StreamingResponse(rows(), media_type="text/csv")

    return app


def main() -> None:
    with (
        billing_api() as (base_url, api_key),
        DodoClient(api_key=api_key, base_url=base_url) as client,
    ):
        successful = MeterFilter("and", (FilterCondition("statusCode", "less_than", 400),))
        failed = MeterFilter("and", (FilterCondition("statusCode", "greater_than_or_equals", 400),))
        meter_ids = {
            "api-calls": client.meters.create(
                name="API calls",
                event_name="api.call",
                measurement_unit="calls",
                aggregation=MeterAggregation("count"),
                filter=successful,
            ).id,
            "failed-calls": client.meters.create(
                name="Failed calls",
                event_name="api.call",
                measurement_unit="calls",
                aggregation=MeterAggregation("count"),
                filter=failed,
            ).id,
            "egress-bytes": client.meters.create(
                name="Egress bytes",
                event_name="api.call",
                measurement_unit="bytes",
                aggregation=MeterAggregation("sum", "responseBytes"),
            ).id,
        }

        received: dict[str, int] = defaultdict(int)
        calls: dict[str, int] = defaultdict(int)
        with (
            Ingestion(api_key=api_key, base_url=base_url) as ingestion,
            LocalServer(create_app(ingestion)) as app_url,
            httpx2.Client(base_url=app_url) as http,
        ):
            for key, method, path, body in CALLS:
                headers = {"authorization": f"Bearer {key}"} if key else {}
                response = http.request(method, path, json=body, headers=headers)
                print_result("call", method=method, path=path, status=response.status_code)
                customer_id = API_KEYS.get(key or "")
                if customer_id and path != "/health" and response.status_code != 404:
                    calls[customer_id] += 1
                    received[customer_id] += len(response.content)
        # The server stopped first (its requests in flight were tracked), then the Ingestion
        # delivered every event.

        for customer_id in sorted(calls):
            print_result(
                "client",
                customer=customer_id,
                calls=calls[customer_id],
                response_bytes=received[customer_id],
            )
        print_usage(base_url, meter_ids)


if __name__ == "__main__":
    main()
