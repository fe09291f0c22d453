"""Only a 2xx JSON object with an integer ``ingested_count`` >= 0 acknowledges an ingest."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest
import respx

from dodo_ingest import APIConnectionError, AsyncDodoClient, DodoClient, EventInput
from dodo_ingest.client import UnexpectedResponseError
from dodo_ingest.client._retry import is_retryable, is_safe_to_resend
from tests.client.conftest import BASE

KEY = "sk_test_ACK_0123456789abcdefghijkl"
EVENTS = [EventInput("evt_1", "cus_1", "api.call")]
BODY = b'{"events":[{"event_id":"evt_1","customer_id":"cus_1","event_name":"api.call"}]}'

NOT_ACKNOWLEDGEMENTS = {
    "204-empty": httpx2.Response(204),
    "202-empty": httpx2.Response(202),
    "202-text": httpx2.Response(202, text="accepted"),
    "200-empty": httpx2.Response(200),
    "200-html": httpx2.Response(200, html="<html><body>Sign in to the proxy</body></html>"),
    "200-truncated": httpx2.Response(200, text='{"ingested_count": 1'),
    "200-empty-object": httpx2.Response(200, json={}),
    "200-other-json": httpx2.Response(200, json={"status": "queued"}),
    "200-null": httpx2.Response(200, json=None),
    "200-array": httpx2.Response(200, json=[{"ingested_count": 1}]),
    "200-count-string": httpx2.Response(200, json={"ingested_count": "1"}),
    "200-count-bool": httpx2.Response(200, json={"ingested_count": True}),
    "200-count-float": httpx2.Response(200, json={"ingested_count": 1.0}),
    "200-count-null": httpx2.Response(200, json={"ingested_count": None}),
    "200-count-negative": httpx2.Response(200, json={"ingested_count": -1}),
    "200-not-utf8": httpx2.Response(200, content=b"\xff\xfe{", headers={"content-type": "x"}),
}


@pytest.fixture
def client() -> Iterator[DodoClient]:
    with DodoClient(KEY, base_url=BASE) as c:
        c._sleep = lambda _delay: None
        yield c


@pytest.mark.parametrize("answer", NOT_ACKNOWLEDGEMENTS.values(), ids=NOT_ACKNOWLEDGEMENTS.keys())
def test_a_2xx_that_is_not_an_acknowledgement_is_retried_then_raised(
    client: DodoClient, api: respx.MockRouter, answer: httpx2.Response
) -> None:
    route = api.post("/events/ingest").mock(return_value=answer)
    with pytest.raises(UnexpectedResponseError) as info:
        client.events.ingest(EVENTS)
    assert route.call_count == 3  # retried like a lost answer: event ids make resending safe
    error = info.value
    assert isinstance(error, APIConnectionError)
    assert error.status_code == answer.status_code
    assert error.request_sent is True
    assert "not an acknowledgement" in str(error)
    with pytest.raises(UnexpectedResponseError):
        client.events.ingest_json(BODY)


@pytest.mark.anyio
@pytest.mark.parametrize("name", ["204-empty", "200-html", "200-count-bool"])
async def test_the_async_client_is_as_strict(api: respx.MockRouter, name: str) -> None:
    route = api.post("/events/ingest").mock(return_value=NOT_ACKNOWLEDGEMENTS[name])

    async def no_wait(_delay: float) -> None:
        return None

    async with AsyncDodoClient(KEY, base_url=BASE) as client:
        client._sleep = no_wait
        with pytest.raises(UnexpectedResponseError):
            await client.events.ingest(EVENTS)
        with pytest.raises(UnexpectedResponseError):
            await client.events.ingest_json(BODY)
    assert route.call_count == 6


@pytest.mark.parametrize(
    ("answer", "count"),
    [
        (httpx2.Response(200, json={"ingested_count": 0}), 0),
        (httpx2.Response(201, json={"ingested_count": 3, "extra": "ignored"}), 3),
        (httpx2.Response(202, json={"ingested_count": 10**20}), 10**20),
    ],
)
def test_an_acknowledgement_is_a_json_object_with_an_integer_count(
    client: DodoClient, api: respx.MockRouter, answer: httpx2.Response, count: int
) -> None:
    route = api.post("/events/ingest").mock(return_value=answer)
    assert client.events.ingest(EVENTS).ingested_count == count
    assert client.events.ingest_json(BODY).ingested_count == count
    assert route.call_count == 2


def test_a_proxy_page_then_a_real_answer_is_acknowledged_once(
    client: DodoClient, api: respx.MockRouter
) -> None:
    route = api.post("/events/ingest").mock(
        side_effect=[
            httpx2.Response(200, html="<html>gateway warming up</html>"),
            httpx2.Response(200, json={"ingested_count": 1}),
        ]
    )
    assert client.events.ingest(EVENTS).ingested_count == 1
    assert route.call_count == 2
    assert route.calls[0].request.content == route.calls[1].request.content


def test_the_error_carries_a_bounded_redacted_excerpt_and_the_request_id(
    client: DodoClient, api: respx.MockRouter
) -> None:
    page = "<html>\n  <p>echo: Bearer " + KEY + "</p>\n" + "x" * 10_000 + "</html>"
    api.post("/events/ingest").respond(200, html=page, headers={"x-request-id": f"r1 {KEY}"})
    with pytest.raises(UnexpectedResponseError) as info:
        client.with_options(max_retries=0).events.ingest(EVENTS)
    error = info.value
    assert error.request_id == "r1 ***"
    assert error.body_excerpt.startswith("<html> <p>echo: Bearer ***</p> xxx")
    assert len(error.body_excerpt) <= 203
    texts = [str(error), repr(error), repr(error.args), *map(repr, vars(error).values())]
    assert all(KEY not in text and KEY[:12] not in text for text in texts)
    assert "request id r1 ***" in str(error)


def test_a_body_cut_short_in_the_middle_of_an_echoed_key_leaves_no_piece(
    client: DodoClient, api: respx.MockRouter
) -> None:
    api.post("/events/ingest").respond(200, text=f'{{"authorization": "Bearer {KEY[:-4]}\n')
    with pytest.raises(UnexpectedResponseError) as info:
        client.with_options(max_retries=0).events.ingest(EVENTS)
    assert info.value.body_excerpt == '{"authorization": "Bearer ***'
    assert KEY[:-4] not in str(info.value)


def test_the_error_is_retryable_but_not_safe_for_calls_that_create_things() -> None:
    error = UnexpectedResponseError("x", status_code=200)
    assert is_retryable(error)
    assert not is_safe_to_resend(error)


def test_other_endpoints_keep_accepting_an_empty_2xx(
    client: DodoClient, api: respx.MockRouter
) -> None:
    archive = api.delete("/meters/mtr_1").respond(204)
    unarchive = api.post("/meters/mtr_1/unarchive").respond(200, html="<html>ok</html>")
    client.meters.archive("mtr_1")
    client.meters.unarchive("mtr_1")
    assert (archive.call_count, unarchive.call_count) == (1, 1)
