"""Where ``dodo-ingest send --outbox PATH`` stopped reading a file, kept in the outbox file.

A table of its own (``cli_send_progress``) in the outbox's SQLite file records, per source
file, how many lines have been handed to the outbox. Lines are recorded only after their
events were committed there, so a crash re-reads at most the lines since the last record;
their events keep their ids and the API ignores the ones it already has.
"""

from __future__ import annotations

import os
import sqlite3
import time
from pathlib import Path

__all__ = ["SendProgress"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS cli_send_progress (
    source TEXT PRIMARY KEY,
    size INTEGER NOT NULL,
    mtime_ns INTEGER NOT NULL,
    lines_done INTEGER NOT NULL,
    finished INTEGER NOT NULL,
    updated_at REAL NOT NULL
)
"""


class SendProgress:
    """The reading position of one source file, stored in an outbox file."""

    def __init__(self, outbox_path: str | os.PathLike[str], source: Path) -> None:
        self._source = str(source.resolve())
        stat = source.stat()
        self._size = stat.st_size
        self._mtime_ns = stat.st_mtime_ns
        self._conn = sqlite3.connect(os.fspath(outbox_path), timeout=30, isolation_level=None)
        self._conn.execute("PRAGMA busy_timeout = 30000")
        self._conn.execute(_SCHEMA)

    def recorded(self) -> tuple[int, bool] | None:
        """``(lines_done, finished)`` of an earlier run on this unchanged file, else ``None``
        (never sent, or the file changed since: its size or modification time differ)."""
        row = self._conn.execute(
            "SELECT size, mtime_ns, lines_done, finished FROM cli_send_progress WHERE source = ?",
            (self._source,),
        ).fetchone()
        if row is None or (row[0], row[1]) != (self._size, self._mtime_ns):
            return None
        return int(row[2]), bool(row[3])

    def record(self, lines_done: int, *, finished: bool = False) -> None:
        """Remember that every line up to ``lines_done`` is in the outbox (or skipped)."""
        self._conn.execute(
            "INSERT OR REPLACE INTO cli_send_progress "
            "(source, size, mtime_ns, lines_done, finished, updated_at) VALUES (?, ?, ?, ?, ?, ?)",
            (self._source, self._size, self._mtime_ns, lines_done, int(finished), time.time()),
        )

    def forget(self) -> None:
        """Drop the record of this file (to send it again from the start)."""
        self._conn.execute("DELETE FROM cli_send_progress WHERE source = ?", (self._source,))

    def close(self) -> None:
        """Close the connection."""
        self._conn.close()
