"""Mappings that misbehave, shared by the metadata validation tests."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any


class TwoFaced(Mapping[str, object]):
    """``items()`` gives one dict, ``[]``/iteration/``len`` another."""

    def __init__(self, told: dict[Any, Any], held: dict[Any, Any]) -> None:
        self.told, self.held = told, held

    def items(self):  # type: ignore[no-untyped-def, override]
        return self.told.items()

    def __getitem__(self, key: str) -> object:
        return self.held[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self.held)

    def __len__(self) -> int:
        return len(self.held)
