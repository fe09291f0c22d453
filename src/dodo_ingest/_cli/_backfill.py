"""The work behind ``dodo-ingest send``: check a file, deliver it, count what happened.

Two passes: the first checks every record (the API's limits and time window) and reports
problems before anything is sent; the second hands the events to an
:class:`~dodo_ingest.Ingestion`, which delivers them batched and retried, while a progress
bar follows delivery. A small file is parsed and checked once (the first pass keeps the
checked events); a big one is read again, one record at a time, so memory stays bounded.
The outcome says what the API stored, what it already had, and what it refused (dead
letters, with the reasons).
"""

from __future__ import annotations

import gc
import sqlite3
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import click
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TaskID,
    TaskProgressColumn,
    TextColumn,
    TimeElapsedColumn,
)
from rich.table import Table

from ..client import (
    APIConnectionError,
    APIStatusError,
    DodoClient,
    EventInput,
    EventValidationError,
)
from ..delivery import DEFAULT_DELIVERY_TIMEOUT, ClientTransport, DeadLetter, Ingestion, Outbox
from ..delivery._batch_sender import SPLIT_STATUSES
from ..delivery._settings import API_MAX_FUTURE_SKEW, Settings
from ._common import print_records, print_title
from ._resume import SendProgress
from ._rows import ColumnMapping, Format, Record, RowError, read_records

__all__ = ["EXIT_FAILED", "EXIT_INTERRUPTED", "EXIT_REFUSED", "Outcome", "print_summary", "run"]

EXIT_FAILED = 1
EXIT_REFUSED = 2
EXIT_INTERRUPTED = 130
MAX_QUEUED = 20_000
"""Events read ahead of delivery at most (keeps memory bounded and nothing is dropped)."""
PROGRESS_EVERY = 1000
"""Records between two progress updates (and resume records with an outbox)."""
SHOWN_PROBLEMS = 10
"""Problem lines and dead-letter reasons listed in full."""
KEEP_RECORDS_BYTES = 32 * 1024 * 1024
"""Files up to this size are parsed and checked once: the first pass keeps their checked
events (a few hundred MB of memory at most) for the second. Bigger files are read twice, in
constant memory (the second pass hands each record on as it reads it)."""


@dataclass(slots=True)
class Checked:
    """A record the first pass checked: the event as it will be sent, and its line."""

    line: int
    event: EventInput


@dataclass
class Scan:
    """What the first pass found."""

    records: int = 0
    kept: list[Checked | RowError] | None = None
    """The records checked (or why they cannot be sent), when the file is small enough to
    keep them for the second pass."""
    sendable: int = 0
    last_line: int = 0
    invalid: list[RowError] = field(default_factory=list)
    old: list[tuple[int, float]] = field(default_factory=list)
    """``(line, age in seconds)`` of events older than the delivery window."""

    def skipped_lines(self, skip_old: bool) -> dict[int, str]:
        """The lines the second pass leaves out, with the reason."""
        lines = {error.line: error.detail for error in self.invalid}
        if skip_old:
            lines.update((line, f"old event ({_age(age)})") for line, age in self.old)
        return lines


@dataclass
class Tally:
    """What the sender thread tells the command while it runs."""

    refusal: str | None = None
    """Why the API refuses every request (a wrong key or URL), once it did."""
    unreachable: str | None = None
    """The last request that got no answer, with the URL (delivery retries it)."""
    warned: bool = False
    """Whether :attr:`unreachable` was shown while delivering."""


@dataclass
class Outcome:
    """Counters of one run, for the summary."""

    file: str
    resumed_from_line: int = 0
    read: int = 0
    skipped: list[dict[str, Any]] = field(default_factory=list)
    failed_to_queue: list[dict[str, Any]] = field(default_factory=list)
    taken_over: int = 0
    delivered: int = 0
    stored: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    unsettled: int = 0
    reasons: list[dict[str, Any]] = field(default_factory=list)
    stopped_by: str | None = None
    last_error: str | None = None
    """Why delivery was still being retried when the run ended without finishing."""
    outbox: str | None = None
    seconds: float = 0.0

    @property
    def ok(self) -> bool:
        """True when every event handed to the pipeline was delivered."""
        return not (
            self.failed_to_queue
            or self.dead_lettered
            or self.dropped
            or self.unsettled
            or self.stopped_by
        )

    def as_json(self) -> dict[str, Any]:
        """The summary printed by ``--json``."""
        return {
            "file": self.file,
            "ok": self.ok,
            "resumed_from_line": self.resumed_from_line,
            "events_read": self.read,
            "events_taken_over": self.taken_over,
            "delivered": self.delivered,
            "new": self.stored,
            "duplicates_ignored": self.delivered - self.stored,
            "dead_lettered": self.dead_lettered,
            "dead_letter_reasons": self.reasons,
            "skipped": len(self.skipped),
            "skipped_lines": self.skipped[:SHOWN_PROBLEMS],
            "not_queued": self.failed_to_queue[:SHOWN_PROBLEMS],
            "dropped": self.dropped,
            "unsettled": self.unsettled,
            "stopped_by": self.stopped_by,
            "last_error": self.last_error,
            "outbox": self.outbox,
            "seconds": round(self.seconds, 3),
        }


def run(
    *,
    file: Path,
    file_format: Format,
    mapping: ColumnMapping,
    old_events: str,
    skip_invalid: bool,
    outbox_path: Path | None,
    restart: bool,
    batch_size: int,
    timeout: float,
    show_progress: bool,
    client: DodoClient,
    redact: Callable[[str], str],
    err: Console,
) -> Outcome:
    """Check ``file``, deliver its events through an :class:`Ingestion` and return what
    happened. Raises ``SystemExit(2)`` when the check refuses the file, and
    :class:`~dodo_ingest._cli._rows.FileFormatError` or :class:`UnicodeDecodeError` for a
    file that cannot be read."""
    started = time.monotonic()
    started_at = time.time()
    max_age = Settings().max_event_age
    outcome = Outcome(file=str(file), outbox=None if outbox_path is None else str(outbox_path))
    start_line, finished = 0, False
    progress_store: SendProgress | None = None
    outbox: Outbox | None = None
    if outbox_path is not None:
        try:
            outbox = Outbox(outbox_path)
        except (sqlite3.Error, OSError) as error:
            raise click.UsageError(f"--outbox {outbox_path}: cannot open it ({error})") from None
        progress_store = SendProgress(outbox_path, file)
        if restart:
            progress_store.forget()
        recorded = progress_store.recorded()
        if recorded is not None:
            start_line, finished = recorded
            outcome.resumed_from_line = start_line
            pending = outbox.count_pending()
            err.print(
                f"Resuming {file}: lines 1-{start_line} were handed to {outbox_path} by an "
                f"earlier run ({pending} event(s) still waiting there)."
            )
    try:
        scan = Scan()
        if not finished:
            try:
                with err.status(f"Checking {file}...", spinner="dots"):
                    scan = _scan(file, file_format, mapping, start_line, max_age)
            except KeyboardInterrupt:
                err.print("Interrupted before anything was sent.")
                raise SystemExit(EXIT_INTERRUPTED) from None
            _report_scan(err, scan, old_events, skip_invalid, max_age)
        skipped = scan.skipped_lines(skip_old=old_events == "skip")
        oldest = max((age for _, age in scan.old), default=0.0)
        tally = Tally()
        ingestion = _ingestion(
            client,
            outbox,
            batch_size,
            tally,
            redact,
            max_event_age=max(max_age, oldest + max_age) if old_events == "send" else max_age,
        )
        try:
            _deliver(
                ingestion=ingestion,
                file=file,
                file_format=file_format,
                mapping=mapping,
                start_line=start_line if not finished else None,
                scan=scan,
                skipped=skipped,
                tally=tally,
                progress_store=progress_store,
                timeout=timeout,
                show_progress=show_progress,
                err=err,
                outcome=outcome,
            )
        except KeyboardInterrupt:
            outcome.stopped_by = "interrupted"
        finally:
            ingestion.close(timeout=1.0 if outcome.stopped_by else 5.0)
        stats = ingestion.stats
        outcome.delivered = stats.delivered
        outcome.dead_lettered = stats.dead_lettered
        outcome.dropped = stats.dropped
        outcome.unsettled = stats.queued
        outcome.taken_over = stats.enqueued - outcome.read
        outcome.stored = stats.ingested
        if (outcome.unsettled or outcome.dropped) and outcome.stopped_by is not None:
            outcome.last_error = tally.unreachable
        letters = ingestion.dead_letters() if outbox is None else outbox.dead_letters()
        outcome.reasons = _reasons(
            [letter for letter in letters if letter.failed_at.timestamp() >= started_at]
        )
    finally:
        if progress_store is not None:
            progress_store.close()
        if outbox is not None:
            outbox.close()
    outcome.seconds = time.monotonic() - started
    return outcome


def _scan(
    file: Path, file_format: Format, mapping: ColumnMapping, start_line: int, max_age: float
) -> Scan:
    """First pass: check every record as the second pass will send it."""
    scan = Scan()
    now = time.time()
    latest, oldest = now + API_MAX_FUTURE_SKEW, now - max_age
    if file.stat().st_size <= KEEP_RECORDS_BYTES:
        scan.kept = []
    keep = scan.kept.append if scan.kept is not None else None
    invalid, old = scan.invalid.append, scan.old.append
    records = sendable = line = 0
    with _collector_paused(keep is not None):
        for item in read_records(file, file_format, mapping, start_line=start_line):
            records += 1
            line = item.line
            checked: Checked | RowError
            if type(item) is RowError:
                checked = item
            else:
                assert isinstance(item, Record)
                try:
                    event = EventInput(
                        item.event_id,
                        item.customer_id,
                        item.event_name,
                        item.timestamp,
                        item.metadata,
                    )
                except EventValidationError as error:
                    checked = RowError(line, error.field, error.limit)
                else:
                    checked = Checked(line, event)
                    if event.timestamp is not None:
                        ts = event.timestamp.timestamp()
                        if ts > latest:
                            checked = RowError(
                                line,
                                "timestamp",
                                "more than 5 minutes in the future (the API refuses it)",
                            )
                        elif ts < oldest:
                            old((line, now - ts))
            if type(checked) is RowError:
                invalid(checked)
            else:
                sendable += 1
            if keep is not None:
                keep(checked)
    scan.records, scan.sendable, scan.last_line = records, sendable, line
    return scan


@contextmanager
def _collector_paused(paused: bool) -> Iterator[None]:
    """Pause the cyclic garbage collector while the first pass keeps what it checked.

    The kept events live until the second pass and form no cycles, but the collector would
    walk all of them again each time they grow by a quarter (a sixth of the first pass's CPU
    on a 100,000-line file). Their memory is bounded by :data:`KEEP_RECORDS_BYTES`.
    """
    if not paused or not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def _age(seconds: float) -> str:
    minutes = int(seconds // 60)
    if minutes < 120:
        return f"{minutes} min"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes:02d} min"
    return f"{hours // 24} days"


def _report_scan(
    err: Console, scan: Scan, old_events: str, skip_invalid: bool, max_age: float
) -> None:
    """Warn about the problems found, and stop (exit 2) unless the options allow them."""
    if scan.invalid:
        err.print(f"[bold yellow]{len(scan.invalid)} record(s) cannot be sent:[/]", highlight=False)
        for error in scan.invalid[:SHOWN_PROBLEMS]:
            err.print(f"  {error}", markup=False)
        if len(scan.invalid) > SHOWN_PROBLEMS:
            err.print(f"  ... and {len(scan.invalid) - SHOWN_PROBLEMS} more")
    if scan.old:
        oldest = max(age for _, age in scan.old)
        first = ", ".join(str(line) for line, _ in scan.old[:5])
        lines = "line" if len(scan.old) == 1 else "lines"
        err.print(
            f"[bold yellow]{len(scan.old)} event(s) are older than {max_age / 60:g} minutes[/] "
            f"(oldest {_age(oldest)}; {lines} {first}{', ...' if len(scan.old) > 5 else ''}): "
            "the API refuses events older than 1 hour."
        )
    refusals = []
    if scan.invalid and not skip_invalid:
        refusals.append("--skip-invalid to send the others")
    if scan.old and old_events == "refuse":
        refusals.append(
            "--old-events skip to leave old events out, --old-events send to send them anyway"
        )
    if refusals:
        err.print(f"Nothing sent. Use {'; '.join(refusals)}.")
        raise SystemExit(EXIT_REFUSED)
    if scan.invalid:
        err.print(f"Skipping {len(scan.invalid)} invalid record(s) (--skip-invalid).")
    if scan.old and old_events == "skip":
        err.print(f"Skipping {len(scan.old)} old event(s) (--old-events skip).")
    elif scan.old:
        err.print(
            f"Sending {len(scan.old)} old event(s) anyway (--old-events send): "
            "those the API refuses are dead-lettered."
        )


def _ingestion(
    client: DodoClient,
    outbox: Outbox | None,
    batch_size: int,
    tally: Tally,
    redact: Callable[[str], str],
    *,
    max_event_age: float,
) -> Ingestion:
    """An :class:`Ingestion` that notes in ``tally`` when the API refuses the key or the URL,
    and when a request gets no answer."""

    def on_error(error: BaseException, events: list[EventInput]) -> None:
        if isinstance(error, APIStatusError) and error.status_code not in SPLIT_STATUSES:
            tally.refusal = redact(
                f"the API refused delivery: HTTP {error.status_code}: {error.message}"
            )

    sender = client.with_options(max_retries=0, timeout=DEFAULT_DELIVERY_TIMEOUT)
    return Ingestion(
        transport=_WatchedTransport(ClientTransport(sender, owns_client=False), tally, redact),
        api_key=client._config.api_key,  # only to redact it from what errors say
        outbox=outbox,
        batch_size=batch_size,
        max_event_age=max_event_age,
        on_error=on_error,
    )


class _WatchedTransport:
    """The pipeline's transport, noting in ``tally`` why the last request got no answer
    (the pipeline retries those without telling ``on_error``), and forgetting it once a
    request is answered."""

    def __init__(self, inner: ClientTransport, tally: Tally, redact: Callable[[str], str]):
        self._inner = inner
        self._tally = tally
        self._redact = redact

    def send(self, body: bytes) -> int:
        try:
            ingested = self._inner.send(body)
        except APIConnectionError as error:
            url = self._inner.client.base_url
            self._tally.unreachable = self._redact(f"no answer from {url}: {error}")
            raise
        self._tally.unreachable = None
        return ingested

    def close(self) -> None:
        self._inner.close()


def _deliver(
    *,
    ingestion: Ingestion,
    file: Path,
    file_format: Format,
    mapping: ColumnMapping,
    start_line: int | None,
    scan: Scan,
    skipped: dict[int, str],
    tally: Tally,
    progress_store: SendProgress | None,
    timeout: float,
    show_progress: bool,
    err: Console,
    outcome: Outcome,
) -> None:
    """Second pass: hand the records to ``ingestion`` and wait until they are settled."""
    to_send = scan.sendable - (len(skipped) - len(scan.invalid))
    with Progress(
        TextColumn("{task.description:<10}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        console=err,
        disable=not show_progress,
    ) as bar:
        read_task = bar.add_task("read", total=to_send)
        sent_task = bar.add_task("delivered", total=to_send)
        try:
            if start_line is not None:
                track, send_checked = ingestion.track, _sender_of_checked(ingestion)
                last_line = start_line
                items: Iterable[Checked | Record | RowError] = (
                    scan.kept
                    if scan.kept is not None
                    else read_records(file, file_format, mapping, start_line=start_line)
                )
                scan.kept = None
                for item in items:
                    last_line = item.line
                    if skipped:
                        reason = skipped.get(last_line)
                        if reason is not None:
                            outcome.skipped.append({"line": last_line, "reason": reason})
                            continue
                    try:
                        if type(item) is Checked:
                            send_checked(item.event)
                        elif type(item) is Record:  # read again: track() checks it
                            track(
                                item.customer_id,
                                item.event_name,
                                item.metadata,
                                event_id=item.event_id,
                                timestamp=item.timestamp,
                            )
                        else:  # the file changed since the first pass
                            outcome.failed_to_queue.append({"line": last_line, "reason": str(item)})
                            continue
                    except EventValidationError as error:
                        outcome.failed_to_queue.append({"line": last_line, "reason": str(error)})
                        continue
                    outcome.read += 1
                    if outcome.read % PROGRESS_EVERY == 0:
                        if progress_store is not None:
                            progress_store.record(last_line)
                        if _stopped(tally, outcome):
                            break
                        _update(bar, read_task, sent_task, ingestion, outcome, to_send)
                        _wait_for_room(
                            ingestion,
                            tally,
                            outcome,
                            lambda: _update(bar, read_task, sent_task, ingestion, outcome, to_send),
                        )
                else:
                    if progress_store is not None:
                        progress_store.record(max(last_line, scan.last_line), finished=True)
            _update(bar, read_task, sent_task, ingestion, outcome, to_send)
            deadline = time.monotonic() + timeout
            while not ingestion.flush(timeout=0.2):
                _update(bar, read_task, sent_task, ingestion, outcome, to_send)
                if tally.unreachable is not None and not tally.warned:
                    tally.warned = True
                    bar.console.print(f"Retrying: {tally.unreachable}", markup=False)
                if _stopped(tally, outcome) or time.monotonic() >= deadline:
                    outcome.stopped_by = outcome.stopped_by or "timeout"
                    break
        except KeyboardInterrupt:
            # Stop delivering now, inside the progress display, so that its last frame
            # shows the counts the summary will (the sender has stopped once closed).
            outcome.stopped_by = "interrupted"
            ingestion.close(timeout=1.0)
        _update(bar, read_task, sent_task, ingestion, outcome, to_send)
        bar.refresh()
    if outcome.failed_to_queue:
        err.print(f"{len(outcome.failed_to_queue)} record(s) could not be queued.")


def _sender_of_checked(ingestion: Ingestion) -> Callable[[EventInput], object]:
    """What hands a checked event to ``ingestion``: its internal entry that skips the checks
    already made (the timestamp's age is checked again at sending), else ``track()``."""
    track = ingestion.track
    prechecked = getattr(type(ingestion), "_track_prechecked", None)

    def send_checked(event: EventInput) -> object:
        if prechecked is not None and event.metadata is not None:
            return prechecked(
                ingestion,
                event.customer_id,
                event.event_name,
                event.metadata,
                event.event_id,
                event.timestamp,
            )
        return track(
            event.customer_id,
            event.event_name,
            event.metadata,
            event_id=event.event_id,
            timestamp=event.timestamp,
        )

    return send_checked


def _update(
    bar: Progress,
    read_task: TaskID,
    sent_task: TaskID,
    ingestion: Ingestion,
    outcome: Outcome,
    to_send: int,
) -> None:
    stats = ingestion.stats
    taken_over = max(0, stats.enqueued - outcome.read)
    bar.update(read_task, completed=outcome.read)
    bar.update(
        sent_task, completed=stats.delivered + stats.dead_lettered, total=to_send + taken_over
    )


def _wait_for_room(
    ingestion: Ingestion, tally: Tally, outcome: Outcome, update: Callable[[], None]
) -> None:
    """Read ahead of delivery by at most :data:`MAX_QUEUED` events."""
    while ingestion.stats.queued > MAX_QUEUED and not _stopped(tally, outcome):
        time.sleep(0.01)
        update()


def _stopped(tally: Tally, outcome: Outcome) -> bool:
    """True once the API refused the key or the URL (delivery is paused)."""
    if tally.refusal is not None and outcome.stopped_by is None:
        outcome.stopped_by = tally.refusal
    return outcome.stopped_by is not None


def _reasons(letters: list[DeadLetter]) -> list[dict[str, Any]]:
    """Dead letters grouped by reason, most frequent first, with a few event ids each."""
    counts = Counter(letter.reason for letter in letters)
    examples: dict[str, list[str]] = {}
    for letter in letters:
        ids = examples.setdefault(letter.reason, [])
        if len(ids) < 3:
            ids.append(letter.event.event_id)
    return [
        {"reason": reason, "count": count, "event_ids": examples[reason]}
        for reason, count in counts.most_common(SHOWN_PROBLEMS)
    ]


def print_summary(out: Console, outcome: Outcome) -> None:

    print_title(out, f"dodo-ingest send {outcome.file}")
    table = Table(show_header=False)
    table.add_column(style="bold")
    table.add_column(justify="right")
    if outcome.resumed_from_line:
        table.add_row("resumed after line", str(outcome.resumed_from_line))
    table.add_row("events read", f"{outcome.read:,}")
    if outcome.taken_over:
        table.add_row("left by an earlier run", f"{outcome.taken_over:,}")
    table.add_row("[green]delivered[/]", f"{outcome.delivered:,}")
    table.add_row("  new", f"{outcome.stored:,}")
    table.add_row("  duplicates ignored", f"{outcome.delivered - outcome.stored:,}")
    table.add_row(
        "[red]dead-lettered[/]" if outcome.dead_lettered else "dead-lettered",
        f"{outcome.dead_lettered:,}",
    )
    if outcome.skipped:
        table.add_row("skipped", f"{len(outcome.skipped):,}")
    if outcome.failed_to_queue:
        table.add_row("[red]not queued[/]", f"{len(outcome.failed_to_queue):,}")
    if outcome.dropped:
        table.add_row("[red]dropped[/]", f"{outcome.dropped:,}")
    if outcome.unsettled:
        where = "kept in the outbox" if outcome.outbox else "not delivered"
        table.add_row(f"[red]{where}[/]", f"{outcome.unsettled:,}")
    table.add_row("seconds", f"{outcome.seconds:.1f}")
    out.print(table)
    if outcome.reasons:
        rows = [
            (entry["reason"], f"{entry['count']:,}", ", ".join(entry["event_ids"]))
            for entry in outcome.reasons
        ]
        columns = ("reason", "events", "example event ids")
        print_records(out, "why events were dead-lettered", columns, rows)
    for entry in outcome.failed_to_queue[:SHOWN_PROBLEMS]:
        out.print(f"not queued: line {entry['line']}: {entry['reason']}", markup=False)
    if outcome.stopped_by == "interrupted":
        out.print("[yellow]Interrupted.[/]")
    elif outcome.stopped_by == "timeout":
        out.print("[yellow]Delivery did not finish within --timeout.[/]")
    elif outcome.stopped_by:
        out.print(f"Stopped: {outcome.stopped_by}", style="red", markup=False)
    if outcome.last_error:
        out.print(f"Last delivery error: {outcome.last_error}", markup=False)
    if not outcome.ok and outcome.outbox and (outcome.unsettled or outcome.stopped_by):
        out.print(f"Run the same command again to resume from {outcome.outbox}.")
    elif outcome.unsettled or outcome.stopped_by:
        out.print("Run the same command again: event ids are stable, nothing is billed twice.")
