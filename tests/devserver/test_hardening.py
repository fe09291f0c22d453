"""The dev server under hostile input: deeply nested JSON, stalled connections, a ``--db``
that is not a database. Every wait is on observable state (a socket the server closes) with a
deadline; none sleeps to synchronise."""

from __future__ import annotations

import hashlib
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from dodo_ingest.devserver import MAX_JSON_DEPTH, DatabaseError, DevServer
from tests.devserver._helpers import events
from tests.devserver.test_cli import dev_server

DEADLINE = 10.0


def nested(depth: int) -> bytes:
    """A JSON body ``depth`` levels deep (the body itself is level 1)."""
    return b'{"events":' + b"[" * (depth - 1) + b"]" * (depth - 1) + b"}"


@pytest.mark.parametrize("path", ["/events/ingest", "/meters", "/credit-entitlements"])
@pytest.mark.parametrize("depth", [MAX_JSON_DEPTH + 1, 100_000])
def test_deeply_nested_json_is_422_naming_the_limit(
    http: httpx2.Client, path: str, depth: int
) -> None:
    response = http.post(path, content=nested(depth), headers={"content-type": "application/json"})
    assert response.status_code == 422
    body = response.json()
    assert body["code"] == "json_too_deep"
    assert body["max_depth"] == MAX_JSON_DEPTH
    assert str(MAX_JSON_DEPTH) in body["message"]


def test_nesting_up_to_the_limit_is_judged_by_the_other_rules(http: httpx2.Client) -> None:
    response = http.post(
        "/events/ingest",
        content=nested(MAX_JSON_DEPTH),
        headers={"content-type": "application/json"},
    )
    assert response.status_code == 422
    assert response.json()["code"] != "json_too_deep"


def test_brackets_inside_strings_do_not_count(http: httpx2.Client) -> None:
    # Escaped quotes and backslashes inside the strings do not end them early.
    text = '"\\' + "[" * 240 + '\\"' + "{" * 240
    batch = events(1, metadata={f"k{i}": text for i in range(3)})
    response = http.post("/events/ingest", json={"events": batch})
    assert response.status_code == 200, response.text
    assert response.json() == {"ingested_count": 1}


def test_the_server_still_answers_after_a_deep_body(http: httpx2.Client) -> None:
    http.post(
        "/events/ingest", content=b"[" * 1_000_000, headers={"content-type": "application/json"}
    )
    assert http.post("/events/ingest", json={"events": events(1)}).status_code == 200


# --- stalled connections ------------------------------------------------------------------


@pytest.fixture
def strict() -> Iterator[DevServer]:
    with DevServer(read_timeout=0.5, max_connections=4) as server:
        yield server


def connect(server: DevServer) -> socket.socket:
    sock = socket.create_connection(("127.0.0.1", server.port), timeout=DEADLINE)
    return sock


def closed_by_server(sock: socket.socket, deadline: float = DEADLINE) -> bool:
    """Whether the server closes ``sock`` (reads reach end of file or a reset) before the
    deadline; anything the server sends first is read and discarded."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        sock.settimeout(max(0.01, end - time.monotonic()))
        try:
            if sock.recv(65536) == b"":
                return True
        except ConnectionResetError:
            return True
        except TimeoutError:
            return False
    return False


def test_a_connection_that_sends_nothing_is_closed(strict: DevServer) -> None:
    with connect(strict) as sock:
        started = time.monotonic()
        assert closed_by_server(sock)
        assert time.monotonic() - started >= 0.4  # not before the read timeout


def test_a_request_head_that_never_ends_is_closed(strict: DevServer) -> None:
    with connect(strict) as sock:
        sock.sendall(b"GET /_dev/health HTTP/1.1\r\nHost: x\r\n")
        assert closed_by_server(sock)


def test_a_body_that_stalls_is_closed(strict: DevServer) -> None:
    with connect(strict) as sock:
        sock.sendall(
            b"POST /events/ingest HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer k\r\n"
            b'Content-Type: application/json\r\nContent-Length: 1000\r\n\r\n{"events": ['
        )
        assert closed_by_server(sock)


def test_a_request_dribbled_a_byte_at_a_time_is_closed(strict: DevServer) -> None:
    """Slowloris: every byte resets no timer; the whole request has the read timeout."""
    with connect(strict) as sock:
        end = time.monotonic() + DEADLINE
        closed = False
        while not closed and time.monotonic() < end:
            try:
                sock.sendall(b"X")
            except (BrokenPipeError, ConnectionResetError):
                closed = True
                break
            closed = closed_by_server(sock, deadline=0.05)
        assert closed


def test_a_keep_alive_connection_then_stalling_is_closed(strict: DevServer) -> None:
    with connect(strict) as sock:
        sock.sendall(b"GET /_dev/health HTTP/1.1\r\nHost: x\r\n\r\n")
        answer = b""
        while b"\r\n\r\n" not in answer:
            answer += sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 200")
        sock.sendall(b"GET /_dev/hea")  # the next request never completes
        assert closed_by_server(sock)


def test_connections_beyond_the_limit_are_closed_and_the_rest_served() -> None:
    # A read timeout far beyond the deadline: only the limit can close the extra connection.
    with DevServer(read_timeout=600, max_connections=4) as server:
        held = [connect(server) for _ in range(4)]
        try:
            for sock in held:  # each held connection is open on the server
                sock.sendall(b"GET /_dev/health HTTP/1.1\r\nHost: x\r\n")
            with connect(server) as extra:
                assert closed_by_server(extra)
            assert not any(closed_by_server(sock, deadline=0.05) for sock in held)
        finally:
            for sock in held:
                sock.close()
        # Once the stalled ones are gone, the server answers again.
        end = time.monotonic() + DEADLINE
        status = None
        while status != 200 and time.monotonic() < end:
            try:
                status = httpx2.get(f"{server.base_url}/_dev/health", timeout=1).status_code
            except httpx2.TransportError:
                status = None
        assert status == 200


def test_a_slow_answer_is_not_cut_by_the_read_timeout() -> None:
    with DevServer(read_timeout=0.2, faults="slow=1", slow_delay=0.6) as server:
        response = httpx2.post(
            f"{server.base_url}/events/ingest",
            json={"events": events(1)},
            headers={"Authorization": "Bearer k"},
            timeout=DEADLINE,
        )
        assert response.status_code == 200


@pytest.mark.parametrize(
    "kwargs",
    [{"read_timeout": 0}, {"read_timeout": float("inf")}, {"max_connections": 0}],
)
def test_bad_limits_are_refused(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError, match=next(iter(kwargs))):
        DevServer(**kwargs)  # type: ignore[arg-type]


# --- a --db that is not a database ------------------------------------------------------


@pytest.fixture
def not_a_database(tmp_path: Path) -> Path:
    copy = tmp_path / "passwd"
    shutil.copyfile("/etc/passwd", copy)
    return copy


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_command_refuses_a_file_that_is_not_a_database(not_a_database: Path) -> None:
    before = digest(not_a_database)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dodo_ingest",
            "dev-server",
            "--port",
            "0",
            "--db",
            str(not_a_database),
        ],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode != 0
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    assert "--db" in lines[0] and str(not_a_database) in lines[0]
    assert "not a database" in lines[0]
    assert "Traceback" not in result.stderr
    assert digest(not_a_database) == before
    assert sorted(p.name for p in not_a_database.parent.iterdir()) == ["passwd"]


def test_dev_server_raises_a_database_error(not_a_database: Path, tmp_path: Path) -> None:
    before = digest(not_a_database)
    with pytest.raises(DatabaseError, match="not a database"):
        DevServer(db=not_a_database).start()
    with pytest.raises(DatabaseError, match="cannot"):
        DevServer(db=tmp_path).start()  # a directory
    assert digest(not_a_database) == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["passwd"]


def test_the_command_takes_the_connection_limits() -> None:
    with dev_server("--read-timeout", "0.5", "--max-connections", "8") as (process, url):
        port = int(url.rsplit(":", 1)[1])
        with socket.create_connection(("127.0.0.1", port), timeout=DEADLINE) as sock:
            sock.sendall(b"GET /_dev/health HTTP/1.1\r\n")
            assert closed_by_server(sock)
        process.send_signal(signal.SIGTERM)
        process.communicate(timeout=15)
    assert process.returncode == 0
