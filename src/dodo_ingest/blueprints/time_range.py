"""Bill by execution time: compute jobs, GPU seconds, sessions.

Two forms, both emitting the metadata keys ``durationMs``, ``durationSeconds`` and
``durationMinutes`` like the TypeScript blueprint:

- :func:`track_time_range` sends one event for a duration you measured yourself.
- :func:`time_range` measures for you, as a decorator of sync and async functions or as a
  ``with`` / ``async with`` block. It uses a monotonic clock, so wall-clock jumps do not change
  a bill; a run that raises is still billed for the time it ran and the exception propagates
  unchanged. With ``heartbeat_seconds``, a long run also emits heartbeat events while it runs,
  so a process killed after three hours is billed for what it ran; the final event completes the
  total without counting anything twice.
"""

from __future__ import annotations

import contextvars
import functools
import heapq
import inspect
import itertools
import math
import os
import sys
import threading
import time
from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime
from types import FrameType, TracebackType
from typing import Any, Literal, TypeVar, cast

from ..client._errors import ConfigurationError, EventValidationError
from ..client._models import MetadataValue
from ..delivery._ids import format_epoch
from ._common import (
    EventSink,
    FailureCounter,
    check_base_id,
    check_customer_id,
    check_event_name,
    check_metadata,
    check_positive,
    derive_event_id,
    error_metadata,
    new_base_id,
)

__all__ = ["Rounding", "TimeRange", "TimeRangeRun", "time_range", "track_time_range"]

Rounding = Literal["ms", "second", "minute"]
"""Billing unit of :func:`time_range`; a run's duration is rounded up to a whole unit."""

F = TypeVar("F", bound=Callable[..., Any])

_UNIT_NS: dict[str, int] = {"ms": 1_000_000, "second": 1_000_000_000, "minute": 60_000_000_000}
_DURATION_KEYS = ("durationMs", "durationSeconds", "durationMinutes")
_RESERVED = (
    *_DURATION_KEYS,
    "startedAt",
    "endedAt",
    "jobId",
    "status",
    "errorType",
    "sequence",
    "final",
    "totalDurationMs",
)


def _check_duration(value: object, field: str) -> float | int | None:
    if value is None:
        return None
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise EventValidationError(field, f"must be a finite number >= 0, got {value!r}")
    return value


def track_time_range(
    ingestion: EventSink,
    customer_id: str,
    duration_ms: float | None = None,
    duration_seconds: float | None = None,
    duration_minutes: float | None = None,
    metadata: Mapping[str, MetadataValue] | None = None,
    event_name: str | None = None,
    *,
    event_id: str | None = None,
    timestamp: datetime | None = None,
) -> str:
    """Track one event with the durations given (keys ``durationMs``, ``durationSeconds``,
    ``durationMinutes``); returns its ``event_id``.

    At least one duration is required; each is a finite number >= 0, sent as given (no unit
    conversion). ``metadata`` may not use those keys. Bad input raises ``EventValidationError``.
    """
    given = {
        key: _check_duration(value, field)
        for key, value, field in (
            ("durationMs", duration_ms, "duration_ms"),
            ("durationSeconds", duration_seconds, "duration_seconds"),
            ("durationMinutes", duration_minutes, "duration_minutes"),
        )
        if value is not None
    }
    if not given:
        raise EventValidationError(
            "duration_ms", "one of duration_ms, duration_seconds, duration_minutes is required"
        )
    extra = check_metadata(metadata, _DURATION_KEYS)
    return ingestion.track(
        check_customer_id(customer_id),
        check_event_name(event_name),
        {**cast("dict[str, MetadataValue]", given), **extra},
        event_id=event_id,
        timestamp=timestamp,
    )


class TimeRangeRun:
    """One measured run: ``job_id``, ``customer_id``, ``elapsed`` seconds so far."""

    __slots__ = (
        "_billed",
        "_boundary_ns",
        "_lock",
        "_sequence",
        "_start_epoch",
        "_start_ns",
        "customer_id",
        "done",
        "job_id",
        "metadata",
    )

    def __init__(self, job_id: str, customer_id: str, metadata: dict[str, MetadataValue]) -> None:
        self.job_id = job_id
        self.customer_id = customer_id
        self.metadata = metadata
        self.done = False
        self._lock = threading.Lock()
        self._billed = 0
        self._sequence = 0
        self._start_epoch = time.time()
        self._start_ns = self._boundary_ns = time.monotonic_ns()

    @property
    def elapsed(self) -> float:
        """Seconds since the run started (monotonic clock)."""
        return (time.monotonic_ns() - self._start_ns) / 1e9

    def _wall(self, monotonic_ns: int) -> str:
        """The wall-clock time of a monotonic instant of this run, as RFC 3339."""
        return format_epoch(self._start_epoch + (monotonic_ns - self._start_ns) / 1e9)


class _Heartbeats:
    """One daemon thread that emits the heartbeats of every running job, earliest first."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[int, int, TimeRangeRun, TimeRange, int]] = []
        self._order = itertools.count()
        self._thread: threading.Thread | None = None
        self._active = 0

    def add(self, run: TimeRangeRun, owner: TimeRange, interval_ns: int) -> None:
        with self._cond:
            due = time.monotonic_ns() + interval_ns
            earliest = not self._heap or due < self._heap[0][0]
            heapq.heappush(self._heap, (due, next(self._order), run, owner, interval_ns))
            self._active += 1
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="dodo-ingest-heartbeats", daemon=True
                )
                self._thread.start()
            elif earliest:  # the thread sleeps until the old first entry: wake it earlier
                self._cond.notify()

    def remove(self) -> None:
        with self._cond:
            self._active -= 1
            if len(self._heap) > 64 and len(self._heap) > 2 * self._active:
                self._heap = [entry for entry in self._heap if not entry[2].done]
                heapq.heapify(self._heap)

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._heap:
                    self._cond.wait()
                due, _, run, owner, interval_ns = self._heap[0]
                wait_ns = due - time.monotonic_ns()
                if wait_ns > 0:
                    self._cond.wait(wait_ns / 1e9)
                    continue
                heapq.heappop(self._heap)
            if run.done:
                continue
            try:
                owner._emit(run, final=False, error=None)
            except Exception as exc:  # keep beating for the other runs
                owner._tracking_failed(f"time_range {run.job_id}", exc)
            with self._cond:
                if not run.done:
                    entry = (due + interval_ns, next(self._order), run, owner, interval_ns)
                    heapq.heappush(self._heap, entry)

    def _after_fork(self) -> None:
        self.__init__()  # type: ignore[misc]


_heartbeats = _Heartbeats()
if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_heartbeats._after_fork)


class _Block:
    """One ``with`` block of a :class:`TimeRange`: its run (``None`` if it could not start),
    the frame that entered it and the context-variable token of that entry."""

    __slots__ = ("frame", "run", "token")

    def __init__(self, run: TimeRangeRun | None, frame: FrameType) -> None:
        self.run = run
        self.frame: FrameType | None = frame
        self.token: contextvars.Token[tuple[_Block, ...]] | None = None


class TimeRange(FailureCounter):
    """Measures runs and tracks their duration; see :func:`time_range`.

    ``tracking_errors`` counts the runs or events that could not be tracked (each is logged on
    the ``dodo_ingest`` logger).
    """

    def __init__(
        self,
        ingestion: EventSink,
        customer_id: str | Callable[..., str],
        event_name: str | None = None,
        metadata: Mapping[str, MetadataValue]
        | Callable[..., Mapping[str, MetadataValue]]
        | None = None,
        *,
        job_id: str | Callable[..., str] | None = None,
        rounding: Rounding = "ms",
        heartbeat_seconds: float | None = None,
    ) -> None:
        self._ingestion = ingestion
        self._customer_id = customer_id if callable(customer_id) else check_customer_id(customer_id)
        self._event_name = check_event_name(event_name, ingestion)
        self._metadata = metadata if callable(metadata) else check_metadata(metadata, _RESERVED)
        self._job_id = (
            job_id if job_id is None or callable(job_id) else check_base_id(job_id, "job_id")
        )
        if rounding not in _UNIT_NS:
            raise ConfigurationError(
                f"rounding: must be 'ms', 'second' or 'minute', got {rounding!r}"
            )
        self._rounding = rounding
        self._unit_ns = _UNIT_NS[rounding]
        heartbeat = check_positive(heartbeat_seconds, "heartbeat_seconds")
        self._heartbeat_ns = None if heartbeat is None else max(1, int(heartbeat * 1e9))
        self._lock = threading.Lock()
        self._open: dict[_Block, None] = {}
        self._blocks: contextvars.ContextVar[tuple[_Block, ...]] = contextvars.ContextVar(
            f"dodo_ingest_time_range_{id(self)}", default=()
        )

    # -- decorator ---------------------------------------------------------------------------

    def __call__(self, func: F) -> F:
        """Decorate a sync or async function: every call is one measured run.

        Callables given as ``customer_id``, ``metadata`` or ``job_id`` receive the call's
        arguments. Generator functions are refused (measure the code that consumes them).
        """
        if isinstance(self._job_id, str):
            raise ConfigurationError(
                "job_id: a fixed string would give every call the same event ids; "
                "pass a callable of the call's arguments"
            )
        if inspect.isgeneratorfunction(func) or inspect.isasyncgenfunction(func):
            raise TypeError("time_range cannot decorate a generator function; use `with` instead")
        if inspect.iscoroutinefunction(func):
            async_func = cast("Callable[..., Awaitable[Any]]", func)

            @functools.wraps(func)
            async def measured_async(*args: Any, **kwargs: Any) -> Any:
                run = self._begin(args, kwargs)
                try:
                    result = await async_func(*args, **kwargs)
                except BaseException as exc:
                    self._end(run, exc)
                    raise
                self._end(run, None)
                return result

            return cast("F", measured_async)

        @functools.wraps(func)
        def measured(*args: Any, **kwargs: Any) -> Any:
            run = self._begin(args, kwargs)
            try:
                result = func(*args, **kwargs)
            except BaseException as exc:
                self._end(run, exc)
                raise
            self._end(run, None)
            return result

        return cast("F", measured)

    # -- context manager ---------------------------------------------------------------------

    def __enter__(self) -> TimeRangeRun | None:
        return self._enter(sys._getframe(1))

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(sys._getframe(1), exc)

    async def __aenter__(self) -> TimeRangeRun | None:
        return self._enter(sys._getframe(1))

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self._exit(sys._getframe(1), exc)

    def _enter(self, frame: FrameType) -> TimeRangeRun | None:
        block = _Block(self._begin((), {}), frame)
        with self._lock:
            outer = self._blocks.get()
            if outer:  # drop the blocks that other contexts ended
                outer = tuple(entry for entry in outer if entry in self._open)
            block.token = self._blocks.set((*outer, block))
            self._open[block] = None
        return block.run

    def _exit(self, frame: FrameType, error: BaseException | None) -> None:
        try:
            block = self._close_block(frame)
        except Exception as exc:
            self._tracking_failed("time_range", exc)
            return
        if block is None:
            self._tracking_failed("time_range", RuntimeError("exit without an open block"))
            return
        self._end(block.run, error)

    def _close_block(self, frame: FrameType) -> _Block | None:
        with self._lock:
            block = self._exiting_block(frame)
            if block is not None:
                self._pop_here(block)
                del self._open[block]
                block.frame = None
            return block

    def _exiting_block(self, frame: FrameType) -> _Block | None:
        """The open block an exit ends, whatever thread, task or context the exit runs in.

        First the innermost open block entered from the exiting frame (a ``with`` statement
        enters and exits from one frame, also when a FastAPI dependency runs the two halves in
        different worker threads). Else the innermost open block entered in the current
        context; else the latest entered of the open blocks this context did not inherit from
        an enclosing block.
        """
        for block in reversed(self._open):
            if block.frame is frame:
                return block
        visible = [block for block in self._blocks.get() if block in self._open]
        if visible and self._pop_here(visible[-1]):
            return visible[-1]
        others = [block for block in self._open if block not in visible]
        return others[-1] if others else None

    def _pop_here(self, block: _Block) -> bool:
        """Pop ``block`` (and any block above it) off this context's stack if it was entered in
        this context; False when it was entered in another one."""
        if block.token is None:
            return False
        try:
            self._blocks.reset(block.token)
        except (ValueError, RuntimeError):
            return False
        block.token = None
        return True

    # -- measuring ---------------------------------------------------------------------------

    def _begin(self, args: tuple[Any, ...], kwargs: dict[str, Any]) -> TimeRangeRun | None:
        try:
            customer = self._customer_id
            if callable(customer):
                customer = check_customer_id(customer(*args, **kwargs))
            metadata = self._metadata
            if callable(metadata):
                metadata = check_metadata(metadata(*args, **kwargs), _RESERVED)
            job_id = self._job_id
            if job_id is None:
                job_id = new_base_id("job")
            elif callable(job_id):
                job_id = check_base_id(job_id(*args, **kwargs), "job_id")
            run = TimeRangeRun(job_id, customer, metadata)
            if self._heartbeat_ns is not None:
                _heartbeats.add(run, self, self._heartbeat_ns)
            return run
        except Exception as exc:
            self._tracking_failed("time_range", exc)
            return None

    def _end(self, run: TimeRangeRun | None, error: BaseException | None) -> None:
        if run is None:
            return
        try:
            self._emit(run, final=True, error=error)
        except Exception as exc:
            self._tracking_failed(f"time_range {run.job_id}", exc)
        finally:
            run.done = True
            if self._heartbeat_ns is not None:
                _heartbeats.remove()

    def _emit(self, run: TimeRangeRun, *, final: bool, error: BaseException | None) -> None:
        with run._lock:
            if run.done:
                return
            now = time.monotonic_ns()
            elapsed = now - run._start_ns
            unit = self._unit_ns
            billed = -(-elapsed // unit) if final else elapsed // unit
            units = billed - run._billed
            if final:
                run.done = True
            elif units == 0:
                return
            sequence = run._sequence + 1
            metadata = self._durations(units)
            metadata["startedAt"] = run._wall(run._boundary_ns)
            metadata["endedAt"] = run._wall(now)
            metadata["jobId"] = run.job_id
            metadata.update(error_metadata(error) if final else {"status": "running"})
            if self._heartbeat_ns is not None:
                metadata["sequence"] = sequence
                metadata["final"] = final
                metadata["totalDurationMs"] = billed * unit // 1_000_000
            metadata.update(run.metadata)
            try:
                self._ingestion.track(
                    run.customer_id,
                    self._event_name,
                    metadata,
                    event_id=derive_event_id(run.job_id, sequence),
                )
            except Exception as exc:
                self._tracking_failed(f"time_range {run.job_id}", exc)
                return
            run._sequence = sequence
            run._billed = billed
            run._boundary_ns = now

    def _durations(self, units: int) -> dict[str, MetadataValue]:
        if self._rounding == "ms":
            return {
                "durationMs": units,
                "durationSeconds": units / 1000,
                "durationMinutes": units / 60_000,
            }
        if self._rounding == "second":
            return {
                "durationMs": units * 1000,
                "durationSeconds": units,
                "durationMinutes": units / 60,
            }
        return {
            "durationMs": units * 60_000,
            "durationSeconds": units * 60,
            "durationMinutes": units,
        }


def time_range(
    ingestion: EventSink,
    customer_id: str | Callable[..., str],
    event_name: str | None = None,
    metadata: Mapping[str, MetadataValue]
    | Callable[..., Mapping[str, MetadataValue]]
    | None = None,
    *,
    job_id: str | Callable[..., str] | None = None,
    rounding: Rounding = "ms",
    heartbeat_seconds: float | None = None,
) -> TimeRange:
    """Measure how long code runs and track it; a decorator and a (async) context manager.

    ``@time_range(ingestion, customer_id=lambda job: job.customer)`` measures every call of a
    sync or async function; ``with time_range(ingestion, "cus_1") as run:`` measures a block
    (callables then get no arguments). Each run ends with one event carrying ``durationMs``,
    ``durationSeconds``, ``durationMinutes`` (the duration rounded up to a whole ``rounding``
    unit: ``"ms"``, ``"second"`` or ``"minute"``; the other two keys are derived from it),
    ``startedAt``/``endedAt`` (RFC 3339, the interval the event bills), ``jobId``, ``status``
    (``ok``, or ``error`` and ``errorType``) and your ``metadata``.

    ``heartbeat_seconds``: while a run lasts, emit a heartbeat event (``status`` ``running``)
    every that many seconds billing the whole units elapsed since the previous event; the final
    event bills the rest, so the events of a run add up exactly to its rounded duration. With
    heartbeats, events also carry ``sequence``, ``final`` and ``totalDurationMs`` (cumulative).

    Event ids are ``<job_id>:<sequence>``; ``job_id`` (a string or a callable of the call's
    arguments; default random per run) makes a re-run of the same job idempotent.

    Runs are independent, so nested and concurrent use (threads, asyncio tasks) is safe, and a
    ``with`` block may exit in another thread, task or context than it entered (FastAPI runs
    the halves of a sync ``yield`` dependency in different worker threads): the exit ends the
    run its block entered. Bad settings raise here; a failure to track later (also an exit
    with no open block) is logged and counted, never raised.
    """
    return TimeRange(
        ingestion,
        customer_id,
        event_name,
        metadata,
        job_id=job_id,
        rounding=rounding,
        heartbeat_seconds=heartbeat_seconds,
    )
