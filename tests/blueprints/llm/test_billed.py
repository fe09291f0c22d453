"""A framework run captures what a wrapped client billed in its context, so a framework
handler billing the same call emits the same event ids (real OpenAI SDK, HTTP mocked by an
httpx2 transport)."""

from __future__ import annotations

import contextvars
import itertools
import json
import threading
from typing import Any

import httpx2
import openai

from dodo_ingest.blueprints.llm import LLMTracker, LLMUsage
from dodo_ingest.blueprints.llm._billed import FrameworkRun, current_run
from dodo_ingest.blueprints.llm._event_ids import event_id, identity_of
from dodo_ingest.blueprints.llm._tracker import Scope

from . import payloads
from .conftest import RecordingSink

MESSAGES: Any = [{"role": "user", "content": "hi"}]
NAMES = ("llm.input", "llm.output")
MODEL = payloads.OPENAI_MODEL  # the model the server answers with


def _client(tracker: LLMTracker, base_url: str = "https://api.openai.com/v1") -> openai.OpenAI:
    """An OpenAI client wrapped by ``tracker``; call ``n`` reports ``n`` prompt tokens."""
    calls = itertools.count(1)
    lock = threading.Lock()

    def answer(request: httpx2.Request) -> httpx2.Response:
        with lock:
            call = next(calls)
        usage = {**payloads.CHAT_USAGE, "prompt_tokens": call, "total_tokens": call + 46}
        body = payloads.chat_completion(usage)
        if "11434" in str(request.url):  # Ollama: short ids it reuses
            body["id"] = "chatcmpl-7"
        assert json.loads(request.content)["messages"] == MESSAGES
        return payloads.json_response(body)

    client = openai.OpenAI(
        api_key="sk-test",
        base_url=base_url,
        http_client=httpx2.Client(transport=httpx2.MockTransport(answer)),
    )
    return tracker.wrap(client, customer_id="cus_1")


def _in_run(call: Any, run: FrameworkRun | None = None) -> FrameworkRun:
    """Run ``call`` in a fresh context inside a framework run (``run``, else a new one);
    return the run."""
    run = run or FrameworkRun("call")

    def inside() -> None:
        current_run.set(run)
        call()

    contextvars.copy_context().run(inside)
    return run


def test_a_handler_billing_with_the_runs_identity_gets_the_wrapped_clients_ids() -> None:
    """Split events included: both of the handler's events take the ids of the wrapped
    client's, although the handler knows neither ``created`` nor the response id."""
    sink = RecordingSink()
    tracker = LLMTracker(sink, split_events=NAMES)
    client = _client(tracker)
    run = _in_run(lambda: client.chat.completions.create(model="gpt-4o", messages=MESSAGES))
    client_ids = [event.event_id for event in sink.events]
    assert client_ids == [
        event_id(LLMUsage("openai", "chat.completions", response_id=payloads.CHAT_ID, created=c), n)
        for c, n in zip((1767225600, 1767225600), NAMES, strict=True)
    ]
    handler_usage = LLMUsage("openai", "chat.completions", MODEL, 1, 46)  # no id, no created
    identity = run.take(handler_usage, None)
    assert identity == (payloads.CHAT_ID, 1767225600, None, True)
    assert run.bills == []  # taken: the bill is one call's
    # the handler bills in the run's context: its own bill is not noted as a wrapped client's
    _in_run(lambda: tracker.record(handler_usage, Scope("cus_1", {}), identity), run)
    assert [event.event_id for event in sink.events[2:]] == client_ids
    assert run.bills == []


def test_untrusted_ids_are_taken_with_the_call_key() -> None:
    """An Ollama id is hashed with a key per response object: the handler takes the key."""
    sink = RecordingSink()
    tracker = LLMTracker(sink)
    client = _client(tracker, "http://127.0.0.1:11434/v1")
    run = _in_run(lambda: client.chat.completions.create(model="llama3", messages=MESSAGES))
    ((identity, _, _, _),) = run.bills
    assert identity[0] == "chatcmpl-7"
    assert identity[2] is not None  # the call key
    handler_usage = LLMUsage(
        "openai", "chat.completions", "llama3", 1, 46, response_id="chatcmpl-7"
    )
    tracker.record(handler_usage, Scope("cus_1", {}), identity)
    client_event, handler_event = sink.events
    assert handler_event.event_id == client_event.event_id


def test_only_the_runs_one_matching_bill_is_taken() -> None:
    sink = RecordingSink()

    def one_call() -> FrameworkRun:
        """A run holding one call's bill (1 prompt token, 46 completion tokens)."""
        client = _client(LLMTracker(sink))
        return _in_run(lambda: client.chat.completions.create(model="gpt-4o", messages=MESSAGES))

    same = LLMUsage("openai", "chat.completions", MODEL, input_tokens=1, output_tokens=46)
    assert one_call().take(same, None) is not None
    assert one_call().take(same, payloads.CHAT_ID) is not None
    assert one_call().take(same, "chatcmpl-another-response-of-the-run") is None
    other_counts = LLMUsage("openai", "chat.completions", MODEL, 1, 47)
    assert one_call().take(other_counts, None) is None
    # counts alone never match another model's call
    other_model = LLMUsage("openai", "chat.completions", "gpt-4o", 1, 46)
    run = one_call()
    assert run.take(other_model, None) is None
    assert run.take(other_model, payloads.CHAT_ID) is not None  # the response id says it is
    assert FrameworkRun("call").take(same, None) is None  # nothing billed in the run
    run = one_call()
    assert run.take(same, None) is not None
    assert run.take(same, None) is None  # taken once

    client = _client(LLMTracker(sink))

    def twice() -> None:
        for _ in range(2):
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    run = _in_run(twice)  # the two calls report 1 and 2 prompt tokens
    assert run.take(LLMUsage("openai", "chat.completions", MODEL, 2, 46), None) is not None
    assert [bill[1] for bill in run.bills] == [1]
    # two bills with the same counts are not told apart: none is guessed
    run = FrameworkRun("call")
    run.note(LLMUsage("openai", "chat.completions", "m", 1, 2, response_id="chatcmpl-a"))
    run.note(LLMUsage("openai", "chat.completions", "m", 1, 2, response_id="chatcmpl-b"))
    assert run.take(LLMUsage("openai", "chat.completions", "m", 1, 2), None) is None
    assert len(run.bills) == 2


def test_a_run_takes_calls_only_while_it_waits_for_them() -> None:
    """Once the framework has its answer (first output, or its end), calls made in the run's
    context are not noted: they are the caller's own."""
    sink = RecordingSink()
    client = _client(LLMTracker(sink))
    run = FrameworkRun("call")

    def call() -> None:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    _in_run(call, run)
    run.answered("call")
    _in_run(call, run)
    assert [bill[1] for bill in run.bills] == [1]  # the call made before the answer only
    assert len(sink.events) == 2


def test_calls_started_together_share_a_run_up_to_their_number() -> None:
    run = FrameworkRun("a", expected=3)
    assert run.join("b")
    assert run.join("c")
    assert not run.join("d")  # all three joined
    run.answered("a")
    run.answered("b")
    assert run.waiting == {"c"}
    run.close()
    assert not run.waiting
    late = FrameworkRun("x", expected=2)
    late.answered("x")
    assert not late.join("y")  # the framework answered: a new call is not one of these
    assert not FrameworkRun("x").join("y")  # a call started alone shares with none


def test_a_run_keeps_a_bounded_number_of_bills_per_call() -> None:
    run = FrameworkRun("call")
    usage = LLMUsage("openai", "chat.completions", input_tokens=1, response_id=payloads.CHAT_ID)
    for _ in range(100):
        run.note(usage)
    assert run.bills == [(identity_of(usage), 1, None, None)] * 4
    run.note(LLMUsage("openai", "chat.completions"))  # no response id: nothing to share
    assert len(run.bills) == 4
    shared = FrameworkRun("a", expected=2)
    shared.join("b")
    for _ in range(100):
        shared.note(usage)
    assert len(shared.bills) == 8


def test_outside_a_run_nothing_is_noted() -> None:
    sink = RecordingSink()
    client = _client(LLMTracker(sink))
    run = FrameworkRun("call")
    _in_run(lambda: None, run)  # a run that ended before the call
    contextvars.Context().run(client.chat.completions.create, model="gpt-4o", messages=MESSAGES)
    assert run.bills == []
    assert len(sink.events) == 1


def test_a_stream_created_in_a_run_notes_its_bill_wherever_it_ends() -> None:
    """The run is kept with the call: a stream read to the end in another thread, outside
    any run, is noted in the run it was created in."""
    sink = RecordingSink()
    tracker = LLMTracker(sink)
    transport = httpx2.MockTransport(payloads.chat_stream_for)
    client = tracker.wrap(
        openai.OpenAI(api_key="sk-test", http_client=httpx2.Client(transport=transport)),
        customer_id="cus_1",
    )
    streams: list[Any] = []
    run = _in_run(
        lambda: streams.append(
            client.chat.completions.create(model="gpt-4o", messages=MESSAGES, stream=True)
        )
    )
    assert run.bills == []  # not billed before it ends
    reader = threading.Thread(target=lambda: list(streams[0]))
    reader.start()
    reader.join(timeout=30)
    ((identity, input_tokens, output_tokens, _),) = run.bills
    assert (identity[0], input_tokens, output_tokens) == (payloads.CHAT_ID, 19, 3)
    assert sink.only().event_id == event_id(
        LLMUsage("openai", "chat.completions", response_id=payloads.CHAT_ID, created=1767225601),
        "llm.chat_completion",
    )


def test_concurrent_runs_in_threads_each_capture_their_own_call() -> None:
    """Threads each in their own run, calling one wrapped client at once (a barrier makes
    the calls overlap): each run holds exactly its own call's bill."""
    sink = RecordingSink()
    client = _client(LLMTracker(sink))
    threads = 16
    barrier = threading.Barrier(threads)
    runs: list[FrameworkRun] = []
    runs_lock = threading.Lock()

    def call() -> None:
        barrier.wait(timeout=30)
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)

    def worker() -> None:
        run = _in_run(call)
        with runs_lock:
            runs.append(run)

    workers = [threading.Thread(target=worker) for _ in range(threads)]
    for thread in workers:
        thread.start()
    for thread in workers:
        thread.join(timeout=60)
    assert len(runs) == threads
    assert all(len(run.bills) == 1 for run in runs)
    # each call reported its own prompt count: every run holds a different call
    assert sorted(run.bills[0][1] or 0 for run in runs) == list(range(1, threads + 1))
    assert len(sink.events) == threads
