"""``install_signal_handlers()``: flush queued usage before a terminating signal ends the
process.

By default ``SIGTERM`` ends a Python process at once: no ``finally`` block, no ``atexit``
hook, so events still queued in memory are lost (with an outbox they wait on disk for the
next process). Servers such as gunicorn and uvicorn install their own ``SIGTERM`` handler
and exit normally, and then the exit flush runs; plain scripts and workers under a process
manager (Kubernetes, systemd, supervisord) do not. This opt-in handler closes that gap.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

from ..client import ConfigurationError
from ._pipeline import close_all

__all__ = ["install_signal_handlers"]

logger = logging.getLogger("dodo_ingest")

_EXIT_GRACE = 2.0
"""Seconds the flush thread gives the main thread to act on the re-sent signal."""


class _FlushingHandler:
    """Handles one terminating signal: flush every open ``Ingestion``, then terminate."""

    def __init__(self, signum: int, previous: Any) -> None:
        self.signum = signum
        self.previous = previous
        self.flushing = False
        self.flushed = False

    def __call__(self, signum: int, frame: FrameType | None) -> None:
        previous = self.previous
        if callable(previous):  # the app's own graceful shutdown; the exit flush follows it
            previous(signum, frame)
            return
        if previous == signal.SIG_IGN:
            return
        if self.flushed or self.flushing:  # flushed, or a second signal: end now
            signal.signal(signum, signal.SIG_DFL)
            os.kill(os.getpid(), signum)
            return
        self.flushing = True
        # The flush runs in a thread: a signal handler may interrupt code that holds a lock
        # the flush needs, and must return quickly.
        threading.Thread(target=self._flush_then_end, name="dodo-ingest-signal-flush").start()

    def _flush_then_end(self) -> None:
        try:
            close_all()
        except Exception:
            logger.exception("flushing on signal %d failed", self.signum)
        self.flushed = True
        os.kill(os.getpid(), self.signum)  # the main thread's handler now ends the process
        threading.Event().wait(_EXIT_GRACE)
        # The main thread is stuck in code that never returns to Python: end as the default
        # action would have.
        os._exit(128 + self.signum)


def install_signal_handlers(
    signals: Iterable[int] = (signal.SIGTERM,),
) -> None:
    """Make each of ``signals`` (default ``SIGTERM``) flush every open ``Ingestion`` first.

    For a signal whose action was the default (terminate), the handler flushes in a
    background thread, each ``Ingestion`` for at most its ``shutdown_timeout``, then ends the
    process with the same signal, so the exit status is unchanged; a second signal during the
    flush ends it at once. Where the app already handles the signal (a Python handler, as
    gunicorn and uvicorn install), that handler is called as before: its graceful shutdown
    exits normally and the exit flush runs then. Ignored signals stay ignored.

    Call it once from the main thread, after installing your own handlers; calling it again
    changes nothing. Raises :class:`~dodo_ingest.ConfigurationError` outside the main thread.
    """
    if threading.current_thread() is not threading.main_thread():
        raise ConfigurationError("install_signal_handlers() must be called from the main thread")
    for signum in signals:
        previous: Callable[..., Any] | int | None = signal.getsignal(signum)
        if isinstance(previous, _FlushingHandler):
            continue
        signal.signal(signum, _FlushingHandler(signum, previous))
