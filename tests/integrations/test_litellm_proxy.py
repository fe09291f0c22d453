"""The LiteLLM proxy billing through ``DodoLiteLLMLogger``: the real proxy in a subprocess on
127.0.0.1, configured by a ``config.yaml`` (models on a loopback server that answers like
OpenAI; the logger of ``_proxy_logger`` as its callback), called with the real OpenAI SDK;
the events are read back from the dev server the proxy's ``Ingestion`` sends to."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest

from dodo_ingest.blueprints.llm import LLMUsage
from dodo_ingest.blueprints.llm._event_ids import event_id
from dodo_ingest.delivery import Ingestion, Outbox
from dodo_ingest.devserver import DevServer
from tests.blueprints.llm import payloads

from .conftest import loopback, provider, require, stored

openai = require("openai", "openai")

NAME = "llm.chat_completion"
ROOT = Path(__file__).resolve().parents[2]
MESSAGES = [{"role": "user", "content": "hi"}]
#: LiteLLM passes no service tier on
CHAT = {k: v for k, v in payloads.CHAT_METADATA.items() if k != "serviceTier"}
STREAM = payloads.STREAM_METADATA
#: the proxy's key with no metadata (``_proxy_logger.KEYS``; that module is loaded by the proxy
#: only: it builds an ``Ingestion`` from the proxy's environment)
MASTER_KEY = "sk-master-test"
READY_TIMEOUT = 180.0  # the proxy imports for 10-20 s on a busy 2-core machine
BILLED_TIMEOUT = 30.0

CONFIG = """\
model_list:
  - model_name: gpt-test
    litellm_params:
      model: openai/gpt-5.4-mini
      api_base: {api}/v1
      api_key: sk-test
  - model_name: embedding-test
    litellm_params:
      model: openai/text-embedding-3-small
      api_base: {api}/v1
      api_key: sk-test

litellm_settings:
  callbacks: tests.integrations._proxy_logger.proxy_handler_instance

general_settings:
  master_key: {master_key}
  custom_auth: tests.integrations._proxy_logger.user_api_key_auth
"""


def _chat(request: httpx2.Request) -> httpx2.Response:
    """A chat completion (or its stream) under an id of its own, so every call is one event."""
    response_id = f"chatcmpl-Px{uuid.uuid4().hex}"
    body = json.loads(request.content)
    if not body.get("stream"):
        return payloads.json_response(payloads.chat_completion(id=response_id))
    usage = bool((body.get("stream_options") or {}).get("include_usage"))
    frames = payloads.chat_chunks(with_usage=usage)
    for frame in frames:
        if isinstance(frame, dict):
            frame["id"] = response_id
    return payloads.sse_response(frames)


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


def _unavailable(log: str) -> None:
    """The proxy could not start for want of a module: skip locally, fail in CI."""
    missing = re.search(r"No module named '([^']+)'", log)
    if missing is None:
        return
    reason = (
        f"the LiteLLM proxy cannot start: no module {missing.group(1)!r} "
        "(pip install -e '.[dev]' installs the modules it needs)"
    )
    if os.environ.get("CI"):
        pytest.fail(f"integration tests must run in CI: {reason}")
    pytest.skip(reason)


def _wait_ready(process: subprocess.Popen[bytes], url: str, log: Path) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if process.poll() is not None:
            text = log.read_text(errors="replace")
            _unavailable(text)
            pytest.fail(f"the LiteLLM proxy exited ({process.returncode}):\n{text[-3000:]}")
        try:
            if httpx2.get(f"{url}/health/liveliness", timeout=1.0).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        if time.monotonic() > deadline:
            text = log.read_text(errors="replace")
            pytest.fail(f"the LiteLLM proxy was not ready in {READY_TIMEOUT} s:\n{text[-3000:]}")
        time.sleep(0.2)


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@contextmanager
def running_proxy(
    server: DevServer, directory: Path, **environment: str
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """A proxy billing to ``server`` (``environment`` added to its own): its base URL and
    process, stopped at the end."""
    log = directory / "proxy.log"
    env = {
        **os.environ,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",  # no price-map download
        "DODO_PAYMENTS_API_KEY": "dev_key",
        "DODO_PAYMENTS_BASE_URL": server.base_url,
        "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])),
        **environment,
    }
    port = _free_port()
    with loopback(provider(_chat)) as api, log.open("wb") as output:
        config = directory / "config.yaml"
        config.write_text(CONFIG.format(api=api, master_key=MASTER_KEY))
        command = [sys.executable, "-m", "litellm.proxy.proxy_cli", "--config", str(config)]
        process = subprocess.Popen(
            [*command, "--host", "127.0.0.1", "--port", str(port)],
            cwd=directory,
            env=env,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_ready(process, url, log)
            yield url, process
        finally:
            _stop(process)


@pytest.fixture(scope="module")
def proxy(server: DevServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The proxy's base URL; it bills to ``server``."""
    with running_proxy(server, tmp_path_factory.mktemp("litellm-proxy")) as (url, _):
        yield url


def client(proxy: str, key: str = MASTER_KEY) -> Any:
    return openai.OpenAI(api_key=key, base_url=f"{proxy}/v1", max_retries=0)


def billed(server: DevServer, *customers: str) -> dict[str, list[tuple[str, dict[str, object]]]]:
    """The events the dev server keeps for each of ``customers``, once the proxy has sent one
    to any of them."""
    deadline = time.monotonic() + BILLED_TIMEOUT
    while True:
        events = {name: stored(server, name) for name in customers}
        if any(events.values()):
            return events
        assert time.monotonic() < deadline, f"no event for {customers} in {BILLED_TIMEOUT} s"
        time.sleep(0.05)


def customer() -> str:
    return f"cus_px_{uuid.uuid4().hex[:8]}"


def chat_event_id(response_id: str, created: int) -> str:
    usage = LLMUsage("openai", "chat.completions", response_id=response_id, created=created)
    return event_id(usage, NAME)


def test_chat_billed_to_the_request_user(proxy: str, server: DevServer) -> None:
    user = customer()
    response = client(proxy).chat.completions.create(model="gpt-test", messages=MESSAGES, user=user)
    assert response.usage.prompt_tokens == 1117
    ((stored_id, metadata),) = billed(server, user)[user]
    assert stored_id == chat_event_id(response.id, response.created)
    assert metadata == CHAT


def test_customer_from_the_request_metadata(proxy: str, server: DevServer) -> None:
    named = customer()
    response = client(proxy).chat.completions.create(
        model="gpt-test", messages=MESSAGES, extra_body={"metadata": {"customer_id": named}}
    )
    ((stored_id, metadata),) = billed(server, named)[named]
    assert stored_id == chat_event_id(response.id, response.created)
    assert (metadata["inputTokens"], metadata["outputTokens"]) == (1117, 46)


@pytest.mark.parametrize(
    "stream_options", [None, {"include_usage": True}], ids=["proxy-asks", "client-asks"]
)
def test_stream_billed_from_the_provider_usage(
    proxy: str, server: DevServer, stream_options: dict[str, bool] | None
) -> None:
    """The proxy asks the provider for a stream's usage itself (and strips it from the
    client's stream unless the client asked): the provider's counts are billed either way."""
    user = customer()
    options = {} if stream_options is None else {"stream_options": stream_options}
    chunks = list(
        client(proxy).chat.completions.create(
            model="gpt-test", messages=MESSAGES, user=user, stream=True, **options
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "Hello there!"
    assert any(c.usage for c in chunks) is (stream_options is not None)
    ((stored_id, metadata),) = billed(server, user)[user]
    assert stored_id == chat_event_id(chunks[0].id, chunks[0].created)
    assert metadata == STREAM


def test_embeddings_billed_under_the_proxy_call_id(proxy: str, server: DevServer) -> None:
    user = customer()
    raw = client(proxy).embeddings.with_raw_response.create(
        model="embedding-test", input=["hello"], user=user
    )
    call_id = raw.headers["x-litellm-call-id"]
    assert raw.parse().usage.prompt_tokens == 8
    ((stored_id, metadata),) = billed(server, user)[user]
    assert stored_id == event_id(LLMUsage("openai", "embeddings", response_id=call_id), NAME)
    assert metadata["operation"] == "embeddings"
    assert (metadata["inputTokens"], metadata["outputTokens"]) == (8, 0)


def test_responses_billed_to_the_customer_in_their_metadata(proxy: str, server: DevServer) -> None:
    """The proxy keeps its own fields of a Responses call apart (``litellm_metadata``) and
    hands the request's ``metadata`` on to the provider: the customer is still read from it.
    The event id is that of the id the proxy shows the client (it wraps the provider's)."""
    named = customer()
    response = client(proxy).responses.create(
        model="gpt-test", input="hi", metadata={"customer_id": named}
    )
    assert response.usage.input_tokens == 2048
    ((stored_id, metadata),) = billed(server, named)[named]
    # LiteLLM's Responses object keeps created_at an int; the OpenAI SDK makes it a float
    created = int(response.created_at)
    usage = LLMUsage("openai", "responses", response_id=response.id, created=created)
    assert stored_id == event_id(usage, NAME)
    # the proxy names its model group on Responses objects (the provider's model is gone)
    assert metadata == {**payloads.RESPONSES_METADATA, "model": "gpt-test"}


def test_the_key_metadata_names_the_customer_whatever_the_request_says(
    proxy: str, server: DevServer
) -> None:
    """A virtual key its operator gave ``metadata={"customer_id": ...}`` bills that customer: a
    request cannot name another one (``_proxy_logger.KEYS``)."""
    other = customer()
    response = client(proxy, "sk-key-of-cus-key").chat.completions.create(
        model="gpt-test",
        messages=MESSAGES,
        user=other,
        extra_body={"metadata": {"customer_id": other}},
    )
    events = billed(server, "cus_key", other)
    assert events[other] == []
    ((stored_id, _),) = events["cus_key"]
    assert stored_id == chat_event_id(response.id, response.created)


def test_the_team_metadata_names_the_customer(proxy: str, server: DevServer) -> None:
    other = customer()
    client(proxy, "sk-team-key").chat.completions.create(
        model="gpt-test", messages=MESSAGES, user=other
    )
    events = billed(server, "cus_team", other)
    assert events[other] == []
    assert len(events["cus_team"]) == 1


def test_the_proxy_refuses_an_unknown_key(proxy: str) -> None:
    """The keys of the tests above are the only ones the proxy takes."""
    with pytest.raises(openai.AuthenticationError):
        client(proxy, "sk-unknown").chat.completions.create(model="gpt-test", messages=MESSAGES)


def test_an_outbox_keeps_what_a_stopped_proxy_had_not_sent(
    server: DevServer, tmp_path: Path
) -> None:
    """The proxy's ``Ingestion`` with an outbox (``PROXY_TEST_OUTBOX``, sending once an hour):
    a billed call waits in the file when the proxy is stopped, and the next ``Ingestion``
    on that file delivers it under the call's event id."""
    path = tmp_path / "outbox.db"
    user = customer()
    with running_proxy(server, tmp_path, PROXY_TEST_OUTBOX=str(path)) as (url, process):
        response = client(url).chat.completions.create(
            model="gpt-test", messages=MESSAGES, user=user
        )
        deadline = time.monotonic() + BILLED_TIMEOUT
        with Outbox(path, create=False) as outbox:
            while outbox.count_pending() == 0:
                assert time.monotonic() < deadline, "the proxy never wrote the event"
                time.sleep(0.05)
        _stop(process)
    with Ingestion(api_key="dev_key", base_url=server.base_url, outbox=path) as restarted:
        assert restarted.flush(timeout=10)
    ((stored_id, metadata),) = stored(server, user)
    assert stored_id == chat_event_id(response.id, response.created)
    assert metadata == CHAT


def test_a_stopped_proxy_delivers_what_it_queued_with_the_signal_handlers(
    server: DevServer, tmp_path: Path
) -> None:
    """The callbacks module as documented for stopping the proxy: with
    ``install_signal_handlers()``, a call billed in memory (sending once an hour) is delivered
    when the proxy is stopped with ``SIGTERM``, although uvicorn ends the process by the signal
    it sends itself again (no exit hook runs)."""
    noted = tmp_path / "queued.txt"
    user = customer()
    with running_proxy(server, tmp_path, PROXY_TEST_SIGNALS=str(noted)) as (url, process):
        response = client(url).chat.completions.create(
            model="gpt-test", messages=MESSAGES, user=user
        )
        deadline = time.monotonic() + BILLED_TIMEOUT
        while not noted.exists() or not noted.read_text():
            assert time.monotonic() < deadline, "the proxy never queued the event"
            time.sleep(0.05)
        assert stored(server, user) == []  # still queued: sent once an hour
        _stop(process)
    ((stored_id, metadata),) = billed(server, user)[user]
    assert stored_id == chat_event_id(response.id, response.created) == noted.read_text()
    assert metadata == CHAT
