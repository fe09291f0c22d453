"""Surfaces billed per image or by an API of their own: google-genai image generation
(``generate_images``, ``edit_image``, ``upscale_image``, ``recontext_image``; the installed
SDK serves them on Vertex only) and OpenAI ``decisions`` (real SDKs, HTTP mocked by respx; fixtures checked against the SDKs' models)."""

from __future__ import annotations

import base64
from typing import Any

import groq
import openai
import pytest
import respx
from google import genai
from google.genai import types as genai_types

from dodo_ingest.blueprints.llm import LLMTracker

from . import payloads
from .conftest import PrecheckedSink

PNG = base64.b64encode(b"\x89PNG\r\n\x1a\n fake image").decode()
#: Imagen's ``:predict`` answer: two images, and one withheld by the safety filter.
IMAGEN_PREDICTIONS: dict[str, Any] = {
    "predictions": [
        {"bytesBase64Encoded": PNG, "mimeType": "image/png"},
        {"bytesBase64Encoded": PNG, "mimeType": "image/png"},
        {"raiFilteredReason": "Unable to show generated images. Support code 58061214."},
    ]
}
DECISION: dict[str, Any] = {
    "answers": [{"type": "predicate", "name": "spam", "probability": 0.97}],
    "model": "gpt-6-luna",
    "usage": {
        "input_tokens": 310,
        "input_tokens_details": {"cache_write_tokens": 0, "cached_tokens": 256},
        "output_tokens": 12,
        "output_tokens_details": {"reasoning_tokens": 8},
        "total_tokens": 322,
    },
}
IMAGES_METADATA = {
    "provider": "google_vertex",
    "operation": "generate_images",
    "model": "imagen-4.0-generate-001",
    "imagesGenerated": 2,
    "usageSource": "provider",
}


def test_the_decision_fixture_is_what_the_sdk_declares() -> None:
    decision = openai.types.Decision.model_validate(DECISION)
    assert decision.usage.input_tokens_details.cached_tokens == 256


def _imagen(router: respx.MockRouter, body: dict[str, Any] = IMAGEN_PREDICTIONS) -> None:
    router.post(url__regex=r"/models/imagen-4\.0-generate-001:predict$").respond(200, json=body)


def test_genai_image_generation_is_billed_per_image_returned(
    tracker: LLMTracker, sink: PrecheckedSink
) -> None:
    client = tracker.wrap(genai.Client(vertexai=True, api_key="sk-test"), customer_id="cus_1")
    with respx.mock() as router:
        _imagen(router)
        result = client.models.generate_images(
            model="imagen-4.0-generate-001", prompt="a cat", config={"number_of_images": 3}
        )
        # the fixture as the SDK reads it: two images, one withheld
        assert [bool(i.image and i.image.image_bytes) for i in result.generated_images or ()] == [
            True,
            True,
            False,
        ]
        client.models.generate_images(model="imagen-4.0-generate-001", prompt="a cat")
    first, second = sink.events
    assert first.metadata == IMAGES_METADATA
    assert first.customer_id == "cus_1"
    assert first.event_id != second.event_id  # no response id: one event per response
    assert tracker.track(result, "cus_1") == [first.event_id]  # the same object: once
    assert sink.prechecked == 3


@pytest.mark.anyio
async def test_async_genai_image_generation_is_billed(
    tracker: LLMTracker, sink: PrecheckedSink
) -> None:
    client = tracker.wrap(genai.Client(vertexai=True, api_key="sk-test"), customer_id="cus_1")
    with respx.mock() as router:
        _imagen(router)
        await client.aio.models.generate_images(model="imagen-4.0-generate-001", prompt="a")
    assert sink.only().metadata == IMAGES_METADATA


def test_a_response_whose_images_were_all_withheld_bills_nothing(
    tracker: LLMTracker, sink: PrecheckedSink
) -> None:
    client = tracker.wrap(genai.Client(vertexai=True, api_key="sk-test"), customer_id="cus_1")
    withheld = {"predictions": [{"raiFilteredReason": "filtered"}]}
    with respx.mock() as router:
        _imagen(router, withheld)
        client.models.generate_images(model="imagen-4.0-generate-001", prompt="a cat")
    assert sink.events == []
    assert tracker.stats.failures == 0


@pytest.mark.parametrize(
    ("call", "path", "operation"),
    [
        (
            lambda models: models.edit_image(
                model="imagen-3.0-capability-001",
                prompt="a hat",
                reference_images=[
                    genai_types.RawReferenceImage(
                        reference_id=1, reference_image=genai_types.Image(image_bytes=b"x")
                    )
                ],
            ),
            "imagen-3.0-capability-001:predict",
            "edit_image",
        ),
        (
            lambda models: models.upscale_image(
                model="imagen-4.0-upscale-preview",
                image=genai_types.Image(image_bytes=b"x"),
                upscale_factor="x2",
            ),
            "imagen-4.0-upscale-preview:predict",
            "upscale_image",
        ),
        (
            lambda models: models.recontext_image(
                model="imagen-product-recontext-preview-06-30",
                source=genai_types.RecontextImageSource(
                    prompt="on a beach",
                    product_images=[
                        genai_types.ProductImage(product_image=genai_types.Image(image_bytes=b"x"))
                    ],
                ),
            ),
            "imagen-product-recontext-preview-06-30:predict",
            "recontext_image",
        ),
    ],
    ids=["edit", "upscale", "recontext"],
)
def test_vertex_image_edits_are_billed_per_image(
    call: Any, path: str, operation: str, tracker: LLMTracker, sink: PrecheckedSink
) -> None:
    client = tracker.wrap(genai.Client(vertexai=True, api_key="sk-test"), customer_id="cus_1")
    with respx.mock() as router:
        router.post(url__regex=path.replace(".", r"\.") + "$").respond(200, json=IMAGEN_PREDICTIONS)
        call(client.models)
    metadata = sink.only().metadata
    assert metadata["operation"] == operation
    assert metadata["provider"] == "google_vertex"
    assert metadata["imagesGenerated"] == 2  # the images returned, not the withheld one


def test_openai_decisions_are_billed_by_their_tokens(
    tracker: LLMTracker, sink: PrecheckedSink
) -> None:
    client = tracker.wrap(openai.OpenAI(api_key="sk-test", max_retries=0), customer_id="cus_1")
    with respx.mock() as router:
        router.post("https://api.openai.com/v1/decisions").respond(
            200, json=DECISION, headers={"x-request-id": "req_0d1e2c3i4s5i6o7n8s9a0b1c2d3e4f5a"}
        )
        client.decisions.create(
            model="gpt-6-luna",
            input="Buy cheap watches!!!",
            questions=[{"type": "predicate", "name": "spam", "instructions": "Is it spam?"}],
        )
    assert sink.only().metadata == {
        "provider": "openai",
        "operation": "decisions",
        "model": "gpt-6-luna",
        "inputTokens": 310,
        "outputTokens": 12,
        "totalTokens": 322,
        "cachedInputTokens": 256,
        "cacheCreationInputTokens": 0,
        "reasoningTokens": 8,
        "usageSource": "provider",
    }
    assert payloads.CHAT_ID not in sink.only().event_id  # an id of its own (the request id)


def test_groq_text_to_speech_is_billed_by_its_input_characters(
    tracker: LLMTracker, sink: PrecheckedSink
) -> None:
    client = tracker.wrap(groq.Groq(api_key="gsk-test", max_retries=0), customer_id="cus_1")
    with respx.mock() as router:
        router.post("https://api.groq.com/openai/v1/audio/speech").respond(
            200, content=b"RIFF0000WAVE", headers={"x-request-id": "req_01k2groqspeech000000000000"}
        )
        audio = client.audio.speech.create(
            model="playai-tts", voice="Fritz-PlayAI", input="Twelve chars", response_format="wav"
        )
        assert audio.read() == b"RIFF0000WAVE"
    assert sink.only().metadata == {
        "provider": "groq",
        "operation": "audio.speech",
        "model": "playai-tts",
        "inputCharacters": 12,
        "usageSource": "provider",
    }


def test_openai_image_variations_are_billed_per_image(
    tracker: LLMTracker, sink: PrecheckedSink
) -> None:
    variations = {"created": 1767225600, "data": [{"url": "https://x/1.png"}] * 2}
    assert len(openai.types.ImagesResponse.model_validate(variations).data or ()) == 2
    client = tracker.wrap(openai.OpenAI(api_key="sk-test", max_retries=0), customer_id="cus_1")
    with respx.mock() as router:
        router.post("https://api.openai.com/v1/images/variations").respond(
            200, json=variations, headers={"x-request-id": "req_1f2e3d4c5b6a79881726354453627180"}
        )
        client.images.create_variation(image=("a.png", b"\x89PNG"), model="dall-e-2", n=2)
    assert sink.only().metadata == {
        "provider": "openai",
        "operation": "images",
        "model": "dall-e-2",
        "imagesGenerated": 2,
        "usageSource": "provider",
    }
