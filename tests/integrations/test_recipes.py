# ruff: noqa: E402  (the frameworks are imported after the check that they are installed)
"""pydantic-ai and the OpenAI Agents SDK handed a client wrapped by the tracker (the recipes of
docs/integrations.md): the real frameworks over an OpenAI API whose HTTP is mocked."""

from __future__ import annotations

import asyncio

import httpx2
import openai
import pytest

from .conftest import RecordingSink, openai_api, require

require("pydantic_ai", "dev")
require("agents", "dev")

import agents
from pydantic_ai import Agent
from pydantic_ai.models.openai import OpenAIChatModel, OpenAIResponsesModel
from pydantic_ai.providers.openai import OpenAIProvider

from dodo_ingest.blueprints.llm import LLMTracker
from tests.blueprints.llm import payloads

CHAT = payloads.CHAT_METADATA
RESPONSES = payloads.RESPONSES_METADATA


def wrapped_client(tracker: LLMTracker) -> openai.AsyncOpenAI:
    client = openai.AsyncOpenAI(
        api_key="sk-test", http_client=httpx2.AsyncClient(transport=openai_api())
    )
    return tracker.wrap(client, metadata={"app": "agents"})


@pytest.fixture(autouse=True)
def no_agents_tracing() -> None:
    agents.set_tracing_disabled(True)  # the SDK would export traces to OpenAI


@pytest.mark.parametrize(
    ("model_class", "expected"),
    [(OpenAIChatModel, CHAT), (OpenAIResponsesModel, RESPONSES)],
)
def test_pydantic_ai_agent_bills_the_scope_customer(
    tracker: LLMTracker, sink: RecordingSink, model_class: type, expected: dict[str, object]
) -> None:
    provider = OpenAIProvider(openai_client=wrapped_client(tracker))
    agent = Agent(model_class("gpt-5.4-mini", provider=provider))
    with tracker.customer("cus_pai", metadata={"plan": "pro"}):
        result = agent.run_sync("hi")
    assert "Hello" in str(result.output)
    event = sink.only()
    assert event.customer_id == "cus_pai"
    assert event.metadata == {"app": "agents", "plan": "pro", **expected}


def test_pydantic_ai_stream_bills_once(tracker: LLMTracker, sink: RecordingSink) -> None:
    provider = OpenAIProvider(openai_client=wrapped_client(tracker))
    agent = Agent(OpenAIChatModel("gpt-5.4-mini", provider=provider))

    async def main() -> str:
        async with tracker.customer("cus_stream"), agent.run_stream("hi") as run:
            return "".join([delta async for delta in run.stream_text(delta=True)])

    assert asyncio.run(main()) == "Hello there!"
    event = sink.only()
    assert event.customer_id == "cus_stream"
    assert (event.metadata["inputTokens"], event.metadata["outputTokens"]) == (19, 3)


@pytest.mark.parametrize(
    ("model_class", "expected"),
    [
        (agents.OpenAIChatCompletionsModel, CHAT),
        (agents.OpenAIResponsesModel, RESPONSES),
    ],
)
def test_agents_sdk_bills_the_scope_customer(
    tracker: LLMTracker, sink: RecordingSink, model_class: type, expected: dict[str, object]
) -> None:
    model = model_class(model="gpt-5.4-mini", openai_client=wrapped_client(tracker))
    agent = agents.Agent(name="assistant", model=model)

    async def main() -> str:
        async with tracker.customer("cus_agents"):
            result = await agents.Runner.run(agent, "hi")
        return str(result.final_output)

    assert "Hello" in asyncio.run(main())
    event = sink.only()
    assert event.customer_id == "cus_agents"
    assert event.metadata == {"app": "agents", **expected}


def test_agents_sdk_default_client(tracker: LLMTracker, sink: RecordingSink) -> None:
    """``set_default_openai_client`` with a wrapped client: every agent is billed."""
    agents.set_default_openai_client(wrapped_client(tracker), use_for_tracing=False)
    try:
        agent = agents.Agent(name="assistant", model="gpt-5.4-mini")
        with tracker.customer("cus_default_client"):
            result = agents.Runner.run_sync(agent, "hi")
    finally:
        agents.set_default_openai_client(
            openai.AsyncOpenAI(api_key="sk-unused"), use_for_tracing=False
        )
    assert "Hello" in str(result.final_output)
    event = sink.only()
    assert event.customer_id == "cus_default_client"
    assert event.metadata == {"app": "agents", **RESPONSES}
