"""``dodo-ingest relay URL``: deliver what producers wrote to a Redis stream, until stopped."""

from __future__ import annotations

import json
import signal
import sys
from typing import TYPE_CHECKING

import click

from ._common import Connection, connection_options

if TYPE_CHECKING:
    from ..delivery import RelayStats

__all__ = ["relay"]


@click.command("relay")
@click.argument("url")
@click.option(
    "--consumer",
    default=None,
    metavar="NAME",
    help="This relay's name in the group [default: host, pid and a random part]. A relay "
    "restarted under the same name goes on with what it held.",
)
@click.option(
    "--batch-size",
    type=click.IntRange(1, 1000),
    default=1000,
    show_default=True,
    help="Most events per request.",
)
@click.option(
    "--claim-idle",
    type=click.FloatRange(min=1, min_open=False),
    default=None,
    help="Seconds after which entries held by a silent relay are claimed [default: the "
    "URL's claim_idle, else 60].",
)
@click.option(
    "--stats-interval",
    type=click.FloatRange(min=0.05),
    default=10.0,
    show_default=True,
    help="Seconds between two lines of counters.",
)
@click.option(
    "--shutdown-timeout",
    type=click.FloatRange(min=0),
    default=10.0,
    show_default=True,
    help="Seconds to finish the batch in flight when stopped.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the counters as JSON lines.")
@connection_options
def relay(
    url: str,
    consumer: str | None,
    batch_size: int,
    claim_idle: float | None,
    stats_interval: float,
    shutdown_timeout: float,
    as_json: bool,
    conn: Connection,
) -> None:
    """Deliver the events of the Redis stream at URL to the API, as one consumer of its group.

    URL is redis://HOST:PORT/DB?stream=NAME&group=NAME (defaults: dodo-usage, dodo-relays).
    Run several relays: each reads its own batches, and the entries of a relay that died are
    claimed by another and sent again with the same ids (the API ignores ids it has stored).
    Stops on SIGTERM or Ctrl-C. Prints its counters every --stats-interval seconds.
    """
    from ..client import ConfigurationError
    from ..delivery import RedisOutbox, Relay

    if not url.startswith(("redis://", "rediss://", "unix://")):
        raise click.BadParameter("must be a redis://, rediss:// or unix:// URL", param_hint="URL")
    client = conn.client()
    try:
        outbox = RedisOutbox(url, consumer=consumer, claim_idle=claim_idle, timeout=2.0)
        runner = Relay(
            outbox,
            client=client,
            batch_size=batch_size,
            shutdown_timeout=shutdown_timeout,
        )
    except ConfigurationError as error:
        client.close()
        raise click.UsageError(conn.redact(str(error))) from None

    def stop(signum: int, frame: object) -> None:
        runner.stop()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    _print(
        as_json,
        {"relay": outbox.consumer, "stream": outbox.stream, "group": outbox.group},
        f"relay {outbox.consumer} delivering {outbox.stream} (group {outbox.group}) "
        f"from {outbox.where}",
    )
    try:
        runner.run(stats_interval=stats_interval, on_stats=lambda stats: _report(as_json, stats))
    finally:
        outbox.close()
        client.close()


def _report(as_json: bool, stats: RelayStats) -> None:
    from dataclasses import asdict

    values = asdict(stats)
    text = ", ".join(
        f"{name.replace('_', '-')} {'?' if value is None else value}"
        for name, value in values.items()
    )
    _print(as_json, values, text)


def _print(as_json: bool, values: dict[str, object], text: str) -> None:
    click.echo(json.dumps(values) if as_json else text)
    sys.stdout.flush()
