"""SIGTERM to a real ASGI server (uvicorn, gunicorn with uvicorn workers) whose app tracks
usage in memory: what reaches the API before the process ends.

uvicorn shuts down gracefully on SIGTERM, then puts back the handler it found and sends
itself the signal again: the process dies by it, without ``atexit``.
"""

from __future__ import annotations

import concurrent.futures
import json
import os
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from pathlib import Path

import pytest

from tests.delivery._sink import Sink, closed_port_url

pytest.importorskip("starlette", reason="needs the server extra (pip install -e '.[server]')")
pytest.importorskip("uvicorn", reason="needs the server extra (pip install -e '.[server]')")

ROOT = Path(__file__).parents[2]
APP = "tests.delivery._asgi_app:app"


def _require_gunicorn() -> None:
    try:
        import gunicorn  # noqa: F401
    except ImportError:
        reason = "gunicorn is not installed (pip install gunicorn)"
        if os.environ.get("CI"):
            pytest.fail(f"the gunicorn signal tests must run in CI: {reason}")
        pytest.skip(reason)


class Server:
    """A server process started in its own session; its stderr lines are collected."""

    def __init__(self, command: list[str], env: dict[str, str], port: int) -> None:
        self.port = port
        self.process = subprocess.Popen(
            command,
            cwd=ROOT,
            env={**os.environ, "PYTHONPATH": str(ROOT), **env},
            stderr=subprocess.PIPE,
            stdout=subprocess.DEVNULL,
            text=True,
            start_new_session=True,
        )
        self.lines: list[str] = []
        self._changed = threading.Condition()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self._changed:
                self.lines.append(line.rstrip("\n"))
                self._changed.notify_all()

    def wait_for_line(self, text: str, timeout: float = 30) -> None:
        """Wait until a stderr line contains ``text``."""
        with self._changed:
            found = self._changed.wait_for(
                lambda: any(text in line for line in self.lines), timeout
            )
        assert found, f"no {text!r} in {timeout:g} s; stderr:\n" + "\n".join(self.lines[-40:])

    def get(self, path: str, timeout: float = 30) -> str:
        url = f"http://127.0.0.1:{self.port}{path}"
        with urllib.request.urlopen(url, timeout=timeout) as response:
            return str(response.read().decode())

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                self.get("/ready", timeout=5)
                return
            except OSError:
                if self.process.poll() is not None or time.monotonic() > deadline:
                    raise AssertionError(
                        "the server did not start; stderr:\n" + "\n".join(self.lines[-40:])
                    ) from None
                time.sleep(0.02)  # polling a port that is not open yet, within the deadline

    def terminate(self, timeout: float = 60) -> int:
        """Send SIGTERM to the server's main process; return its exit status."""
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def kill_all(self) -> None:
        """SIGKILL whatever is left of the session (workers included)."""
        with suppress(ProcessLookupError):
            os.killpg(self.process.pid, signal.SIGKILL)
        self.process.wait(30)
        self._reader.join(5)


@contextmanager
def serve(
    sink: Sink,
    tmp_path: Path,
    *options: str,
    install: bool,
    lifespan: bool = False,
    gunicorn: bool = False,
) -> Iterator[Server]:
    port = int(closed_port_url().rsplit(":", 1)[1])
    env = {
        "SIGNALS_TEST_SINK": sink.base_url,
        "SIGNALS_TEST_INSTALL": "1" if install else "0",
        "SIGNALS_TEST_LIFESPAN": "1" if lifespan else "0",
        "SIGNALS_TEST_RELEASE": str(tmp_path / "release"),
    }
    if gunicorn:
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            APP,
            "--bind",
            f"127.0.0.1:{port}",
            "--worker-class",
            "uvicorn.workers.UvicornWorker",
            *options,
        ]
    else:
        command = [
            sys.executable,
            "-m",
            "uvicorn",
            APP,
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            *options,
        ]
    server = Server(command, env, port)
    try:
        server.wait_ready()
        yield server
    finally:
        server.kill_all()


def _tracked_then_terminated(server: Server) -> tuple[str, int]:
    event_id = server.get("/track")
    return event_id, server.terminate()


def test_uvicorn_without_the_handlers_loses_what_is_queued(tmp_path):
    # The documented default: uvicorn dies by the signal it sends itself again.
    with Sink() as sink, serve(sink, tmp_path, install=False) as server:
        event_id, status = _tracked_then_terminated(server)
        assert status == -signal.SIGTERM
        assert event_id not in sink.event_ids()


def test_uvicorn_with_the_handlers_installed_at_import_delivers_what_is_queued(tmp_path):
    with Sink() as sink, serve(sink, tmp_path, install=True) as server:
        event_id, status = _tracked_then_terminated(server)
        # the exit status uvicorn chose; 128 + SIGTERM if the main thread took longer than
        # the handler's grace to act on the re-sent signal (a starved box)
        assert status in (-signal.SIGTERM, 128 + signal.SIGTERM)
        assert sink.event_ids() == [event_id]


def test_uvicorn_closing_in_the_lifespan_shutdown_delivers_what_is_queued(tmp_path):
    with Sink() as sink, serve(sink, tmp_path, install=False, lifespan=True) as server:
        event_id, status = _tracked_then_terminated(server)
        assert status == -signal.SIGTERM
        assert sink.event_ids() == [event_id]


def _track_during_shutdown(server: Server, tmp_path: Path, wait: float) -> dict[str, object]:
    """A request in flight when SIGTERM comes tracks its event once the worker holding it
    shuts down; returns what the app answered."""
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        answer = pool.submit(server.get, f"/track-later?wait={wait}")
        server.wait_for_line("waiting for the release file")  # the request is in the app
        server.process.send_signal(signal.SIGTERM)
        server.wait_for_line("Waiting for connections to close")  # the graceful shutdown
        (tmp_path / "release").touch()
        result: dict[str, object] = json.loads(answer.result(60))
    return result


@pytest.mark.parametrize("workers", [1, 2])
def test_uvicorn_event_tracked_during_the_graceful_shutdown_is_delivered(tmp_path, workers):
    options = ("--workers", str(workers)) if workers > 1 else ()
    with Sink() as sink, serve(sink, tmp_path, *options, install=True) as server:
        result = _track_during_shutdown(server, tmp_path, wait=0 if workers == 1 else 10)
        status = server.process.wait(60)
        assert status == (-signal.SIGTERM if workers == 1 else 0)
        if workers > 1:
            # The handler came after uvicorn's: events tracked after the signal are sent at
            # once, not at the next flush_interval (an hour here).
            assert result["sent"], result
        assert sink.event_ids() == [result["id"]]


def test_uvicorn_workers_with_the_handlers_deliver_what_is_queued(tmp_path):
    # In --workers processes the app is imported after uvicorn took SIGTERM: the handler
    # flushes, then calls uvicorn's, whose process then dies by the signal.
    with Sink() as sink, serve(sink, tmp_path, "--workers", "2", install=True) as server:
        event_id, status = _tracked_then_terminated(server)
        assert status == 0  # the supervisor's own exit
        assert sink.event_ids() == [event_id]


def test_uvicorn_workers_without_the_handlers_lose_what_is_queued(tmp_path):
    with Sink() as sink, serve(sink, tmp_path, "--workers", "2", install=False) as server:
        event_id, status = _tracked_then_terminated(server)
        assert status == 0
        assert event_id not in sink.event_ids()


@pytest.mark.parametrize("install", [False, True])
def test_gunicorn_uvicorn_worker(tmp_path, install):
    _require_gunicorn()
    with Sink() as sink, serve(sink, tmp_path, install=install, gunicorn=True) as server:
        event_id, status = _tracked_then_terminated(server)
        assert status == 0
        # The worker resets SIGTERM to the default before importing the app: installed at
        # import, the handler is what uvicorn puts back and signals again.
        assert (event_id in sink.event_ids()) is install


PRELOAD_HOOK = """
from dodo_ingest import install_signal_handlers

def post_worker_init(worker):
    install_signal_handlers()
"""


@pytest.mark.parametrize("hook", [False, True])
def test_gunicorn_preload_app_needs_the_post_worker_init_hook(tmp_path, hook):
    # With --preload the app is imported in the arbiter, whose handlers replace the one
    # installed at import; each worker then resets SIGTERM to the default.
    _require_gunicorn()
    options = ["--preload"]
    if hook:
        (tmp_path / "gunicorn_conf.py").write_text(PRELOAD_HOOK)
        options += ["--config", str(tmp_path / "gunicorn_conf.py")]
    with Sink() as sink, serve(sink, tmp_path, *options, install=True, gunicorn=True) as server:
        event_id, status = _tracked_then_terminated(server)
        assert status == 0
        assert (event_id in sink.event_ids()) is hook
