"""``Outbox``: a SQLite file that keeps events until the API acknowledges them."""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Literal

from ..client import ConfigurationError, EventInput
from ._dead_letter import DeadLetter

__all__ = ["FREE", "Outbox", "OutboxRow"]

OutboxRow = tuple[str, float, str, int]
"""A pending event as the sender handles it: ``(event_id, timestamp, json_body, seq)``."""

_HOST = socket.gethostname()
_BUSY_TIMEOUT_MS = 30_000
_CHECKPOINT_INTERVAL = 0.5
"""Least seconds between two WAL checkpoints run by the sender."""
FREE = 0
"""Owner of events nobody owns (retried dead letters): the next sender takes them."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS pending (
    seq INTEGER PRIMARY KEY,
    owner INTEGER NOT NULL,
    event_id TEXT NOT NULL,
    ts REAL NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS dead_letters (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL,
    ts REAL NOT NULL,
    body TEXT NOT NULL,
    reason TEXT NOT NULL,
    status_code INTEGER,
    failed_at REAL NOT NULL
);
CREATE TABLE IF NOT EXISTS owners (
    owner INTEGER PRIMARY KEY,
    host TEXT NOT NULL,
    pid INTEGER NOT NULL,
    heartbeat REAL NOT NULL
);
"""


def _new_owner() -> int:
    """A random positive 63-bit token (0 is :data:`FREE`)."""
    return int.from_bytes(os.urandom(8), "big") >> 1 or 1


def _pid_alive(pid: int) -> bool:
    if os.name == "nt":  # os.kill(pid, 0) would terminate it there; rely on the heartbeat
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists but belongs to someone else
        return True
    return True


def _placeholders(count: int) -> str:
    return ",".join("?" * count)


class Outbox:
    """Events kept on disk (SQLite, WAL journal) from ``track()`` until the API acknowledges them.

    Pass one to ``Ingestion(outbox=...)`` (or a path, and one is built). Each pending event
    belongs to one live ``Ingestion`` (its *owner*); events whose owner process died, or whose
    owner has not shown life for ``stale_after`` seconds, are taken over by the next
    ``Ingestion`` that opens the file. Dead letters stay in the file with their reason until
    retried with :meth:`retry_dead_letters`.

    ``synchronous="NORMAL"`` (default) makes each committed event survive a crash or
    ``kill -9`` of the process; ``"FULL"`` also survives a power loss or OS crash, at the
    cost of an fsync per ``track()``. ``create=False`` raises :class:`FileNotFoundError`
    instead of creating a missing file (for tools that inspect an existing outbox).
    ``":memory:"``, ``""`` and ``file:`` URIs raise :class:`~dodo_ingest.ConfigurationError`:
    the outbox is a file.

    The methods below are safe to call from any thread, and from another process (the
    ``dodo-ingest outbox`` command uses them) while an ``Ingestion`` is sending.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["NORMAL", "FULL"] = "NORMAL",
        stale_after: float = 300.0,
        create: bool = True,
    ) -> None:
        if synchronous not in ("NORMAL", "FULL"):
            raise ValueError(f"synchronous must be 'NORMAL' or 'FULL', got {synchronous!r}")
        self.path = os.fspath(path)
        if self.path in ("", ":memory:") or self.path.startswith("file:"):
            # Every SQLite connection to these is a different private database (or a URI
            # this class does not parse): the sender would never see what track() stored.
            raise ConfigurationError(
                f"outbox must be the path of a file, got {self.path!r} (in-memory and URI "
                "databases are not shared between connections)"
            )
        if not create and not os.path.exists(self.path):
            raise FileNotFoundError(f"no outbox at {self.path!r}")
        self.synchronous = synchronous
        self.stale_after = stale_after
        self._lock = threading.Lock()
        self._conn = self._connect()
        self._sender_conn: sqlite3.Connection | None = None
        self._inherited: list[sqlite3.Connection] = []
        self._owner = _new_owner()
        self._user: weakref.ref[object] | None = None
        self._released = False
        self._closed = False
        self._last_checkpoint = 0.0
        with self._lock:
            self._conn.executescript(_SCHEMA)

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(
            self.path,
            timeout=_BUSY_TIMEOUT_MS / 1000,
            isolation_level=None,
            check_same_thread=False,
        )
        conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute(f"PRAGMA synchronous = {self.synchronous}")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
        return conn

    # --- public, for operators and the CLI -------------------------------------------------

    def count_pending(self) -> int:
        """Events waiting to be delivered (by any owner)."""
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM pending").fetchone()[0])

    def count_dead_letters(self) -> int:
        """Events given up on and kept with their reason."""
        with self._lock:
            return int(self._conn.execute("SELECT count(*) FROM dead_letters").fetchone()[0])

    def dead_letters(self, limit: int | None = None) -> list[DeadLetter]:
        """Dead letters, oldest first (at most ``limit``)."""
        query = "SELECT body, ts, reason, status_code, failed_at FROM dead_letters ORDER BY seq"
        params: tuple[int, ...] = ()
        if limit is not None:
            query += " LIMIT ?"
            params = (limit,)
        with self._lock:
            rows = self._conn.execute(query, params).fetchall()
        return [
            DeadLetter(
                event=event_from_json(body),
                reason=reason,
                status_code=status_code,
                failed_at=datetime.fromtimestamp(failed_at, UTC),
            )
            for body, _ts, reason, status_code, failed_at in rows
        ]

    def retry_dead_letters(self, event_ids: Iterable[str] | None = None) -> int:
        """Move dead letters (all, or those with the given ids) back to pending; return how many.

        A running ``Ingestion`` on this file takes them over within its reclaim interval, or
        the next one at start. They keep their original timestamp, so events older than the
        API's one-hour window are refused again.
        """
        where = ""
        params: tuple[str, ...] = ()
        if event_ids is not None:
            ids = tuple(event_ids)
            if not ids:
                return 0
            where, params = f" WHERE event_id IN ({_placeholders(len(ids))})", ids
        with self._lock:
            conn = self._conn
            conn.execute("BEGIN IMMEDIATE")
            try:
                moved = conn.execute(
                    "INSERT INTO pending (owner, event_id, ts, body) "
                    f"SELECT {FREE}, event_id, ts, body FROM dead_letters{where} ORDER BY seq",
                    params,
                ).rowcount
                conn.execute(f"DELETE FROM dead_letters{where}", params)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return int(moved)

    def close(self) -> None:
        """Close the file (idempotent). An ``Ingestion`` closes the outbox it built itself."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._conn.close()
            if self._sender_conn is not None:
                self._sender_conn.close()
                self._sender_conn = None

    def __enter__(self) -> Outbox:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Outbox({self.path!r}, synchronous={self.synchronous!r})"

    # --- used by the delivery pipeline -----------------------------------------------------

    @property
    def owner(self) -> int:
        """The token of the pipeline that owns events appended through this object."""
        return self._owner

    def claim(self, user: object) -> None:
        """Become the outbox of ``user`` (a pipeline, with an ``active`` attribute).

        One ``Outbox`` object has one owner token, so two open pipelines on it would send
        the same events: raises :class:`~dodo_ingest.ConfigurationError` when another open
        one holds it (open the same path in a second ``Outbox`` instead).
        """
        with self._lock:
            holder = self._user() if self._user is not None else None
            if holder is not None and holder is not user and getattr(holder, "active", False):
                raise ConfigurationError(
                    f"the Outbox of {self.path!r} is already used by an open Ingestion; "
                    "pass the path (or another Outbox of it) instead of sharing the object"
                )
            self._user = weakref.ref(user)

    def register(self) -> None:
        """Record this process as a live owner (before the first :meth:`append`)."""
        with self._lock:
            self._released = False
            self._conn.execute(
                "INSERT OR REPLACE INTO owners (owner, host, pid, heartbeat) VALUES (?, ?, ?, ?)",
                (self._owner, _HOST, os.getpid(), time.time()),
            )

    def append(self, event_id: str, timestamp: float, body: str) -> int:
        """Store one event and commit; return its sequence number."""
        with self._lock:
            cursor = self._conn.execute(
                "INSERT INTO pending (owner, event_id, ts, body) VALUES (?, ?, ?, ?)",
                (self._owner, event_id, timestamp, body),
            )
            return cursor.lastrowid  # type: ignore[return-value]

    def last_seq(self) -> int:
        """The highest sequence number pending in the file (0 when none is)."""
        with self._lock:
            row = self._conn.execute("SELECT max(seq) FROM pending").fetchone()
        return int(row[0] or 0)

    def has_other_pending(self) -> bool:
        """True when events not owned by this pipeline wait in the file (maybe orphans)."""
        with self._lock:
            row = self._conn.execute(
                "SELECT 1 FROM pending WHERE owner != ? LIMIT 1", (self._owner,)
            ).fetchone()
        return row is not None

    # The sender thread reads through its own connection without the lock (WAL readers do
    # not block writers) and writes under the same lock as track(), so that writers of this
    # process queue on a mutex instead of SQLite's sleeping busy handler.

    def _sender(self) -> sqlite3.Connection:
        if self._sender_conn is None:
            self._sender_conn = self._connect()
        return self._sender_conn

    def heartbeat(self) -> None:
        """Show that this owner is alive (sender thread); nothing once :meth:`release` ran."""
        conn = self._sender()
        now = time.time()
        with self._lock:
            if self._released:
                return
            updated = conn.execute(
                "UPDATE owners SET heartbeat = ? WHERE owner = ?", (now, self._owner)
            ).rowcount
            if not updated:
                conn.execute(
                    "INSERT OR REPLACE INTO owners (owner, host, pid, heartbeat) "
                    "VALUES (?, ?, ?, ?)",
                    (self._owner, _HOST, os.getpid(), now),
                )
        self.checkpoint()

    def reclaim(self) -> int:
        """Take over events of dead or stale owners (sender thread); return how many."""
        conn = self._sender()
        now = time.time()
        with self._lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                owners = conn.execute(
                    "SELECT owner, host, pid, heartbeat FROM owners WHERE owner != ?",
                    (self._owner,),
                ).fetchall()
                dead = [
                    (owner,)
                    for owner, host, pid, heartbeat in owners
                    if heartbeat < now - self.stale_after or (host == _HOST and not _pid_alive(pid))
                ]
                conn.executemany("DELETE FROM owners WHERE owner = ?", dead)
                taken = conn.execute(
                    "UPDATE pending SET owner = ? WHERE owner NOT IN (SELECT owner FROM owners)",
                    (self._owner,),
                ).rowcount
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        return int(taken)

    def fetch(self, limit: int) -> list[OutboxRow]:
        """The oldest ``limit`` pending events of this owner (sender thread)."""
        return (
            self._sender()
            .execute(
                "SELECT event_id, ts, body, seq FROM pending WHERE owner = ? ORDER BY seq LIMIT ?",
                (self._owner, limit),
            )
            .fetchall()
        )

    def delete(self, rows: Sequence[OutboxRow]) -> None:
        """Forget acknowledged events (sender thread)."""
        if not rows:
            return
        seqs = [row[3] for row in rows]
        conn = self._sender()
        with self._lock:
            conn.execute(f"DELETE FROM pending WHERE seq IN ({_placeholders(len(seqs))})", seqs)
        self.checkpoint()

    def bury(self, rows: Sequence[OutboxRow], reason: str, status_code: int | None) -> None:
        """Move events to the dead letters with the reason (sender thread)."""
        if not rows:
            return
        conn = self._sender()
        seqs = [row[3] for row in rows]
        marks = _placeholders(len(seqs))
        with self._lock:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "INSERT INTO dead_letters (event_id, ts, body, reason, status_code, failed_at) "
                    f"SELECT event_id, ts, body, ?, ?, ? FROM pending WHERE seq IN ({marks})",
                    [reason, status_code, time.time(), *seqs],
                )
                conn.execute(f"DELETE FROM pending WHERE seq IN ({marks})", seqs)
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def checkpoint(self) -> None:
        """Fold the WAL back into the file now and then (sender thread, outside the lock).

        Commits never checkpoint by themselves (``wal_autocheckpoint`` is off), so that no
        ``track()`` pays for it; a passive checkpoint does not block writers.
        """
        now = time.monotonic()
        if now - self._last_checkpoint >= _CHECKPOINT_INTERVAL:
            self._last_checkpoint = now
            self._sender().execute("PRAGMA wal_checkpoint(PASSIVE)")

    def release(self) -> None:
        """Stop owning: what is still pending becomes free for other pipelines to take over."""
        with self._lock:
            self._user = None
            self._released = True
            if not self._closed:
                self._conn.execute("DELETE FROM owners WHERE owner = ?", (self._owner,))

    def close_sender(self) -> None:
        """Close the sender thread's connection (from the sender thread, as it exits)."""
        with self._lock:
            if self._sender_conn is not None:
                self._sender_conn.close()
                self._sender_conn = None

    def after_fork_in_child(self) -> None:
        """Reopen the file under a new owner; the parent's connections are left untouched."""
        self._inherited.append(self._conn)
        if self._sender_conn is not None:
            self._inherited.append(self._sender_conn)
        self._lock = threading.Lock()
        self._sender_conn = None
        self._owner = _new_owner()
        if not self._closed:
            self._conn = self._connect()


def event_from_json(body: str) -> EventInput:
    """Rebuild the :class:`EventInput` of a stored JSON event."""
    return EventInput.from_dict(json.loads(body))
