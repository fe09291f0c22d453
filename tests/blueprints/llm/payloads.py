"""Provider payloads shaped like the real APIs' (as parsed by the installed SDKs).

Numbers are chosen so that every normalisation rule shows in the expected metadata.
"""

from __future__ import annotations

import json
from typing import Any

import httpx2

CHAT_ID = "chatcmpl-Dq81pVx3KsW0bNe4Tj7YhA2mZcLo"
RESP_ID = "resp_7e1d2c3b4a5968778695a4b3c2d1e0f1"
MSG_ID = "msg_01Ab3Cd5Ef7Gh9Ij1Kl3Mn5Op"
GEMINI_ID = "pQ3uZcK9Dd2Ry8IP7nWv1Aa"
COMPLETION_ID = "cmpl-Lg7Ha2WqX3rT9vB1nM5kP8sD"
EMBEDDINGS_REQUEST_ID = "req_5f1c0c2a9d3b4e8fa7b6c5d4e3f2a1b0"
OPENAI_MODEL = "gpt-5.4-mini-2026-03-17"
CLAUDE = "claude-sonnet-4-6"
GEMINI = "gemini-2.5-flash"


def json_response(body: dict[str, Any], headers: dict[str, str] | None = None) -> httpx2.Response:
    return httpx2.Response(200, json=body, headers=headers or {})


def sse_response(
    frames: list[dict[str, Any] | str],
    *,
    named: bool = False,
    headers: dict[str, str] | None = None,
) -> httpx2.Response:
    """A text/event-stream body; ``named`` adds ``event:`` lines from each frame's ``type``."""
    parts = []
    for frame in frames:
        if isinstance(frame, str):
            parts.append(f"data: {frame}\n\n")
        elif named:
            parts.append(f"event: {frame['type']}\ndata: {json.dumps(frame)}\n\n")
        else:
            parts.append(f"data: {json.dumps(frame)}\n\n")
    return httpx2.Response(
        200,
        content="".join(parts).encode(),
        headers={"content-type": "text/event-stream", **(headers or {})},
    )


# --------------------------------------------------------------------------- OpenAI
CHAT_USAGE = {
    "prompt_tokens": 1117,
    "completion_tokens": 46,
    "total_tokens": 1163,
    "prompt_tokens_details": {"cached_tokens": 1024, "audio_tokens": 0},
    "completion_tokens_details": {
        "reasoning_tokens": 32,
        "audio_tokens": 0,
        "accepted_prediction_tokens": 0,
        "rejected_prediction_tokens": 0,
    },
}
CHAT_METADATA = {
    "usageSource": "provider",
    "serviceTier": "default",
    "provider": "openai",
    "operation": "chat.completions",
    "model": OPENAI_MODEL,
    "inputTokens": 1117,
    "outputTokens": 46,
    "totalTokens": 1163,
    "cachedInputTokens": 1024,
    "reasoningTokens": 32,
}


def chat_completion(usage: dict[str, Any] | None = None, **extra: Any) -> dict[str, Any]:
    body = {
        "id": CHAT_ID,
        "object": "chat.completion",
        "created": 1767225600,
        "model": OPENAI_MODEL,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": '{"answer": "Hello"}', "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": usage or CHAT_USAGE,
        "service_tier": "default",
        "system_fingerprint": "fp_1a2b3c4d5e",
    }
    body.update(extra)
    return body


STREAM_USAGE = {
    "prompt_tokens": 19,
    "completion_tokens": 3,
    "total_tokens": 22,
    "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
    "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
}
STREAM_METADATA = {
    "usageSource": "provider",
    "provider": "openai",
    "operation": "chat.completions",
    "model": OPENAI_MODEL,
    "inputTokens": 19,
    "outputTokens": 3,
    "totalTokens": 22,
    "cachedInputTokens": 0,
    "reasoningTokens": 0,
}


def _chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict[str, Any]:
    chunk = {
        "id": CHAT_ID,
        "object": "chat.completion.chunk",
        "created": 1767225601,
        "model": OPENAI_MODEL,
        "system_fingerprint": "fp_1a2b3c4d5e",
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}],
    }
    chunk.update(extra)
    return chunk


def chat_chunks(*, with_usage: bool) -> list[dict[str, Any] | str]:
    """Chat stream frames; with the usage-only chunk when ``with_usage``."""
    extra = {"usage": None} if with_usage else {}
    frames: list[dict[str, Any] | str] = [
        _chunk({"role": "assistant", "content": ""}, **extra),
        _chunk({"content": "Hello"}, **extra),
        _chunk({"content": " there!"}, **extra),
        _chunk({}, "stop", **extra),
    ]
    if with_usage:
        usage_chunk = _chunk({}, usage=STREAM_USAGE)
        usage_chunk["choices"] = []
        frames.append(usage_chunk)
    frames.append("[DONE]")
    return frames


def chat_stream_for(request: httpx2.Request) -> httpx2.Response:
    """Answer like the API: usage chunk only when the request asked for it."""
    body = json.loads(request.content)
    with_usage = bool((body.get("stream_options") or {}).get("include_usage"))
    if not body.get("stream"):
        return json_response(chat_completion(), {"x-request-id": "req_chat"})
    return sse_response(chat_chunks(with_usage=with_usage), headers={"x-request-id": "req_s"})


def completion_for(request: httpx2.Request) -> httpx2.Response:
    body = json.loads(request.content)
    base = {"id": COMPLETION_ID, "object": "text_completion", "created": 1, "model": "gpt-3.5"}
    if not body.get("stream"):
        choice = {"index": 0, "text": "Hi", "finish_reason": "stop", "logprobs": None}
        usage = {"prompt_tokens": 5, "completion_tokens": 2, "total_tokens": 7}
        return json_response({**base, "choices": [choice], "usage": usage})
    frames: list[dict[str, Any] | str] = [
        {**base, "choices": [{"index": 0, "text": "Hi", "finish_reason": None, "logprobs": None}]},
        {**base, "choices": [{"index": 0, "text": "", "finish_reason": "stop", "logprobs": None}]},
    ]
    if (body.get("stream_options") or {}).get("include_usage"):
        frames.append(
            {**base, "choices": [], "usage": {"prompt_tokens": 5, "completion_tokens": 2}}
        )
    frames.append("[DONE]")
    return sse_response(frames)


RESPONSES_USAGE = {
    "input_tokens": 2048,
    "input_tokens_details": {"cached_tokens": 1536, "cache_write_tokens": 0},
    "output_tokens": 300,
    "output_tokens_details": {"reasoning_tokens": 256},
    "total_tokens": 2348,
}
RESPONSES_METADATA = {
    "usageSource": "provider",
    "provider": "openai",
    "operation": "responses",
    "model": OPENAI_MODEL,
    "inputTokens": 2048,
    "outputTokens": 300,
    "totalTokens": 2348,
    "cachedInputTokens": 1536,
    "cacheCreationInputTokens": 0,
    "reasoningTokens": 256,
}


def response_object(
    status: str = "completed", usage: dict[str, Any] | None = None
) -> dict[str, Any]:
    return {
        "id": RESP_ID,
        "object": "response",
        "created_at": 1767225700,
        "status": status,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "model": OPENAI_MODEL,
        "output": []
        if status in ("in_progress", "queued")
        else [
            {
                "id": "msg_r1",
                "type": "message",
                "status": "completed",
                "role": "assistant",
                "content": [
                    {
                        "type": "output_text",
                        "text": '{"answer": "Hello"}',
                        "annotations": [],
                        "logprobs": [],
                    }
                ],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": usage,
        "metadata": {},
    }


def responses_events(*, terminal: str = "response.completed") -> list[dict[str, Any] | str]:
    started = response_object("in_progress")
    text_part = {"type": "output_text", "text": "", "annotations": [], "logprobs": []}
    frames: list[dict[str, Any] | str] = [
        {"type": "response.created", "sequence_number": 0, "response": started},
        {"type": "response.in_progress", "sequence_number": 1, "response": started},
        {
            "type": "response.output_item.added",
            "sequence_number": 2,
            "output_index": 0,
            "item": {
                "id": "msg_r1",
                "type": "message",
                "status": "in_progress",
                "role": "assistant",
                "content": [],
            },
        },
        {
            "type": "response.content_part.added",
            "sequence_number": 3,
            "item_id": "msg_r1",
            "output_index": 0,
            "content_index": 0,
            "part": text_part,
        },
        {
            "type": "response.output_text.delta",
            "sequence_number": 4,
            "item_id": "msg_r1",
            "output_index": 0,
            "content_index": 0,
            "delta": '{"answer": "Hello"}',
            "logprobs": [],
        },
    ]
    frames.append(
        {
            "type": terminal,
            "sequence_number": 5,
            "response": response_object(terminal.split(".")[1], RESPONSES_USAGE),
        }
    )
    return frames


def responses_for(request: httpx2.Request) -> httpx2.Response:
    body = json.loads(request.content)
    if body.get("stream"):
        return sse_response(responses_events(), named=True)
    return json_response(response_object("completed", RESPONSES_USAGE), {"x-request-id": "r1"})


EMBEDDINGS = {
    "object": "list",
    "data": [{"object": "embedding", "index": 0, "embedding": "AAAAPgAAgL4AAAA/AACAPw=="}],
    "model": "text-embedding-3-small",
    "usage": {"prompt_tokens": 8, "total_tokens": 8},
}

IMAGES = {
    "created": 1767225800,
    "data": [{"b64_json": "aGVsbG8="}],
    "usage": {
        "input_tokens": 50,
        "input_tokens_details": {"image_tokens": 40, "text_tokens": 10},
        "output_tokens": 4160,
        "total_tokens": 4210,
    },
}

TRANSCRIPTION = {
    "text": "Hello there.",
    "usage": {
        "type": "tokens",
        "input_tokens": 14,
        "input_token_details": {"audio_tokens": 14, "text_tokens": 0},
        "output_tokens": 4,
        "total_tokens": 18,
    },
}

OPENROUTER = {
    "id": "gen-1767225800-QrStUvWxYz012345",
    "provider": "Anthropic",
    "model": "anthropic/claude-sonnet-4.6",
    "object": "chat.completion",
    "created": 1767225800,
    "choices": [
        {
            "index": 0,
            "finish_reason": "stop",
            "message": {"role": "assistant", "content": "Hi!", "refusal": None},
            "logprobs": None,
        }
    ],
    "usage": {
        "prompt_tokens": 194,
        "completion_tokens": 2,
        "total_tokens": 196,
        "cost": 0.000612,
        "is_byok": False,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 100},
        "completion_tokens_details": {"reasoning_tokens": 0},
    },
}

GROQ_ID = "chatcmpl-5e6f7a8b-1c2d-4e3f-9a0b-c1d2e3f4a5b6"
GROQ_CREATED = 1767225900
GROQ_MODEL = "llama-3.3-70b-versatile"


def groq_chunks() -> list[dict[str, Any] | str]:
    base = {
        "id": GROQ_ID,
        "object": "chat.completion.chunk",
        "created": GROQ_CREATED,
        "model": GROQ_MODEL,
        "system_fingerprint": "fp_9a8b7c6d5e",
    }

    def choice(delta: dict[str, Any], finish: str | None = None) -> list[dict[str, Any]]:
        return [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]

    return [
        {**base, "choices": choice({"role": "assistant", "content": ""}), "x_groq": {"id": "r"}},
        {**base, "choices": choice({"content": "Hello there!"})},
        {
            **base,
            "choices": choice({}, "stop"),
            "x_groq": {
                "id": "req_01kgroq",
                "usage": {
                    "queue_time": 0.02,
                    "prompt_tokens": 41,
                    "prompt_time": 0.002,
                    "completion_tokens": 3,
                    "completion_time": 0.006,
                    "total_tokens": 44,
                    "total_time": 0.008,
                },
            },
        },
        "[DONE]",
    ]


# --------------------------------------------------------------------------- Anthropic
ANTHROPIC_USAGE = {
    "input_tokens": 12,
    "cache_creation_input_tokens": 2048,
    "cache_read_input_tokens": 4096,
    "cache_creation": {"ephemeral_5m_input_tokens": 2048, "ephemeral_1h_input_tokens": 0},
    "output_tokens": 58,
    "service_tier": "standard",
}
ANTHROPIC_METADATA = {
    "usageSource": "provider",
    "provider": "anthropic",
    "operation": "messages",
    "model": CLAUDE,
    "inputTokens": 12 + 4096 + 2048,
    "outputTokens": 58,
    "totalTokens": 12 + 4096 + 2048 + 58,
    "cachedInputTokens": 4096,
    "cacheCreationInputTokens": 2048,
    "cacheWrite5mTokens": 2048,
    "cacheWrite1hTokens": 0,
    "serviceTier": "standard",
}


def anthropic_message(text: str = '{"answer": "Hello"}') -> dict[str, Any]:
    return {
        "id": MSG_ID,
        "type": "message",
        "role": "assistant",
        "model": CLAUDE,
        "content": [{"type": "text", "text": text}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": ANTHROPIC_USAGE,
    }


ANTHROPIC_STREAM_METADATA = {
    "usageSource": "provider",
    "provider": "anthropic",
    "operation": "messages",
    "model": CLAUDE,
    "inputTokens": 472 + 1024,
    "outputTokens": 89,
    "totalTokens": 472 + 1024 + 89,
    "cachedInputTokens": 1024,
    "cacheCreationInputTokens": 0,
}


def anthropic_events(*, error_after_start: bool = False) -> list[dict[str, Any]]:
    start = {
        "type": "message_start",
        "message": {
            "id": MSG_ID,
            "type": "message",
            "role": "assistant",
            "content": [],
            "model": CLAUDE,
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {
                "input_tokens": 472,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 1024,
                "output_tokens": 1,
            },
        },
    }
    frames = [
        start,
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
        {"type": "ping"},
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": "Hello"},
        },
    ]
    if error_after_start:
        frames.append({"type": "error", "error": {"type": "overloaded_error", "message": "busy"}})
        return frames
    frames += [
        {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": " there!"},
        },
        {"type": "content_block_stop", "index": 0},
        {
            "type": "message_delta",
            "delta": {"stop_reason": "end_turn", "stop_sequence": None},
            "usage": {
                "input_tokens": 472,
                "cache_creation_input_tokens": 0,
                "cache_read_input_tokens": 1024,
                "output_tokens": 89,
            },
        },
        {"type": "message_stop"},
    ]
    return frames


def anthropic_for(request: httpx2.Request) -> httpx2.Response:
    body = json.loads(request.content)
    headers = {"request-id": "req_ant_1"}
    if body.get("stream"):
        return sse_response(list(anthropic_events()), named=True, headers=headers)
    return json_response(anthropic_message(), headers)


# --------------------------------------------------------------------------- Gemini
GEMINI_USAGE = {
    "promptTokenCount": 1050,
    "candidatesTokenCount": 4,
    "totalTokenCount": 1148,
    "cachedContentTokenCount": 1024,
    "thoughtsTokenCount": 64,
    "toolUsePromptTokenCount": 30,
}
GEMINI_METADATA = {
    "usageSource": "provider",
    "provider": "google",
    "operation": "generate_content",
    "model": GEMINI,
    "inputTokens": 1050 + 30,
    "outputTokens": 4 + 64,
    "totalTokens": 1148,
    "cachedInputTokens": 1024,
    "reasoningTokens": 64,
}


def gemini_response(
    text: str = "Hello there!",
    usage: dict[str, Any] | None = None,
    response_id: str = GEMINI_ID,
    parts: list[dict[str, Any]] | None = None,
) -> dict[str, Any]:
    return {
        "candidates": [
            {
                "content": {"parts": parts or [{"text": text}], "role": "model"},
                "finishReason": "STOP",
                "index": 0,
            }
        ],
        "usageMetadata": usage or GEMINI_USAGE,
        "modelVersion": GEMINI,
        "responseId": response_id,
    }


def gemini_chunks() -> list[dict[str, Any]]:
    running = {"promptTokenCount": 9, "totalTokenCount": 73, "thoughtsTokenCount": 64}
    final = {**running, "candidatesTokenCount": 3, "totalTokenCount": 76}

    def chunk(text: str, usage: dict[str, Any], finish: bool = False) -> dict[str, Any]:
        candidate: dict[str, Any] = {
            "content": {"parts": [{"text": text}], "role": "model"},
            "index": 0,
        }
        if finish:
            candidate["finishReason"] = "STOP"
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": GEMINI,
            "responseId": GEMINI_ID,
        }

    return [chunk("Hello", running), chunk(" there", running), chunk("!", final, True)]


GEMINI_STREAM_METADATA = {
    "usageSource": "provider",
    "provider": "google",
    "operation": "generate_content",
    "model": GEMINI,
    "inputTokens": 9,
    "outputTokens": 67,
    "totalTokens": 76,
    "reasoningTokens": 64,
}

GEMINI_EMBED = {
    "embeddings": [{"values": [0.0123, -0.0456, 0.0789]}, {"values": [0.0321, 0.0654, -0.0987]}],
    "usageMetadata": {"promptTokenCount": 8},
}
