"""The per-instance class swap the LLM hooks use to stay transparent.

An instrumented object keeps its identity and passes ``isinstance`` for its own class: only its
``__class__`` becomes a subclass that overrides one method. Subclasses are built once per base
class and cached.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

__all__ = ["swap_class"]


def swap_class(
    obj: Any,
    marker: str,
    cache: dict[type[Any], type[Any]],
    build: Callable[[type[Any]], type[Any]],
) -> None:
    """Give ``obj`` the subclass ``build`` makes of its class, unless its class already has the
    class attribute ``marker`` set (it was swapped before)."""
    base = type(obj)
    if getattr(base, marker, False):
        return
    swapped = cache.get(base)
    if swapped is None:
        swapped = cache[base] = build(base)
    obj.__class__ = swapped
