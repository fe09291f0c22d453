"""Sections of the sender thread that a fork must not cut in half.

Building a transport imports the HTTP stack and sets up TLS; opening or using the outbox's
SQLite connection takes SQLite's process-wide mutexes. A fork while another thread is in
the middle of either leaves the child with an import, OpenSSL or SQLite lock held by a
thread it does not have, and the child's own sender hangs on it (or its first `track()`,
opening its outbox). So a fork first stops new sections and waits (at most `FORK_WAIT`
seconds) for those under way; the child starts with none. Sections nest within a thread.
"""

from __future__ import annotations

import functools
import os
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import ParamSpec, TypeVar

__all__ = ["FORK_WAIT", "guarded", "section"]

T = TypeVar("T")
P = ParamSpec("P")

FORK_WAIT = 10.0
"""Longest a fork waits for the sections under way (each takes well under a second)."""


class _ForkGuard:
    """Counts the sections under way; a fork waits for them to end."""

    def __init__(self) -> None:
        self.changed = threading.Condition(threading.Lock())
        self.running = 0
        self.forking = False
        self.depth = threading.local()

    def enter(self) -> bool:
        """Start a section; False when this thread is already in one (nothing to end)."""
        if getattr(self.depth, "value", 0):
            self.depth.value += 1
            return False
        with self.changed:
            self.changed.wait_for(lambda: not self.forking, FORK_WAIT)
            self.running += 1
        self.depth.value = 1
        return True

    def leave(self, outermost: bool) -> None:
        self.depth.value -= 1
        if outermost:
            with self.changed:
                self.running -= 1
                self.changed.notify_all()

    def before_fork(self) -> None:
        if getattr(self.depth, "value", 0):  # forked from inside a section: nothing to wait for
            return
        with self.changed:
            self.forking = True
            self.changed.wait_for(lambda: not self.running, FORK_WAIT)

    def after_fork_in_parent(self) -> None:
        with self.changed:
            self.forking = False
            self.changed.notify_all()


_GUARD = _ForkGuard()


@contextmanager
def section() -> Iterator[None]:
    """A block that no fork of this process cuts in half."""
    guard = _GUARD
    outermost = guard.enter()
    try:
        yield
    finally:
        guard.leave(outermost)


def guarded(function: Callable[P, T]) -> Callable[P, T]:
    """``function`` run as a `section()`."""

    @functools.wraps(function)
    def run(*args: P.args, **kwargs: P.kwargs) -> T:
        with section():
            return function(*args, **kwargs)

    return run


def _after_fork_in_child() -> None:
    global _GUARD
    _GUARD = _ForkGuard()  # the parent's may be held by a thread that is not here


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(
        before=lambda: _GUARD.before_fork(),
        after_in_parent=lambda: _GUARD.after_fork_in_parent(),
        after_in_child=_after_fork_in_child,
    )
