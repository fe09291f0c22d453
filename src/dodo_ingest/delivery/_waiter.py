"""``Waiter`` and ``Waiters``: what ``flush()`` and ``aflush()`` wait on.

A flush waits until every event up to a *target* sequence number is settled. Waiters live
beside the queue, never in it: they take no event capacity, flushes that want the same
target share one waiter, and a flush that times out gives its share back, so a flood of
timed-out flushes during an outage costs O(1) memory.
"""

from __future__ import annotations

import contextlib
import queue
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import asyncio

__all__ = ["Waiter", "Waiters", "Wakeup"]


class Waiter:
    """Fired by the sender once every event up to :attr:`target` is settled; :attr:`ok` says
    whether they were delivered or dead-lettered (True) or some were dropped at shutdown."""

    __slots__ = ("_callbacks", "_event", "_lock", "ok", "target", "users")

    def __init__(self, target: int) -> None:
        self.target = target
        self.ok = True
        self.users = 0
        """How many flush calls wait on this waiter (guarded by the :class:`Waiters` lock)."""
        self._event = threading.Event()
        self._lock = threading.Lock()
        self._callbacks: list[Callable[[], None]] = []

    def fire(self, ok: bool = True) -> None:
        """Mark as reached (``ok``: nothing it waited for was dropped) and run the callbacks."""
        with self._lock:
            if not self._event.is_set():
                self.ok = ok
            self._event.set()
            callbacks, self._callbacks = self._callbacks, []
        for callback in callbacks:
            callback()

    def is_set(self) -> bool:
        """True once fired."""
        return self._event.is_set()

    def wait(self, timeout: float | None) -> bool:
        """Block until fired or ``timeout`` seconds pass; True when fired and :attr:`ok`."""
        return self._event.wait(timeout) and self.ok

    async def async_wait(self, timeout: float | None) -> bool:
        """Await until fired or ``timeout`` seconds pass, without blocking the event loop."""
        import asyncio  # loaded already: the caller runs in an event loop

        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()

        def resolve() -> None:
            if not future.done():
                future.set_result(None)

        def wake() -> None:
            _call_soon(loop, resolve)

        with self._lock:
            if self._event.is_set():
                return self.ok
            self._callbacks.append(wake)
        try:
            await asyncio.wait_for(future, timeout)
        except BaseException as error:  # timed out, or the caller was cancelled
            with self._lock, contextlib.suppress(ValueError):
                self._callbacks.remove(wake)
            if isinstance(error, TimeoutError):
                return False
            raise
        return self.ok


class Waiters:
    """The flush waiters of one queue, keyed by target sequence number."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._by_target: dict[int, Waiter] = {}

    def add(self, target: int) -> Waiter:
        """A waiter for ``target``, shared with other flushes that want the same one."""
        with self._lock:
            waiter = self._by_target.get(target)
            if waiter is None:
                waiter = self._by_target[target] = Waiter(target)
            waiter.users += 1
            return waiter

    def cancel(self, waiter: Waiter) -> None:
        """A flush on ``waiter`` gave up (timed out): forget the waiter once nobody waits."""
        with self._lock:
            waiter.users -= 1
            if waiter.users <= 0 and self._by_target.get(waiter.target) is waiter:
                del self._by_target[waiter.target]

    def fire_through(self, target: int | None, *, ok: bool = True) -> int:
        """Fire the waiters whose target is at most ``target`` (all when ``None``) with
        outcome ``ok``; return how many were fired."""
        with self._lock:
            if not self._by_target:
                return 0
            if target is None:
                ready = list(self._by_target.values())
                self._by_target.clear()
            else:
                ready = [w for t, w in self._by_target.items() if t <= target]
                for waiter in ready:
                    del self._by_target[waiter.target]
        for waiter in ready:
            waiter.fire(ok)
        return len(ready)

    def __len__(self) -> int:
        return len(self._by_target)


class Wakeup:
    """The sender's wake-up flag, like :class:`threading.Event` but safe to set from a signal
    handler that interrupted another ``set()`` (it holds no lock: a
    :class:`queue.SimpleQueue` is re-entrant)."""

    def __init__(self) -> None:
        self._tokens: queue.SimpleQueue[None] = queue.SimpleQueue()
        self._set = False

    def set(self) -> None:
        """Wake the sender (cheap when it is already awake)."""
        if not self._set:
            self._set = True
            self._tokens.put(None)

    def is_set(self) -> bool:
        """True between :meth:`set` and :meth:`clear`."""
        return self._set

    def wait(self, timeout: float) -> bool:
        """Wait until set or ``timeout`` seconds pass; True when set."""
        if self._set:
            return True
        with contextlib.suppress(queue.Empty):
            self._tokens.get(timeout=timeout)
        return self._set

    def clear(self) -> None:
        """Reset the flag (the sender, before it looks at the queue)."""
        self._set = False
        with contextlib.suppress(queue.Empty):
            while True:
                self._tokens.get_nowait()


def _call_soon(loop: asyncio.AbstractEventLoop, callback: Callable[[], None]) -> None:
    # A RuntimeError means the loop was closed while waiting: nobody is left to wake.
    with contextlib.suppress(RuntimeError):
        loop.call_soon_threadsafe(callback)
