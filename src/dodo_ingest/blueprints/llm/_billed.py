"""One event when a wrapped client and a framework integration bill the same LLM call.

A framework handler (LangChain, LiteLLM) over a client wrapped by a tracker sees the same
response as the wrapped client, but not always what the tracker hashes into its event ids:
the response's ``created`` (LangChain drops it, LiteLLM streams stamp their own) or the
response id itself (LangChain streams). So the handler makes a :class:`FrameworkRun`
current in the caller's context before the provider is called (:data:`current_run`); a
wrapped client called in that context keeps the run with the call's scope and, when it
bills the call (a stream: when it ends, wherever that is), notes there what its event ids
hash (its :data:`~._event_ids.Identity`). The handler bills the call's result with that
identity when the result is that bill (same token counts, same response id when it has
one): both paths emit the same event ids and the API keeps one event.

Each run holds the bills of its own call only, so a server that reuses one response id
for many calls still gets one event per call (matching bills by response id across the
process would pair bills of different calls sharing an id, and lose usage).
"""

from __future__ import annotations

from contextvars import ContextVar

from ._event_ids import Identity, identity_of
from ._usage import LLMUsage

__all__ = ["FrameworkRun", "current_run"]

#: Wrapped-client bills a run keeps (a framework call makes one provider call).
_MAX_RUN_BILLS = 4


class FrameworkRun:
    """A framework call in progress: what wrapped clients billed in its context."""

    __slots__ = ("bills",)

    def __init__(self) -> None:
        self.bills: list[tuple[Identity, int | None, int | None]] = []

    def note(self, usage: LLMUsage) -> None:
        """Note a wrapped client's bill: its identity and token counts."""
        if usage.response_id is not None and len(self.bills) < _MAX_RUN_BILLS:
            self.bills.append((identity_of(usage), usage.input_tokens, usage.output_tokens))

    def identity_for(self, usage: LLMUsage, response_id: object) -> Identity | None:
        """The identity of this run's one wrapped-client bill when it is ``usage`` (the same
        token counts; the same response id when the framework passed the provider's,
        ``response_id``); else ``None``."""
        if len(self.bills) != 1:
            return None
        identity, input_tokens, output_tokens = self.bills[0]
        if (input_tokens, output_tokens) != (usage.input_tokens, usage.output_tokens):
            return None
        if response_id is not None and response_id != identity[0]:
            return None
        return identity


#: The framework run of the current context (set by a framework handler).
current_run: ContextVar[FrameworkRun | None] = ContextVar(
    "dodo_ingest_llm_framework_run", default=None
)
