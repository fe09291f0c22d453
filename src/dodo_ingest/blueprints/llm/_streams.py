"""Stream taps: observe the items of a stream on their way to the caller, bill exactly once.

A tap finishes on the first of: exhaustion, an exception raised by the stream, ``close()``
(``with`` exit), or the stream being garbage-collected after it was abandoned. What it then
records is decided by the provider's accumulator: the final usage when it was seen, else what
was known so far, marked incomplete. The caller's stream object keeps its identity and type:
SDK streams get their iterator replaced and their HTTP response's close hooked; plain
generators (google-genai) are re-yielded by a generator.
"""

from __future__ import annotations

import functools
import itertools
import weakref
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any, Protocol, TypeVar

from ._tracker import LLMTracker, Scope
from ._usage import LLMUsage

__all__ = [
    "StreamAccumulator",
    "StreamTap",
    "tap_async_iterator",
    "tap_iterator",
    "tap_sdk_stream",
]

T = TypeVar("T")


class StreamAccumulator(Protocol):
    """Provider-specific reading of stream items."""

    def observe(self, item: Any) -> bool:
        """Read ``item``; return True to hide it from the caller."""
        ...

    def result(self, exhausted: bool) -> LLMUsage | None:
        """The usage known now (``None`` when nothing is known)."""
        ...


class StreamTap:
    """Feeds stream items to an accumulator and records its result exactly once."""

    __slots__ = ("_finishes", "accumulator", "active", "exhausted", "scope", "tracker")

    def __init__(self, accumulator: StreamAccumulator, tracker: LLMTracker, scope: Scope) -> None:
        self.accumulator: StreamAccumulator | None = accumulator
        self.tracker = tracker
        self.scope = scope
        self._finishes = itertools.count()  # next() is atomic: one finish wins across threads
        self.exhausted = False
        self.active = False

    def observe_function(self) -> Callable[[Any], bool]:
        """The accumulator's ``observe``: read an item, True to hide it from the caller."""
        accumulator = self.accumulator
        return accumulator.observe if accumulator is not None else _show

    def broken(self, exc: Exception) -> Callable[[Any], bool]:
        """Give up on this stream's usage after ``exc`` (logged, counted); the caller's stream
        goes on untouched. Returns the observer to use from now on."""
        hiding = getattr(self.accumulator, "hide", False)
        self.accumulator = None
        self.tracker._failure("could not read LLM stream usage", exc)
        return _hide_usage_chunk if hiding else _show

    def finish(self) -> None:
        """Record the usage once; later calls do nothing. Never raises."""
        if next(self._finishes):
            return
        accumulator = self.accumulator
        if accumulator is None:
            return
        try:
            usage = accumulator.result(self.exhausted)
        except Exception as exc:
            self.tracker._failure("could not read LLM stream usage", exc)
            return
        if usage is not None:
            self.tracker.record(usage, self.scope)


def tap_iterator(inner: Iterator[T], tap: StreamTap) -> Iterator[T]:
    """Re-yield ``inner``'s items (minus hidden ones) and finish ``tap`` when it ends."""
    observe = tap.observe_function()
    try:
        tap.active = True
        for item in inner:
            tap.active = False
            try:
                hide = observe(item)
            except Exception as exc:
                observe = tap.broken(exc)
                hide = False
            if not hide:
                yield item
            tap.active = True
        tap.exhausted = True
    finally:
        tap.active = False
        tap.finish()


async def tap_async_iterator(inner: AsyncIterator[T], tap: StreamTap) -> AsyncIterator[T]:
    """Async twin of :func:`tap_iterator`."""
    observe = tap.observe_function()
    try:
        tap.active = True
        async for item in inner:
            tap.active = False
            try:
                hide = observe(item)
            except Exception as exc:
                observe = tap.broken(exc)
                hide = False
            if not hide:
                yield item
            tap.active = True
        tap.exhausted = True
    finally:
        tap.active = False
        tap.finish()


def _show(item: Any) -> bool:
    return False


def _hide_usage_chunk(item: Any) -> bool:
    """Still hide the usage-only chunk the tracker asked for, after a tracking failure."""
    try:
        return item.usage is not None and not item.choices
    except Exception:
        return False


def tap_sdk_stream(stream: Any, tap: StreamTap) -> None:
    """Tap an openai/anthropic/groq ``Stream`` or ``AsyncStream`` in place.

    Its ``_iterator`` (which ``__iter__``/``__next__`` and the SDK helpers read) is replaced by
    a tapping one, and its HTTP response's ``close()``/``aclose()`` (which ``stream.close()``,
    ``with`` and the SDK helpers call) also finish the tap. The stream object and its type are
    untouched, so ``isinstance``, ``type()``, ``with``, ``.response`` and the helpers all work.
    """
    response = stream.response
    if "close" in response.__dict__ or "aclose" in response.__dict__:
        return
    inner = stream._iterator
    held = weakref.ref(response)
    if hasattr(stream, "__anext__"):
        stream._iterator = tap_async_iterator(inner, tap)
        response.aclose = functools.partial(_aclose_and_finish, held, tap)
    else:
        stream._iterator = tap_iterator(inner, tap)
        response.close = functools.partial(_close_and_finish, held, tap)


def _close_and_finish(held: weakref.ref[Any], tap: StreamTap) -> None:
    try:
        response = held()
        if response is not None:
            type(response).close(response)
    finally:
        if not tap.active:  # while iterating, the SDK closes the response itself at the end
            tap.finish()


async def _aclose_and_finish(held: weakref.ref[Any], tap: StreamTap) -> None:
    try:
        response = held()
        if response is not None:
            await type(response).aclose(response)
    finally:
        if not tap.active:
            tap.finish()
