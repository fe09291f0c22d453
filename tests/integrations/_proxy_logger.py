"""What the LiteLLM proxy started by ``test_litellm_proxy.py`` loads from its ``config.yaml``.

``proxy_handler_instance`` (``litellm_settings.callbacks``) is the documented setup: a
``DodoLiteLLMLogger`` over an ``LLMTracker`` over an ``Ingestion`` that reads its key and base
URL (the test's dev server) from the proxy's environment, and an outbox file from
``PROXY_TEST_OUTBOX`` when set. ``user_api_key_auth`` (``general_settings.custom_auth``)
stands in for the proxy's database of virtual keys: it answers each key with the metadata
an operator would have given the key or its team.

With ``PROXY_TEST_SIGNALS`` set (a file path), the module is the documented one for a proxy
that is stopped with ``SIGTERM``: it calls ``install_signal_handlers()``, its ``Ingestion``
sends once an hour, and each event's id is written to that file once it is queued.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from fastapi import HTTPException
from litellm.proxy._types import UserAPIKeyAuth

from dodo_ingest import install_signal_handlers
from dodo_ingest.blueprints.llm import LLMTracker
from dodo_ingest.delivery import Ingestion
from dodo_ingest.integrations.litellm import DodoLiteLLMLogger

MASTER_KEY = "sk-master-test"
#: Virtual keys and what the proxy would know of each: the key's metadata, its team's.
KEYS: dict[str, dict[str, Any]] = {
    MASTER_KEY: {},
    "sk-key-of-cus-key": {"metadata": {"customer_id": "cus_key"}},
    "sk-team-key": {"team_id": "team_1", "team_metadata": {"customer_id": "cus_team"}},
}


class _NotingIngestion(Ingestion):
    """An ``Ingestion`` that writes the id of each event it queues to a file (what the test
    of a stopped proxy waits for before it sends the signal)."""

    def __init__(self, noted: str) -> None:
        super().__init__(flush_interval=3600)
        self.noted = Path(noted)

    def _track_prechecked(self, *args: Any, **kwargs: Any) -> str:
        event_id = super()._track_prechecked(*args, **kwargs)
        self.noted.write_text(event_id)
        return event_id


#: with an outbox file, events are sent once an hour (the test of a proxy stopped before it
#: sends); else at once
_outbox = os.environ.get("PROXY_TEST_OUTBOX")
_signals = os.environ.get("PROXY_TEST_SIGNALS")
_ingestion: Ingestion
if _signals:
    _ingestion = _NotingIngestion(_signals)
    install_signal_handlers()
elif _outbox:
    _ingestion = Ingestion(outbox=_outbox, flush_interval=3600)
else:
    _ingestion = Ingestion(flush_interval=0.02)
proxy_handler_instance = DodoLiteLLMLogger(LLMTracker(_ingestion))


async def user_api_key_auth(request: Any, api_key: str) -> UserAPIKeyAuth:
    """The proxy's auth hook: a known key with its metadata, or refused."""
    if api_key not in KEYS:
        raise HTTPException(status_code=401, detail="unknown key")
    return UserAPIKeyAuth(api_key=api_key, **KEYS[api_key])
