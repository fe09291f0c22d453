"""LLM blueprint: exact, transparent token tracking for LLM clients.

Wrap the client you already use and every billable call becomes a usage event with the
token counts the provider reported, streams included::

    from dodo_ingest import Ingestion
    from dodo_ingest.blueprints.llm import LLMTracker

    with Ingestion() as ingestion:
        tracker = LLMTracker(ingestion, event_name="llm.chat_completion")
        client = tracker.wrap(OpenAI(), customer_id="cus_1", metadata={"feature": "chat"})
        client.chat.completions.create(model="gpt-4o", messages=[...])

Supports openai (and Azure and OpenAI-compatible servers), anthropic, groq and google-genai,
sync and async. Provider SDKs are imported only by the code that wraps their clients.

With ``LLMTracker(..., prices=..., gate=CreditGate(...))`` every call first reserves a
worst-case estimate of its cost for the customer (a refused call raises
``InsufficientCreditsError`` and is never sent) and settles the real cost when it ends.
"""

from ... import _present_as
from ._billing import Price
from ._gating import CreditCutoffError
from ._tracker import (
    CustomerScope,
    EventSink,
    LLMTracker,
    LLMTrackerStats,
    create_llm_tracker,
)
from ._usage import LLMUsage

__all__ = [
    "CreditCutoffError",
    "CustomerScope",
    "EventSink",
    "LLMTracker",
    "LLMTrackerStats",
    "LLMUsage",
    "Price",
    "create_llm_tracker",
]

_present_as(__name__, globals(), __all__)
