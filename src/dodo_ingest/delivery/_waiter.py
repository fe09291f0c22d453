"""``Waiter``: what ``flush()`` and ``aflush()`` wait on until the sender reaches them."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Callable

__all__ = ["Waiter"]


class Waiter:
    """Fired by the sender once everything tracked before it was settled."""

    __slots__ = ("_callbacks", "_event", "_lock")

    def __init__(self) -> None:
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def fire(self) -> None:
        """Mark as reached and run the callbacks (from the sender thread)."""
        with self._lock:
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def is_set(self) -> bool:
        """True once fired."""
        return self._event.is_set()

    def wait(self, timeout: float | None) -> bool:
        """Block until fired or ``timeout`` seconds pass; True when fired."""
        return self._event.wait(timeout)

    async def async_wait(self, timeout: float | None) -> bool:
        """Await until fired or ``timeout`` seconds pass, without blocking the event loop."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def resolve() -> None:
            if not future.done():
                future.set_result(None)

        with self._lock:
            if self._event.is_set():
                return True
            self._callbacks.append(lambda: _call_soon(loop, resolve))
        try:
            await asyncio.wait_for(future, timeout)
        except TimeoutError:
            return False
        return True


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    # A RuntimeError means the loop was closed while waiting: nobody is left to wake.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)
