"""``dodo-ingest outbox status|dead-letters|retry PATH|URL``: inspect and repair an outbox.

PATH is a SQLite :class:`~dodo_ingest.delivery.Outbox` file, URL a ``redis://`` stream
(:class:`~dodo_ingest.delivery.RedisOutbox`). Safe to run while processes send from it.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from ._common import (
    Connection,
    api_errors,
    cells,
    connection_options,
    console,
    echo_json,
    format_time,
    print_records,
    print_title,
)

if TYPE_CHECKING:
    from ..delivery import OutboxBackend

__all__ = ["outbox"]

outbox_path = click.argument("path", metavar="PATH|URL")
_REDIS = ("redis://", "rediss://", "unix://")
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def _open(path: str) -> OutboxBackend:
    """The outbox at ``path`` (a file, or a Redis URL); a missing file is an error (it is not
    created)."""
    import sqlite3

    from ..client import ConfigurationError
    from ..delivery import Outbox

    if path.startswith(_REDIS):
        from ..delivery import RedisOutbox

        try:
            return RedisOutbox(path, timeout=5.0)
        except ConfigurationError as error:
            raise click.ClickException(str(error)) from None
    try:
        return Outbox(Path(path), create=False)
    except FileNotFoundError:
        raise click.ClickException(f"no outbox at {path}") from None
    except sqlite3.Error as error:
        raise click.ClickException(f"{path} is not an outbox file: {error}") from None


@contextmanager
def _opened(path: str) -> Iterator[OutboxBackend]:
    """The outbox at ``path``, closed afterwards; a Redis that cannot be reached is a clear
    error."""
    box = _open(path)
    try:
        yield box
    except Exception as error:
        if type(error).__module__.split(".")[0] != "redis":
            raise
        raise click.ClickException(f"Redis error: {error}") from None
    finally:
        box.close()


@click.group()
def outbox() -> None:
    """Inspect a durable outbox: a file (Ingestion(outbox=PATH), send --outbox) or a Redis
    stream (Ingestion(outbox="redis://..."), dodo-ingest relay)."""


@outbox.command("status")
@outbox_path
@json_option
def status(path: str, as_json: bool) -> None:
    """How many events wait in PATH|URL, and how many were dead-lettered; for a Redis
    stream also what each consumer holds, the lag and the age of the oldest entry."""
    from rich.table import Table

    if path.startswith(_REDIS):
        _stream_status(path, as_json)
        return
    with _opened(path) as box:
        pending = box.count_pending()
        dead = box.count_dead_letters()
    if as_json:
        echo_json({"path": str(path), "pending": pending, "dead_letters": dead})
        return
    out = console()
    print_title(out, f"outbox {path}")
    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("pending", f"{pending:,}")
    table.add_row("dead letters", f"{dead:,}")
    out.print(table)


@outbox.command("dead-letters")
@outbox_path
@click.option(
    "--limit",
    type=click.IntRange(min=0),
    default=100,
    show_default=True,
    help="Most dead letters to show, oldest first (0: all).",
)
@json_option
def dead_letters(path: str, limit: int, as_json: bool) -> None:
    """List the events of PATH|URL that were given up on, with the reason."""
    with _opened(path) as box:
        letters = box.dead_letters(limit or None)
        total = box.count_dead_letters()
    if as_json:
        echo_json(
            [
                {
                    "event": letter.event.to_dict(),
                    "reason": letter.reason,
                    "status_code": letter.status_code,
                    "failed_at": letter.failed_at,
                }
                for letter in letters
            ]
        )
        return
    rows = [
        (
            letter.event.event_id,
            letter.event.customer_id,
            letter.event.event_name,
            format_time(letter.event.timestamp) if letter.event.timestamp else "",
            "" if letter.status_code is None else str(letter.status_code),
            letter.reason,
            format_time(letter.failed_at),
        )
        for letter in letters
    ]
    columns = (
        "event_id",
        "customer_id",
        "event_name",
        "timestamp",
        "status",
        "reason",
        "failed_at",
    )
    print_records(console(), f"{total} dead letter(s) in {path}", columns, rows)
    if len(letters) < total:
        console().print(f"({total - len(letters)} more: use --limit 0 to list all)")


@outbox.command("retry")
@outbox_path
@click.argument("event_ids", nargs=-1)
@click.option(
    "--deliver",
    is_flag=True,
    help="Deliver them now (and anything else pending in PATH), then report.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=60.0,
    show_default=True,
    help="With --deliver: seconds to wait for delivery.",
)
@json_option
@connection_options
def retry(
    path: str,
    event_ids: tuple[str, ...],
    deliver: bool,
    timeout: float,
    as_json: bool,
    conn: Connection,
) -> None:
    """Put dead letters of PATH back in line (all, or the EVENT_IDS given).

    They are delivered by the next process sending from PATH, or now with --deliver. They
    keep their timestamps: events older than 1 hour are refused again.
    """
    client = conn.client() if deliver else None
    with _opened(path) as box:
        moved = box.retry_dead_letters(event_ids or None)
        result: dict[str, Any] = {"path": str(path), "retried": moved}
        if client is not None:
            try:
                with api_errors(conn, client):
                    result.update(_deliver(box, client, timeout))
            finally:
                client.close()
    if as_json:
        echo_json(result)
    else:
        out = console()
        out.print(f"{moved} dead letter(s) of {path} put back in line.")
        if deliver:
            out.print(
                f"delivered {result['delivered']}, dead-lettered {result['dead_lettered']}, "
                f"still pending {result['pending']}"
            )
    if deliver and (result["dead_lettered"] or result["pending"]):
        raise SystemExit(1)


def _deliver(box: OutboxBackend, client: Any, timeout: float) -> dict[str, int]:
    """Send what is pending in ``box`` through an :class:`Ingestion` on it: for a file, what
    the file holds; for a Redis stream, everything in it (this process joins the group as one
    more consumer until the stream is empty or ``timeout`` passes)."""
    import time

    from ..delivery import Ingestion, SharedOutboxBackend

    ingestion = Ingestion(client=client, outbox=box)
    try:
        if isinstance(box, SharedOutboxBackend):
            deadline = time.monotonic() + timeout
            while box.count_pending() and time.monotonic() < deadline:
                time.sleep(0.05)
        else:
            ingestion.flush(timeout=timeout)
    finally:
        ingestion.close(timeout=1.0)
    stats = ingestion.stats
    return {
        "delivered": stats.delivered,
        "dead_lettered": stats.dead_lettered,
        "pending": box.count_pending(),
    }


def _stream_status(url: str, as_json: bool) -> None:
    from dataclasses import asdict

    from rich.table import Table

    with _opened(url) as box:
        state = box.status()  # type: ignore[attr-defined]
        where = box.where  # type: ignore[attr-defined]
    if as_json:
        echo_json({"url": where, **asdict(state)})
        return
    out = console()
    print_title(out, f"outbox {where} stream {state.stream} group {state.group}")
    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("pending", f"{state.pending:,}")
    table.add_row("in flight", f"{state.in_flight:,}")
    table.add_row("lag (unread)", "?" if state.lag is None else f"{state.lag:,}")
    table.add_row("dead letters", f"{state.dead_letters:,}")
    age = "-" if state.oldest_age is None else f"{state.oldest_age:.1f} s"
    table.add_row("oldest entry age", age)
    out.print(table)
    if state.consumers:
        consumers = Table(title="consumers", title_justify="left")
        for column in ("name", "in flight", "idle"):
            consumers.add_column(column, justify="left" if column == "name" else "right")
        for member in state.consumers:
            consumers.add_row(*cells(member.name), f"{member.pending:,}", f"{member.idle:.1f} s")
        out.print(consumers)
