"""SIGTERM and signal handlers: the host never hangs, and queued usage is flushed on request."""

from __future__ import annotations

import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from dodo_ingest import ConfigurationError, install_signal_handlers
from tests.delivery import _scripts
from tests.delivery._sink import Gate, Sink

WORKER = """
from dodo_ingest import install_signal_handlers
ingestion = Ingestion(api_key=API_KEY, base_url=BASE_URL, event_name="e", shutdown_timeout=20)
if "--install" in sys.argv:
    install_signal_handlers()
for _ in range(3000):
    ingestion.track("cus_1")
print("ready", flush=True)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:  # the work of a worker, until the process manager stops it
    time.sleep(0.01)
sys.exit(3)
"""


def _terminate_worker(tmp_path: Path, body: str, *flags: str) -> tuple[int, list[str]]:
    """Run ``body`` until it prints "ready" with its first batch held at the sink, send it
    SIGTERM, then let the sink answer; return its exit status and the ids received."""
    gate = Gate()
    script = _scripts.write(tmp_path, body)
    with Sink(gate) as sink:
        worker = subprocess.Popen(
            [sys.executable, str(script), sink.base_url, "-", *flags],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
            assert gate.arrived.wait(20)  # the first batch is in flight, the rest queued
            worker.send_signal(signal.SIGTERM)
            gate.open()
            worker.wait(timeout=60)
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
        return worker.returncode, sink.event_ids()


def test_sigterm_flushes_every_queued_event_when_handlers_are_installed(tmp_path):
    returncode, received = _terminate_worker(tmp_path, WORKER, "--install")
    assert returncode == -signal.SIGTERM  # ended by the signal, as without the handler
    assert len(received) == len(set(received)) == 3000


def test_without_the_handlers_sigterm_ends_the_process_at_once(tmp_path):
    returncode, received = _terminate_worker(tmp_path, WORKER)
    assert returncode == -signal.SIGTERM
    assert len(received) < 3000  # the documented default: queued memory events are lost


def test_an_app_handler_is_chained_and_the_exit_flush_runs(tmp_path):
    body = WORKER.replace(
        'if "--install" in sys.argv:',
        "import signal\nsignal.signal(signal.SIGTERM, lambda *_: sys.exit(0))\nif True:",
    )
    returncode, received = _terminate_worker(tmp_path, body)
    assert returncode == 0  # the app's own handler ran
    assert len(set(received)) == 3000  # and the exit flush delivered everything


def test_install_outside_the_main_thread_is_refused():
    errors: list[BaseException] = []

    def install() -> None:
        try:
            install_signal_handlers()
        except BaseException as error:
            errors.append(error)

    thread = threading.Thread(target=install)
    thread.start()
    thread.join(5)
    (error,) = errors
    assert isinstance(error, ConfigurationError)


REENTRANT = """
import signal
ingestion = Ingestion(api_key=API_KEY, base_url=BASE_URL, event_name="e", outbox=OUTBOX)
ingestion.track("warm_up")  # the sender loads the HTTP stack first: the flood comes after
assert ingestion.flush(30)
fired = 0

def on_alarm(signum, frame):
    global fired
    fired += 1
    ingestion.track("from_handler")

signal.signal(signal.SIGALRM, on_alarm)
signal.setitimer(signal.ITIMER_REAL, 0.003, 0.003)
tracked = 0
while fired < 200:
    ingestion.track("main")
    tracked += 1
signal.setitimer(signal.ITIMER_REAL, 0, 0)
print(tracked + fired + 1, flush=True)
assert ingestion.flush(30)
stats = ingestion.stats
print(stats.enqueued, stats.delivered, stats.dropped, flush=True)
"""


@pytest.mark.parametrize("queue", ["memory", "outbox"])
def test_track_from_a_signal_handler_that_interrupts_track_never_deadlocks(tmp_path, queue):
    outbox = str(tmp_path / "outbox.db") if queue == "outbox" else "-"
    with Sink() as sink:
        # A deadlock fails the test by its timeout instead of hanging it.
        done = _scripts.run(tmp_path, REENTRANT, sink.base_url, outbox, timeout=120)
        assert done.returncode == 0, done.stderr
        tracked, stats = done.stdout.split("\n")[:2]
        enqueued, delivered, dropped = map(int, stats.split())
        assert enqueued == delivered == int(tracked) and dropped == 0
        assert len(set(sink.event_ids())) == int(tracked)


CHAINED = """
import signal, threading
from dodo_ingest import install_signal_handlers
ingestion = Ingestion(api_key=API_KEY, base_url=BASE_URL, event_name="e", shutdown_timeout=20)

def graceful_shutdown(signum, frame):  # a server's own handler, installed first
    print("app handler", ingestion.stats.delivered, flush=True)
    sys.exit(0)

signal.signal(signal.SIGTERM, graceful_shutdown)
install_signal_handlers()
for _ in range(3000):
    ingestion.track("cus_1")
print("ready", flush=True)
flushing = False
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    if not flushing and "dodo-ingest-signal-flush" in [t.name for t in threading.enumerate()]:
        flushing = True
        print("flushing", flush=True)
    time.sleep(0.005)
sys.exit(3)
"""


@pytest.mark.parametrize("second_signal", [False, True])
def test_the_app_handler_is_called_once_what_was_queued_is_delivered(tmp_path, second_signal):
    gate = Gate()
    with Sink(gate) as sink, _scripts.Child(tmp_path, CHAINED, sink.base_url) as worker:
        worker.expect("ready")
        assert gate.arrived.wait(20)  # the first batch is in flight, the rest queued
        worker.process.send_signal(signal.SIGTERM)
        worker.expect("flushing")
        if second_signal:  # a second signal during the flush is passed on at once
            worker.process.send_signal(signal.SIGTERM)
            assert worker.expect("app handler")[0] == "app handler 0"
            gate.open()
        else:
            gate.open()
            assert worker.expect("app handler")[0] == "app handler 3000"
        assert worker.process.wait(60) == 0  # the exit status the app's handler chose
        assert sorted(sink.event_ids()) == sorted(set(sink.event_ids()))
        assert len(sink.event_ids()) == 3000  # the exit flush sent the rest
