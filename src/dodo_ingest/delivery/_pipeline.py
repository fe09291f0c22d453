"""``Pipeline``: the queue and the background sender behind an :class:`Ingestion`.

One daemon thread per pipeline takes batches from the queue, sends them with one reused HTTP
connection and settles every event exactly once: delivered, dead-lettered (with a reason) or
dropped (counted and reported). ``track()`` only appends to the queue.
"""

from __future__ import annotations

import atexit
import itertools
import logging
import os
import random
import sqlite3
import sys
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Sequence

from ..client import APIStatusError, DodoClient, EventInput
from ..client._retry import is_retryable
from ._encoding import encode_event, with_timestamp
from ._errors import EventExpiredError, EventsDroppedError
from ._outbox import Outbox
from ._queues import EventQueue, Item, MemoryQueue, OutboxQueue
from ._settings import Settings
from ._waiter import Waiter

__all__ = ["ErrorCallback", "Pipeline", "logger"]

logger = logging.getLogger("dodo_ingest")

ErrorCallback = Callable[[BaseException, list[EventInput]], None]

SPLIT_STATUSES = frozenset({400, 413, 422})
"""Refusals of the whole request that bisection can pin on some of its events."""
HEARTBEAT_INTERVAL = 10.0
RECLAIM_INTERVAL = 30.0
DROP_REPORT_EVENTS = 1000
"""Dropped events handed to ``on_error`` per report (the count in the error is exact)."""
JOIN_GRACE = 0.2

_LIVE: weakref.WeakSet[Pipeline] = weakref.WeakSet()
"""Pipelines not yet closed, for the exit flush and the fork handler."""


class _Abandoned(Exception):
    """The pipeline was stopped while these items were still unsettled."""

    def __init__(self, items: list[Item]) -> None:
        super().__init__(f"{len(items)} unsettled")
        self.items = items


def _count_value(counter: itertools.count[int]) -> int:
    """The next value an :func:`itertools.count` would return, without advancing it.

    Producers count with ``next(counter)``, which is atomic; ``+= 1`` on an int is not.
    """
    return int(repr(counter)[6:-1])


def _halves(items: list[Item]) -> list[list[Item]]:
    """Two halves, the first half last (so it is sent first from a stack)."""
    middle = len(items) // 2
    return [items[middle:], items[:middle]]


class Pipeline:
    """Queue + sender thread + retry policy. Built and driven by :class:`Ingestion`."""

    def __init__(
        self,
        settings: Settings,
        make_client: Callable[[], DodoClient],
        on_error: ErrorCallback | None,
        outbox: Outbox | None,
        secret: str,
    ) -> None:
        self.settings = settings
        self.outbox = outbox
        self._make_client = make_client
        self._on_error = on_error
        self._secret = secret
        self.closed = False
        if outbox is not None:
            outbox.claim(self)
        # Built here, not in the sender thread: a fork while that thread is importing the
        # HTTP stack would leave the child with half-imported modules.
        self._client: DodoClient | None = make_client()
        self._inherited: list[object] = []
        self._reset()
        if outbox is not None:
            outbox.register()
        _LIVE.add(self)
        if outbox is not None and outbox.has_other_pending():
            self._start()  # take over what an earlier process left

    def _reset(self) -> None:
        """Fresh state: at construction, and in a forked child."""
        self.memory: MemoryQueue | None = None
        self.outbox_queue: OutboxQueue | None = None
        self.queue: EventQueue
        if self.outbox is None:
            self.memory = self.queue = MemoryQueue()
            self._items = self.memory.items
        else:
            self.outbox_queue = self.queue = OutboxQueue(self.outbox)
            self._items = deque()
        self._wakeup = threading.Event()
        self._flush_requested = threading.Event()
        self._stop = threading.Event()
        self._start_lock = threading.RLock()
        self._drop_lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._batch_size = self.settings.batch_size
        self._max_queue_size = self.settings.max_queue_size
        self.closed = False
        self._release_at_exit = False
        self._close_outbox = False
        self._enqueued = itertools.count()
        self.taken_over = 0
        self.delivered = 0
        self.ingested = 0
        self.retried = 0
        self.dead_lettered = 0
        self.dropped = 0
        self._drops: dict[str, int] = {}
        self._closed_drops = 0
        self._dropped_items: deque[tuple[str, Item]] = deque(maxlen=DROP_REPORT_EVENTS)
        self._paused = False
        self._inflight = 0
        self._full_since: float | None = None
        self._next_heartbeat = 0.0
        self._next_reclaim = 0.0

    # --- producer side (any thread) --------------------------------------------------------

    def put_memory(self, event_id: str, timestamp: float, event: EventInput) -> None:
        """Queue one event in memory (the hot path: a deque append, no lock)."""
        items = self._items
        if self.closed:
            self._drop_closed((event_id, timestamp, event))
            return
        if len(items) >= self._max_queue_size and not self._wait_for_room():
            self._drop("queue_full", [(event_id, timestamp, event)])
            return
        items.append((event_id, timestamp, event))
        next(self._enqueued)
        if self._thread is None:
            self._start()
        if len(items) >= self._batch_size and not self._wakeup.is_set():
            self._wakeup.set()

    def put_outbox(self, event_id: str, timestamp: float, event: EventInput) -> None:
        """Commit one event to the outbox, then let the sender know."""
        if self.closed:
            self._drop_closed((event_id, timestamp, event))
            return
        try:
            unsent = self.outbox_queue.append(  # type: ignore[union-attr]
                event_id, timestamp, encode_event(event, timestamp)
            )
        except sqlite3.Error as error:  # disk full, file gone...: never raised into the caller
            logger.error("could not store event %s in the outbox: %s", event_id, error)
            self._drop("outbox_error", [(event_id, timestamp, event)])
            return
        next(self._enqueued)
        if self._thread is None:
            self._start()
        if unsent >= self._batch_size and not self._wakeup.is_set():
            self._wakeup.set()

    def _wait_for_room(self) -> bool:
        """Wait for the sender to make room, True if it did.

        A burst waits up to ``queue_full_timeout`` in all; once the queue has stayed full
        that long (the API is down or slower than the traffic), events are dropped at once
        until the sender makes room again, so a stuck API does not slow every caller.
        """
        now = time.monotonic()
        if self._full_since is None:
            self._full_since = now
        deadline = self._full_since + self.settings.queue_full_timeout
        self._wakeup.set()
        while len(self._items) >= self._max_queue_size:
            if time.monotonic() >= deadline or threading.current_thread() is self._thread:
                return False
            time.sleep(0.001)
        self._full_since = None
        return True

    def _drop(self, reason: str, items: Sequence[Item]) -> None:
        with self._drop_lock:
            self.dropped += len(items)
            self._drops[reason] = self._drops.get(reason, 0) + len(items)
            self._dropped_items.extend((reason, item) for item in items)

    def _drop_closed(self, item: Item) -> None:
        """Count an event tracked after ``close()`` and report it to ``on_error`` at once,
        from the caller's thread (no sender is left to do it)."""
        with self._drop_lock:
            self.dropped += 1
            self._closed_drops += 1
            first = self._closed_drops == 1
        if first:
            logger.warning("track() after close(): event %s dropped and counted", item[0])
        self._report(EventsDroppedError("closed", 1), [item], dropped=True)

    def _start(self) -> None:
        with self._start_lock:
            if self.closed or (self._thread is not None and self._thread.is_alive()):
                return
            thread = threading.Thread(target=self._run, name="dodo-ingest-sender", daemon=True)
            try:
                thread.start()
            except RuntimeError:  # interpreter shutting down: close() reports what is left
                logger.warning("could not start the sender thread; events stay queued")
                return
            self._thread = thread

    def flush_waiter(self) -> Waiter | None:
        """A waiter fired once everything queued so far is settled (``None``: nothing to wait)."""
        if self._thread is None:
            if self.memory is not None and not self._items:
                return None
            if (
                self.outbox_queue is not None
                and self.outbox_queue.last_seq == 0
                and not self.outbox.has_other_pending()  # type: ignore[union-attr]
            ):
                return None
        waiter = Waiter()
        self.queue.add_waiter(waiter)
        self._flush_requested.set()
        self._wakeup.set()
        self._start()
        if self._thread is None or not self._thread.is_alive():
            # The sender is gone (closed, or could not start): nothing will fire the waiter.
            return None if self.queue.backlog() == 0 else waiter
        return waiter

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
            if self.closed:
                return
            self._close_outbox = close_outbox
            deadline = time.monotonic() + timeout
            waiter = self.flush_waiter()
            self.closed = True
        if waiter is not None:
            waiter.wait(timeout)
        self._stop.set()
        self._flush_requested.set()
        self._wakeup.set()
        thread = self._thread
        if thread is not None:
            thread.join(max(0.0, deadline - time.monotonic()) + JOIN_GRACE)
        if thread is None or thread.is_alive():
            # No sender, or one still stuck in a request: what waits in memory is lost, and
            # this thread reports it since the sender cannot.
            if self.memory is not None:
                self._abandon(self.memory.clear())
            self._report_drops()
        self._release()

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

    # --- sender thread -----------------------------------------------------------------------

    def _run(self) -> None:
        try:
            if self._client is None:
                self._client = self._make_client()
            self._maintain(force=True)
            while not self._stop.is_set():
                try:
                    self._step()
                except _Abandoned as abandoned:
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
            self._abandon(self.memory.clear())
        elif self.outbox is not None:
            try:
                self.outbox.close_sender()
            except Exception:
                logger.debug("closing the outbox connection failed", exc_info=True)
        self._report_drops()
        if self._client is not None:
            self._client.close()
        if self._release_at_exit:
            self._release()
        if not stopped:
            # Killed by an error that is not an Exception: the queue is kept, and the next
            # track() or flush() starts a new sender.
            with self._start_lock:
                self._client = None
                self._thread = None

    def _abandon(self, items: list[Item]) -> None:
        """Count unsent memory events as dropped at shutdown (outbox events stay on disk)."""
        if items and self.memory is not None:
            self._drop("shutdown", items)
            logger.error("%d event(s) not delivered before close() ran out of time", len(items))
        thread = self._thread
        if self._inflight and thread is not None and thread is not threading.current_thread():
            logger.error(
                "%d event(s) still in a request to the API when close() ran out of time",
                self._inflight,
            )

    def _drain(self) -> None:
        """Send what is queued, batch after batch, until a partial batch was sent.

        A flush waiter sits in the queue behind the events tracked before it, so it is taken
        (and fired) with the batch that settles the last of them.
        """
        batch_size = self._batch_size
        while not self._stop.is_set():
            items, waiters = self.queue.take(batch_size)
            if items:
                self._full_since = None  # room was made: the next overflow may wait again
                self._inflight = len(items)
                try:
                    self._deliver(items)
                except _Abandoned:
                    raise
                except BaseException:
                    self.queue.requeue(items, waiters)  # nothing is lost to a bug
                    raise
                self._inflight = 0
            if waiters:
                self._report_drops()  # so that on_error has heard of them when flush() returns
            for waiter in waiters:
                waiter.fire()
            if len(items) < batch_size:
                return

    def _deliver(self, items: list[Item]) -> None:
        """Settle one batch: dedupe, split to the byte budget, send, retry, bisect."""
        unique: dict[str, Item] = {}
        duplicates: list[Item] = []
        for item in items:
            if item[0] in unique:
                duplicates.append(item)
            else:
                unique[item[0]] = item
        if duplicates:
            self.queue.delivered(duplicates)
            self.delivered += len(duplicates)
            items = list(unique.values())
        parts = [items]
        while parts:
            if self._stop.is_set():
                raise _Abandoned([item for part in parts for item in part])
            part = parts.pop()
            try:
                parts.extend(self._send(part))
            except _Abandoned as abandoned:
                raise _Abandoned(abandoned.items + [i for p in parts for i in p]) from None

    def _send(self, part: list[Item]) -> list[list[Item]]:
        """Send ``part`` until it is settled; return sub-parts still to send after a split."""
        settings = self.settings
        client = self._client
        assert client is not None
        attempt = 0
        last_error: BaseException | None = None
        body = b""
        while True:
            kept = self._expire(part, last_error)
            if not kept:
                return []
            if not body or kept is not part:  # encoded once, again only if events expired
                part = kept
                body = self.queue.encode(part)
                if len(body) > settings.max_request_bytes and len(part) > 1:
                    return _halves(part)
            try:
                result = client.events.ingest_json(body)
            except APIStatusError as error:
                if is_retryable(error):
                    last_error = error
                elif error.status_code in SPLIT_STATUSES:
                    if len(part) > 1:
                        return _halves(part)
                    reason = self._redact(f"HTTP {error.status_code}: {error.message}")
                    self._bury(part, reason, error.status_code, error)
                    return []
                else:
                    self._pause(error, part)
                    continue
            except Exception as error:  # no answer, a timeout, or an answer that is not JSON
                last_error = error
            else:
                self.queue.delivered(part)
                self.delivered += len(part)
                self.ingested += result.ingested_count
                if self._paused:
                    self._paused = False
                    logger.warning("delivery resumed")
                return []
            self.retried += len(part)
            delay = self._retry_delay(last_error, attempt)
            logger.warning(
                "sending %d event(s) failed (%s); retrying in %.2f s",
                len(part),
                self._redact(str(last_error)),
                delay,
            )
            if not self._sleep(delay):
                raise _Abandoned(part)
            attempt += 1

    def _retry_delay(self, error: BaseException | None, attempt: int) -> float:
        settings = self.settings
        if isinstance(error, APIStatusError) and error.retry_after is not None:
            return min(error.retry_after, settings.max_retry_after)
        ceiling = settings.retry_initial_delay * 2.0 ** min(attempt, 30)
        return random.uniform(0.0, min(settings.retry_max_delay, ceiling))

    def _expire(self, part: list[Item], last_error: BaseException | None) -> list[Item]:
        """Dead-letter the events of ``part`` older than ``max_event_age``; return the rest."""
        cutoff = time.time() - self.settings.max_event_age
        if min(item[1] for item in part) >= cutoff:
            return part
        expired = [item for item in part if item[1] < cutoff]
        error = EventExpiredError(self.settings.max_event_age, last_error)
        self._bury(expired, self._redact(f"expired: {error}"), None, error)
        return [item for item in part if item[1] >= cutoff]

    def _bury(
        self, items: list[Item], reason: str, status_code: int | None, error: BaseException
    ) -> None:
        self.queue.bury(items, reason, status_code)
        self.dead_lettered += len(items)
        logger.error("%d event(s) dead-lettered: %s", len(items), reason)
        self._report(error, items)

    def _pause(self, error: APIStatusError, part: list[Item]) -> None:
        """The API refused the key or the endpoint: keep the events, try again later."""
        if not self._paused:
            self._paused = True
            logger.error(
                "the API refused delivery (HTTP %s: %s); events are kept and retried every "
                "%g s or on flush()",
                error.status_code,
                self._redact(error.message),
                self.settings.auth_retry_interval,
            )
            self._report(error, part)
        if not self._sleep(self.settings.auth_retry_interval, wake_on_flush=True):
            raise _Abandoned(part)

    def _sleep(self, delay: float, *, wake_on_flush: bool = False) -> bool:
        """Wait ``delay`` seconds (or until ``flush()`` when asked); False when stopped."""
        deadline = time.monotonic() + delay
        while not self._stop.is_set():
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            chunk = min(remaining, HEARTBEAT_INTERVAL)
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
        if self.outbox is None or self._stop.is_set():  # stopping: close() released it
            return
        now = time.monotonic()
        try:
            if force or now >= self._next_heartbeat:
                self._next_heartbeat = now + HEARTBEAT_INTERVAL
                self.outbox.heartbeat()
            if force or now >= self._next_reclaim:
                self._next_reclaim = now + RECLAIM_INTERVAL
                taken = self.outbox.reclaim()
                if taken:
                    self.taken_over += taken
                    logger.info(
                        "took over %d event(s) left in the outbox by another process", taken
                    )
        except Exception:  # SQLite busy, disk full...: sending goes on, tried again later
            logger.exception("outbox maintenance failed; tried again later")

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
            self._report(error, items, dropped=True)

    def _report(
        self, error: BaseException, items: Sequence[Item], *, dropped: bool = False
    ) -> None:
        """Call ``on_error`` with ``items`` as events (dropped items never reached the queue,
        so they are always ``(event_id, timestamp, event)``)."""
        if self._on_error is None:
            return
        try:
            if dropped:
                events = [with_timestamp(event, ts) for _, ts, event in items]
            else:
                events = self.queue.events(items)
        except Exception:
            logger.exception("could not rebuild the events to report")
            return
        try:
            self._on_error(error, events)
        except Exception:
            logger.exception("the on_error callback raised")

    def _redact(self, text: str) -> str:
        return text.replace(self._secret, "***") if self._secret else text

    # --- process lifecycle -------------------------------------------------------------------

    def after_fork_in_child(self) -> None:
        """Start over in a forked child: nothing of the parent's queue is sent again."""
        self._inherited.append(self._client)  # never closed here: its sockets are the parent's
        self._client = None
        if self.outbox is not None:
            self.outbox.after_fork_in_child()
            self.outbox.register()
        self._reset()

    def stats(self) -> tuple[int, int, int, int, int, int]:
        """``(enqueued, delivered, ingested, retried, dead_lettered, dropped)`` right now."""
        enqueued = _count_value(self._enqueued) + self.taken_over
        return (
            enqueued,
            self.delivered,
            self.ingested,
            self.retried,
            self.dead_lettered,
            self.dropped,
        )


def _after_fork_in_child() -> None:
    for pipeline in list(_LIVE):
        try:
            pipeline.after_fork_in_child()
        except Exception:
            logger.exception("could not reset delivery after fork")


def _close_all_at_exit() -> None:
    pipelines = list(_LIVE)
    for pipeline in pipelines:
        pipeline._flush_requested.set()
        pipeline._wakeup.set()
    start = time.monotonic()
    for pipeline in pipelines:
        remaining = start + pipeline.settings.shutdown_timeout - time.monotonic()
        try:
            pipeline.close(max(0.0, remaining))
        except Exception:
            logger.exception("flushing at exit failed")


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
        util.Finalize(None, _close_all_at_exit, exitpriority=PROCESS_EXIT_PRIORITY)


PROCESS_EXIT_PRIORITY = 10
"""``multiprocessing`` runs finalizers of priority >= 0 before joining the child's children."""
_PROCESS_EXIT_HOOK = _ProcessExitHook()

if hasattr(os, "register_at_fork"):
    os.register_at_fork(before=_PROCESS_EXIT_HOOK.before_fork, after_in_child=_after_fork_in_child)
atexit.register(_close_all_at_exit)
