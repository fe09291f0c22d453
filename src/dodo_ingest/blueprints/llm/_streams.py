"""Stream taps: observe the items of a stream on their way to the caller, bill exactly once.

A tap finishes on the first of: exhaustion, an exception raised by the stream, ``close()``
(``with`` exit), or the stream being garbage-collected after it was abandoned. What it then
records is decided by the provider's accumulator: the final usage when it was seen, else what
was known so far, marked incomplete. The caller's stream object keeps its identity: SDK
streams get their iterator replaced and their class swapped for a subclass that also hears
``close()``; plain generators (google-genai) are re-yielded by a generator.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
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

    __slots__ = ("accumulator", "done", "exhausted", "scope", "tracker")

    def __init__(self, accumulator: StreamAccumulator, tracker: LLMTracker, scope: Scope) -> None:
        self.accumulator: StreamAccumulator | None = accumulator
        self.tracker = tracker
        self.scope = scope
        self.done = False
        self.exhausted = False

    def observe(self, item: Any) -> bool:
        """Read one item; True when the caller must not see it. Never raises."""
        accumulator = self.accumulator
        if accumulator is None:
            return False
        try:
            return accumulator.observe(item)
        except Exception as exc:
            self.accumulator = None
            self.tracker._failure("could not read LLM stream usage", exc)
            return False

    def finish(self) -> None:
        """Record the usage once; later calls do nothing. Never raises."""
        if self.done:
            return
        self.done = True
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
    observe = tap.observe
    try:
        for item in inner:
            if not observe(item):
                yield item
        tap.exhausted = True
    finally:
        tap.finish()


async def tap_async_iterator(inner: AsyncIterator[T], tap: StreamTap) -> AsyncIterator[T]:
    """Async twin of :func:`tap_iterator`."""
    observe = tap.observe
    try:
        async for item in inner:
            if not observe(item):
                yield item
        tap.exhausted = True
    finally:
        tap.finish()


_TAPPED_CLASSES: dict[type[Any], type[Any]] = {}


def tap_sdk_stream(stream: Any, tap: StreamTap) -> None:
    """Tap an openai/anthropic/groq ``Stream`` or ``AsyncStream`` in place.

    Its ``_iterator`` (which ``__iter__``/``__next__`` and the SDK helpers read) is replaced by
    a tapping one, and its class by a subclass whose ``close()`` (and ``aclose()``) finishes
    the tap, so ``isinstance``, ``with``, ``.response`` and the helpers keep working.
    """
    base = type(stream)
    if getattr(base, "_dodo_tapped", False):
        return
    tapped = _TAPPED_CLASSES.get(base)
    if tapped is None:
        tapped = _TAPPED_CLASSES[base] = _tapped_class(base)
    inner = stream._iterator
    if hasattr(base, "__anext__"):
        stream._iterator = tap_async_iterator(inner, tap)
    else:
        stream._iterator = tap_iterator(inner, tap)
    stream._dodo_tap = tap
    stream.__class__ = tapped


def _tapped_class(base: type[Any]) -> type[Any]:
    if hasattr(base, "__anext__"):

        class AsyncTapped(base):  # type: ignore[misc]
            _dodo_tapped = True

            async def close(self) -> None:
                try:
                    await super().close()
                finally:
                    self._dodo_tap.finish()

        if hasattr(base, "aclose"):

            async def aclose(self: Any) -> None:
                try:
                    await super(AsyncTapped, self).aclose()
                finally:
                    self._dodo_tap.finish()

            AsyncTapped.aclose = aclose
        cls: type[Any] = AsyncTapped
    else:

        class Tapped(base):  # type: ignore[misc]
            _dodo_tapped = True

            def close(self) -> None:
                try:
                    super().close()
                finally:
                    self._dodo_tap.finish()

        cls = Tapped
    cls.__name__ = base.__name__
    cls.__qualname__ = base.__qualname__
    cls.__module__ = base.__module__
    return cls
