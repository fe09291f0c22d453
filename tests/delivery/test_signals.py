"""SIGTERM and signal handlers: the host never hangs, and queued usage is flushed on request."""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
import sys
import sysconfig
import threading
from pathlib import Path

import pytest

from dodo_ingest import ConfigurationError, install_signal_handlers
from tests.delivery import _scripts
from tests.delivery._sink import Gate, Sink
from tests.delivery.test_outbox import _pending_ids

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


TRACKING = """
import threading
from dodo_ingest import install_signal_handlers
ingestion = Ingestion(api_key=API_KEY, base_url=BASE_URL, event_name="e", outbox=OUTBOX,
                      flush_interval=0.05, shutdown_timeout=20)
install_signal_handlers()
log = open(sys.argv[3], "w")
print("ready", flush=True)
tracked = 0
flushing_at = None
deadline = time.monotonic() + 30
while time.monotonic() < deadline:  # a job loop: bills a job every few ms, signal or not
    log.write(f"{ingestion.track('cus_1')} {ingestion.stats.dropped}\\n")
    log.flush()
    tracked += 1
    if flushing_at is None and "dodo-ingest-signal-flush" in [
        thread.name for thread in threading.enumerate()
    ]:
        flushing_at = tracked
    if flushing_at is not None and tracked == flushing_at + 20:
        print("tracked", tracked, flush=True)
    time.sleep(0.005)
sys.exit(3)
"""


@pytest.mark.parametrize("queue", ["memory", "outbox"])
def test_events_tracked_during_the_flush_are_delivered_not_dropped(tmp_path, queue):
    outbox = str(tmp_path / "outbox.db") if queue == "outbox" else "-"
    log = tmp_path / "tracked.txt"
    gate = Gate()
    with (
        Sink(gate) as sink,
        _scripts.Child(tmp_path, TRACKING, sink.base_url, outbox, str(log)) as worker,
    ):
        worker.expect("ready")
        assert gate.arrived.wait(20)  # the first batch is held at the API
        worker.process.send_signal(signal.SIGTERM)
        # The job loop goes on during the flush: 20 more events, the API still holding.
        before_release = int(worker.expect("tracked")[0].split()[1])
        gate.open()
        assert worker.process.wait(60) == -signal.SIGTERM
    lines = [line.split() for line in log.read_text().splitlines()]
    # None dropped while the flush ran; with an outbox none at all (it is not closed).
    assert {dropped for _, dropped in lines[:before_release]} == {"0"}
    tracked = [event_id for event_id, _ in lines]
    received = set(sink.event_ids())
    # Without an outbox, the Ingestion is closed just before the signal is passed on: what
    # the loop tracks after the flush is written off or refused, counted after the loop's
    # last line (test_what_the_flush_cannot_deliver_is_reported... checks the reports).
    if queue == "outbox":
        assert {dropped for _, dropped in lines} == {"0"}
    # Everything tracked until the flush ended is delivered (the flush waits for what was
    # tracked during its first round too).
    assert set(tracked[:before_release]) <= received
    if queue == "outbox":  # what the process had no time to send stays in the file
        assert set(tracked) <= received | _pending_ids(outbox)


def _interpreter(version: str) -> str:
    """This interpreter, or ``python<version>`` when it is installed and can import this
    package with this environment's packages (skips otherwise)."""
    if version == "this":
        return sys.executable
    if sys.version_info[:2] == tuple(map(int, version.split("."))):
        pytest.skip(f"python{version} is this interpreter")
    path = shutil.which(f"python{version}")
    if path is None:
        pytest.skip(f"python{version} is not installed")
    probe = subprocess.run(
        [path, "-c", "import dodo_ingest.delivery"],
        env={**os.environ, "PYTHONPATH": _pythonpath()},
        capture_output=True,
        check=False,
    )
    if probe.returncode:
        pytest.skip(f"python{version} cannot import dodo_ingest with this environment's packages")
    return path


def _pythonpath() -> str:
    root = Path(__file__).parents[2]
    return os.pathsep.join([str(root / "src"), str(root), sysconfig.get_paths()["purelib"]])


# Python 3.12 starts no thread once the interpreter's exit has begun; 3.11 and 3.13 start
# one but do not wait for it. The other versions run where they are installed and can import
# this environment's packages (with pyenv: PYENV_VERSION=3.11.7:3.12.1:3.13.0); else skipped.
INTERPRETERS = ["this", "3.12", "3.13"]


@contextlib.contextmanager
def _child_on(version: str, monkeypatch, tmp_path: Path, body: str, *args: str):
    interpreter = _interpreter(version)
    with monkeypatch.context() as patch:
        patch.setattr(sys, "executable", interpreter)
        patch.setenv("PYTHONPATH", _pythonpath())
        child = _scripts.Child(tmp_path, body, *args)
    with child:
        yield child


AT_EXIT = """
import atexit, logging
from dodo_ingest import install_signal_handlers
logging.basicConfig(stream=sys.stdout, level=logging.INFO, format="%(message)s", force=True)
ingestion = Ingestion(api_key=API_KEY, base_url=BASE_URL, event_name="e", shutdown_timeout=20)
install_signal_handlers()
for _ in range(3000):
    ingestion.track("cus_1")
atexit.register(print, "exiting", flush=True)  # registered last: runs just before the flush
print("ready", flush=True)
"""


def _stopped_during_the_exit_flush(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, version: str, second_signal: bool
) -> tuple[int, int, str]:
    """Send SIGTERM to AT_EXIT while its exit flush waits for the API (and a second one when
    asked, the API still waiting); return its exit status, the events received and its
    stderr."""
    gate = Gate()
    with (
        Sink(gate) as sink,
        _child_on(version, monkeypatch, tmp_path, AT_EXIT, sink.base_url) as worker,
    ):
        worker.expect("ready")
        assert gate.arrived.wait(20)  # the first batch is held at the API
        worker.expect("exiting")  # the script has ended: the exit flush comes next
        worker.process.send_signal(signal.SIGTERM)
        worker.expect("signal 15 at interpreter exit")
        if second_signal:
            worker.process.send_signal(signal.SIGTERM)
            worker.process.wait(15)  # it ends with the API still holding the batch
            assert not gate.released.is_set()
        gate.open()
        status = worker.process.wait(60)
        received = len(set(sink.event_ids()))
    (stderr,) = tmp_path.glob("*.stderr")
    return status, received, stderr.read_text()


@pytest.mark.parametrize("version", INTERPRETERS)
def test_sigterm_during_the_exit_flush_is_passed_on_once_it_has_ended(
    tmp_path, monkeypatch, version
):
    status, received, stderr = _stopped_during_the_exit_flush(
        tmp_path, monkeypatch, version, second_signal=False
    )
    assert status == -signal.SIGTERM  # the signal's exit status, not 0
    assert received == 3000  # the exit flush was not cut short
    assert "Traceback" not in stderr  # nothing raised in the interrupted frame


def test_a_second_sigterm_during_the_exit_flush_ends_the_process_at_once(tmp_path, monkeypatch):
    status, received, _ = _stopped_during_the_exit_flush(
        tmp_path, monkeypatch, "this", second_signal=True
    )
    assert status == -signal.SIGTERM
    assert received < 3000


MAIN_RETURNED = """
import threading
from dodo_ingest import install_signal_handlers
ingestion = Ingestion(api_key=API_KEY, base_url=BASE_URL, event_name="e", shutdown_timeout=20)
install_signal_handlers()

def worker():  # a job worker: bills a job every few ms until the process is stopped
    announced = False
    while True:
        print("tracked", ingestion.track("cus_1"), flush=True)
        if not announced and not threading.main_thread().is_alive():
            announced = True
            print("main returned", flush=True)
        time.sleep(0.005)

threading.Thread(target=worker).start()
"""


@pytest.mark.parametrize("version", INTERPRETERS)
def test_sigterm_while_the_interpreter_waits_for_a_worker_thread_flushes_and_ends_it(
    tmp_path, monkeypatch, version
):
    with (
        Sink() as sink,
        _child_on(version, monkeypatch, tmp_path, MAIN_RETURNED, sink.base_url) as worker,
    ):
        _, before = worker.expect("main returned")
        worker.process.send_signal(signal.SIGTERM)
        assert worker.process.wait(60) == -signal.SIGTERM  # not swallowed
        tracked = {line.split()[1] for line in before}
        assert tracked and tracked <= set(sink.event_ids())


IGNORED = """
import signal, subprocess
from dodo_ingest import install_signal_handlers
signal.signal(signal.SIGTERM, signal.SIG_IGN)  # started by a supervisor that ignores it
install_signal_handlers()
here = signal.getsignal(signal.SIGTERM) is signal.SIG_IGN
child = subprocess.run(
    [sys.executable, "-c",
     "import signal; print(signal.getsignal(signal.SIGTERM) is signal.SIG_IGN)"],
    capture_output=True, text=True, check=True,
).stdout.strip()
print(here, child, flush=True)
"""


def test_an_ignored_signal_stays_ignored_here_and_in_programs_started_later(tmp_path):
    done = _scripts.run(tmp_path, IGNORED, "http://127.0.0.1:9")
    assert done.returncode == 0, done.stderr
    assert done.stdout.split() == ["True", "True"]


REPORTED = """
from dodo_ingest import install_signal_handlers
import threading
def report(error, events):
    print("dropped", error.reason, error.count, len(events), flush=True)
    if "--block" in sys.argv:
        threading.Event().wait()  # an on_error that never returns
ingestion = Ingestion(
    api_key=API_KEY, base_url=BASE_URL, event_name="e", shutdown_timeout=0.5, on_error=report
)
install_signal_handlers()
for _ in range(3000):
    ingestion.track("cus_1")
print("ready", flush=True)
deadline = time.monotonic() + 30
while time.monotonic() < deadline:
    time.sleep(0.01)
sys.exit(3)
"""


@pytest.mark.parametrize("on_error", ["returns", "blocks"])
def test_what_the_flush_cannot_deliver_is_reported_before_the_signal_ends_the_process(
    tmp_path, on_error
):
    """The API holds every request past ``shutdown_timeout``: the events left are written
    off, counted and reported to ``on_error`` before the process ends by the signal, not
    lost without a word; an ``on_error`` that never returns does not keep the process
    alive (the signal is passed on after a bounded wait)."""
    gate = Gate()
    script = _scripts.write(tmp_path, REPORTED)
    flags = ["--block"] if on_error == "blocks" else []
    with Sink(gate) as sink:
        worker = subprocess.Popen(
            [sys.executable, str(script), sink.base_url, "-", *flags],
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert worker.stdout is not None
            assert worker.stdout.readline().strip() == "ready"
            assert gate.arrived.wait(20)  # the first batch is held: nothing will be delivered
            worker.send_signal(signal.SIGTERM)
            output, _ = worker.communicate(timeout=60)
        finally:
            gate.open()
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    assert worker.returncode == -signal.SIGTERM
    dropped = [line.split() for line in output.splitlines() if line.startswith("dropped")]
    if on_error == "returns":
        assert sum(int(count) for _, _, count, _ in dropped) == 3000
    assert dropped  # the report that blocks was made
    assert {reason for _, reason, _, _ in dropped} == {"shutdown"}
    assert all(int(listed) > 0 for *_, listed in dropped)  # the events themselves, bounded
