"""docs/integrations.md runs as written, as tests/docs runs every page, and its blocks bill
what they say: the events reach the dev server, one per call, to the customers named."""

from __future__ import annotations

from pathlib import Path

from dodo_ingest import DodoClient
from dodo_ingest.devserver import DevServer
from tests.docs._snippets import ROOT, snippets
from tests.docs.test_snippets import API_KEY, provider, run_blocks, server

from .conftest import require

__all__ = ["provider", "server"]  # fixtures of tests/docs, shared with this module

require("langchain_openai", "langchain")
require("litellm", "litellm")
require("pydantic_ai", "dev")
require("agents", "dev")

PAGE = ROOT / "docs" / "integrations.md"
CUSTOMERS = ("cus_lc_1", "cus_lc_2", "cus_ll_1", "cus_ll_2", "cus_pai_1", "cus_agents_1")
EPILOGUE = """
import time
tracker, ingestion = namespace['tracker'], namespace['ingestion']
deadline = time.monotonic() + 30
while tracker.stats.events < 6 and time.monotonic() < deadline:
    time.sleep(0.02)  # LiteLLM calls its sync hooks from a worker thread
assert tracker.stats.events == 6, tracker.stats
assert tracker.stats.failures == 0, tracker.stats
assert ingestion.flush(timeout=30)
"""


def test_integrations_page_bills_what_it_says(
    server: DevServer, provider: str, tmp_path: Path
) -> None:
    blocks = snippets(PAGE)
    result = run_blocks(blocks, server, provider, tmp_path, EPILOGUE)
    assert result.returncode == 0, result.stdout + result.stderr
    for block in blocks:
        if block.skip_reason is None:
            assert f"ran {block.path}:{block.line}" in result.stdout, result.stdout
    with DodoClient(api_key=API_KEY, base_url=server.base_url) as client:
        for customer in CUSTOMERS:
            events = list(client.events.list(customer_id=customer))
            assert len(events) == 1, (customer, events)
            metadata = events[0].metadata or {}
            assert metadata["inputTokens"] > 0, (customer, metadata)
            assert metadata["outputTokens"] > 0, (customer, metadata)
            assert metadata["usageSource"] == "provider", (customer, metadata)
