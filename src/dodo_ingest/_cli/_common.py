"""What the subcommands share: connection options, error reporting and output helpers."""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import re
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import click

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text

    from ..client import DodoClient

__all__ = [
    "API_KEY_ENV",
    "Connection",
    "api_errors",
    "connection_options",
    "console",
    "echo_json",
    "fold",
    "format_time",
    "jsonable",
    "print_records",
    "print_title",
]

API_KEY_ENV = "DODO_PAYMENTS_API_KEY"


@dataclasses.dataclass(frozen=True, repr=False)
class Connection:
    """The API settings given on the command line (``None``: the library's env fallbacks)."""

    api_key: str | None
    base_url: str | None
    environment: str | None

    def secret(self) -> str | None:
        """The key in effect, to redact from messages (never printed)."""
        return self.api_key if self.api_key is not None else os.environ.get(API_KEY_ENV)

    def client(self) -> DodoClient:
        """A :class:`DodoClient` on these settings; a usage error when they are incomplete."""
        from ..client import ConfigurationError, DodoClient

        if not (self.secret() or "").strip():
            raise click.UsageError(f"no API key: pass --api-key or set {API_KEY_ENV}")
        try:
            return DodoClient(
                api_key=self.api_key,
                base_url=self.base_url,
                environment=self.environment,  # type: ignore[arg-type]
            )
        except ConfigurationError as error:
            raise click.UsageError(self.redact(str(error))) from None

    def redact(self, text: str) -> str:
        """``text`` with the API key replaced by ``***``."""
        secret = (self.secret() or "").strip()
        return text.replace(secret, "***") if secret else text

    def __repr__(self) -> str:
        return f"Connection(base_url={self.base_url!r}, environment={self.environment!r})"


def connection_options(command: Callable[..., Any]) -> Callable[..., Any]:
    """Add ``--api-key``, ``--base-url`` and ``--environment``; the command gets them as one
    ``conn`` (:class:`Connection`) argument."""

    @functools.wraps(command)
    def run(
        *args: Any,
        api_key: str | None,
        base_url: str | None,
        environment: str | None,
        **kwargs: Any,
    ) -> Any:
        conn = Connection(api_key=api_key, base_url=base_url, environment=environment)
        return command(*args, conn=conn, **kwargs)

    options = (
        click.option(
            "--api-key",
            default=None,
            metavar="KEY",
            help=f"API key [default: ${API_KEY_ENV}]. Never printed.",
        ),
        click.option(
            "--base-url",
            default=None,
            metavar="URL",
            help="API base URL, e.g. a dev server's "
            "[default: $DODO_PAYMENTS_BASE_URL, else the environment's].",
        ),
        click.option(
            "--environment",
            type=click.Choice(["test_mode", "live_mode"]),
            default=None,
            help="API environment [default: $DODO_PAYMENTS_ENVIRONMENT, else test_mode].",
        ),
    )
    for option in reversed(options):
        run = option(run)
    return run


@contextmanager
def api_errors(conn: Connection, client: DodoClient | None = None) -> Iterator[None]:
    """Turn the library's errors into a one-line ``Error: ...`` and exit status 1; one
    that got no answer names the URL it was sent to (``client``'s)."""
    from ..client import APIConnectionError, DodoError

    try:
        yield
    except DodoError as error:
        message = str(error) or type(error).__name__
        if isinstance(error, APIConnectionError) and client is not None:
            message = f"no answer from {client.base_url}: {message}"
        raise click.ClickException(conn.redact(message)) from None


def console(*, stderr: bool = False) -> Console:
    """A rich console on stdout (or stderr)."""
    from rich.console import Console

    return Console(stderr=stderr, highlight=False)


_PIECE = re.compile(r"[^ /,]*[ /,]?")
"""A piece of text up to and including a place where a line may break (after a space, a
slash or a comma): paths and JSON break between their parts, not inside a name."""


def fold(text: str, width: int) -> list[str]:
    """``text`` cut into lines of at most ``width`` columns, breaking after spaces, slashes
    and commas where it can, inside a piece only when the piece alone is wider."""
    width = max(width, 1)
    lines: list[str] = []
    line = ""
    for piece in _PIECE.findall(text):
        if not piece:
            continue
        if len(line) + len(piece.rstrip()) <= width:
            line += piece
            continue
        if line.strip():
            lines.append(line.rstrip())
        line = ""
        while len(piece.rstrip()) > width:
            lines.append(piece[:width])
            piece = piece[width:]
        line = piece
    if line.strip() or not lines:
        lines.append(line.rstrip())
    return lines


def print_title(out: Console, title: str) -> None:
    """A table's title on lines of its own, folded to the console's width (a title inside
    a narrow table would be cut mid-word at the table's width)."""
    from rich.text import Text

    for line in fold(title, out.width):
        out.print(Text(line, style="italic"), soft_wrap=True)


def print_records(
    out: Console,
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
) -> None:
    """Rows as a table when it fits the console's width (80 columns when the output is not
    a terminal and ``COLUMNS`` is unset), else one block per row, its first value then a
    ``column  value`` line per other column, values folded: no line is wider than the
    console. Values are shown as they are, never read as rich markup."""
    from rich.table import Table
    from rich.text import Text

    print_title(out, title)
    if not rows:
        return
    widths = [
        max(len(column), *(len(row[index]) for row in rows)) for index, column in enumerate(columns)
    ]
    if sum(widths) + 3 * len(widths) + 1 <= out.width:
        table = Table(*columns)
        for row in rows:
            table.add_row(*cells(*row))
        out.print(table)
        return
    label_width = max(len(column) for column in columns[1:])
    indent = 2 + label_width + 2
    for number, row in enumerate(rows):
        if number:
            out.print()
        for line in fold(row[0], out.width):
            out.print(Text(line, style="bold"), soft_wrap=True)
        for column, value in zip(columns[1:], row[1:], strict=True):
            lines = fold(value, out.width - indent) if value else [""]
            label = f"  {column:<{label_width}}  "
            for index, line in enumerate(lines):
                lead = label if index == 0 else " " * indent
                out.print(Text(lead + line), soft_wrap=True)


def cells(*values: str) -> list[Text]:
    """Table cells shown as they are: data (ids, metadata, server messages) is never read as
    rich markup, so ``[/]`` in a value neither crashes the table nor restyles it."""
    from rich.text import Text

    return [Text(value) for value in values]


def jsonable(value: Any) -> Any:
    """``value`` made of JSON types: dataclasses as objects, times in RFC 3339, decimals as
    strings (exact, like the API), tuples as lists."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, datetime):
        return format_time(value)
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {str(key): jsonable(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(item) for item in value]
    return value


def echo_json(value: Any) -> None:
    """Print ``value`` as indented JSON on stdout."""
    click.echo(json.dumps(jsonable(value), indent=2, ensure_ascii=False))


def format_time(value: datetime) -> str:
    """RFC 3339 in UTC with milliseconds, as the API writes times."""
    from ..client._models import format_timestamp

    return format_timestamp(value)
