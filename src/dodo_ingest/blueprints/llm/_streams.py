"""Stream taps: observe the items of a stream on their way to the caller, bill exactly once.

A tap finishes on the first of: exhaustion, an exception raised by the stream, ``close()``
(``with`` exit), or the stream being garbage-collected after it was abandoned. What it then
records is decided by the provider's accumulator: the final usage when it was seen, else what
was known so far, marked incomplete. The caller's stream object keeps its identity and type:
SDK streams get their iterator replaced and their HTTP response's close hooked; plain
generators (google-genai) are re-yielded by a generator.

With a credit gate, a tap also owns the stream's hold: finishing settles it with the cost of
the usage recorded. With the cut-off on, an :class:`OutputMeter` reads each item; once the
output reaches the reservation's output tokens, the tap delivers that item, then closes the
underlying stream, bills what was generated and raises :class:`CreditCutoffError` from the
next step of the iteration.
"""

from __future__ import annotations

import functools
import itertools
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ._tracker import LLMTracker, Scope
from ._usage import LLMUsage

if TYPE_CHECKING:
    from ._gating import Admission, CreditCutoffError, OutputMeter

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
    """Feeds stream items to an accumulator and records its result exactly once; with a
    credit gate, settles the stream's hold with it."""

    __slots__ = (
        "_finishes",
        "accumulator",
        "active",
        "admission",
        "billed",
        "cut",
        "exhausted",
        "meter",
        "scope",
        "started",
        "tracker",
    )

    def __init__(
        self,
        accumulator: StreamAccumulator,
        tracker: LLMTracker,
        scope: Scope,
        admission: Admission | None = None,
        meter: OutputMeter | None = None,
    ) -> None:
        self.accumulator: StreamAccumulator | None = accumulator
        self.tracker = tracker
        self.scope = scope
        self._finishes = itertools.count()  # next() is atomic: one finish wins across threads
        self.exhausted = False
        self.active = False
        self.started = False
        self.admission = admission
        if admission is not None:
            admission.handed_off = True
        self.meter = meter
        self.cut = False
        self.billed: LLMUsage | None = None

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
        """Record the usage (and settle the hold) once; later calls do nothing. Never
        raises."""
        if next(self._finishes):
            return
        accumulator = self.accumulator
        admission = self.admission
        if accumulator is None:  # tracking broke: the cost is unknown, the estimate counts
            if admission is not None:
                admission.handed_off = False
                admission.close()
            return
        try:
            usage = accumulator.result(self.exhausted)
            if self.cut and self.meter is not None:
                usage = self.meter.billed(usage)
        except Exception as exc:
            self.tracker._failure("could not read LLM stream usage", exc)
            if admission is not None:
                admission.handed_off = False
                admission.close()
            return
        self.billed = usage
        if admission is not None:
            admission.settle(usage)
        if usage is not None:
            self.tracker.record(usage, self.scope)

    def collected(self) -> None:
        """The stream object was garbage-collected: finish a stream that was iterated (its
        tap generator may not have been closed yet), release the hold of one that never was
        (nothing was sent to it, nothing is billed)."""
        if self.started:
            self.finish()
        elif self.admission is not None and not next(self._finishes):
            self.admission.cancel()

    def meter_says_stop(self, item: Any) -> bool:
        """Feed ``item`` to the cut-off meter; True when the stream must stop after it."""
        meter = self.meter
        if meter is None or self.accumulator is None or not meter.observe(item):
            return False
        self.cut = True
        return True

    def cutoff_error(self) -> CreditCutoffError:
        """The error that ends a cut-off stream (after :meth:`finish`)."""
        from ._gating import CreditCutoffError

        admission = self.admission
        meter = self.meter
        assert admission is not None and meter is not None
        usage = self.billed if self.billed is not None else meter.billed(None)
        try:
            billed = admission.policy.cost(usage)
        except Exception:
            billed = admission.amount
        return CreditCutoffError(
            self.scope.customer_id, admission.amount, billed, usage, meter.limit
        )


def tap_iterator(inner: Iterator[T], tap: StreamTap) -> Iterator[T]:
    """Re-yield ``inner``'s items (minus hidden ones) and finish ``tap`` when it ends; stop
    after the item that reaches the cut-off, then raise :class:`CreditCutoffError`."""
    observe = tap.observe_function()
    tap.started = True
    try:
        tap.active = True
        for item in inner:
            tap.active = False
            try:
                hide = observe(item)
            except Exception as exc:
                observe = tap.broken(exc)
                hide = False
            stop = tap.meter is not None and tap.meter_says_stop(item)
            if not hide:
                yield item
            if stop:
                _close(inner)
                tap.finish()
                raise tap.cutoff_error()
            tap.active = True
        tap.exhausted = True
    finally:
        tap.active = False
        tap.finish()


async def tap_async_iterator(
    inner: AsyncIterator[T],
    tap: StreamTap,
    aclose: Callable[[Any], Awaitable[None]] | None = None,
) -> AsyncIterator[T]:
    """Async twin of :func:`tap_iterator`; ``aclose`` closes ``inner`` at a cut-off (default:
    its own ``aclose()``)."""
    observe = tap.observe_function()
    tap.started = True
    try:
        tap.active = True
        async for item in inner:
            tap.active = False
            try:
                hide = observe(item)
            except Exception as exc:
                observe = tap.broken(exc)
                hide = False
            stop = tap.meter is not None and tap.meter_says_stop(item)
            if not hide:
                yield item
            if stop:
                await (aclose or _aclose)(inner)
                tap.finish()
                raise tap.cutoff_error()
            tap.active = True
        tap.exhausted = True
    finally:
        tap.active = False
        tap.finish()


def _close(inner: Any) -> None:
    """Close a cut-off stream's source (its HTTP response closes with it). Never raises."""
    try:
        close = getattr(inner, "close", None)
        if close is not None:
            close()
    except Exception:
        pass


async def _aclose(inner: Any) -> None:
    """Async twin of :func:`_close`."""
    try:
        aclose = getattr(inner, "aclose", None)
        if aclose is not None:
            await aclose()
    except Exception:
        pass


def _show(item: Any) -> bool:
    return False


def _hide_usage_chunk(item: Any) -> bool:
    """Still hide the usage-only chunk the tracker asked for, after a tracking failure."""
    try:
        return item.usage is not None and not item.choices
    except Exception:
        return False


def tap_sdk_stream(stream: Any, tap: StreamTap) -> bool:
    """Tap an openai/anthropic/groq ``Stream`` or ``AsyncStream`` in place; False when it was
    tapped already.

    Its ``_iterator`` (which ``__iter__``/``__next__`` and the SDK helpers read) is replaced by
    a tapping one, and its HTTP response's ``close()``/``aclose()`` (which ``stream.close()``,
    ``with`` and the SDK helpers call) also finish the tap. The stream object and its type are
    untouched, so ``isinstance``, ``type()``, ``with``, ``.response`` and the helpers all work.
    A tap that holds credits also hears of the stream's garbage collection (a stream never
    iterated has no tap generator to finish it).
    """
    response = stream.response
    if "close" in response.__dict__ or "aclose" in response.__dict__:
        return False
    inner = stream._iterator
    held = weakref.ref(response)
    if hasattr(stream, "__anext__"):
        stream._iterator = tap_async_iterator(inner, tap)
        response.aclose = functools.partial(_aclose_and_finish, held, tap)
    else:
        stream._iterator = tap_iterator(inner, tap)
        response.close = functools.partial(_close_and_finish, held, tap)
    if tap.admission is not None:
        weakref.finalize(stream, tap.collected)
    return True


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
