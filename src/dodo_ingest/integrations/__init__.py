"""Framework integrations of the LLM tracker, each an optional extra.

- ``dodo_ingest.integrations.langchain``: :class:`~dodo_ingest.integrations.langchain.DodoCallbackHandler`,
  a LangChain callback handler billing the ``usage_metadata`` of chat models
  (``pip install "dodo-ingest[langchain]"``).
- ``dodo_ingest.integrations.litellm``: :class:`~dodo_ingest.integrations.litellm.DodoLiteLLMLogger`,
  a LiteLLM ``CustomLogger`` for the SDK and the proxy (``pip install "dodo-ingest[litellm]"``).

pydantic-ai and the OpenAI Agents SDK need no module: hand them a client wrapped by
:class:`~dodo_ingest.blueprints.llm.LLMTracker` (see ``docs/integrations.md``).

Importing this package imports no framework; each module imports its framework.
"""
