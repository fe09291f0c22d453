"""``dodo-ingest outbox status|dead-letters|retry PATH``: inspect and repair an outbox file.

Built on :class:`~dodo_ingest.delivery.Outbox`; safe to run while a process sends from the
same file.
"""

from __future__ import annotations

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
)

if TYPE_CHECKING:
    from ..delivery import Outbox

__all__ = ["outbox"]

outbox_path = click.argument("path", type=click.Path(dir_okay=False, path_type=Path))
json_option = click.option("--json", "as_json", is_flag=True, help="Print JSON instead of a table.")


def _open(path: Path) -> Outbox:
    """The outbox at ``path``; a missing file is an error (it is not created)."""
    import sqlite3

    from ..delivery import Outbox

    try:
        return Outbox(path, create=False)
    except FileNotFoundError:
        raise click.ClickException(f"no outbox at {path}") from None
    except sqlite3.Error as error:
        raise click.ClickException(f"{path} is not an outbox file: {error}") from None


@click.group()
def outbox() -> None:
    """Inspect a durable outbox file (Ingestion(outbox=...) or send --outbox)."""


@outbox.command("status")
@outbox_path
@json_option
def status(path: Path, as_json: bool) -> None:
    """How many events wait in PATH, and how many were dead-lettered."""
    from rich.table import Table

    with _open(path) as box:
        pending = box.count_pending()
        dead = box.count_dead_letters()
    if as_json:
        echo_json({"path": str(path), "pending": pending, "dead_letters": dead})
        return
    table = Table(title=cells(f"outbox {path}")[0], show_header=False, title_justify="left")
    table.add_column(style="bold")
    table.add_column(justify="right")
    table.add_row("pending", f"{pending:,}")
    table.add_row("dead letters", f"{dead:,}")
    console().print(table)


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
def dead_letters(path: Path, limit: int, as_json: bool) -> None:
    """List the events of PATH that were given up on, with the reason."""
    from rich.table import Table

    with _open(path) as box:
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
    table = Table(title=cells(f"{total} dead letter(s) in {path}")[0], title_justify="left")
    for column in ("event_id", "customer_id", "event_name", "timestamp", "status", "reason"):
        table.add_column(column, overflow="fold")
    table.add_column("failed_at")
    for letter in letters:
        event = letter.event
        table.add_row(
            *cells(
                event.event_id,
                event.customer_id,
                event.event_name,
                format_time(event.timestamp) if event.timestamp else "",
                "" if letter.status_code is None else str(letter.status_code),
                letter.reason,
                format_time(letter.failed_at),
            )
        )
    console().print(table)
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
    path: Path,
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
    with _open(path) as box:
        moved = box.retry_dead_letters(event_ids or None)
        result: dict[str, Any] = {"path": str(path), "retried": moved}
        if client is not None:
            try:
                with api_errors(conn):
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


def _deliver(box: Outbox, client: Any, timeout: float) -> dict[str, int]:
    """Send what is pending in ``box`` through an :class:`Ingestion` on it."""
    from ..delivery import Ingestion

    ingestion = Ingestion(client=client, outbox=box)
    try:
        ingestion.flush(timeout=timeout)
    finally:
        ingestion.close(timeout=1.0)
    stats = ingestion.stats
    return {
        "delivered": stats.delivered,
        "dead_lettered": stats.dead_lettered,
        "pending": box.count_pending(),
    }
