"""``install_signal_handlers()``: deliver queued usage before a terminating signal ends the
process.

By default ``SIGTERM`` ends a Python process at once: no ``finally`` block, no ``atexit``
hook, so events still queued in memory are lost (with an outbox they wait on disk for the
next process). Servers do not close that gap for you: uvicorn (0.29 and later, so also
gunicorn's uvicorn workers) shuts down gracefully on ``SIGTERM``, then puts back the handler
it found and sends itself the signal again, so the process dies by it without ``atexit``.
This opt-in handler flushes first:

- where it is the handler that ends the process (nothing else handled the signal, or a
  server puts it back and sends the signal again), it flushes every open ``Ingestion``,
  then ends the process with the same signal;
- where a server's own handler was installed first (uvicorn's, when the app is imported
  after the server took the signal: ``--workers``, ``--reload``), it flushes what is queued,
  then calls that handler, and every event tracked after the signal (requests finishing
  during the graceful shutdown) is sent at once instead of waiting for a batch.
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
from ._pipeline import close_all, send_at_once_all

__all__ = ["install_signal_handlers"]

logger = logging.getLogger("dodo_ingest")

_EXIT_GRACE = 2.0
"""Seconds the flush thread gives the main thread to act on the re-sent signal."""


class _FlushingHandler:
    """Handles one terminating signal: deliver queued usage, then pass the signal on (to the
    handler found at install, or to the default action)."""

    def __init__(self, signum: int, previous: Any) -> None:
        self.signum = signum
        self.previous = previous
        self.flushing = False
        """A flush started by this signal; the next one passes the signal on."""
        self.passed_on = False
        """The signal went on to the handler found at install (or the default action)."""

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        previous = self.previous
        if previous == signal.SIG_IGN:
            return
        if not self.flushing:
            self.flushing = True
            # The flush runs in a thread: a signal handler may interrupt code that holds a
            # lock the flush needs, and must return quickly. Waking the senders takes none.
            send_at_once_all()
            threading.Thread(
                target=self._flush_then_pass_on, name="dodo-ingest-signal-flush"
            ).start()
            return
        # The flush is done (the thread sent the signal again), or a second signal came
        # during it: pass the signal on now.
        self.passed_on = True
        if callable(previous):  # a server's graceful shutdown
            previous(signum, frame)
            return
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)

    def _flush_then_pass_on(self) -> None:
        try:
            if callable(self.previous):
                _flush_all()  # the server still runs: its requests may track more
            else:
                close_all()
        except Exception:
            logger.exception("flushing on signal %d failed", self.signum)
        if self.passed_on:  # a second signal did it already
            return
        os.kill(os.getpid(), self.signum)  # the main thread's handler passes it on
        if callable(self.previous):
            return
        threading.Event().wait(_EXIT_GRACE)
        # The main thread is stuck in code that never returns to Python: end as the default
        # action would have.
        os._exit(128 + self.signum)


def _flush_all() -> None:
    """Wait until what every open pipeline has queued is settled, each for at most its
    ``shutdown_timeout``."""
    start = time.monotonic()
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

    When the signal's action was the default (terminate), the handler flushes every open
    ``Ingestion`` in a background thread (each for at most its ``shutdown_timeout``), then
    ends the process with the same signal, so the exit status is unchanged. uvicorn puts
    this handler back after its graceful shutdown and sends the signal again: calling this
    before uvicorn starts (at import under `uvicorn app:app` or gunicorn, or before
    `uvicorn.run()`) makes that last signal flush too.

    When a Python handler was installed first (a server's graceful shutdown), the handler
    flushes what is queued (same limit), then calls it; events tracked after the signal are
    sent at once. A server that then ends the process by the signal (uvicorn's `--workers`
    and `--reload` processes) can still lose an event tracked in its last milliseconds:
    close the `Ingestion` in the app's lifespan shutdown to be sure.

    A second signal during the flush passes the signal on at once. Ignored signals stay
    ignored. Call it once from the main thread, after installing your own handlers; calling
    it again changes nothing. Raises [`ConfigurationError`][dodo_ingest.ConfigurationError]
    outside the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        raise ConfigurationError("install_signal_handlers() must be called from the main thread")
    for signum in signals:
        previous: Callable[..., Any] | int | None = signal.getsignal(signum)
        if isinstance(previous, _FlushingHandler):
            continue
        signal.signal(signum, _FlushingHandler(signum, previous))
