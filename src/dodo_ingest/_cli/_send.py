"""``dodo-ingest send FILE``: backfill usage events from a JSON Lines or CSV file."""

from __future__ import annotations

from pathlib import Path

import click

from ._common import Connection, api_errors, connection_options, console, echo_json

__all__ = ["send"]

METADATA_TYPES = ("auto", "str", "int", "float", "bool")


def _metadata_column(value: str) -> tuple[str, str]:
    column, _, kind = value.partition(":")
    kind = kind or "auto"
    if not column or kind not in METADATA_TYPES:
        raise click.BadParameter(
            f"{value!r}: expected COLUMN or COLUMN:TYPE with TYPE one of "
            f"{', '.join(METADATA_TYPES)}",
            param_hint="--metadata-column",
        )
    return column, kind


@click.command("send")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, readable=True, path_type=Path))
@click.option(
    "--format",
    "fmt",
    type=click.Choice(["auto", "jsonl", "csv"]),
    default="auto",
    show_default=True,
    help="File format (auto: by extension, else by the first character).",
)
@click.option("--event-name", default=None, help="Event name of records that have none.")
@click.option("--id-column", default="event_id", show_default=True, help="Column of event ids.")
@click.option(
    "--customer-column", default="customer_id", show_default=True, help="Column of customer ids."
)
@click.option(
    "--name-column", default="event_name", show_default=True, help="Column of event names."
)
@click.option(
    "--timestamp-column",
    default="timestamp",
    show_default=True,
    help="Column of timestamps (ISO 8601, or Unix seconds).",
)
@click.option(
    "--metadata-column",
    "metadata_columns",
    multiple=True,
    metavar="COLUMN[:TYPE]",
    help="Take metadata from this column only (repeat for more); TYPE is auto, str, int, "
    "float or bool [default: every other column, typed auto].",
)
@click.option(
    "--old-events",
    type=click.Choice(["refuse", "skip", "send"]),
    default="refuse",
    show_default=True,
    help="Events older than 55 minutes (the API refuses them after 1 hour): refuse to start, "
    "skip them, or send them anyway (the API decides; refused ones are dead-lettered).",
)
@click.option(
    "--skip-invalid",
    is_flag=True,
    help="Skip records that cannot be sent (bad JSON, missing fields, limits) instead of "
    "refusing to start.",
)
@click.option(
    "--outbox",
    type=click.Path(dir_okay=False, path_type=Path),
    default=None,
    help="Send through this SQLite outbox: a crash or Ctrl+C loses nothing, and running the "
    "same command again resumes where it stopped.",
)
@click.option("--restart", is_flag=True, help="With --outbox: read the file from the start again.")
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1000),
    default=1000,
    show_default=True,
    help="Events per request.",
)
@click.option(
    "--timeout",
    type=click.FloatRange(min=0),
    default=300.0,
    show_default=True,
    help="Seconds to wait for delivery once the whole file is read.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the summary as JSON.")
@click.option("--no-progress", is_flag=True, help="No progress bar.")
@connection_options
def send(
    file: Path,
    fmt: str,
    event_name: str | None,
    id_column: str,
    customer_column: str,
    name_column: str,
    timestamp_column: str,
    metadata_columns: tuple[str, ...],
    old_events: str,
    skip_invalid: bool,
    outbox: Path | None,
    restart: bool,
    batch_size: int,
    timeout: float,
    as_json: bool,
    no_progress: bool,
    conn: Connection,
) -> None:
    """Backfill the usage events of FILE (JSON Lines or CSV) through the delivery pipeline.

    Every record is checked first; invalid records or events older than 55 minutes stop
    the command before anything is sent (see --skip-invalid and --old-events). Records
    without an event id get one derived from their line, so sending a file twice never
    bills twice. Exit status: 0 all delivered, 1 something was not, 2 nothing sent
    (bad usage or refused input), 130 interrupted.
    """
    from ._backfill import EXIT_FAILED, EXIT_INTERRUPTED, print_summary, run
    from ._rows import ColumnMapping, FileFormatError, Format, detect_format

    mapping = ColumnMapping(
        event_id=id_column,
        customer_id=customer_column,
        event_name=name_column,
        timestamp=timestamp_column,
        metadata=tuple(_metadata_column(value) for value in metadata_columns) or None,
        default_event_name=event_name,
    )
    if restart and outbox is None:
        raise click.UsageError("--restart needs --outbox")
    try:
        file_format: Format = detect_format(file) if fmt == "auto" else fmt  # type: ignore[assignment]
    except UnicodeDecodeError:
        raise click.UsageError(f"{file} is not UTF-8 text") from None
    client = conn.client()
    err = console(stderr=True)
    try:
        with api_errors(conn, client):
            outcome = run(
                file=file,
                file_format=file_format,
                mapping=mapping,
                old_events=old_events,
                skip_invalid=skip_invalid,
                outbox_path=outbox,
                restart=restart,
                batch_size=batch_size,
                timeout=timeout,
                show_progress=not (no_progress or as_json),
                client=client,
                redact=conn.redact,
                err=err,
            )
    except FileFormatError as error:
        raise click.UsageError(f"{file}: {error}") from None
    except UnicodeDecodeError:
        raise click.UsageError(f"{file} is not UTF-8 text") from None
    finally:
        client.close()
    if as_json:
        echo_json(outcome.as_json())
    else:
        print_summary(console(), outcome)
    if outcome.stopped_by == "interrupted":
        raise SystemExit(EXIT_INTERRUPTED)
    if not outcome.ok:
        raise SystemExit(EXIT_FAILED)
