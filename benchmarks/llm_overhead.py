"""Overhead of LLMTracker: wrapped vs raw provider clients against a loopback mock provider.

A mock of the OpenAI, Anthropic and Gemini APIs (and of ``POST /events/ingest``) runs as a
real HTTP server on 127.0.0.1 in a subprocess. In one run, for each provider and for
non-stream and stream calls, raw and wrapped clients alternate in rounds; the wrapped client
reports to a real ``Ingestion`` that delivers to the same mock. Printed per case: median wall
time per call of each client, the median of the paired differences (added time) and its ratio
to the raw call. "openai chat stream" includes the usage chunk the tracker asks for (which the
SDK parses before the tracker hides it); "+usage" is the same stream when the caller asked
for usage itself, so both clients receive the same chunks. A second table repeats the cases
over an in-process transport (no network), where the tracker's CPU cost is not hidden by
network latency, and a third one with events going to a null sink instead of the
``Ingestion`` (the tracker without the delivery pipeline). The last table times the
tracker's own work directly, hot (in a loop) and cold (right after a raw SDK call, as it
runs inside real calls).

    .venv/bin/python benchmarks/llm_overhead.py [--calls 2000] [--chunks 20]
        [--tables loopback,in-process,null-sink,direct]

The source of ``dodo_ingest`` it runs is printed first: to compare two versions of the code
in one session, run it again with ``PYTHONPATH=<other checkout>/src``.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

TARGET_ADDED_US = 30.0
TARGET_RATIO = 0.02
TABLES = ("loopback", "in-process", "null-sink", "direct")


def _load() -> str:
    return " ".join(f"{value:.2f}" for value in os.getloadavg())


# ----------------------------------------------------------------------- mock provider


def _sse(frames: list[Any], named: bool = False) -> bytes:
    out = []
    for frame in frames:
        data = frame if isinstance(frame, str) else json.dumps(frame)
        event = f"event: {frame['type']}\n" if named and isinstance(frame, dict) else ""
        out.append(f"{event}data: {data}\n\n")
    return "".join(out).encode()


def _openai(body: dict[str, Any], chunks: int) -> tuple[str, bytes]:
    usage = {"prompt_tokens": 19, "completion_tokens": chunks, "total_tokens": 19 + chunks}
    base = {"id": "chatcmpl-bench", "created": 1, "model": "gpt-4o-mini-2024-07-18"}
    if not body.get("stream"):
        message = {"role": "assistant", "content": "Hello " * chunks}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        completion = {**base, "object": "chat.completion", "choices": [choice], "usage": usage}
        return "application/json", json.dumps(completion).encode()
    frames: list[Any] = []
    for n in range(chunks):
        delta = {"content": "Hello "} if n else {"role": "assistant", "content": ""}
        choice = {"index": 0, "delta": delta, "finish_reason": None}
        frames.append({**base, "object": "chat.completion.chunk", "choices": [choice]})
    if (body.get("stream_options") or {}).get("include_usage"):
        frames.append({**base, "object": "chat.completion.chunk", "choices": [], "usage": usage})
    frames.append("[DONE]")
    return "text/event-stream", _sse(frames)


def _anthropic(body: dict[str, Any], chunks: int) -> tuple[str, bytes]:
    usage = {"input_tokens": 12, "cache_read_input_tokens": 100, "output_tokens": chunks}
    message = {
        "id": "msg_bench",
        "type": "message",
        "role": "assistant",
        "model": "claude-sonnet-4-6",
        "stop_reason": "end_turn",
        "stop_sequence": None,
    }
    if not body.get("stream"):
        text = {"type": "text", "text": "Hello " * chunks}
        return "application/json", json.dumps(
            {**message, "content": [text], "usage": usage}
        ).encode()
    start = {**message, "content": [], "stop_reason": None, "usage": {**usage, "output_tokens": 1}}
    frames: list[Any] = [
        {"type": "message_start", "message": start},
        {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}},
    ]
    delta = {"type": "text_delta", "text": "Hello "}
    frames += [{"type": "content_block_delta", "index": 0, "delta": delta}] * chunks
    frames += [
        {"type": "content_block_stop", "index": 0},
        {"type": "message_delta", "delta": {"stop_reason": "end_turn"}, "usage": usage},
        {"type": "message_stop"},
    ]
    return "text/event-stream", _sse(frames, named=True)


def _gemini(stream: bool, chunks: int) -> tuple[str, bytes]:
    def chunk(text: str, final: bool) -> dict[str, Any]:
        candidate: dict[str, Any] = {"content": {"parts": [{"text": text}], "role": "model"}}
        usage: dict[str, Any] = {"promptTokenCount": 9, "thoughtsTokenCount": 4}
        if final:
            candidate["finishReason"] = "STOP"
            usage["candidatesTokenCount"] = chunks
        return {
            "candidates": [candidate],
            "usageMetadata": usage,
            "modelVersion": "gemini-2.5-flash",
            "responseId": "gem-bench",
        }

    if not stream:
        return "application/json", json.dumps(chunk("Hello " * chunks, True)).encode()
    return "text/event-stream", _sse([chunk("Hello ", n == chunks - 1) for n in range(chunks)])


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    chunks = 20

    def setup(self) -> None:
        super().setup()
        # headers and body go out as separate writes: without this, Nagle's algorithm and
        # delayed ACKs add ~40 ms to every call
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_POST(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = json.loads(self.rfile.read(length) or b"{}")
        path = self.path
        if path.startswith("/events/ingest"):
            kind, payload = (
                "application/json",
                json.dumps({"ingested_count": len(body.get("events", []))}).encode(),
            )
        elif path.startswith("/v1/chat/completions"):
            kind, payload = _openai(body, self.chunks)
        elif path.startswith("/v1/messages"):
            kind, payload = _anthropic(body, self.chunks)
        else:
            kind, payload = _gemini("streamGenerateContent" in path, self.chunks)
        self.send_response(200)
        self.send_header("content-type", kind)
        self.send_header("content-length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def log_message(self, format: str, *args: Any) -> None:
        pass


def serve(chunks: int) -> None:
    """Run the mock provider until stdin closes; print the port first."""
    _Handler.chunks = chunks
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.daemon_threads = True
    print(server.server_address[1], flush=True)
    import threading

    threading.Thread(target=server.serve_forever, daemon=True).start()
    sys.stdin.read()
    server.shutdown()


# --------------------------------------------------------------------------- measuring

Call = Callable[[], Any]


def _answer(request: Any, chunks: int) -> tuple[str, bytes]:
    """The mock provider's answer to an httpx2 request (in-process transport)."""
    body = json.loads(request.content or b"{}")
    path = request.url.path
    if path.endswith("/chat/completions"):
        return _openai(body, chunks)
    if path.endswith("/messages"):
        return _anthropic(body, chunks)
    return _gemini("streamGenerateContent" in path, chunks)


def _clients(base_url: str, chunks: int, in_process: bool) -> dict[str, Callable[[], Any]]:
    """Factories of fresh provider clients, over loopback HTTP or an in-process transport."""
    import anthropic
    import httpx2
    import openai
    from google import genai

    def handler(request: Any) -> Any:
        kind, payload = _answer(request, chunks)
        return httpx2.Response(200, content=payload, headers={"content-type": kind})

    def http_client() -> Any:
        return httpx2.Client(transport=httpx2.MockTransport(handler)) if in_process else None

    gemini_options: Any = {"base_url": f"{base_url}/"}
    if in_process:
        gemini_options["client_args"] = {"transport": httpx2.MockTransport(handler)}
    return {
        "openai": lambda: openai.OpenAI(
            api_key="sk", base_url=f"{base_url}/v1", max_retries=0, http_client=http_client()
        ),
        "anthropic": lambda: anthropic.Anthropic(
            api_key="sk", base_url=base_url, max_retries=0, http_client=http_client()
        ),
        "gemini": lambda: genai.Client(api_key="k", http_options=gemini_options),
    }


def _calls(client: Any, provider: str) -> dict[str, Call]:
    messages: Any = [{"role": "user", "content": "hi"}]
    if provider == "openai":
        chat = client.chat.completions
        return {
            "openai chat": lambda: chat.create(model="gpt-4o-mini", messages=messages),
            "openai chat stream": lambda: list(
                chat.create(model="gpt-4o-mini", messages=messages, stream=True)
            ),
            "openai chat stream +usage": lambda: list(
                chat.create(
                    model="gpt-4o-mini",
                    messages=messages,
                    stream=True,
                    stream_options={"include_usage": True},
                )
            ),
        }
    if provider == "anthropic":
        args: Any = {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": messages}
        return {
            "anthropic messages": lambda: client.messages.create(**args),
            "anthropic messages stream": lambda: list(client.messages.create(**args, stream=True)),
        }
    models = client.models
    return {
        "gemini generate": lambda: models.generate_content(model="gemini-2.5-flash", contents="hi"),
        "gemini generate stream": lambda: list(
            models.generate_content_stream(model="gemini-2.5-flash", contents="hi")
        ),
    }


def _paired_us(raw: Call, wrapped: Call, calls: int) -> tuple[float, float, float]:
    """Median raw and wrapped wall time per call, and the median of the paired differences;
    the two clients alternate call by call (and which goes first) to cancel drift."""
    clock = time.perf_counter_ns
    raw_ns, wrapped_ns, diffs = [], [], []
    for n in range(calls):
        order = (raw, wrapped) if n % 2 == 0 else (wrapped, raw)
        took = []
        for call in order:
            start = clock()
            call()
            took.append(clock() - start)
        r, w = (took[0], took[1]) if n % 2 == 0 else (took[1], took[0])
        raw_ns.append(r)
        wrapped_ns.append(w)
        diffs.append(w - r)
    return (
        statistics.median(raw_ns) / 1000,
        statistics.median(wrapped_ns) / 1000,
        statistics.median(diffs) / 1000,
    )


def _run(title: str, factories: dict[str, Callable[[], Any]], tracker: Any, calls: int) -> float:
    print(f"\n{title}")
    print(f"{'case':28} {'raw us':>9} {'wrapped us':>11} {'added us':>9} {'ratio':>7}")
    worst = 0.0
    keep = []
    for provider, factory in factories.items():
        raw_client = factory()
        wrapped_client = tracker.wrap(factory(), customer_id="cus_bench")
        keep += [raw_client, wrapped_client]  # genai's Client.__del__ closes its HTTP client
        raw_calls = _calls(raw_client, provider)
        wrapped_calls = _calls(wrapped_client, provider)
        for name, raw in raw_calls.items():
            wrapped = wrapped_calls[name]
            for _ in range(30):  # warm up connections, caches, class lookups
                raw()
                wrapped()
            raw_us, wrapped_us, added = _paired_us(raw, wrapped, calls)
            ratio = added / raw_us
            worst = max(worst, ratio if added > TARGET_ADDED_US else 0.0)
            print(f"{name:28} {raw_us:9.1f} {wrapped_us:11.1f} {added:9.1f} {ratio:7.2%}")
    return worst


def _cold_us(work: Call, baseline: Call, evict: Call, repeat: int) -> float:
    """Median time of ``work`` minus that of ``baseline`` when each runs right after ``evict``
    (a raw SDK call), as inside real calls: the tracker's code and data are then out of the
    CPU caches."""
    clock = time.perf_counter_ns
    work_ns, baseline_ns = [], []
    for _ in range(repeat):
        evict()
        start = clock()
        work()
        work_ns.append(clock() - start)
        evict()
        start = clock()
        baseline()
        baseline_ns.append(clock() - start)
    return (statistics.median(work_ns) - statistics.median(baseline_ns)) / 1000


def _timed_us(
    work: Call, baseline: Call, repeat: int, clock: Callable[[], int] = time.perf_counter_ns
) -> float:
    """Median over 7 batches of (``work`` - ``baseline``) per run, in microseconds, by
    ``clock`` (wall time; ``time.thread_time_ns``: this thread's CPU time, which a busy
    machine's other processes do not inflate)."""
    results = []
    for _ in range(7):
        start = clock()
        for _ in range(repeat):
            work()
        middle = clock()
        for _ in range(repeat):
            baseline()
        results.append(((middle - start) - (clock() - middle)) / repeat / 1000)
    return statistics.median(results)


class _NullSink:
    """Takes events and drops them: isolates the tracker from ``Ingestion.track()`` (whose own
    cost, ~3 us, ``benchmarks/delivery_throughput.py`` measures) and its delivery thread."""

    def track(
        self, customer_id: str, event_name: Any = None, metadata: Any = None, **_: Any
    ) -> str:
        return "evt"


def _direct(base_url: str, chunks: int, repeat: int, sink: Any, title: str) -> None:
    """Time the tracker's own work per call directly, on real SDK objects (no SDK, no I/O),
    with its events going to ``sink``."""
    import anthropic._models
    import openai._models

    from dodo_ingest.blueprints.llm import LLMTracker
    from dodo_ingest.blueprints.llm._anthropic import MessageStreamUsage
    from dodo_ingest.blueprints.llm._google import GenerateStreamUsage
    from dodo_ingest.blueprints.llm._openai import stream_accumulator
    from dodo_ingest.blueprints.llm._streams import StreamTap, tap_iterator

    tracker = LLMTracker(sink)
    factories = _clients(base_url, chunks, in_process=True)
    messages: Any = [{"role": "user", "content": "hi"}]
    rows: dict[str, tuple[Call, Call, Call]] = {}

    raw = factories["openai"]()
    state = tracker.wrap(factories["openai"](), customer_id="cus_bench")._dodo_state
    body = {"model": "gpt-4o-mini", "messages": messages}
    options = openai._models.FinalRequestOptions.construct(
        method="post", url="/chat/completions", json_data=body
    )
    stream_options = openai._models.FinalRequestOptions.construct(
        method="post", url="/chat/completions", json_data={**body, "stream": True}
    )
    completion = raw.chat.completions.create(**body)
    chat_chunks = list(
        raw.chat.completions.create(**body, stream=True, stream_options={"include_usage": True})
    )

    def chat() -> None:
        state.finish(state.start(options, False), completion)

    def chat_stream() -> None:
        call = state.start(stream_options, True)
        accumulator = stream_accumulator(state.provider, call.operation, call.model, True, None)
        for _ in tap_iterator(iter(chat_chunks), StreamTap(accumulator, tracker, call.scope)):
            pass

    def openai_call() -> None:
        raw.chat.completions.create(**body)

    rows["openai chat"] = (chat, lambda: None, openai_call)
    rows["openai chat stream"] = (
        chat_stream,
        lambda: [None for _ in iter(chat_chunks)],
        openai_call,
    )

    raw_claude = factories["anthropic"]()
    claude_state = tracker.wrap(factories["anthropic"](), customer_id="cus_bench")._dodo_state
    claude_body = {"model": "claude-sonnet-4-6", "max_tokens": 64, "messages": messages}
    claude_options = anthropic._models.FinalRequestOptions.construct(
        method="post", url="/v1/messages", json_data=claude_body
    )
    message = raw_claude.messages.create(**claude_body)
    events = list(raw_claude.messages.create(**claude_body, stream=True))

    def claude() -> None:
        claude_state.finish(claude_state.start(claude_options, False), message)

    def claude_stream() -> None:
        call = claude_state.start(claude_options, True)
        accumulator = MessageStreamUsage("anthropic", "messages", call.model, None)
        for _ in tap_iterator(iter(events), StreamTap(accumulator, tracker, call.scope)):
            pass

    def anthropic_call() -> None:
        raw_claude.messages.create(**claude_body)

    rows["anthropic messages"] = (claude, lambda: None, anthropic_call)
    rows["anthropic messages stream"] = (
        claude_stream,
        lambda: [None for _ in iter(events)],
        anthropic_call,
    )

    raw_gemini = factories["gemini"]()
    wrapped_gemini = tracker.wrap(factories["gemini"](), customer_id="cus_bench")
    models_state = wrapped_gemini.models._dodo_state
    kwargs = {"model": "gemini-2.5-flash", "contents": "hi"}
    content = raw_gemini.models.generate_content(**kwargs)
    gemini_chunks = list(raw_gemini.models.generate_content_stream(**kwargs))

    def gemini() -> None:
        scope = models_state.binding.resolve()
        models_state.record(scope, content, kwargs, "generate_content")

    def gemini_stream() -> None:
        scope = models_state.binding.resolve()
        accumulator = GenerateStreamUsage("google", "gemini-2.5-flash", None)
        for _ in tap_iterator(iter(gemini_chunks), StreamTap(accumulator, tracker, scope)):
            pass

    def gemini_call() -> None:
        raw_gemini.models.generate_content(**kwargs)

    rows["gemini generate"] = (gemini, lambda: None, gemini_call)
    rows["gemini generate stream"] = (
        gemini_stream,
        lambda: [None for _ in iter(gemini_chunks)],
        gemini_call,
    )

    print(f"\n{title}")
    print(f"{'case':28} {'hot us':>9} {'cold us':>9} {'hot cpu us':>11}")
    for name, (work, baseline, evict) in rows.items():
        hot = _timed_us(work, baseline, repeat)
        cold = _cold_us(work, baseline, evict, repeat // 4)
        cpu = _timed_us(work, baseline, repeat, time.thread_time_ns)
        print(f"{name:28} {hot:9.1f} {cold:9.1f} {cpu:11.1f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000, help="paired calls per case")
    parser.add_argument("--chunks", type=int, default=20, help="content chunks per stream")
    parser.add_argument(
        "--tables",
        default=",".join(TABLES),
        help=f"comma-separated tables to run, of {', '.join(TABLES)}",
    )
    parser.add_argument("--serve", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.chunks)
        return 0
    tables = set(args.tables.split(","))
    if not tables <= set(TABLES):
        parser.error(f"--tables: unknown {', '.join(sorted(tables - set(TABLES)))}")

    import dodo_ingest
    from dodo_ingest.blueprints.llm import LLMTracker
    from dodo_ingest.delivery import Ingestion

    print(
        f"== start {time.strftime('%H:%M:%S')} load: {_load()}; dodo_ingest from "
        f"{os.path.dirname(dodo_ingest.__file__)}"
    )

    server = subprocess.Popen(
        [sys.executable, __file__, "--serve", "--chunks", str(args.chunks)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert server.stdout is not None
        base_url = f"http://127.0.0.1:{int(server.stdout.readline())}"
        print(
            f"{args.calls} paired calls per case, {args.chunks} content chunks per stream, "
            f"python {sys.version.split()[0]};\nwrapped clients report to a real Ingestion "
            "delivering to the mock's /events/ingest"
        )
        with Ingestion(api_key="bench_key", base_url=base_url) as ingestion:
            tracker = LLMTracker(ingestion)
            if "loopback" in tables:
                _run(
                    "loopback HTTP (mock provider in a subprocess on 127.0.0.1)",
                    _clients(base_url, args.chunks, in_process=False),
                    tracker,
                    args.calls,
                )
            in_process = _clients(base_url, args.chunks, in_process=True)
            if "in-process" in tables:
                _run(
                    "in-process transport (no network: the tracker's CPU cost stands out)",
                    in_process,
                    tracker,
                    args.calls,
                )
            if "null-sink" in tables:
                _run(
                    "in-process transport, events to a null sink (the tracker without Ingestion)",
                    in_process,
                    LLMTracker(_NullSink()),
                    args.calls,
                )
            if "direct" in tables:
                _direct(
                    base_url,
                    args.chunks,
                    2000,
                    _NullSink(),
                    "tracker's own work per call, timed directly on real SDK objects (no SDK,\n"
                    "no I/O, events to a null sink): hot = repeated in a loop; cold = right\n"
                    "after a raw SDK call; hot cpu = hot, in this thread's CPU time",
                )
                _direct(
                    base_url,
                    args.chunks,
                    2000,
                    ingestion,
                    "the same, events to the Ingestion (its entry included)",
                )
            ingestion.flush(timeout=30)
            stats = tracker.stats
            print(
                f"\ntracker: events={stats.events} incomplete={stats.incomplete} "
                f"failures={stats.failures}"
            )
            print(
                f"delivery: enqueued={ingestion.stats.enqueued} "
                f"delivered={ingestion.stats.delivered}"
            )
        print(
            f"targets: added <= {TARGET_ADDED_US:.0f} us per call and <= {TARGET_RATIO:.0%} of "
            "the raw loopback call"
        )
        print(f"== end {time.strftime('%H:%M:%S')} load: {_load()}")
        return 0
    finally:
        if server.stdin is not None:
            server.stdin.close()
        server.wait(timeout=10)


if __name__ == "__main__":
    sys.exit(main())
