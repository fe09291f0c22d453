"""The API key never leaks into an error the client builds, whatever the server echoes."""

from __future__ import annotations

from collections.abc import Iterator

import httpx2
import pytest
import respx

from dodo_ingest import APIConnectionError, APIStatusError, AsyncDodoClient, DodoClient, EventInput
from tests.client.conftest import BASE

KEY = "sk_test_ECHOED_0123456789abcdefghij"


def _leaks(error: BaseException) -> list[str]:
    """Every place of ``error`` that holds the key (or a long piece of it)."""
    piece = KEY[: len(KEY) // 2]
    places = {"str": str(error), "repr": repr(error), "args": repr(error.args)}
    places.update({f".{name}": repr(value) for name, value in vars(error).items()})
    places.update(cause=repr(error.__cause__), context=repr(error.__context__))
    return [where for where, text in places.items() if KEY in text or piece in text]


def _echo(status: int) -> object:
    """A server that echoes the Authorization header everywhere it can."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        auth = request.headers["authorization"]
        return httpx2.Response(
            status,
            headers={"x-request-id": f"req_1 {auth}", "sl-violations": auth},
            json={"message": f"bad header {auth}", "detail": {"authorization": auth}},
        )

    return answer


@pytest.fixture
def client() -> Iterator[DodoClient]:
    with DodoClient(KEY, base_url=BASE, max_retries=0) as c:
        yield c


@pytest.mark.parametrize("status", [400, 401, 429, 503])
def test_a_key_echoed_in_the_request_id_and_message_is_redacted(
    client: DodoClient, api: respx.MockRouter, status: int
) -> None:
    api.post("/events/ingest").mock(side_effect=_echo(status))
    with pytest.raises(APIStatusError) as info:
        client.events.ingest([EventInput("e", "c", "n")])
    error = info.value
    assert _leaks(error) == []
    assert error.request_id == "req_1 Bearer ***"
    assert "bad header Bearer ***" in error.message


@pytest.mark.anyio
async def test_the_async_client_redacts_the_request_id_too(api: respx.MockRouter) -> None:
    api.get("/events/e").mock(side_effect=_echo(404))
    async with AsyncDodoClient(KEY, base_url=BASE, max_retries=0) as client:
        with pytest.raises(APIStatusError) as info:
            await client.events.retrieve("e")
    assert _leaks(info.value) == []
    assert info.value.request_id == "req_1 Bearer ***"


def test_a_key_cut_by_the_message_length_limit_leaves_no_piece(
    client: DodoClient, api: respx.MockRouter
) -> None:
    # The text is cut to 500 characters; the key straddles that limit.
    text = "x" * (500 - len(KEY) // 2) + KEY + " tail"
    api.get("/events/e").respond(500, text=text)
    with pytest.raises(APIStatusError) as info:
        client.events.retrieve("e")
    assert _leaks(info.value) == []
    assert info.value.message.startswith("xxx")


def test_a_key_cut_short_by_the_server_leaves_no_piece(
    client: DodoClient, api: respx.MockRouter
) -> None:
    truncated = f"upstream said: Bearer {KEY[:-3]}"
    api.get("/events/e").respond(502, text=truncated, headers={"x-request-id": KEY[:-1]})
    with pytest.raises(APIStatusError) as info:
        client.events.retrieve("e")
    assert _leaks(info.value) == []
    assert info.value.message == "upstream said: Bearer ***"
    assert info.value.request_id == "***"


def test_a_transport_error_mentioning_the_key_is_redacted(
    client: DodoClient, api: respx.MockRouter
) -> None:
    api.get("/events/e").mock(side_effect=httpx2.RemoteProtocolError(f"bad line Bearer {KEY}"))
    with pytest.raises(APIConnectionError) as info:
        client.events.retrieve("e")
    assert _leaks(info.value) == []
    assert "Bearer ***" in str(info.value)
