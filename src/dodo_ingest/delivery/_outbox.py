"""``Outbox``: a SQLite file that keeps events until the API acknowledges them."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import sqlite3
import threading
import time
import weakref
from collections.abc import Iterable, Iterator, Sequence
from datetime import UTC, datetime
from types import TracebackType
from typing import Literal

from ..client import ConfigurationError
from ._dead_letter import DeadLetter
from ._encoding import event_from_json
from ._fork_guard import guarded
from ._outbox_protocol import OutboxRow

__all__ = ["FREE", "WAL_LIMIT", "Outbox", "OutboxRow", "process_identity"]

logger = logging.getLogger("dodo_ingest")

"""A pending event as the sender handles it: ``(event_id, timestamp, json_body, seq)``."""

_HOST = socket.gethostname()
_BUSY_TIMEOUT_MS = 30_000
_CHECKPOINT_INTERVAL = 0.5
"""Least seconds between two WAL checkpoints run by the sender."""
WAL_LIMIT = 4 * 1024 * 1024
"""Bytes of write-ahead log after which the connection that commits folds it into the file,
and the size the log file is cut back to once it has been folded in."""
_MAX_PAIRS = 400
"""Events per statement that names them (two parameters each, below SQLite's oldest limit)."""
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
    heartbeat REAL NOT NULL,
    identity TEXT
);
"""

_RETRY_TRIGGER = """
CREATE TEMP TRIGGER IF NOT EXISTS dodo_retry_dead_letter AFTER DELETE ON main.dead_letters
BEGIN
    INSERT INTO pending (owner, event_id, ts, body)
    VALUES (0, OLD.event_id, OLD.ts, OLD.body);
END
"""
"""Puts a dead letter back in line in the statement that deletes it (main connection only)."""

Pair = tuple[int, str]
"""``(seq, event_id)``: one row of ``pending``. A sequence number alone may be reused once its
row is gone (by a new event of any owner); the pair never names another event."""
Burial = tuple[str, int | None, float]
"""``(reason, status_code, failed_at)`` of a dead letter not yet written."""


def _read_boot_id() -> str | None:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as file:
            return file.read().strip() or None
    except OSError:
        return None


_BOOT_ID = _read_boot_id()


def process_identity(pid: int) -> str | None:
    """What tells process ``pid`` from any earlier process that had the same pid.

    On Linux, the boot id and the process's start time (``/proc/<pid>/stat``): a restarted
    container or a rebooted machine gives the same pid to a process with another start time.
    ``None`` where this cannot be read (another OS, a process hidden from this one).
    """
    if _BOOT_ID is None:
        return None
    try:
        with open(f"/proc/{pid}/stat", "rb") as file:
            stat = file.read()
    except OSError:
        return None
    # "pid (comm) state ppid ...": comm may hold spaces and ")", the start time is field 22.
    fields = stat[stat.rfind(b")") + 2 :].split()
    if len(fields) < 20 or not fields[19].isdigit():
        return None
    return f"{_BOOT_ID}:{int(fields[19])}"


_own_identity: tuple[int, str | None] = (-1, None)
_LOCAL_OWNERS: set[int] = set()
"""Owner tokens made by this process (a forked child inherits its parent's, under its own pid)."""


def _identity() -> str | None:
    """:func:`process_identity` of this process (computed again in a forked child)."""
    global _own_identity
    pid = os.getpid()
    if _own_identity[0] != pid:
        _own_identity = (pid, process_identity(pid))
    return _own_identity[1]


def _new_owner() -> int:
    """A random positive 63-bit token (0 is :data:`FREE`)."""
    owner = int.from_bytes(os.urandom(8), "big") >> 1 or 1
    _LOCAL_OWNERS.add(owner)
    return owner


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


def _chunks(pairs: Sequence[Pair]) -> Iterator[tuple[str, list[object]]]:
    """``(where, params)`` selecting the rows of ``pairs``, a bounded number at a time."""
    for start in range(0, len(pairs), _MAX_PAIRS):
        chunk = pairs[start : start + _MAX_PAIRS]
        marks = _placeholders(len(chunk))
        params: list[object] = [seq for seq, _ in chunk]
        params.extend(event_id for _, event_id in chunk)
        yield f"seq IN ({marks}) AND event_id IN ({marks})", params


@contextlib.contextmanager
def _write_transaction(conn: sqlite3.Connection) -> Iterator[None]:
    """``BEGIN IMMEDIATE`` ... ``COMMIT``; rolled back on error, unless SQLite already did."""
    conn.execute("BEGIN IMMEDIATE")
    try:
        yield
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            with contextlib.suppress(sqlite3.Error):
                conn.execute("ROLLBACK")
        raise


def _wal_size(path: str) -> int:
    try:
        return os.path.getsize(path + "-wal")
    except OSError:
        return 0


class Outbox:
    """Events kept on disk (SQLite, WAL journal) from ``track()`` until the API acknowledges them.

    Pass one to ``Ingestion(outbox=...)`` (or a path, and one is built). Each pending event
    belongs to one live ``Ingestion`` (its *owner*); events whose owner process is gone, or
    whose owner has not shown life for ``stale_after`` seconds, are taken over by the next
    ``Ingestion`` that opens the file. Dead letters stay in the file with their reason until
    retried with :meth:`retry_dead_letters`.

    ``synchronous="NORMAL"`` (default) makes each committed event survive a crash or
    ``kill -9`` of the process; ``"FULL"`` also survives a power loss or OS crash, at the
    cost of an fsync per ``track()``. ``create=False`` raises :class:`FileNotFoundError`
    instead of creating a missing file (for tools that inspect an existing outbox).
    ``":memory:"``, ``""`` and ``file:`` URIs raise :class:`~dodo_ingest.ConfigurationError`:
    the outbox is a file.

    The operator methods (:meth:`count_pending`, :meth:`count_dead_letters`,
    :meth:`dead_letters`, :meth:`retry_dead_letters`, :meth:`close`) are safe to call from any
    thread, and from another process (the ``dodo-ingest outbox`` command uses them) while an
    ``Ingestion`` is sending. The other methods are the ``Ingestion``'s: do not call them.
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
        # Re-entrant: a track() in a signal handler may interrupt one in the same thread that
        # holds it. Every statement this object runs on self._conn commits by itself (none
        # opens a transaction there), so a re-entrant append never joins another's work.
        self._lock = threading.RLock()
        self._conn = self._connect()
        self._sender_conn: sqlite3.Connection | None = None
        self._inherited: list[sqlite3.Connection] = []
        self._owner = _new_owner()
        self._user: weakref.ref[object] | None = None
        self._released = False
        self._closed = False
        self._last_checkpoint = 0.0
        self._settled: dict[Pair, Burial | None] = {}
        """Acknowledged (``None``) or refused events still in ``pending``: their delete or
        burial failed (disk full...). Never fetched again; written when the file allows."""
        self._shrink_wal = False
        """A write failed: once the log can be folded in, truncate it to give the space back."""
        self._seq_high = 0
        """Highest sequence number this object appended or saw pending (guarded by the lock):
        :meth:`last_seq` never answers less, and :meth:`append` numbers events past it."""
        self._migrated = False
        with self._lock:
            self._conn.executescript(_SCHEMA)
            self._conn.execute(_RETRY_TRIGGER)
            with contextlib.suppress(sqlite3.Error):  # a read-only file; tried again on register
                self._migrate(self._conn)

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
        # The sender folds the log into the file every _CHECKPOINT_INTERVAL; a commit does it
        # only when the log passed WAL_LIMIT (the sender is stuck in a slow request), and the
        # log file is cut back to WAL_LIMIT when it starts over.
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        conn.execute(f"PRAGMA wal_autocheckpoint = {max(1, WAL_LIMIT // page_size)}")
        conn.execute(f"PRAGMA journal_size_limit = {WAL_LIMIT}")
        return conn

    def _migrate(self, conn: sqlite3.Connection) -> None:
        """Add ``owners.identity`` to a file made before it existed (rows keep ``NULL``)."""
        if self._migrated:
            return
        if not self._has_identity_column(conn):
            try:
                conn.execute("ALTER TABLE owners ADD COLUMN identity TEXT")
            except sqlite3.OperationalError:
                if not self._has_identity_column(conn):  # unless another process added it
                    raise
        self._migrated = True

    @staticmethod
    def _has_identity_column(conn: sqlite3.Connection) -> bool:
        return any(row[1] == "identity" for row in conn.execute("PRAGMA table_info(owners)"))

    # --- public, for operators and the CLI -------------------------------------------------

    def oldest_pending(self) -> float | None:
        """Internal: the timestamp of the oldest event this owner has not settled yet."""
        with self._lock:
            row = self._conn.execute(
                "SELECT min(ts) FROM pending WHERE owner = ?", (self._owner,)
            ).fetchone()
        return None if row[0] is None else float(row[0])

    def count_pending(self) -> int:
        """Events waiting to be delivered (by any owner).

        Events this object knows to be delivered or dead-lettered, but could not yet remove
        from the file (disk full), are not counted.
        """
        with self._lock:
            count = int(self._conn.execute("SELECT count(*) FROM pending").fetchone()[0])
            pairs = list(self._settled)
            for where, params in _chunks(pairs):  # acknowledged, but still in the file
                rows = self._conn.execute(
                    f"SELECT seq, event_id FROM pending WHERE {where}", params
                )
                count -= sum(1 for seq, event_id in rows if (seq, event_id) in self._settled)
        return count

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
            # One statement: the temporary trigger inserts each deleted dead letter into
            # pending (in order), so the move is atomic without a transaction on this
            # connection.
            moved = self._conn.execute(f"DELETE FROM dead_letters{where}", params).rowcount
        return int(moved)

    def close(self) -> None:
        """Close the file (idempotent). An ``Ingestion`` closes the outbox it built itself."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._settled.clear()
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
        """Internal (the ``Ingestion``'s): the owner token of events appended through this."""
        return self._owner

    def claim(self, user: object) -> None:
        """Internal: become the outbox of ``user`` (a pipeline, with an ``active`` attribute).

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
        """Internal: record this process as a live owner (before the first :meth:`append`)."""
        with self._lock:
            self._released = False
            self._migrate(self._conn)
            self._conn.execute(
                "INSERT OR REPLACE INTO owners (owner, host, pid, heartbeat, identity) "
                "VALUES (?, ?, ?, ?, ?)",
                (self._owner, _HOST, os.getpid(), time.time(), _identity()),
            )

    def append(self, event_id: str, timestamp: float, body: str) -> int:
        """Internal: store one event and commit; return its sequence number.

        The number is higher than any this object appended or answered from
        :meth:`last_seq`, even once those rows are gone: SQLite alone would give the numbers
        of deleted rows again, and a flush waiting for a number would then be woken by a batch
        that did not hold the new event. Raises :class:`sqlite3.Error` when the file cannot be
        written (disk full...).
        """
        with self._lock:
            try:
                # One statement, so it writes under the write lock and commits by itself.
                cursor = self._conn.execute(
                    "INSERT INTO pending (seq, owner, event_id, ts, body) VALUES "
                    "(max(coalesce((SELECT max(seq) FROM pending), 0), ?) + 1, ?, ?, ?, ?)",
                    (self._seq_high, self._owner, event_id, timestamp, body),
                )
            except sqlite3.Error:
                self._shrink_wal = True
                raise
            seq = int(cursor.lastrowid)  # type: ignore[arg-type]
            self._seq_high = max(self._seq_high, seq)
            return seq

    def last_seq(self) -> int:
        """Internal: the highest sequence number pending in the file, or appended or answered
        here before if higher (0 when none ever was).

        It never goes down when rows are deleted: the pipeline fires a flush waiting for
        number ``n`` once a short batch was taken with ``last_seq() >= n``, and a batch may
        hold events appended after its ``last_seq()`` was read; once they are delivered and
        deleted, a lower answer would leave that flush waiting for good.
        """
        with self._lock:
            row = self._conn.execute("SELECT max(seq) FROM pending").fetchone()
            self._seq_high = max(self._seq_high, int(row[0] or 0))
            return self._seq_high

    def has_other_pending(self) -> bool:
        """Internal: True when events not owned by this pipeline wait in the file."""
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

    @guarded
    def heartbeat(self) -> None:
        """Internal (sender thread): show that this owner is alive; nothing once
        :meth:`release` ran."""
        conn = self._sender()
        now = time.time()
        with self._lock:
            if self._released:
                return
            try:
                updated = conn.execute(
                    "UPDATE owners SET heartbeat = ? WHERE owner = ?", (now, self._owner)
                ).rowcount
                if not updated:
                    self._migrate(conn)
                    conn.execute(
                        "INSERT OR REPLACE INTO owners (owner, host, pid, heartbeat, identity) "
                        "VALUES (?, ?, ?, ?, ?)",
                        (self._owner, _HOST, os.getpid(), now, _identity()),
                    )
            except sqlite3.Error:
                self._shrink_wal = True
                raise
        self.checkpoint()

    def _owner_gone(self, owner: int, host: str, pid: int, identity: str | None) -> bool:
        """True when the process that registered ``owner`` on this host has ended."""
        if host != _HOST:
            return False
        if pid == os.getpid():  # this process, or an earlier one that had its pid
            return owner not in _LOCAL_OWNERS
        if not _pid_alive(pid):
            return True
        if identity is None:  # none recorded (an older version, or no /proc): the heartbeat rules
            return False
        current = process_identity(pid)
        return current is not None and current != identity  # the pid now names another

    @guarded
    def reclaim(self) -> int:
        """Internal (sender thread): take over events of ended or silent owners; return how
        many."""
        conn = self._sender()
        now = time.time()
        with self._lock:
            self._migrate(conn)
            with _write_transaction(conn):
                owners = conn.execute(
                    "SELECT owner, host, pid, heartbeat, identity FROM owners WHERE owner != ?",
                    (self._owner,),
                ).fetchall()
                dead = [
                    (owner,)
                    for owner, host, pid, heartbeat, identity in owners
                    if heartbeat < now - self.stale_after
                    or self._owner_gone(owner, host, pid, identity)
                ]
                conn.executemany("DELETE FROM owners WHERE owner = ?", dead)
                taken = conn.execute(
                    "UPDATE pending SET owner = ? WHERE owner NOT IN (SELECT owner FROM owners)",
                    (self._owner,),
                ).rowcount
        return int(taken)

    @guarded
    def fetch(self, limit: int) -> list[OutboxRow]:
        """Internal (sender thread): the oldest ``limit`` pending events of this owner.

        Events already acknowledged whose delete failed are left out (and deleted first,
        when the file can be written again).
        """
        conn = self._sender()
        if self._settled:
            with self._lock:
                written = self._write_settled(conn)
            if written:
                self._checkpoint()
        settled = self._settled
        query = "SELECT event_id, ts, body, seq FROM pending WHERE owner = ? ORDER BY seq LIMIT ?"
        if not settled:
            return conn.execute(query, (self._owner, limit)).fetchall()
        rows = conn.execute(query, (self._owner, limit + len(settled))).fetchall()
        return [row for row in rows if (row[3], row[0]) not in settled][:limit]

    @guarded
    def delete(self, rows: Sequence[OutboxRow]) -> None:
        """Internal (sender thread): forget acknowledged events.

        When the file cannot be written (disk full...), they are remembered as delivered, left
        out of :meth:`fetch` and deleted later: never sent again in a loop (after a crash, the
        next owner sends them once more; the API ignores ids it has stored).
        """
        if not rows:
            return
        pairs = [(row[3], row[0]) for row in rows]
        conn = self._sender()
        with self._lock:
            try:
                with _write_transaction(conn):
                    _delete(conn, pairs)
            except sqlite3.Error as error:
                self._settle_later(pairs, None, error)
                return
        self.checkpoint()

    @guarded
    def bury(self, rows: Sequence[OutboxRow], reason: str, status_code: int | None) -> None:
        """Internal (sender thread): move events to the dead letters with the reason (kept in
        memory and written later when the file cannot be written now)."""
        if not rows:
            return
        pairs = [(row[3], row[0]) for row in rows]
        burial = (reason, status_code, time.time())
        conn = self._sender()
        with self._lock:
            try:
                with _write_transaction(conn):
                    _bury(conn, pairs, burial)
            except sqlite3.Error as error:
                self._settle_later(pairs, burial, error)

    def _settle_later(self, pairs: list[Pair], burial: Burial | None, error: Exception) -> None:
        """Remember events whose delete or burial failed (lock held)."""
        if not self._settled:
            logger.warning(
                "could not update the outbox %s (%s): %d settled event(s) are kept out of "
                "sending and removed once the file can be written again",
                self.path,
                error,
                len(pairs),
            )
        self._shrink_wal = True
        for pair in pairs:
            self._settled[pair] = burial

    def _write_settled(self, conn: sqlite3.Connection) -> bool:
        """Write the deletes and burials that failed earlier; True if the file allowed it
        (lock held)."""
        burials: dict[Burial, list[Pair]] = {}
        deletes: list[Pair] = []
        for pair, burial in self._settled.items():
            if burial is None:
                deletes.append(pair)
            else:
                burials.setdefault(burial, []).append(pair)
        try:
            with _write_transaction(conn):
                for burial, pairs in burials.items():
                    _bury(conn, pairs, burial)
                _delete(conn, deletes)
        except sqlite3.Error:
            return False
        logger.warning(
            "the outbox %s can be written again: %d settled event(s) removed",
            self.path,
            len(self._settled),
        )
        self._settled.clear()
        return True

    @guarded
    def checkpoint(self) -> None:
        """Internal (sender thread, outside the lock): fold the WAL back into the file now and
        then.

        Commits do not checkpoint until the log passes :data:`WAL_LIMIT`, so that no
        ``track()`` pays for it; a passive checkpoint does not block writers. A log longer
        than that, or one that grew while a write failed, is then folded in to its end and
        truncated under the lock, where the writers of this process cannot add to it.
        """
        now = time.monotonic()
        if now - self._last_checkpoint >= _CHECKPOINT_INTERVAL:
            self._checkpoint()

    def _checkpoint(self) -> None:
        self._last_checkpoint = time.monotonic()
        conn = self._sender()
        try:
            busy = conn.execute("PRAGMA wal_checkpoint(PASSIVE)").fetchone()[0]
            if busy:  # another connection is checkpointing
                return
            if not self._shrink_wal and _wal_size(self.path) <= WAL_LIMIT:
                return
            # Not only when the passive one folded in every frame: track() in this process
            # may add frames all the while, and the log would keep its size until the next
            # try. TRUNCATE folds in the few added meanwhile; readers of other processes
            # make it give up at once (busy), and it is tried again later.
            with self._lock:  # writers of this process wait on the lock, not on SQLite
                conn.execute("PRAGMA busy_timeout = 0")  # nor this on other processes
                try:
                    busy = conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()[0]
                finally:
                    conn.execute(f"PRAGMA busy_timeout = {_BUSY_TIMEOUT_MS}")
            if not busy:
                self._shrink_wal = False
        except sqlite3.Error as error:  # disk full while folding in: tried again later
            self._shrink_wal = True
            logger.debug("outbox checkpoint failed: %s", error)

    @guarded
    def release(self) -> None:
        """Internal: stop owning; what is still pending becomes free for other pipelines."""
        with self._lock:
            self._user = None
            self._released = True
            if not self._closed:
                self._conn.execute("DELETE FROM owners WHERE owner = ?", (self._owner,))

    @guarded
    def close_sender(self) -> None:
        """Internal: close the sender thread's connection (from the sender, as it exits)."""
        with self._lock:
            if self._sender_conn is not None:
                self._sender_conn.close()
                self._sender_conn = None

    def after_fork_in_child(self) -> None:
        """Internal: reopen the file under a new owner; the parent's connections are left
        untouched."""
        self._inherited.append(self._conn)
        if self._sender_conn is not None:
            self._inherited.append(self._sender_conn)
        self._lock = threading.RLock()
        self._sender_conn = None
        self._owner = _new_owner()
        self._settled = {}
        if not self._closed:
            self._conn = self._connect()
            self._conn.execute(_RETRY_TRIGGER)


def _delete(conn: sqlite3.Connection, pairs: Sequence[Pair]) -> None:
    for where, params in _chunks(pairs):
        conn.execute(f"DELETE FROM pending WHERE {where}", params)


def _bury(conn: sqlite3.Connection, pairs: Sequence[Pair], burial: Burial) -> None:
    reason, status_code, failed_at = burial
    for where, params in _chunks(pairs):
        conn.execute(
            "INSERT INTO dead_letters (event_id, ts, body, reason, status_code, failed_at) "
            f"SELECT event_id, ts, body, ?, ?, ? FROM pending WHERE {where} ORDER BY seq",
            [reason, status_code, failed_at, *params],
        )
        conn.execute(f"DELETE FROM pending WHERE {where}", params)
