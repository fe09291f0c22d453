"""``install_signal_handlers()``: deliver queued usage before a terminating signal ends the
process.

By default ``SIGTERM`` ends a Python process at once: no ``finally`` block, no ``atexit``
hook, so events still queued in memory are lost (with an outbox they wait on disk for the
next process). Servers do not close that gap for you: uvicorn (0.29 and later, so also
gunicorn's uvicorn workers) shuts down gracefully on ``SIGTERM``, then puts back the handler
it found and sends itself the signal again, so the process dies by it without ``atexit``.
This opt-in handler flushes first, then passes the signal on:

- to the default action (nothing else handled the signal, or a server puts the handler
  back and sends the signal again): the process ends by the same signal;
- to a server's own handler installed first (uvicorn's, when the app is imported after the
  server took the signal: ``--workers``, ``--reload``); every event tracked after the
  signal (requests finishing during the graceful shutdown) is sent at once instead of
  waiting for a batch.

The flush closes nothing: events tracked while it runs are queued and sent at once too. A
second signal during the flush passes the signal on at once. A signal that comes once the
interpreter's exit has begun starts no thread: during the exit flush it is passed on once
that flush has ended.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from ..client import ConfigurationError
from ._pipeline import EXIT_FLUSH, close_all, send_at_once_all

__all__ = ["install_signal_handlers"]

logger = logging.getLogger("dodo_ingest")

FLUSH_THREAD_NAME = "dodo-ingest-signal-flush"

_EXIT_GRACE = 2.0
"""Seconds the flush thread gives the main thread to act on the re-sent signal."""
_REPORT_GRACE = 2.0
"""Seconds the write-off after a flush may take (``on_error`` included) before the signal
is passed on anyway."""

_FLUSH_ROUNDS = 2
"""What was queued at the signal, then what was tracked while that was sent."""


class _Once:
    """Taken by one caller only: a test-and-set that is atomic between threads and safe in a
    signal handler (``list.pop`` runs under the GIL, there is no lock to wait for)."""

    def __init__(self, available: bool) -> None:
        self._items: list[None] = [None] if available else []

    def give(self) -> None:
        self._items.append(None)

    def take(self) -> bool:
        try:
            self._items.pop()
        except IndexError:
            return False
        return True


class _FlushingHandler:
    """Handles one terminating signal: deliver queued usage, then pass the signal on (to the
    handler found at install, or to the default action)."""

    def __init__(self, signum: int, previous: Any) -> None:
        self.signum = signum
        self.previous = previous
        self._flush = _Once(True)
        """Taken by the signal that starts the flush."""
        self._decision = _Once(True)
        """Taken by whatever passes the signal on first: a second signal during the flush,
        or the flush when it ends."""
        self._asked = _Once(False)
        """Given by the flush thread with the signal it sends: the main thread passes it on."""
        self._answered = threading.Event()
        """The main thread passed the signal on, or deferred it to the end of the exit flush."""
        self.flushed = False
        """A signal started a flush."""
        self.passed_on = False
        """The signal went on to the handler found at install (or the default action)."""
        self.deferred = False
        """A signal came during the exit flush: it is passed on once that flush has ended."""

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        now = False
        if self._flush.take():
            self.flushed = True
            if self._start_flush(frame) or not self._decision.take():
                return
        elif self._asked.take() or self._decision.take():
            pass
        elif self.deferred:
            now = True  # a second signal during the exit flush: end the process now
        elif not self.passed_on:
            return  # the flush has just ended: the signal its thread sends passes it on
        self._pass_on(frame, now=now)

    def _start_flush(self, frame: FrameType | None) -> bool:
        """Start the flush; False when the signal is to be passed on now. Never raises."""
        try:
            if EXIT_FLUSH.started:
                return False  # the exit flush delivers; _pass_on waits for its end
            # The flush runs in a thread: a signal handler may interrupt code that holds a
            # lock the flush needs, and must return quickly. Waking the senders takes none.
            send_at_once_all()
            try:
                threading.Thread(target=self._flush_then_pass_on, name=FLUSH_THREAD_NAME).start()
                return True
            except RuntimeError:  # the exit has begun: Python 3.12+ starts no thread then
                if _in_delivery_code(frame):
                    self._defer()
                    return True
                # The main thread waits for other threads or runs an atexit hook: flush here.
                _flush_all()
                return False
        except Exception:
            logger.exception("flushing on signal %d failed", self.signum)
            return False

    def _pass_on(self, frame: FrameType | None, *, now: bool = False) -> None:
        if EXIT_FLUSH.started and not EXIT_FLUSH.done and not now:
            # The exit flush is under way (maybe in the frame this signal interrupted):
            # ending the process now would cut it short.
            self._defer()
            return
        self.passed_on = True
        self._answered.set()
        previous = self.previous
        if callable(previous):  # a server's graceful shutdown
            previous(self.signum, frame)
            return
        signal.signal(self.signum, signal.SIG_DFL)
        os.kill(os.getpid(), self.signum)

    def _defer(self) -> None:
        """Pass the signal on once the exit flush has ended."""
        if not self.deferred:
            self.deferred = True
            logger.info(
                "signal %d at interpreter exit: passed on once the exit flush has ended",
                self.signum,
            )
        self._answered.set()

    def _flush_then_pass_on(self) -> None:
        try:
            _flush_all()
            if not callable(self.previous):
                # The process ends with the signal: what the flush could not deliver from
                # memory is written off now, so that it is counted and reported to on_error
                # (an outbox keeps it in its file, and takes what is tracked until the end).
                # on_error is the user's code: the signal is passed on after a bounded wait.
                closer = threading.Thread(
                    target=close_all,
                    args=(0.0,),
                    kwargs={"memory_only": True},
                    name=FLUSH_THREAD_NAME,
                    daemon=True,
                )
                closer.start()
                closer.join(_REPORT_GRACE)
        except Exception:
            logger.exception("flushing on signal %d failed", self.signum)
        if not self._decision.take():
            return  # a second signal passed it on already
        self._asked.give()
        os.kill(os.getpid(), self.signum)  # the main thread's handler passes it on
        if callable(self.previous) or self._answered.wait(_EXIT_GRACE):
            return
        # The main thread is stuck in code that never returns to Python: end as the default
        # action would have.
        os._exit(128 + self.signum)

    def after_exit_flush(self) -> None:
        """Pass on a signal that came before or during the exit flush, now that it ended."""
        if self.flushed and not self.passed_on:
            self._pass_on(None)


_HANDLERS: list[_FlushingHandler] = []


def _after_exit_flush() -> None:
    for handler in _HANDLERS:
        handler.after_exit_flush()


def _in_delivery_code(frame: FrameType | None) -> bool:
    """True when ``frame`` or a caller of it runs code of this package (which may hold a lock
    a flush needs)."""
    while frame is not None:
        if str(frame.f_globals.get("__name__", "")).partition(".")[0] == "dodo_ingest":
            return True
        frame = frame.f_back
    return False


def _flush_all() -> None:
    """Wait until what every open pipeline has queued is settled, then what was tracked
    meanwhile; each pipeline for at most its ``shutdown_timeout`` in all."""
    start = time.monotonic()
    for _ in range(_FLUSH_ROUNDS):
        waiting = []
        for pipeline in send_at_once_all():
            waiter = pipeline.flush_waiter()
            if waiter is not None:
                waiting.append((pipeline, waiter))
        for pipeline, waiter in waiting:
            remaining = start + pipeline.settings.shutdown_timeout - time.monotonic()
            if not waiter.wait(max(0.0, remaining)) and not waiter.is_set():
                pipeline.cancel(waiter)


def install_signal_handlers(
    signals: Iterable[int] = (signal.SIGTERM,),
) -> None:
    """Make each of ``signals`` (default ``SIGTERM``) deliver queued usage first.

    On the signal, a background thread waits until what every open `Ingestion` has queued
    is delivered, then what was tracked meanwhile (each `Ingestion` for at most its
    `shutdown_timeout` in all), and passes the signal on. Nothing is closed during the
    flush: events tracked meanwhile are queued and sent at once. When the process is to
    end by the signal, every `Ingestion` without an outbox is then closed: what is left is
    written off, counted and reported to `on_error` (waiting at most 2 s for it); with an
    outbox it stays in the file.

    When the signal's action was the default (terminate), the process then ends by the
    same signal, so the exit status is unchanged. uvicorn puts this handler back after its
    graceful shutdown and sends the signal again: calling this before uvicorn starts (at
    import under `uvicorn app:app` or gunicorn, or before `uvicorn.run()`) makes that last
    signal flush too.

    When a Python handler was installed first (a server's graceful shutdown), it is called
    after the flush, and from then on events are sent as soon as they are tracked. A server
    that then ends the process by the signal (uvicorn's `--workers` and `--reload`
    processes) can still lose an event tracked in its last milliseconds: close the
    `Ingestion` in the app's lifespan shutdown to be sure. If the process lives on after it
    (a command line that catches `SIGINT`), events are still sent one request at a time
    when tracked one at a time, and a later signal goes to that handler at once.

    A second signal during the flush passes the signal on at once. A signal during the
    interpreter's exit flush is passed on when that flush has ended (a second one at once),
    so the exit status is still the signal's. Ignored signals stay ignored (nothing is
    installed for them, so programs started later still inherit the ignore). Call it once
    from the main thread, after installing your own handlers; calling it again changes
    nothing. Raises [`ConfigurationError`][dodo_ingest.ConfigurationError] outside the main
    thread.
    """
    if threading.current_thread() is not threading.main_thread():
        raise ConfigurationError("install_signal_handlers() must be called from the main thread")
    if _after_exit_flush not in EXIT_FLUSH.then:
        EXIT_FLUSH.then.append(_after_exit_flush)
    for signum in signals:
        previous: Callable[..., Any] | int | None = signal.getsignal(signum)
        if isinstance(previous, _FlushingHandler) or previous == signal.SIG_IGN:
            continue
        handler = _FlushingHandler(signum, previous)
        signal.signal(signum, handler)
        _HANDLERS.append(handler)
