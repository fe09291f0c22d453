"""Counters of what a dev server answered, for tests and the command line."""

from __future__ import annotations

import threading
from collections import Counter
from typing import Any

from ._faults import FAULT_KINDS

__all__ = ["Stats"]


class Stats:
    """Thread-safe counters: answers by status, events stored and ignored, faults injected."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._requests: Counter[str] = Counter()
        self._events_ingested = 0
        self._duplicates_ignored = 0
        self._faults: Counter[str] = Counter()

    def count_status(self, status: int) -> None:
        """Count one answer with this HTTP status."""
        with self._lock:
            self._requests[str(status)] += 1

    def count_ingest(self, ingested: int, duplicates: int) -> None:
        """Count the new and the already known events of one stored batch."""
        with self._lock:
            self._events_ingested += ingested
            self._duplicates_ignored += duplicates

    def count_fault(self, kind: str) -> None:
        """Count one injected fault."""
        with self._lock:
            self._faults[kind] += 1

    def snapshot(self) -> dict[str, Any]:
        """A copy: ``requests`` (status code string -> count), ``events_ingested``,
        ``duplicates_ignored``, ``faults_injected`` (every kind -> count)."""
        with self._lock:
            return {
                "requests": dict(self._requests),
                "events_ingested": self._events_ingested,
                "duplicates_ignored": self._duplicates_ignored,
                "faults_injected": {kind: self._faults[kind] for kind in FAULT_KINDS},
            }
