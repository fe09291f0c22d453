"""Blueprints: ready-made ways to turn LLM calls, streams, jobs and API calls into usage events.

Each blueprint lives in its own module and is imported on demand (``dodo_ingest.blueprints.llm``,
``.stream``, ``.time_range``, ``.api_gateway``, ``.object_storage``); provider SDKs are imported
only when a client of theirs is wrapped.
"""
