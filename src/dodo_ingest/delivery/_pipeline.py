"""``Pipeline``: the queue, the sender thread and the process lifecycle behind an
:class:`Ingestion`.

One daemon thread per pipeline takes batches from the queue and hands them to a
:class:`~._batch_sender.BatchSender`, which settles every event exactly once: delivered,
dead-lettered (with a reason). Events that never reach the API are dropped, counted by reason
and reported here. ``track()`` only appends to the queue.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence

from ..client import EventInput
from . import _fork_guard
from ._batch_sender import Abandoned, BatchSender
from ._encoding import load_fast_encoder
from ._errors import EventsDroppedError
from ._outbox_protocol import OutboxBackend, SharedOutboxBackend
from ._queues import (
    EventQueue,
    MemoryQueue,
    OutboxQueue,
    QueuedEvent,
    SharedOutboxQueue,
    events_of,
    utf8_size,
)
from ._settings import Settings
from ._stats import DeliveryStats
from ._transport import Transport
from ._waiter import Waiter, Wakeup

__all__ = ["EXIT_FLUSH", "ErrorCallback", "Pipeline", "close_all", "logger", "send_at_once_all"]

logger = logging.getLogger("dodo_ingest")

ErrorCallback = Callable[[BaseException, list[EventInput]], None]

HEARTBEAT_INTERVAL = 10.0
RECLAIM_INTERVAL = 30.0
DROP_REPORT_EVENTS = 1000
"""Dropped events handed to ``on_error`` per report (the count in the error is exact)."""
JOIN_GRACE = 0.2

_LIVE: weakref.WeakSet[Pipeline] = weakref.WeakSet()
"""Pipelines not yet closed, for the exit flush and the fork handler."""


def _count_value(counter: itertools.count[int]) -> int:
    """The next value an :func:`itertools.count` would return, without advancing it.

    Producers count with ``next(counter)``, which is atomic; ``+= 1`` on an int is not.
    """
    return int(repr(counter)[6:-1])


def _in_event_loop() -> bool:
    """True when called from a thread that runs an asyncio event loop. None can while asyncio
    is not loaded, or still loading in another thread: it is not imported here for that."""
    running = getattr(sys.modules.get("asyncio.events"), "_get_running_loop", None)
    return running is not None and running() is not None


class Pipeline:
    """Queue + sender thread + process lifecycle. Built and driven by :class:`Ingestion`."""

    def __init__(
        self,
        settings: Settings,
        make_transport: Callable[[], Transport],
        on_error: ErrorCallback | None,
        outbox: OutboxBackend | None,
        secret: str,
        *,
        deliver: bool = True,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self.deliver = deliver
        """False: a producer of a shared outbox that never sends (relays do)."""
        self._make_transport = make_transport
        self._on_error = on_error
        self._secret = secret
        self.closed = False
        if outbox is not None:
            outbox.claim(self)
        # Built by the sender thread when it starts, so the HTTP stack loads there and not in
        # the caller's thread (a serverless cold start); a fork waits for that (_fork_guard).
        self._transport: Transport | None = None
        self._inherited: list[object] = []
        self._reset()
        if outbox is not None:
            outbox.register()
        _LIVE.add(self)
        if self.shared is not None:
            if deliver:
                self._start()  # a consumer of the group: it reads what others wrote too
        elif outbox is not None and outbox.has_other_pending():
            self._start()  # take over what an earlier process left

    def _reset(self) -> None:
        """Fresh state: at construction, and in a forked child."""
        settings = self.settings
        self.memory: MemoryQueue | None = None
        self.outbox_queue: OutboxQueue | SharedOutboxQueue | None = None
        self.shared: SharedOutboxQueue | None = None
        self.queue: EventQueue
        if self.outbox is None:
            self.memory = self.queue = MemoryQueue(
                settings.max_queue_size, settings.max_queue_bytes
            )
        elif isinstance(self.outbox, SharedOutboxBackend):
            self.shared = SharedOutboxQueue(self.outbox, deliver=self.deliver)
            self.outbox_queue = self.queue = self.shared
        else:
            self.outbox_queue = self.queue = OutboxQueue(self.outbox)
        self._sender = BatchSender(
            settings, self._transport, self.queue, self._report, self._sleep, self._redact
        )
        self._wakeup = Wakeup()
        self._flush_requested = threading.Event()
        self._stop = threading.Event()
        self._start_lock = threading.RLock()
        # Re-entrant: track() from a signal handler may interrupt a drop in the same thread.
        self._drop_lock = threading.RLock()
        self._thread: threading.Thread | None = None
        self._starting = False
        self._batch_size = settings.batch_size
        self._wake_at = settings.batch_size
        """Queued events that wake the sender: 1 once the process is ending."""
        self.closed = False
        self._release_at_exit = False
        self._close_outbox = False
        self._appended = itertools.count()
        self.taken_over = 0
        self._turned_away = 0
        """Events ``track()`` accepted but could not queue (counted in ``dropped`` too)."""
        self.dropped = 0
        self._drops: dict[str, int] = {}
        self._closed_drops = 0
        self.lost_at_close = 0
        """Events dropped by ``close()`` or tracked after it (a flush after close is False)."""
        self.unsettled_at_close = False
        """With a shared outbox: ``close()`` did not see everything tracked settled."""
        self._close_done = threading.Event()
        self._dropped_items: deque[tuple[str, QueuedEvent]] = deque(maxlen=DROP_REPORT_EVENTS)
        self._full_since: float | None = None
        self._outbox_failing = False
        self._maintenance_failing = False
        self._next_heartbeat = 0.0
        self._next_reclaim = 0.0

    # --- producer side (any thread) --------------------------------------------------------

    def put_memory(self, event_id: str, timestamp: float, body: str) -> None:
        """Queue one encoded event in memory (the hot path: one short lock, no I/O)."""
        memory = self.memory
        assert memory is not None
        if self.closed:
            self._drop_closed(QueuedEvent(event_id, timestamp, body, 0))
            return
        appended = memory.put(timestamp, body)
        if appended != 1:
            while appended == 0 and self._wait_for_room(utf8_size(body)):
                appended = memory.put(timestamp, body)
            if appended != 1:
                item = QueuedEvent(event_id, timestamp, body, 0)
                if appended < 0:
                    self._drop_closed(item)
                else:
                    self._turn_away("queue_full", item)
                    if self._thread is None:  # a sender killed by an error: start a new one
                        self._start()
                return
        if self._thread is None:
            self._start()
        if len(memory.entries) >= self._wake_at and not self._wakeup.is_set():
            self._wakeup.set()

    def put_outbox(self, event_id: str, timestamp: float, body: str) -> None:
        """Commit one encoded event to the outbox, then let the sender know."""
        if self.closed:
            self._drop_closed(QueuedEvent(event_id, timestamp, body, 0))
            return
        next(self._appended)  # counted first, so that stats never see it delivered first
        try:
            unsent = self.outbox_queue.append(event_id, timestamp, body)  # type: ignore[union-attr]
        except Exception as error:  # disk full, store gone...: never raised into the caller
            if not self._outbox_failing:  # once per failure streak; every drop is counted
                self._outbox_failing = True
                logger.error("could not store events in the outbox (%s); dropping them", error)
            reason = getattr(error, "drop_reason", "outbox_error")
            self._drop(reason, [QueuedEvent(event_id, timestamp, body, 0)])
            return
        if self._outbox_failing:
            self._outbox_failing = False
            logger.warning("the outbox stores events again")
        if self._thread is None:
            self._start()
        if unsent >= self._wake_at and not self._wakeup.is_set():
            self._wakeup.set()

    def _wait_for_room(self, size: int) -> bool:
        """Wait for the sender to make room for ``size`` bytes, True if it did.

        A burst waits up to ``queue_full_timeout`` in all; once the queue has stayed full
        that long (the API is down or slower than the traffic), events are dropped at once
        until the sender makes room again, so a stuck API does not slow every caller. In a
        thread that runs an asyncio event loop, and in the sender itself, it never waits.
        """
        memory = self.memory
        assert memory is not None
        self._wakeup.set()
        if threading.current_thread() is self._thread or _in_event_loop():
            return False
        now = time.monotonic()
        if self._full_since is None:
            self._full_since = now
        deadline = self._full_since + self.settings.queue_full_timeout
        while not memory.has_room(size):
            if time.monotonic() >= deadline or self.closed:
                return False
            time.sleep(0.001)
        self._full_since = None
        return True

    def _turn_away(self, reason: str, item: QueuedEvent) -> None:
        """Count an event ``track()`` accepted but could not queue."""
        with self._drop_lock:
            self._turned_away += 1
        self._drop(reason, [item])

    def _drop(self, reason: str, items: Sequence[QueuedEvent]) -> None:
        with self._drop_lock:
            self.dropped += len(items)
            self._drops[reason] = self._drops.get(reason, 0) + len(items)
            self._dropped_items.extend((reason, item) for item in items)

    def _drop_closed(self, item: QueuedEvent) -> None:
        """Count an event tracked after ``close()`` and report it to ``on_error`` at once,
        from the caller's thread (no sender is left to do it)."""
        with self._drop_lock:
            self._turned_away += 1
            self.dropped += 1
            self._closed_drops += 1
            self.lost_at_close += 1
            first = self._closed_drops == 1
        if first:
            logger.warning("track() after close(): event %s dropped and counted", item.event_id)
        self._report(EventsDroppedError("closed", 1), [item])

    def _start(self) -> None:
        with self._start_lock:
            if (
                self.closed
                or self._starting  # a signal handler interrupted the start in this thread
                or (self._thread is not None and self._thread.is_alive())
            ):
                return
            self._starting = True
            try:
                thread = threading.Thread(target=self._run, name="dodo-ingest-sender", daemon=True)
                thread.start()
            except RuntimeError:  # interpreter shutting down: close() reports what is left
                logger.warning("could not start the sender thread; events stay queued")
                return
            finally:
                self._starting = False
            self._thread = thread

    def flush_waiter(self) -> Waiter | None:
        """A waiter fired once everything queued so far is settled (``None``: nothing to wait).

        When the outbox cannot be read, the waiter comes back already fired, not ``ok``.
        """
        try:
            if (
                self._thread is None
                and isinstance(self.outbox_queue, OutboxQueue)
                and self.outbox_queue.last_seq == 0
                and not self.outbox.has_other_pending()  # type: ignore[union-attr]
            ):
                return None
            waiter = self.queue.add_waiter()
        except Exception as error:  # the outbox cannot be read: flush() answers False
            logger.error("flush: the outbox cannot be read (%s)", error)
            failed = Waiter(0)
            failed.fire(ok=False)
            return failed
        if waiter is None:
            return None
        self._flush_requested.set()
        self._wakeup.set()
        self._start()
        thread = self._thread
        if (thread is None or not thread.is_alive()) and self.queue.backlog() == 0:
            # The sender is gone (closed, or could not start) and nothing waits.
            self.queue.cancel(waiter)
            return None
        return waiter

    def send_at_once(self) -> None:
        """The process is ending: send what waits now, and from now on every event as soon
        as it is queued instead of at a full batch or ``flush_interval``. Takes no lock
        (called from a signal handler)."""
        self._wake_at = 1
        self._wakeup.set()

    def revive(self) -> None:
        """Start a new sender if the last one was killed (a flush waiting calls this)."""
        if self.deliver and self._thread is None:
            self._flush_requested.set()
            self._wakeup.set()  # the new sender sends what waits at once
            self._start()

    def cancel(self, waiter: Waiter) -> None:
        """A flush stopped waiting on ``waiter`` (it timed out)."""
        self.queue.cancel(waiter)

    @property
    def active(self) -> bool:
        """True until closed and the sender thread has ended."""
        thread = self._thread
        return not self.closed or (thread is not None and thread.is_alive())

    def in_sender(self) -> bool:
        """True when called from the sender thread (from ``on_error``)."""
        return self._thread is threading.current_thread()

    def close(self, timeout: float, *, close_outbox: bool = False) -> None:
        """Flush for up to ``timeout`` seconds, then stop the sender and release the outbox
        (and close it when ``close_outbox``)."""
        if self.in_sender():  # close() from on_error: stop without waiting for itself
            with self._start_lock:
                if self.closed:
                    return
                self.closed = True
                self._close_outbox = close_outbox
                self._release_at_exit = True  # once the sender is done with the outbox
            self._stop.set()
            return
        with self._start_lock:
            if self.closed:  # another close() is under way: wait for it, within our timeout
                self._close_done.wait(timeout)
                return
            self._close_outbox = close_outbox
            deadline = time.monotonic() + timeout
            waiter = self.flush_waiter()
            self.closed = True
        if waiter is not None and not waiter.wait(timeout) and self.shared is not None:
            # Not seen settled by the group: what was tracked may still be delivered by
            # another consumer, but a flush after close() cannot say it was.
            self.unsettled_at_close = True
        self._stop.set()
        self._flush_requested.set()
        self._wakeup.set()
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()) + JOIN_GRACE)
        if thread is None or thread.is_alive():
            # No sender, or one still stuck in a request: what waits in memory, and what is
            # in that request, is written off now and reported from this thread.
            if self.memory is not None:
                in_flight = self._sender.write_off()
                items = self.memory.close(ok=not in_flight and not self.lost_at_close)
                self._abandon(items, in_flight)
            self._report_drops()
        if self.shared is not None:
            self._abandon_spill(self.shared.close())
        self._release()

    def _abandon_spill(self, items: Sequence[QueuedEvent]) -> None:
        """Count events that never reached a shared outbox as dropped at shutdown."""
        if not items:
            return
        with self._drop_lock:
            self.lost_at_close += len(items)
        self._drop("shutdown", items)
        logger.error(
            "%d event(s) never reached the shared outbox before close() ran out of time",
            len(items),
        )
        self._report_drops()

    def _release(self) -> None:
        """Give up ownership of what is left in the outbox; forget this pipeline."""
        if self.outbox is not None:
            try:
                self.outbox.release()
                if self._close_outbox:
                    self.outbox.close()
            except Exception:
                logger.exception("could not release the outbox")
        _LIVE.discard(self)
        self._close_done.set()

    # --- sender thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            with _fork_guard.section():
                load_fast_encoder()
                if self._transport is None and self.deliver:
                    self._transport = self._sender.transport = self._make_transport()
            self._maintain(force=True)
            while not self._stop.is_set():
                try:
                    self._step()
                except Abandoned as abandoned:
                    self._abandon(abandoned.items)
                    break
                except Exception:
                    logger.exception("delivery loop failed; retrying in 1 s")
                    self._stop.wait(1.0)
                    self._wakeup.set()  # what was put back is sent without waiting
        except BaseException:
            logger.exception("delivery sender stopped by an unexpected error")
        finally:
            self._exit()

    def _step(self) -> None:
        """Wait for a full batch, ``flush_interval`` or a flush; send what is queued."""
        if self.queue.backlog() < self._batch_size:
            self._wakeup.wait(self.settings.flush_interval)
        self._wakeup.clear()
        self._flush_requested.clear()
        if self._stop.is_set():
            return
        self._drain()
        self._maintain()

    def _exit(self) -> None:
        stopped = self._stop.is_set()
        if self.memory is not None and stopped:
            self._abandon(self.memory.close(ok=not self.lost_at_close))
        elif self.outbox is not None:
            try:
                self.outbox.close_sender()
            except Exception:
                logger.debug("closing the outbox connection failed", exc_info=True)
        self._report_drops()
        if self._transport is not None:
            try:
                self._transport.close()
            except Exception:
                logger.exception("closing the transport failed")
        if self._release_at_exit:
            self._release()
        if not stopped:
            # Killed by an error that is not an Exception: the queue is kept, and the next
            # track() or flush() starts a new sender.
            with self._start_lock:
                self._transport = self._sender.transport = None
                self._thread = None

    def _abandon(self, items: Sequence[QueuedEvent], in_flight: Sequence[QueuedEvent] = ()) -> None:
        """Count unsent memory events as dropped at shutdown (outbox events stay on disk)."""
        if self.memory is None:
            return
        with self._drop_lock:
            self.lost_at_close += len(items) + len(in_flight)
        if items:
            self._drop("shutdown", items)
            logger.error("%d event(s) not delivered before close() ran out of time", len(items))
        if in_flight:
            self._drop("shutdown", in_flight)
            logger.error(
                "%d event(s) still in a request to the API when close() ran out of time; "
                "counted as dropped (the API may have stored them)",
                len(in_flight),
            )

    def _drain(self) -> None:
        """Send what is queued, batch after batch, until a short batch was sent; then fire
        the flush waiters that batch completed."""
        batch_size = self._batch_size
        sender = self._sender
        queue = self.queue
        while not self._stop.is_set():
            items = queue.take(batch_size)
            if items:
                self._full_since = None  # room was made: the next overflow may wait again
                try:
                    sender.deliver(items)
                except Abandoned:
                    raise
                except BaseException:
                    # Nothing is lost to a bug; what close() wrote off meanwhile (and counted)
                    # is not put back, so it cannot be counted again.
                    queue.requeue(sender.write_off())
                    raise
            self._report_drops()  # so that on_error has heard of them when flush() returns
            queue.settle(items, drained=len(items) < batch_size)
            if len(items) < batch_size:
                return

    def _sleep(self, delay: float, wake_on_flush: bool) -> bool:
        """Wait ``delay`` seconds (or until ``flush()`` when asked); False when stopped."""
        deadline = time.monotonic() + delay
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            chunk = min(remaining, getattr(self.outbox, "heartbeat_interval", HEARTBEAT_INTERVAL))
            if wake_on_flush:
                if self._flush_requested.wait(chunk):
                    self._flush_requested.clear()
                    return not self._stop.is_set()
            else:
                self._stop.wait(chunk)
            self._maintain()
        return False

    def _maintain(self, *, force: bool = False) -> None:
        """Report drops; with an outbox, show life and take over orphaned events."""
        self._report_drops()
        if self.outbox is None or not self.deliver or self._stop.is_set():
            return  # no outbox, a producer only, or stopping (close() released it)
        now = time.monotonic()
        try:
            if force or now >= self._next_heartbeat:
                self._next_heartbeat = now + getattr(
                    self.outbox, "heartbeat_interval", HEARTBEAT_INTERVAL
                )
                self.outbox.heartbeat()
            if force or now >= self._next_reclaim:
                self._next_reclaim = now + getattr(
                    self.outbox, "reclaim_interval", RECLAIM_INTERVAL
                )
                taken = self.outbox.reclaim()
                # A store that claims in steps asks for the next one sooner.
                self._next_reclaim = now + getattr(
                    self.outbox, "reclaim_interval", RECLAIM_INTERVAL
                )
                if taken:
                    self.taken_over += taken
                    logger.info(
                        "took over %d event(s) left in the outbox by another process", taken
                    )
        except Exception:  # SQLite busy, disk full...: sending goes on, tried again later
            if not self._maintenance_failing:  # the traceback once per failure streak
                self._maintenance_failing = True
                logger.exception("outbox maintenance failed; tried again later")
            else:
                logger.debug("outbox maintenance failed again", exc_info=True)
        else:
            self._maintenance_failing = False

    def _report_drops(self) -> None:
        if not self._drops:
            return
        with self._drop_lock:
            drops, self._drops = self._drops, {}
            dropped_items = list(self._dropped_items)
            self._dropped_items.clear()
        for reason, count in drops.items():
            items = [item for why, item in dropped_items if why == reason]
            error = EventsDroppedError(reason, count)
            logger.error("%s", error)
            self._report(error, items)

    def _report(self, error: BaseException, items: Sequence[QueuedEvent]) -> None:
        """Call ``on_error`` with ``items`` as events; never raises."""
        if self._on_error is None:
            return
        try:
            events = events_of(items)
        except Exception:
            logger.exception("could not rebuild the events to report")
            return
        try:
            self._on_error(error, events)
        except Exception:
            logger.exception("the on_error callback raised")
        except BaseException:
            if not self.in_sender():
                raise  # the caller's own thread: their SystemExit or KeyboardInterrupt
            logger.exception("the on_error callback raised; the sender goes on")

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    # --- process lifecycle -------------------------------------------------------------------

    def after_fork_in_child(self) -> None:
        """Start over in a forked child: nothing of the parent's queue is sent again."""
        self._inherited.append(self._transport)  # never closed here: its sockets are the parent's
        self._transport = None
        if self.outbox is not None:
            self.outbox.after_fork_in_child()
            self.outbox.register()
        self._reset()

    def pending_since(self) -> float | None:
        """The timestamp of the oldest event of this process not yet settled (waiting, in a
        request, or in a shared outbox's spill); ``None`` when there is none, or when the
        store does not tell."""
        oldest: float | None = None
        if self.memory is not None:
            oldest = self.memory.oldest_timestamp()
            with self._sender.lock:
                in_flight = [item.timestamp for item in self._sender.unsettled()]
            if in_flight:
                oldest = min(in_flight) if oldest is None else min(oldest, *in_flight)
            return oldest
        tell = getattr(self.outbox, "oldest_pending", None)
        if tell is None:
            return None
        try:
            value = tell()
        except Exception:
            return None
        return None if value is None else float(value)

    def stats(self) -> DeliveryStats:
        """The counters right now (see :class:`DeliveryStats`).

        ``enqueued`` counts every event ``track()`` accepted, queued or turned away, plus
        those taken over from an outbox, so that
        ``enqueued == delivered + dead_lettered + dropped + queued`` always holds. With a
        shared outbox, the sender settles entries of any producer: ``queued`` is then what
        waits in memory for the store, and the rest is the stream's to tell.
        """
        # Settled counters first, accepted ones last: an event tracked and delivered between
        # the reads can only make ``queued`` larger for a moment, never negative.
        sender = self._sender
        with sender.lock:
            delivered, ingested = sender.delivered, sender.ingested
            retried, dead_lettered = sender.retried, sender.dead_lettered
        with self._drop_lock:
            turned_away, dropped = self._turned_away, self.dropped
        if self.memory is not None:
            appended = self.memory.next_seq - 1
        else:
            appended = _count_value(self._appended)
        enqueued = appended + turned_away
        if self.shared is not None:
            queued = self.shared.outbox.spilled()
        else:
            enqueued += self.taken_over
            queued = enqueued - delivered - dead_lettered - dropped
        return DeliveryStats(
            enqueued=enqueued,
            delivered=delivered,
            ingested=ingested,
            retried=retried,
            dead_lettered=dead_lettered,
            dropped=dropped,
            queued=queued,
        )


def _after_fork_in_child() -> None:
    for pipeline in list(_LIVE):
        try:
            pipeline.after_fork_in_child()
        except Exception:
            logger.exception("could not reset delivery after fork")


def close_all(timeout: float | None = None, *, memory_only: bool = False) -> None:
    """Flush and close every open pipeline, each for at most its ``shutdown_timeout`` (at
    interpreter exit, in ``multiprocessing`` children, on a handled terminating signal), or
    at most ``timeout`` when given (what is left is written off: counted and reported);
    only those without an outbox when ``memory_only``."""
    pipelines = [p for p in _LIVE if not memory_only or p.memory is not None]
    for pipeline in pipelines:
        pipeline._flush_requested.set()
        pipeline._wakeup.set()
    start = time.monotonic()
    for pipeline in pipelines:
        limit = pipeline.settings.shutdown_timeout if timeout is None else timeout
        remaining = start + limit - time.monotonic()
        try:
            pipeline.close(max(0.0, remaining))
        except Exception:
            logger.exception("flushing at exit failed")


class ExitFlush:
    """The flush ``atexit`` runs: whether it started and ended, and what to call once it has
    ended (a terminating signal that came during it is passed on then)."""

    def __init__(self) -> None:
        self.started = False
        self.done = False
        self.then: list[Callable[[], None]] = []

    def __call__(self) -> None:
        self.started = True
        try:
            close_all()
        finally:
            self.done = True
            for callback in self.then:
                callback()


EXIT_FLUSH = ExitFlush()


def send_at_once_all() -> list[Pipeline]:
    """Put every open pipeline in :meth:`Pipeline.send_at_once` mode; return them."""
    pipelines = list(_LIVE)
    for pipeline in pipelines:
        pipeline.send_at_once()
    return pipelines


class _ProcessExitHook:
    """Flushes at the exit of ``multiprocessing`` children, which skip ``atexit``.

    A ``multiprocessing.Process`` child ends with ``os._exit()`` after running the
    ``multiprocessing.util.Finalize`` callbacks; it clears the ones inherited at fork, then
    runs its after-fork callbacks, where this hook registers the flush.
    """

    registered = False

    def before_fork(self) -> None:
        util = sys.modules.get("multiprocessing.util")
        if util is not None and not self.registered:
            self.registered = True
            util.register_after_fork(self, _ProcessExitHook.in_child)

    def in_child(self) -> None:
        util = sys.modules["multiprocessing.util"]
        util.Finalize(None, close_all, exitpriority=PROCESS_EXIT_PRIORITY)


PROCESS_EXIT_PRIORITY = 10
"""``multiprocessing`` runs finalizers of priority >= 0 before joining the child's children."""
_PROCESS_EXIT_HOOK = _ProcessExitHook()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_PROCESS_EXIT_HOOK.before_fork, after_in_child=_after_fork_in_child)
atexit.register(EXIT_FLUSH)
