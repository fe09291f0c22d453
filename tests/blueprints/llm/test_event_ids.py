"""Event ids: unique per call when the provider's id is not known to be unique, stable for the
same response object (real SDKs, HTTP mocked by respx)."""

from __future__ import annotations

import gc
import itertools
import threading
from typing import Any

import anthropic
import httpx2
import openai
import pytest
import respx
from google import genai

from dodo_ingest.blueprints.llm import LLMTracker
from dodo_ingest.blueprints.llm._event_ids import object_key, trusted_response_id

from . import payloads
from .conftest import RecordingSink

MESSAGES: Any = [{"role": "user", "content": "hi"}]
OLLAMA = "http://127.0.0.1:11434/v1"
SECOND = 1767225600


@pytest.mark.parametrize(
    ("response_id", "trusted"),
    [
        (payloads.CHAT_ID, True),  # OpenAI / Azure chatcmpl-<29 base62>
        (payloads.RESP_ID, True),  # Responses resp_<hex>
        (payloads.MSG_ID, True),  # Anthropic msg_01<22+>
        (payloads.GEMINI_ID, True),  # Gemini responseId
        ("mHTsaNOzGYWLz7IPq-KE8Ao", True),  # Gemini ids may hold - and _
        (payloads.GROQ_ID, True),  # Groq: chatcmpl-<uuid>
        ("chatcmpl-8f4e5a7c0b9d4e1f9a3b2c1d0e9f8a7b", True),  # vLLM
        ("8448b3f0d2a5d2a1-ORD", True),  # Together
        (payloads.EMBEDDINGS_REQUEST_ID, True),  # x-request-id req_<32 hex>
        ("chatcmpl-0", False),  # Ollama: chatcmpl-<0..998>
        ("chatcmpl-998", False),
        ("msg_1", False),
        ("cmpl-Lg7Ha2Wq", False),
        ("chatcmpl-1767225600123456789", False),  # a nanosecond timestamp
        ("req_1", False),
        ("", False),
    ],
)
def test_which_response_ids_are_trusted_as_unique(response_id: str, trusted: bool) -> None:
    assert trusted_response_id(response_id) is trusted


def _ollama(tracker: LLMTracker) -> openai.OpenAI:
    return tracker.wrap(openai.OpenAI(api_key="ollama", base_url=OLLAMA, max_retries=0), "cus_1")


def test_ollama_ids_reused_in_the_same_second_give_each_call_its_own_event(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    """Regression: ``chatcmpl-<0..998>`` with a whole-second ``created`` used to collide."""
    client = _ollama(tracker)
    ids = itertools.cycle([7, 7, 998, 7])
    with respx.mock() as router:
        router.post(url__regex=r"/chat/completions$").mock(
            side_effect=lambda request: payloads.json_response(
                payloads.chat_completion(id=f"chatcmpl-{next(ids)}", created=SECOND)
            )
        )
        responses = [client.chat.completions.create(model="llama3", messages=MESSAGES)]
        responses += [
            client.chat.completions.create(model="llama3", messages=MESSAGES) for _ in range(39)
        ]
    event_ids = [event.event_id for event in sink.events]
    assert len(event_ids) == 40
    assert len(set(event_ids)) == 40
    # the same response object billed again keeps its id: by hand, twice, by another tracker
    assert tracker.track(responses[0], customer_id="cus_1") == [event_ids[0]]
    assert tracker.track(responses[0], customer_id="cus_1") == [event_ids[0]]
    other = LLMTracker(RecordingSink())
    assert other.track(responses[1], customer_id="cus_1") == [event_ids[1]]
    assert tracker.stats.events == 42


def test_trusted_ids_still_give_the_same_event_for_different_objects(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    """A unique provider id is enough: a deserialised copy of the response (replayed from a
    log) bills nothing twice."""
    client = _ollama(tracker)
    with respx.mock() as router:
        router.post(url__regex=r"/chat/completions$").respond(
            200, json=payloads.chat_completion(created=SECOND)
        )
        completion = client.chat.completions.create(model="llama3", messages=MESSAGES)
    replayed = openai.types.chat.ChatCompletion.model_validate_json(completion.model_dump_json())
    assert tracker.track(replayed, customer_id="cus_1") == [sink.events[0].event_id]


def _ollama_stream(request: httpx2.Request) -> httpx2.Response:
    chunks = payloads.chat_chunks(with_usage=True)
    for chunk in chunks:
        if isinstance(chunk, dict):
            chunk["id"] = "chatcmpl-42"
            chunk["created"] = SECOND
    return payloads.sse_response(chunks)


def test_streams_with_reused_ids_get_their_own_events(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    client = _ollama(tracker)
    with respx.mock() as router:
        router.post(url__regex=r"/chat/completions$").mock(side_effect=_ollama_stream)
        for _ in range(3):
            for _chunk in client.chat.completions.create(
                model="llama3", messages=MESSAGES, stream=True
            ):
                pass
    assert len(sink.events) == 3
    assert len({event.event_id for event in sink.events}) == 3
    assert all(event.metadata["inputTokens"] == 19 for event in sink.events)


def test_anthropic_compatible_server_with_short_ids(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    client = tracker.wrap(
        anthropic.Anthropic(api_key="k", base_url="http://127.0.0.1:9", max_retries=0), "cus_1"
    )
    with respx.mock() as router:
        router.post(url__regex=r"/v1/messages$").respond(
            200, json={**payloads.anthropic_message(), "id": "msg_1"}
        )
        first = client.messages.create(model="c", max_tokens=5, messages=MESSAGES)
        client.messages.create(model="c", max_tokens=5, messages=MESSAGES)
    one, two = sink.events
    assert one.event_id != two.event_id
    assert tracker.track(first, customer_id="cus_1") == [one.event_id]


def test_gemini_compatible_short_response_ids(tracker: LLMTracker, sink: RecordingSink) -> None:
    client = genai.Client(api_key="k")
    tracker.wrap(client, customer_id="cus_1")
    with respx.mock() as router:
        router.post(url__regex=r":generateContent$").mock(
            side_effect=lambda request: payloads.json_response(
                payloads.gemini_response(response_id="r1")
            )
        )
        first = client.models.generate_content(model=payloads.GEMINI, contents="hi")
        client.models.generate_content(model=payloads.GEMINI, contents="hi")
    one, two = sink.events
    assert one.event_id != two.event_id
    assert tracker.track(first, customer_id="cus_1") == [one.event_id]


def test_object_keys_are_per_object_thread_safe_and_forgotten() -> None:
    class Response:
        pass

    shared = Response()
    seen: list[str] = []

    def read() -> None:
        seen.extend(object_key(shared) for _ in range(200))

    threads = [threading.Thread(target=read) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(set(seen)) == 1
    assert object_key(Response()) != seen[0]
    from dodo_ingest.blueprints.llm import _event_ids

    before = len(_event_ids._keys)
    objects = [Response() for _ in range(50)]
    for obj in objects:
        object_key(obj)
    assert len(_event_ids._keys) == before + 50
    del objects, obj
    gc.collect()
    assert len(_event_ids._keys) == before
    # objects that cannot be weakly referenced still get a key (unique per call)
    assert object_key(1) != object_key(1)


def test_a_server_sending_numeric_ids_is_still_billed_once_per_call(
    tracker: LLMTracker, sink: RecordingSink
) -> None:
    client = tracker.wrap(
        anthropic.Anthropic(api_key="k", base_url="http://127.0.0.1:9", max_retries=0), "cus_1"
    )
    with respx.mock() as router:
        router.post(url__regex=r"/v1/messages$").respond(
            200, json={**payloads.anthropic_message(), "id": 7}
        )
        first = client.messages.create(model="c", max_tokens=5, messages=MESSAGES)
        client.messages.create(model="c", max_tokens=5, messages=MESSAGES)
    one, two = sink.events
    assert one.event_id != two.event_id
    assert tracker.track(first, customer_id="cus_1") == [one.event_id]
    assert tracker.stats.failures == 0
