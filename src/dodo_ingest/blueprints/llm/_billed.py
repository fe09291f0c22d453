"""One event when a wrapped client and a framework integration bill the same LLM call.

A framework handler (LangChain, LiteLLM) over a client wrapped by a tracker sees the same
response as the wrapped client, but not always what the tracker hashes into its event ids:
the response's ``created`` (LangChain drops it, LiteLLM streams stamp their own) or the
response id itself (LangChain streams). So the handler makes a :class:`FrameworkRun`
current in the caller's context before the provider is called (:data:`current_run`); a
wrapped client called in that context *while the run waits for its provider call* keeps
the run with the call's scope and, when it bills the call (a stream: when it ends,
wherever that is), notes there what its event ids hash (its
:data:`~._event_ids.Identity`). The handler bills the call's result with that identity
when exactly one bill of the run is that result (same token counts; same response id when
it has one, else the same model), and takes that bill out of the run.

A run stops waiting once the framework has its answer (the first output of a stream, or
the call's end): a stream's chunks reach the caller's code in the run's context, and a
call that code makes then (a direct call, another model) is not the framework's. Taking
another call's identity would give two calls one event id, and the API would keep one:
so when in doubt (no bill, or several that fit) the handler bills under its own ids, and
the call is billed twice rather than lost.

Each run holds the bills of its own calls only, so a server that reuses one response id
for many calls still gets one event per call (matching bills by response id across the
process would pair bills of different calls sharing an id, and lose usage). Calls a
framework starts together (LangChain's ``generate()`` over several prompts starts every
prompt's run before the first call) share one run: their bills land in it, and each
result takes its own by response id and counts.
"""

from __future__ import annotations

from contextvars import ContextVar

from ._event_ids import Identity, identity_of
from ._usage import LLMUsage

__all__ = ["FrameworkRun", "current_run"]

#: Wrapped-client bills a run keeps per framework call in it (one provider call each).
_BILLS_PER_CALL = 4

#: A wrapped client's bill: its identity, token counts and model.
Bill = tuple[Identity, int | None, int | None, str | None]


class FrameworkRun:
    """Framework calls in progress in one context, and what wrapped clients billed there.

    ``waiting`` holds the calls whose provider request may still be made: a wrapped
    client's call is noted in the run only while it is not empty.
    """

    __slots__ = ("bills", "calls", "expected", "waiting")

    def __init__(self, call: object, expected: int = 1) -> None:
        self.bills: list[Bill] = []
        self.waiting: set[object] = {call}
        self.calls = 1
        #: the calls started together that may share this run
        self.expected = expected

    def join(self, call: object) -> bool:
        """Add ``call``, started together with this run's (one of ``expected``); ``False``
        when the run takes no more calls (all joined, or the framework has answered)."""
        if self.calls >= self.expected or not self.waiting:
            return False
        self.calls += 1
        self.waiting.add(call)
        return True

    def answered(self, call: object) -> None:
        """``call`` made its provider request (its first output came, or it ended)."""
        self.waiting.discard(call)

    def close(self) -> None:
        """Note no more calls in this run (a call failed: the framework makes no more)."""
        self.waiting.clear()

    def note(self, usage: LLMUsage) -> None:
        """Note a wrapped client's bill: its identity, token counts and model."""
        if usage.response_id is not None and len(self.bills) < _BILLS_PER_CALL * self.calls:
            self.bills.append(
                (identity_of(usage), usage.input_tokens, usage.output_tokens, usage.model)
            )

    def take(self, usage: LLMUsage, response_id: object) -> Identity | None:
        """The identity of the run's one wrapped-client bill that is ``usage`` (the same
        token counts; the same response id when the framework passed the provider's,
        ``response_id``, else the same model when both are known), taken out of the run;
        ``None`` when no bill or more than one fits, and for a result without a response id
        in a run shared by several calls (code run on one call's output, a callback on its
        first token, may call a wrapped client while another call of the run still waits:
        nothing but the response id tells such a call from the model's)."""
        if response_id is None and self.expected > 1:
            return None
        found: Bill | None = None
        for bill in self.bills:
            identity, input_tokens, output_tokens, model = bill
            if input_tokens != usage.input_tokens or output_tokens != usage.output_tokens:
                continue
            if response_id is not None:
                if response_id != identity[0]:
                    continue
            elif model is not None and usage.model is not None and model != usage.model:
                continue
            if found is not None:
                return None  # which one? none is guessed
            found = bill
        if found is None:
            return None
        try:
            self.bills.remove(found)
        except ValueError:  # another result of the run took it
            return None
        return found[0]


#: The framework run of the current context (set by a framework handler).
current_run: ContextVar[FrameworkRun | None] = ContextVar(
    "dodo_ingest_llm_framework_run", default=None
)
