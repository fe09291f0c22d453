"""``client.webhooks`` against Prism serving the billing API's OpenAPI document.

Prism checks each request against the document's ``/webhooks`` operations (the body of
``POST`` and ``PATCH``, the ``limit`` and ``iterator`` query) and answers with examples of the
documented shapes, which the client's models must read. The document's ``EventType`` enum
lists payment, refund, dispute, subscription and license events only (the SDK added the
``credit.*`` types later), so a filter here uses one of those.

Grants and the ledger (``GET .../grants``, ``.../ledger``) are not in the document; the
dev server tests (tests/client/test_grants_ledger_webhooks.py) and the official SDK's
models cover them.
"""

from __future__ import annotations

import json

import httpx2
import pytest

from dodo_ingest import AsyncDodoClient, DodoClient, UnprocessableEntityError
from dodo_ingest.client import WebhookEndpoint

pytestmark = pytest.mark.contract


def test_webhook_endpoints_match_the_contract(
    client: DodoClient, sent: list[httpx2.Request]
) -> None:
    created = client.webhooks.create(
        "https://hooks.example.com/dodo",
        description="billing alerts",
        filter_types=["subscription.renewed"],
        headers={"x-team": "billing"},
        metadata={"team": "billing"},
        rate_limit=10,
    )
    assert isinstance(created, WebhookEndpoint) and created.id
    listed = list(client.webhooks.list(page_size=10, limit=5))
    assert listed and all(isinstance(endpoint, WebhookEndpoint) for endpoint in listed)
    assert client.webhooks.retrieve("wh_1").url
    patched = client.webhooks.update("wh_1", disabled=True, filter_types=["payment.succeeded"])
    assert isinstance(patched, WebhookEndpoint)
    assert client.webhooks.secret("wh_1")
    client.webhooks.delete("wh_1")
    assert [(r.method, r.url.path) for r in sent] == [
        ("POST", "/webhooks"),
        *[("GET", "/webhooks")] * (len(sent) - 5),
        ("GET", "/webhooks/wh_1"),
        ("PATCH", "/webhooks/wh_1"),
        ("GET", "/webhooks/wh_1/secret"),
        ("DELETE", "/webhooks/wh_1"),
    ]


def test_an_event_type_the_document_does_not_list_is_refused(client: DodoClient) -> None:
    with pytest.raises(UnprocessableEntityError) as refused:
        client.webhooks.create("https://hooks.example.com/dodo", filter_types=["no.such_type"])
    assert "filter_types" in json.dumps(refused.value.body)  # Prism's validation list


@pytest.mark.anyio
async def test_async_webhooks_against_the_contract(prism_url: str) -> None:
    async with AsyncDodoClient("test_contract_key", base_url=prism_url, max_retries=0) as c:
        created = await c.webhooks.create("https://hooks.example.com/async")
        assert created.id
        assert [e async for e in c.webhooks.list(limit=1)]
        assert (await c.webhooks.update(created.id, description="renamed")).id
        assert await c.webhooks.secret(created.id)
        await c.webhooks.delete(created.id)
