"""Each attempt has a total deadline: a server trickling its answer cannot hold a request open.

The servers here are raw sockets on 127.0.0.1 that write an answer one byte at a time, each
byte well within the per-read timeout, so only a bound on the whole attempt can end the call.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator

import pytest

from dodo_ingest import APITimeoutError, AsyncDodoClient, DodoClient, EventInput

KEY = "sk_test_DEADLINE_0123456789abcdef"
EVENTS = [EventInput("evt_1", "cus_1", "api.call")]
DEADLINE = 0.5
GAP = 0.1  # between two bytes: far below the per-read timeout (DEADLINE)
BOUND = 3 * DEADLINE  # a bound on a hang, not a performance figure
BODY = b'{"ingested_count": 1}'


def _answer(padding: int = 0) -> tuple[bytes, bytes]:
    head = (
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n"
        + b"X-Padding: "
        + b"a" * padding
        + b"\r\nContent-Length: "
        + str(len(BODY)).encode()
        + b"\r\n\r\n"
    )
    return head, BODY


class DripServer:
    """Answers every connection with ``sent`` at once, then ``dripped`` one byte per ``GAP``.

    The drip is a bounded loop (``len(dripped) * GAP`` seconds at most) that also stops when
    the client hangs up or the test ends.
    """

    def __init__(self, sent: bytes, dripped: bytes) -> None:
        self.sent = sent
        self.dripped = dripped
        self.connections = 0
        self._stop = threading.Event()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(10)
        self.base_url = f"http://127.0.0.1:{self._listener.getsockname()[1]}"
        self._threads = [threading.Thread(target=self._accept, daemon=True)]
        self._threads[0].start()

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self._listener.accept()
            except OSError:  # closed by stop(), or no client for 10 s
                return
            self.connections += 1
            thread = threading.Thread(target=self._answer, args=(conn,), daemon=True)
            self._threads.append(thread)
            thread.start()

    def _answer(self, conn: socket.socket) -> None:
        """Answer each request on ``conn`` (keep-alive) until the client hangs up."""
        with conn:
            conn.settimeout(10)
            buffer = b""
            try:
                while True:
                    while b"\r\n\r\n" not in buffer:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        buffer += chunk
                    head, _, buffer = buffer.partition(b"\r\n\r\n")
                    length = 0
                    for line in head.split(b"\r\n")[1:]:
                        name, _, value = line.partition(b":")
                        if name.strip().lower() == b"content-length":
                            length = int(value)
                    while len(buffer) < length:
                        chunk = conn.recv(65536)
                        if not chunk:
                            return
                        buffer += chunk
                    buffer = buffer[length:]
                    conn.sendall(self.sent)
                    for index in range(len(self.dripped)):
                        if self._stop.wait(GAP):
                            return
                        conn.sendall(self.dripped[index : index + 1])
            except OSError:  # the client hung up: the drip ends
                return

    def stop(self) -> None:
        self._stop.set()
        with contextlib.suppress(OSError):
            self._listener.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
        self._listener.close()
        for thread in self._threads:
            thread.join(5)


def _drip(sent: bytes, dripped: bytes) -> Iterator[DripServer]:
    server = DripServer(sent, dripped)
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def trickled_headers() -> Iterator[DripServer]:
    head, body = _answer(padding=80)  # about 13 s of headers at one byte per GAP
    yield from _drip(b"", head + body)


@pytest.fixture
def trickled_body() -> Iterator[DripServer]:
    head, _ = _answer()
    body = b'{"ingested_count": 1' + b" " * 120 + b"}"  # about 14 s of body
    head = head.replace(b"Content-Length: 21", f"Content-Length: {len(body)}".encode())
    yield from _drip(head, body)


@pytest.mark.parametrize("where", ["trickled_headers", "trickled_body"])
def test_a_trickled_answer_ends_at_the_deadline(request: pytest.FixtureRequest, where: str) -> None:
    server: DripServer = request.getfixturevalue(where)
    with DodoClient(KEY, base_url=server.base_url, timeout=DEADLINE, max_retries=0) as client:
        started = time.monotonic()
        with pytest.raises(APITimeoutError, match=r"within 0\.5 s") as info:
            client.events.ingest(EVENTS)
        elapsed = time.monotonic() - started
    assert elapsed < BOUND
    assert info.value.request_sent is True


@pytest.mark.anyio
@pytest.mark.parametrize("where", ["trickled_headers", "trickled_body"])
async def test_a_trickled_answer_ends_at_the_deadline_async(
    request: pytest.FixtureRequest, where: str
) -> None:
    server: DripServer = request.getfixturevalue(where)
    async with AsyncDodoClient(
        KEY, base_url=server.base_url, timeout=DEADLINE, max_retries=0
    ) as client:
        started = time.monotonic()
        with pytest.raises(APITimeoutError, match=r"within 0\.5 s"):
            await client.events.ingest(EVENTS)
        elapsed = time.monotonic() - started
    assert elapsed < BOUND


def test_the_deadline_holds_through_a_proxy_from_the_environment(
    trickled_headers: DripServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in ("NO_PROXY", "no_proxy", "ALL_PROXY", "all_proxy", "http_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", trickled_headers.base_url)
    with DodoClient(KEY, base_url="http://billing.invalid", timeout=DEADLINE, max_retries=0) as c:
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            c.events.ingest(EVENTS)
        assert time.monotonic() - started < BOUND
    assert trickled_headers.connections == 1  # the request went through the proxy


def test_each_retry_gets_a_deadline_of_its_own(trickled_body: DripServer) -> None:
    with DodoClient(KEY, base_url=trickled_body.base_url, timeout=DEADLINE) as client:
        client._sleep = lambda _delay: None
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            client.events.ingest(EVENTS)
        elapsed = time.monotonic() - started
    assert trickled_body.connections == 3
    assert elapsed < 3 * BOUND


def test_with_options_sets_the_deadline_of_the_copy(trickled_headers: DripServer) -> None:
    with DodoClient(KEY, base_url=trickled_headers.base_url) as client:
        quick = client.with_options(timeout=DEADLINE, max_retries=0)
        started = time.monotonic()
        with pytest.raises(APITimeoutError):
            quick.events.ingest(EVENTS)
        assert time.monotonic() - started < BOUND


def test_an_answer_dripped_within_the_deadline_is_read() -> None:
    head, body = _answer()
    for server in _drip(head + body[:-3], body[-3:]):  # the last 3 bytes take 0.3 s
        with DodoClient(KEY, base_url=server.base_url, timeout=2.0, max_retries=0) as client:
            assert client.events.ingest(EVENTS).ingested_count == 1
            assert client.events.ingest(EVENTS).ingested_count == 1  # the connection is reused
        assert server.connections == 1


@pytest.mark.anyio
async def test_an_answer_dripped_within_the_deadline_is_read_async() -> None:
    head, body = _answer()
    for server in _drip(head + body[:-3], body[-3:]):
        async with AsyncDodoClient(
            KEY, base_url=server.base_url, timeout=2.0, max_retries=0
        ) as client:
            assert (await client.events.ingest(EVENTS)).ingested_count == 1
