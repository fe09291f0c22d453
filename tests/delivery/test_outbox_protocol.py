"""The outbox seam: the pipeline works through ``OutboxBackend`` alone, so any object that
implements it (here one that wraps the SQLite outbox and records the calls) is accepted."""

from __future__ import annotations

from typing import Any

import pytest

from dodo_ingest import ConfigurationError
from dodo_ingest.delivery import Outbox, OutboxBackend
from tests.delivery._sink import Sink


class RecordingBackend:
    """Delegates every protocol method to a SQLite outbox and records the names called."""

    def __init__(self, inner: Outbox) -> None:
        self.inner = inner
        self.calls: list[str] = []

    def _call(self, name: str, *args: Any) -> Any:
        self.calls.append(name)
        return getattr(self.inner, name)(*args)

    def claim(self, user: object) -> None:
        return self._call("claim", user)

    def register(self) -> None:
        return self._call("register")

    def append(self, event_id: str, timestamp: float, body: str) -> int:
        return self._call("append", event_id, timestamp, body)

    def last_seq(self) -> int:
        return self._call("last_seq")

    def has_other_pending(self) -> bool:
        return self._call("has_other_pending")

    def heartbeat(self) -> None:
        return self._call("heartbeat")

    def reclaim(self) -> int:
        return self._call("reclaim")

    def fetch(self, limit: int) -> Any:
        return self._call("fetch", limit)

    def delete(self, rows: Any) -> None:
        return self._call("delete", rows)

    def bury(self, rows: Any, reason: str, status_code: int | None) -> None:
        return self._call("bury", rows, reason, status_code)

    def release(self) -> None:
        return self._call("release")

    def close_sender(self) -> None:
        return self._call("close_sender")

    def after_fork_in_child(self) -> None:
        return self._call("after_fork_in_child")

    def count_pending(self) -> int:
        return self._call("count_pending")

    def count_dead_letters(self) -> int:
        return self._call("count_dead_letters")

    def dead_letters(self, limit: int | None = None) -> Any:
        return self._call("dead_letters", limit)

    def retry_dead_letters(self, event_ids: Any = None) -> int:
        return self._call("retry_dead_letters", event_ids)

    def close(self) -> None:
        return self._call("close")


def test_the_sqlite_outbox_implements_the_protocol(tmp_path):
    with Outbox(tmp_path / "outbox.db") as outbox:
        assert isinstance(outbox, OutboxBackend)


def test_any_backend_object_is_delivered_through(make_ingestion, tmp_path):
    backend = RecordingBackend(Outbox(tmp_path / "outbox.db"))
    assert isinstance(backend, OutboxBackend)
    with Sink() as sink:
        ingestion = make_ingestion(base_url=sink.base_url, event_name="e", outbox=backend)
        ids = [ingestion.track("cus_1") for _ in range(30)]
        assert ingestion.flush(10)
        ingestion.close(5)
    assert sorted(sink.event_ids()) == sorted(ids)
    assert {"register", "append", "fetch", "delete", "release"} <= set(backend.calls)
    assert backend.count_pending() == 0
    assert "close" not in backend.calls  # an object passed in is not closed by the Ingestion
    backend.inner.close()


def test_an_outbox_that_is_neither_a_path_nor_a_backend_is_refused(make_ingestion):
    with pytest.raises(ConfigurationError, match="outbox must be a path or an outbox"):
        make_ingestion(base_url="http://127.0.0.1:9", outbox=42)
