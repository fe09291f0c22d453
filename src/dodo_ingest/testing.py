"""Offline stand-ins for developing and testing metered code without keys or a network.

:class:`MockLLMTransport` is an ``httpx2`` transport that answers the OpenAI, Anthropic and
Gemini APIs the way they answer (same JSON and server-sent-event shapes, usage included), so
the real provider SDKs, and a wrapped client's usage tracking, run unchanged::

    import httpx2
    from openai import OpenAI
    from dodo_ingest.testing import MockLLMTransport

    transport = MockLLMTransport(reply="Hello from the mock.")
    client = OpenAI(api_key="sk-offline", http_client=httpx2.Client(transport=transport))

    from anthropic import Anthropic
    claude = Anthropic(api_key="sk-offline", http_client=httpx2.Client(transport=transport))

    from google import genai
    gemini = genai.Client(
        api_key="offline",
        http_options={
            "client_args": {"transport": transport},          # client.models
            "async_client_args": {"transport": transport},    # client.aio.models
        },
    )

Token counts are deterministic: a prompt costs one token per 4 characters of its text (at
least 1) and the reply one token per word, so tests can assert exact figures. Every answer
gets a response id (and an ``x-request-id`` header) unique across processes, so events
derived from them never collide between runs. Requests the mock does not know get a 404 in
the provider's shape.
"""

from __future__ import annotations

import itertools
import json
import math
import re
import secrets
import threading
from collections.abc import Iterator
from typing import Any

import httpx2

__all__ = ["MockLLMTransport", "count_tokens"]

_GEMINI_PATH = re.compile(r"/models/(?P<model>[^/:]+):(?P<method>\w+)$")


def count_tokens(text: str) -> int:
    """The mock's prompt tokenizer: one token per 4 characters, at least 1."""
    return max(1, math.ceil(len(text) / 4))


def _texts(value: Any) -> Iterator[str]:
    """Every string under a ``text``/``content``/``input`` value of a request body."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, list):
        for item in value:
            yield from _texts(item)
    elif isinstance(value, dict):
        for key in ("text", "content", "input", "parts", "contents", "messages", "system"):
            if key in value:
                yield from _texts(value[key])


def _sse(events: list[tuple[str | None, Any]]) -> bytes:
    lines = []
    for name, data in events:
        if name is not None:
            lines.append(f"event: {name}")
        lines.append("data: " + (data if isinstance(data, str) else json.dumps(data)))
        lines.append("")
    return ("\n".join(lines) + "\n").encode()


class MockLLMTransport(httpx2.MockTransport):
    """Answers OpenAI, Anthropic and Gemini requests locally, with usage.

    Handles OpenAI ``/chat/completions`` (streamed or not; the usage chunk only when
    ``stream_options.include_usage`` is set, as the real API does), ``/embeddings`` and
    ``/responses`` (not streamed); Anthropic ``/v1/messages`` (streamed or not); Gemini
    ``:generateContent``, ``:streamGenerateContent``, ``:embedContent`` and
    ``:batchEmbedContents``. Other requests (and multipart uploads) get a 404. ``requests`` counts
    the requests answered. Safe to share between threads and event loops.
    """

    def __init__(self, reply: str = "This is a reply from the offline mock provider.") -> None:
        super().__init__(self._handle)
        self.reply = reply
        self.requests = 0
        self._ids = itertools.count(1)
        self._prefix = secrets.token_hex(4)
        self._lock = threading.Lock()

    # --- dispatch ------------------------------------------------------------------------

    def _handle(self, request: httpx2.Request) -> httpx2.Response:
        with self._lock:
            self.requests += 1
            number = f"{self._prefix}{next(self._ids):06d}"
        response = self._answer(request, number)
        response.headers["x-request-id"] = f"req_mock{number}"
        return response

    def _answer(self, request: httpx2.Request, number: str) -> httpx2.Response:
        path = request.url.path
        try:
            body = json.loads(request.content or b"{}")
        except ValueError:  # multipart uploads (audio, files) are not answered
            return httpx2.Response(404, json={"error": {"message": f"mock: no route for {path}"}})
        prompt_tokens = count_tokens("".join(_texts(body)))
        if path.endswith("/chat/completions"):
            return self._openai_chat(body, prompt_tokens, number)
        if path.endswith("/embeddings"):
            return self._openai_embeddings(body, prompt_tokens)
        if path.endswith("/responses"):
            return self._openai_responses(body, prompt_tokens, number)
        if path.endswith("/v1/messages"):
            return self._anthropic_messages(body, prompt_tokens, number)
        match = _GEMINI_PATH.search(path)
        if match is not None:
            return self._gemini(body, match["model"], match["method"], prompt_tokens, number)
        return httpx2.Response(404, json={"error": {"message": f"mock: no route for {path}"}})

    @property
    def _words(self) -> list[str]:
        words = self.reply.split(" ")
        return [w if i == 0 else " " + w for i, w in enumerate(words)]

    # --- OpenAI --------------------------------------------------------------------------

    def _openai_chat(self, body: dict[str, Any], prompt: int, number: str) -> httpx2.Response:
        model = body.get("model", "gpt-4o-mini")
        completion = len(self._words)
        usage = {
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "total_tokens": prompt + completion,
            "prompt_tokens_details": {"cached_tokens": 0, "audio_tokens": 0},
            "completion_tokens_details": {"reasoning_tokens": 0, "audio_tokens": 0},
        }
        base = {"id": f"chatcmpl-mock{number}", "created": 1767225600, "model": model}
        if not body.get("stream"):
            choice = {
                "index": 0,
                "message": {"role": "assistant", "content": self.reply, "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
            payload = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
            return httpx2.Response(200, json=payload)
        chunk = {**base, "object": "chat.completion.chunk"}
        events: list[tuple[str | None, Any]] = []
        for i, word in enumerate(self._words):
            delta = {"role": "assistant", "content": word} if i == 0 else {"content": word}
            choice = {"index": 0, "delta": delta, "finish_reason": None}
            events.append((None, {**chunk, "choices": [choice], "usage": None}))
        stop = {"index": 0, "delta": {}, "finish_reason": "stop"}
        events.append((None, {**chunk, "choices": [stop], "usage": None}))
        if (body.get("stream_options") or {}).get("include_usage"):
            events.append((None, {**chunk, "choices": [], "usage": usage}))
        events.append((None, "[DONE]"))
        return self._stream(events)

    def _openai_embeddings(self, body: dict[str, Any], prompt: int) -> httpx2.Response:
        inputs = body.get("input")
        count = len(inputs) if isinstance(inputs, list) else 1
        payload = {
            "object": "list",
            "data": [
                {"object": "embedding", "index": i, "embedding": [0.0, 0.1, 0.2]}
                for i in range(count)
            ],
            "model": body.get("model", "text-embedding-3-small"),
            "usage": {"prompt_tokens": prompt, "total_tokens": prompt},
        }
        return httpx2.Response(200, json=payload)

    def _openai_responses(self, body: dict[str, Any], prompt: int, number: str) -> httpx2.Response:
        output = len(self._words)
        payload = {
            "id": f"resp_mock{number}",
            "object": "response",
            "created_at": 1767225600,
            "status": "completed",
            "model": body.get("model", "gpt-4o-mini"),
            "output": [
                {
                    "type": "message",
                    "id": f"msg_mock{number}",
                    "status": "completed",
                    "role": "assistant",
                    "content": [{"type": "output_text", "text": self.reply, "annotations": []}],
                }
            ],
            "parallel_tool_calls": True,
            "tool_choice": "auto",
            "tools": [],
            "usage": {
                "input_tokens": prompt,
                "input_tokens_details": {"cached_tokens": 0},
                "output_tokens": output,
                "output_tokens_details": {"reasoning_tokens": 0},
                "total_tokens": prompt + output,
            },
        }
        return httpx2.Response(200, json=payload)

    # --- Anthropic -----------------------------------------------------------------------

    def _anthropic_messages(
        self, body: dict[str, Any], prompt: int, number: str
    ) -> httpx2.Response:
        model = body.get("model", "claude-sonnet-4-6")
        output = len(self._words)
        usage = {
            "input_tokens": prompt,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": output,
        }
        message = {
            "id": f"msg_mock{number}",
            "type": "message",
            "role": "assistant",
            "model": model,
            "stop_sequence": None,
        }
        if not body.get("stream"):
            payload = {
                **message,
                "content": [{"type": "text", "text": self.reply}],
                "stop_reason": "end_turn",
                "usage": usage,
            }
            return httpx2.Response(200, json=payload)
        start = {
            **message,
            "content": [],
            "stop_reason": None,
            "usage": {**usage, "output_tokens": 1},
        }
        events: list[tuple[str | None, Any]] = [
            ("message_start", {"type": "message_start", "message": start}),
            (
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            ),
        ]
        for word in self._words:
            delta = {"type": "text_delta", "text": word}
            events.append(
                ("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": delta})
            )
        events += [
            ("content_block_stop", {"type": "content_block_stop", "index": 0}),
            (
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                    "usage": {"output_tokens": output},
                },
            ),
            ("message_stop", {"type": "message_stop"}),
        ]
        return self._stream(events)

    # --- Gemini --------------------------------------------------------------------------

    def _gemini(
        self, body: dict[str, Any], model: str, method: str, prompt: int, number: str
    ) -> httpx2.Response:
        if method == "embedContent":
            return httpx2.Response(200, json={"embedding": {"values": [0.0, 0.1, 0.2]}})
        if method == "batchEmbedContents":
            requests = len(body.get("requests") or [None])
            return httpx2.Response(
                200,
                json={
                    "embeddings": [{"values": [0.0, 0.1, 0.2]} for _ in range(requests)],
                    "usageMetadata": {"promptTokenCount": prompt},
                },
            )
        words = self._words
        response_id = f"mock{number}"

        def chunk(parts: list[str], candidates: int | None, final: bool) -> dict[str, Any]:
            usage: dict[str, Any] = {"promptTokenCount": prompt}
            if candidates is not None:
                usage["candidatesTokenCount"] = candidates
            usage["totalTokenCount"] = prompt + (candidates or 0)
            candidate: dict[str, Any] = {
                "content": {"parts": [{"text": "".join(parts)}], "role": "model"},
                "index": 0,
            }
            if final:
                candidate["finishReason"] = "STOP"
            return {
                "candidates": [candidate],
                "usageMetadata": usage,
                "modelVersion": model,
                "responseId": response_id,
            }

        if method == "generateContent":
            return httpx2.Response(200, json=chunk(words, len(words), True))
        if method == "streamGenerateContent":
            events: list[tuple[str | None, Any]] = [
                (
                    None,
                    chunk([word], len(words) if i == len(words) - 1 else None, i == len(words) - 1),
                )
                for i, word in enumerate(words)
            ]
            return self._stream(events)
        return httpx2.Response(404, json={"error": {"message": f"mock: no method {method}"}})

    @staticmethod
    def _stream(events: list[tuple[str | None, Any]]) -> httpx2.Response:
        return httpx2.Response(
            200, content=_sse(events), headers={"content-type": "text/event-stream; charset=utf-8"}
        )
