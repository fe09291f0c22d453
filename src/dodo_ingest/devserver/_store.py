"""SQLite storage of the dev server: events, meters, credit entitlements, ledgers, links,
webhook endpoints and their deliveries.

One connection per server, shared by the server's event loop and the thread that owns the
:class:`~dodo_ingest.devserver.DevServer` (a lock serialises them). A file database runs in
WAL mode, so its data survives a restart; ``":memory:"`` lives as long as the connection.

Each event keeps the server's time of its arrival (``ingested_us``; events stored by a dev
server older than this column read as arrived at the epoch), so that credit balances can
count usage only some time after it arrived.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from decimal import Decimal
from pathlib import Path
from typing import Any, NoReturn

from ._clock import Clock
from ._errors import DatabaseError
from ._ingest import EventRow
from ._meters import Aggregate, aggregate, compile_filter
from ._time import format_us, parse_rfc3339_us

__all__ = ["BUSINESS_ID", "Store", "new_id"]

BUSINESS_ID = "bus_devserver"
"""The ``business_id`` of every object the dev server returns."""

_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    seq INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    customer_id TEXT NOT NULL,
    event_name TEXT NOT NULL,
    ts_us INTEGER NOT NULL,
    metadata TEXT,
    ingested_us INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS meters (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL,
    archived INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS entitlements (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL,
    deleted INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS balances (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    entitlement_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    created_us INTEGER NOT NULL,
    updated_us INTEGER NOT NULL,
    overage TEXT NOT NULL DEFAULT '0',
    UNIQUE (entitlement_id, customer_id)
);
CREATE TABLE IF NOT EXISTS ledger (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    entitlement_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    is_credit INTEGER NOT NULL,
    amount TEXT NOT NULL,
    idempotency_key TEXT,
    data TEXT NOT NULL,
    UNIQUE (entitlement_id, customer_id, idempotency_key)
);
CREATE TABLE IF NOT EXISTS grants (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    entitlement_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS grants_owner ON grants (entitlement_id, customer_id);
CREATE TABLE IF NOT EXISTS usage_applied (
    entitlement_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    meter_id TEXT NOT NULL,
    units TEXT NOT NULL,
    PRIMARY KEY (entitlement_id, customer_id, meter_id)
);
CREATE TABLE IF NOT EXISTS cycles (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    entitlement_id TEXT NOT NULL,
    customer_id TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS webhooks (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS webhook_deliveries (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    data TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS settings (
    name TEXT PRIMARY KEY,
    value TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS credit_links (
    meter_id TEXT NOT NULL,
    entitlement_id TEXT NOT NULL,
    units_per_credit TEXT NOT NULL,
    PRIMARY KEY (meter_id, entitlement_id)
);
"""

_EVENT_COLUMNS = "event_id, customer_id, event_name, ts_us, metadata"
_INSERT_EVENT = (
    f"INSERT OR IGNORE INTO events ({_EVENT_COLUMNS}, ingested_us) VALUES (?, ?, ?, ?, ?, ?)"
)


def _compact_json_encoder() -> Callable[[Any], str]:
    """A compact JSON encoder for metadata dicts.

    ``JSONEncoder.encode`` builds a new C encoder on every call, which costs more than the
    encoding of a small dict; the C encoder is built once here (the pure-Python encoder is the
    fallback where the C one is missing).
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return json.JSONEncoder(ensure_ascii=False, separators=(",", ":")).encode

    def refuse(value: object) -> NoReturn:
        raise TypeError(f"{type(value).__name__} is not JSON serializable")

    encode_chunks = make(
        None, refuse, json.encoder.encode_basestring, None, ":", ",", False, False, True
    )
    return lambda value: "".join(encode_chunks(value, 0))


_encode = _compact_json_encoder()


def new_id(prefix: str) -> str:
    """A fresh random id such as ``mtr_3f9a0c1d2e4b5a69``."""
    return f"{prefix}_{secrets.token_hex(8)}"


def _event(row: tuple[str, str, str, int, str | None]) -> dict[str, Any]:
    event_id, customer_id, event_name, ts_us, metadata = row
    return {
        "event_id": event_id,
        "business_id": BUSINESS_ID,
        "customer_id": customer_id,
        "event_name": event_name,
        "timestamp": format_us(ts_us),
        "metadata": json.loads(metadata) if metadata else None,
    }


class Store:
    """The dev server's data in one SQLite database (a file path or ``":memory:"``).

    Raises :class:`DatabaseError` when ``db`` cannot be opened or is not a SQLite database.
    """

    def __init__(self, db: str | Path = ":memory:", clock: Clock | None = None) -> None:
        self.clock = Clock() if clock is None else clock
        """The server's clock; a saved offset (a file database) is restored when opened."""
        self._lock = threading.RLock()
        try:
            self._db = sqlite3.connect(str(db), check_same_thread=False, isolation_level=None)
        except sqlite3.Error as error:
            raise DatabaseError(f"cannot open {str(db)!r} as a SQLite database: {error}") from None
        try:
            self._open(str(db))
        except sqlite3.Error as error:
            self._db.close()
            raise DatabaseError(f"cannot use {str(db)!r} as a SQLite database: {error}") from None

    def _open(self, db: str) -> None:
        # The first statement reads the file's header: a file that is not a SQLite database
        # fails here, before anything is written to it.
        self._db.execute("PRAGMA schema_version").fetchone()
        if db != ":memory:":
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA cache_size=-65536")  # 64 MiB: the id index stays cached
        self._db.executescript(_SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(events)")}
        if "ingested_us" not in columns:  # a database written before arrival times were kept
            self._db.execute("ALTER TABLE events ADD COLUMN ingested_us INTEGER NOT NULL DEFAULT 0")
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(entitlements)")}
        if "deleted" not in columns:  # a database written before entitlements were deleted
            self._db.execute(
                "ALTER TABLE entitlements ADD COLUMN deleted INTEGER NOT NULL DEFAULT 0"
            )
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(balances)")}
        if "overage" not in columns:  # a database written before the ledger was kept per grant
            self._db.execute("ALTER TABLE balances ADD COLUMN overage TEXT NOT NULL DEFAULT '0'")
            self._grant_old_credits()
        row = self._db.execute(
            "SELECT value FROM settings WHERE name = 'clock_offset_us'"
        ).fetchone()
        if row is not None:
            self.clock.restore(int(row[0]))

    def _grant_old_credits(self) -> None:
        """Give the credits of a database written before grants were kept their grants
        (never expiring, debits drawn from the oldest first); its usage is deducted when
        the balances are next settled."""
        grants: dict[tuple[str, str], list[dict[str, Any]]] = {}
        rows = self._db.execute("SELECT id, data FROM ledger ORDER BY seq").fetchall()
        for entry_id, data in rows:
            entry = json.loads(data)
            owner = (entry["credit_entitlement_id"], entry["customer_id"])
            created_us = parse_rfc3339_us(entry["created_at"])
            amount = Decimal(entry["amount"])
            owned = grants.setdefault(owner, [])
            if entry["is_credit"]:
                owned.append(
                    {
                        "id": entry.get("grant_id") or new_id("cgr"),
                        "credit_entitlement_id": owner[0],
                        "customer_id": owner[1],
                        "created_us": created_us,
                        "updated_us": created_us,
                        "expires_us": None,
                        "initial": str(amount),
                        "remaining": str(amount),
                        "expired": False,
                        "rolled_over": False,
                        "rollover_count": 0,
                        "source_type": "api",
                        "source_id": None,
                        "parent_grant_id": None,
                        "metadata": entry.get("metadata") or {},
                    }
                )
            else:
                for grant in owned:
                    taken = min(Decimal(grant["remaining"]), amount)
                    grant["remaining"] = str(Decimal(grant["remaining"]) - taken)
                    amount -= taken
            entry.update(
                transaction_type="credit_added" if entry["is_credit"] else "manual_adjustment",
                business_id=BUSINESS_ID,
                brand_id="brand_devserver",
                description=entry.get("reason"),
                reference_id=None,
                reference_type=None,
            )
            self._db.execute(
                "UPDATE ledger SET data = ? WHERE id = ?", (json.dumps(entry), entry_id)
            )
        for owned in grants.values():
            for grant in owned:
                self.save_grant(grant)

    def now_us(self) -> int:
        """The server clock's time (epoch µs)."""
        return self.clock.now_us()

    def save_clock(self) -> None:
        """Keep the clock's offset, so that a restart on the same file resumes at its time."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO settings (name, value) VALUES ('clock_offset_us', ?)",
                (str(self.clock.offset_us),),
            )

    def close(self) -> None:
        """Close the database."""
        with self._lock:
            self._db.close()

    # --- events ------------------------------------------------------------------------

    def insert_events(self, rows: list[EventRow], *, ingested_us: int | None = None) -> int:
        """Store events in one transaction, ignoring known ids; return how many were new.

        ``ingested_us`` is their time of arrival (now by default); a known id keeps the
        arrival time it was first stored with.
        """
        arrived = self.now_us() if ingested_us is None else ingested_us
        params = [
            (
                event_id,
                customer_id,
                event_name,
                micros,
                None if meta is None else _encode(meta),
                arrived,
            )
            for event_id, customer_id, event_name, micros, meta in rows
        ]
        with self._lock:
            self._db.execute("BEGIN")
            try:
                cursor = self._db.executemany(_INSERT_EVENT, params)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return cursor.rowcount

    def event_ids(self) -> list[str]:
        """Every stored event id, in arrival order."""
        with self._lock:
            return [row[0] for row in self._db.execute("SELECT event_id FROM events ORDER BY seq")]

    def get_event(self, event_id: str) -> dict[str, Any] | None:
        """One event as the API returns it, or ``None``."""
        with self._lock:
            row = self._db.execute(
                f"SELECT {_EVENT_COLUMNS} FROM events WHERE event_id = ?", (event_id,)
            ).fetchone()
        return None if row is None else _event(row)

    def _select_events(
        self,
        columns: str,
        *,
        customer_id: str | None,
        event_name: str | None,
        start_us: int | None,
        end_us: int | None,
        newest_first: bool,
        arrived_by_us: int | None = None,
    ) -> tuple[str, list[Any]]:
        where: list[str] = []
        params: list[Any] = []
        for clause, value in (
            ("customer_id = ?", customer_id),
            ("event_name = ?", event_name),
            ("ts_us >= ?", start_us),
            ("ts_us <= ?", end_us),
            ("ingested_us <= ?", arrived_by_us),
        ):
            if value is not None:
                where.append(clause)
                params.append(value)
        order = "ts_us DESC, seq DESC" if newest_first else "ts_us, seq"
        condition = f"WHERE {' AND '.join(where)}" if where else ""
        return f"SELECT {columns} FROM events {condition} ORDER BY {order}", params

    def list_events(
        self,
        *,
        customer_id: str | None = None,
        event_name: str | None = None,
        start_us: int | None = None,
        end_us: int | None = None,
        meter_filter: dict[str, Any] | None = None,
        offset: int = 0,
        limit: int = 10,
    ) -> list[dict[str, Any]]:
        """One page of events, newest first (then latest arrival first), with filters."""
        sql, params = self._select_events(
            _EVENT_COLUMNS,
            customer_id=customer_id,
            event_name=event_name,
            start_us=start_us,
            end_us=end_us,
            newest_first=True,
        )
        with self._lock:
            if meter_filter is None:
                rows = self._db.execute(f"{sql} LIMIT ? OFFSET ?", [*params, limit, offset])
                return [_event(row) for row in rows]
            predicate = compile_filter(meter_filter)
            page: list[dict[str, Any]] = []
            skipped = 0
            for row in self._db.execute(sql, params):
                if not predicate(json.loads(row[4]) if row[4] else {}):
                    continue
                if skipped < offset:
                    skipped += 1
                    continue
                page.append(_event(row))
                if len(page) >= limit:
                    break
            return page

    def meter_usage(
        self,
        meter: dict[str, Any],
        *,
        customer_id: str | None = None,
        start_us: int | None = None,
        end_us: int | None = None,
        arrived_by_us: int | None = None,
    ) -> dict[str, Aggregate]:
        """A meter's aggregated value per customer over the matching events (only those
        that arrived at or before ``arrived_by_us`` when it is given)."""
        sql, params = self._select_events(
            "customer_id, metadata",
            customer_id=customer_id,
            event_name=meter["event_name"],
            start_us=start_us,
            end_us=end_us,
            newest_first=False,
            arrived_by_us=arrived_by_us,
        )
        aggregation = meter["aggregation"]
        with self._lock:
            rows: Iterator[tuple[str, str | None]] = self._db.execute(sql, params)
            return aggregate(
                aggregation["type"], aggregation["key"], compile_filter(meter["filter"]), rows
            )

    # --- meters ------------------------------------------------------------------------

    def create_meter(self, fields: dict[str, Any]) -> dict[str, Any]:
        """Store a checked meter; return it as the API does."""
        now = format_us(self.now_us())
        meter = {
            "id": new_id("mtr"),
            "business_id": BUSINESS_ID,
            **fields,
            "created_at": now,
            "updated_at": now,
        }
        with self._lock:
            self._db.execute(
                "INSERT INTO meters (id, data) VALUES (?, ?)", (meter["id"], json.dumps(meter))
            )
        return meter

    def get_meter(self, meter_id: str) -> dict[str, Any] | None:
        """A meter (archived or not), or ``None``."""
        with self._lock:
            row = self._db.execute("SELECT data FROM meters WHERE id = ?", (meter_id,)).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def list_meters(self, *, archived: bool, offset: int, limit: int) -> list[dict[str, Any]]:
        """One page of archived or active meters, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT data FROM meters WHERE archived = ? ORDER BY seq LIMIT ? OFFSET ?",
                (int(archived), limit, offset),
            ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def all_meters(self) -> list[dict[str, Any]]:
        """Every meter, archived or not, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT data FROM meters ORDER BY seq").fetchall()
        return [json.loads(row[0]) for row in rows]

    def set_meter_archived(self, meter_id: str, archived: bool) -> bool:
        """Archive or unarchive a meter; ``False`` if it does not exist."""
        with self._lock:
            cursor = self._db.execute(
                "UPDATE meters SET archived = ? WHERE id = ?", (int(archived), meter_id)
            )
        return cursor.rowcount == 1

    # --- credit entitlements -----------------------------------------------------------

    def create_entitlement(self, entitlement: dict[str, Any]) -> None:
        """Store a checked entitlement (with its ``id``)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO entitlements (id, data) VALUES (?, ?)",
                (entitlement["id"], json.dumps(entitlement)),
            )

    def get_entitlement(self, entitlement_id: str) -> dict[str, Any] | None:
        """An entitlement, or ``None``."""
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM entitlements WHERE id = ?", (entitlement_id,)
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def list_entitlements(
        self, *, offset: int, limit: int, deleted: bool = False
    ) -> list[dict[str, Any]]:
        """One page of entitlements (deleted ones, or the others), oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT data FROM entitlements WHERE deleted = ? ORDER BY seq LIMIT ? OFFSET ?",
                (int(deleted), limit, offset),
            ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def update_entitlement(self, entitlement: dict[str, Any]) -> None:
        """Replace a stored entitlement's fields."""
        with self._lock:
            self._db.execute(
                "UPDATE entitlements SET data = ? WHERE id = ?",
                (json.dumps(entitlement), entitlement["id"]),
            )

    def entitlement_deleted(self, entitlement_id: str) -> bool:
        """Whether the entitlement is deleted (``False`` for an unknown one)."""
        with self._lock:
            row = self._db.execute(
                "SELECT deleted FROM entitlements WHERE id = ?", (entitlement_id,)
            ).fetchone()
        return bool(row and row[0])

    def set_entitlement_deleted(self, entitlement_id: str, deleted: bool) -> None:
        """Delete or undelete an entitlement."""
        with self._lock:
            self._db.execute(
                "UPDATE entitlements SET deleted = ? WHERE id = ?", (int(deleted), entitlement_id)
            )

    def get_balance_row(self, entitlement_id: str, customer_id: str) -> dict[str, Any] | None:
        """The balance record (id and times) of a customer, or ``None`` if it has none."""
        with self._lock:
            row = self._db.execute(
                "SELECT id, customer_id, created_us, updated_us FROM balances "
                "WHERE entitlement_id = ? AND customer_id = ?",
                (entitlement_id, customer_id),
            ).fetchone()
        return None if row is None else _balance_row(row)

    def list_balance_rows(
        self, entitlement_id: str, *, customer_id: str | None, offset: int, limit: int
    ) -> list[dict[str, Any]]:
        """One page of balance records of an entitlement, oldest first."""
        sql = (
            "SELECT id, customer_id, created_us, updated_us FROM balances WHERE entitlement_id = ?"
        )
        params: list[Any] = [entitlement_id]
        if customer_id is not None:
            sql += " AND customer_id = ?"
            params.append(customer_id)
        with self._lock:
            rows = self._db.execute(
                f"{sql} ORDER BY seq LIMIT ? OFFSET ?", [*params, limit, offset]
            )
            return [_balance_row(row) for row in rows]

    def find_ledger_entry(
        self, entitlement_id: str, customer_id: str, idempotency_key: str
    ) -> dict[str, Any] | None:
        """The entry made with this idempotency key, or ``None``."""
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM ledger WHERE entitlement_id = ? AND customer_id = ? "
                "AND idempotency_key = ?",
                (entitlement_id, customer_id, idempotency_key),
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    @contextmanager
    def transaction(self) -> Iterator[None]:
        """Hold the lock and run the block in one transaction (rolled back if it raises)."""
        with self._lock:
            if self._db.in_transaction:  # nested: part of the outer transaction
                yield
                return
            self._db.execute("BEGIN")
            try:
                yield
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def ensure_balance(self, entitlement_id: str, customer_id: str) -> None:
        """Create the customer's balance record if it has none, and touch it."""
        now = self.now_us()
        with self._lock:
            self._db.execute(
                "INSERT INTO balances (id, entitlement_id, customer_id, created_us, "
                "updated_us) VALUES (?, ?, ?, ?, ?) ON CONFLICT (entitlement_id, customer_id) "
                "DO UPDATE SET updated_us = excluded.updated_us",
                (new_id("cbal"), entitlement_id, customer_id, now, now),
            )

    def balance_owners(self, entitlement_id: str | None = None) -> list[tuple[str, str]]:
        """``(entitlement_id, customer_id)`` of every balance record (of one entitlement)."""
        sql = "SELECT entitlement_id, customer_id FROM balances"
        params: tuple[str, ...] = ()
        if entitlement_id is not None:
            sql += " WHERE entitlement_id = ?"
            params = (entitlement_id,)
        with self._lock:
            return [(row[0], row[1]) for row in self._db.execute(f"{sql} ORDER BY seq", params)]

    def overage(self, entitlement_id: str, customer_id: str) -> Decimal:
        """The customer's overage (usage beyond its grants), unrounded."""
        with self._lock:
            row = self._db.execute(
                "SELECT overage FROM balances WHERE entitlement_id = ? AND customer_id = ?",
                (entitlement_id, customer_id),
            ).fetchone()
        return Decimal(0) if row is None else Decimal(row[0])

    def set_overage(self, entitlement_id: str, customer_id: str, overage: Decimal) -> None:
        """Store the customer's overage (its balance record exists)."""
        with self._lock:
            self._db.execute(
                "UPDATE balances SET overage = ?, updated_us = ? "
                "WHERE entitlement_id = ? AND customer_id = ?",
                (str(overage), self.now_us(), entitlement_id, customer_id),
            )

    def grants(self, entitlement_id: str, customer_id: str) -> list[dict[str, Any]]:
        """The customer's grants, oldest first (their stored form)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT data FROM grants WHERE entitlement_id = ? AND customer_id = ? ORDER BY seq",
                (entitlement_id, customer_id),
            ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def save_grant(self, grant: dict[str, Any]) -> None:
        """Insert a grant, or replace the stored one with the same ``id``."""
        with self._lock:
            self._db.execute(
                "INSERT INTO grants (id, entitlement_id, customer_id, data) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET data = excluded.data",
                (
                    grant["id"],
                    grant["credit_entitlement_id"],
                    grant["customer_id"],
                    json.dumps(grant),
                ),
            )

    def usage_applied(self, entitlement_id: str, customer_id: str, meter_id: str) -> Decimal:
        """Meter units of the customer's usage already deducted from the entitlement."""
        with self._lock:
            row = self._db.execute(
                "SELECT units FROM usage_applied WHERE entitlement_id = ? AND customer_id = ? "
                "AND meter_id = ?",
                (entitlement_id, customer_id, meter_id),
            ).fetchone()
        return Decimal(0) if row is None else Decimal(row[0])

    def set_usage_applied(
        self, entitlement_id: str, customer_id: str, meter_id: str, units: Decimal
    ) -> None:
        """Record the meter units of usage deducted so far."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO usage_applied (entitlement_id, customer_id, meter_id, "
                "units) VALUES (?, ?, ?, ?)",
                (entitlement_id, customer_id, meter_id, str(units)),
            )

    def add_ledger_entry(self, entry: dict[str, Any], idempotency_key: str | None = None) -> None:
        """Store a ledger entry (a ``CreditLedgerEntry``) and touch the balance record."""
        with self.transaction():
            self.ensure_balance(entry["credit_entitlement_id"], entry["customer_id"])
            self._db.execute(
                "INSERT INTO ledger (id, entitlement_id, customer_id, is_credit, amount, "
                "idempotency_key, data) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    entry["id"],
                    entry["credit_entitlement_id"],
                    entry["customer_id"],
                    int(entry["is_credit"]),
                    entry["amount"],
                    idempotency_key,
                    json.dumps(entry),
                ),
            )

    def ledger(self, entitlement_id: str, customer_id: str) -> list[dict[str, Any]]:
        """The customer's ledger entries, oldest first."""
        with self._lock:
            rows = self._db.execute(
                "SELECT data FROM ledger WHERE entitlement_id = ? AND customer_id = ? ORDER BY seq",
                (entitlement_id, customer_id),
            ).fetchall()
        return [json.loads(row[0]) for row in rows]

    def save_cycle(self, cycle: dict[str, Any]) -> None:
        """Insert a credit cycle, or replace the stored one with the same ``id``."""
        with self._lock:
            self._db.execute(
                "INSERT INTO cycles (id, entitlement_id, customer_id, data) VALUES (?, ?, ?, ?) "
                "ON CONFLICT (id) DO UPDATE SET data = excluded.data",
                (
                    cycle["id"],
                    cycle["credit_entitlement_id"],
                    cycle["customer_id"],
                    json.dumps(cycle),
                ),
            )

    def cycles(
        self, entitlement_id: str | None = None, customer_id: str | None = None
    ) -> list[dict[str, Any]]:
        """The credit cycles (of one customer's balance), oldest first."""
        sql = "SELECT data FROM cycles"
        params: tuple[str, ...] = ()
        if entitlement_id is not None and customer_id is not None:
            sql += " WHERE entitlement_id = ? AND customer_id = ?"
            params = (entitlement_id, customer_id)
        with self._lock:
            rows = self._db.execute(f"{sql} ORDER BY seq", params).fetchall()
        return [json.loads(row[0]) for row in rows]

    def save_webhook(self, webhook: dict[str, Any]) -> None:
        """Insert a webhook endpoint, or replace the stored one with the same ``id``."""
        with self._lock:
            self._db.execute(
                "INSERT INTO webhooks (id, data) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET data = excluded.data",
                (webhook["id"], json.dumps(webhook)),
            )

    def get_webhook(self, webhook_id: str) -> dict[str, Any] | None:
        """A webhook endpoint (with its secret), or ``None``."""
        with self._lock:
            row = self._db.execute(
                "SELECT data FROM webhooks WHERE id = ?", (webhook_id,)
            ).fetchone()
        return None if row is None else dict(json.loads(row[0]))

    def list_webhooks(self) -> list[dict[str, Any]]:
        """Every webhook endpoint, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT data FROM webhooks ORDER BY seq").fetchall()
        return [json.loads(row[0]) for row in rows]

    def delete_webhook(self, webhook_id: str) -> bool:
        """Delete an endpoint; ``False`` if it does not exist."""
        with self._lock:
            cursor = self._db.execute("DELETE FROM webhooks WHERE id = ?", (webhook_id,))
        return cursor.rowcount == 1

    def save_delivery(self, delivery: dict[str, Any]) -> None:
        """Insert a webhook delivery, or replace the stored one with the same ``id``."""
        with self._lock:
            self._db.execute(
                "INSERT INTO webhook_deliveries (id, data) VALUES (?, ?) "
                "ON CONFLICT (id) DO UPDATE SET data = excluded.data",
                (delivery["id"], json.dumps(delivery)),
            )

    def deliveries(self) -> list[dict[str, Any]]:
        """Every webhook delivery kept, oldest first."""
        with self._lock:
            rows = self._db.execute("SELECT data FROM webhook_deliveries ORDER BY seq").fetchall()
        return [json.loads(row[0]) for row in rows]

    def delete_deliveries(self, delivery_ids: list[str]) -> None:
        """Forget webhook deliveries."""
        with self._lock:
            self._db.executemany(
                "DELETE FROM webhook_deliveries WHERE id = ?", [(i,) for i in delivery_ids]
            )

    def link_meter(self, meter_id: str, entitlement_id: str, units_per_credit: Decimal) -> None:
        """Link a meter to an entitlement (replacing an earlier link of the same pair)."""
        with self._lock:
            self._db.execute(
                "INSERT OR REPLACE INTO credit_links (meter_id, entitlement_id, units_per_credit) "
                "VALUES (?, ?, ?)",
                (meter_id, entitlement_id, str(units_per_credit)),
            )

    def links(self, entitlement_id: str | None = None) -> list[tuple[str, str, Decimal]]:
        """``(meter_id, entitlement_id, units_per_credit)`` of every link (of one entitlement)."""
        sql = "SELECT meter_id, entitlement_id, units_per_credit FROM credit_links"
        params: tuple[str, ...] = ()
        if entitlement_id is not None:
            sql += " WHERE entitlement_id = ?"
            params = (entitlement_id,)
        with self._lock:
            rows = self._db.execute(f"{sql} ORDER BY rowid", params).fetchall()
        return [(meter, ent, Decimal(units)) for meter, ent, units in rows]


def _balance_row(row: tuple[str, str, int, int]) -> dict[str, Any]:
    balance_id, customer_id, created_us, updated_us = row
    return {
        "id": balance_id,
        "customer_id": customer_id,
        "created_at": format_us(created_us),
        "updated_at": format_us(updated_us),
    }
