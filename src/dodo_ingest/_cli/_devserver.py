"""``dodo-ingest dev-server``: run the local stand-in of the billing API."""

from __future__ import annotations

import signal
import threading
from types import FrameType

import click

__all__ = ["dev_server"]


@click.command("dev-server")
@click.option("--host", default="127.0.0.1", show_default=True, help="Interface to listen on.")
@click.option(
    "--port",
    default=8787,
    show_default=True,
    type=click.IntRange(0, 65535),
    help="Port to listen on (0 picks a free one).",
)
@click.option(
    "--db",
    default=":memory:",
    show_default=True,
    help="SQLite file (data survives restarts) or :memory:.",
)
@click.option(
    "--api-key",
    envvar="DODO_DEV_SERVER_API_KEY",
    default=None,
    help="Accept only this Bearer token (default: any non-empty token).",
)
@click.option(
    "--faults",
    default=None,
    metavar="SPEC",
    help="Inject faults into POST /events/ingest, e.g. "
    "5xx=0.1,429=0.05,reset=0.05,lost_ack=0.05,slow=0.02 (probabilities per request).",
)
@click.option(
    "--retry-after",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Retry-After seconds of injected 429 answers.",
)
@click.option(
    "--slow-delay",
    default=1.0,
    show_default=True,
    type=click.FloatRange(min=0),
    help="Seconds an injected slow answer waits.",
)
@click.option("--seed", default=None, type=int, help="Seed making the faults reproducible.")
@click.option(
    "--deduction-lag",
    default=0.0,
    show_default=True,
    type=click.FloatRange(min=0),
    metavar="SECONDS",
    help="Count usage against credit balances only this long after it arrived "
    "(the real API deducts asynchronously); 0 counts it at once.",
)
@click.option(
    "--read-timeout",
    default=10.0,
    show_default=True,
    type=click.FloatRange(min=0, min_open=True),
    metavar="SECONDS",
    help="Close a connection whose request does not arrive within this time.",
)
@click.option(
    "--max-connections",
    default=512,
    show_default=True,
    type=click.IntRange(min=1),
    help="Connections served at once; more are closed when accepted.",
)
def dev_server(
    host: str,
    port: int,
    db: str,
    api_key: str | None,
    faults: str | None,
    retry_after: float,
    slow_delay: float,
    seed: int | None,
    deduction_lag: float,
    read_timeout: float,
    max_connections: int,
) -> None:
    """Run the local stand-in of the billing API until Ctrl+C (or SIGTERM)."""
    try:
        from ..devserver import DatabaseError, DevServer
    except ImportError as error:
        raise click.ClickException(
            f"the dev server needs the 'server' extra: pip install 'dodo-ingest[server]' ({error})"
        ) from None
    try:
        server = DevServer(
            api_key=api_key,
            db=db,
            host=host,
            port=port,
            faults=faults,
            retry_after=retry_after,
            seed=seed,
            slow_delay=slow_delay,
            deduction_lag=deduction_lag,
            read_timeout=read_timeout,
            max_connections=max_connections,
        )
    except ValueError as error:
        raise click.BadParameter(str(error)) from None
    stop = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, request_stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        try:
            server.start()
        except DatabaseError as error:
            raise click.ClickException(f"--db: {error}") from None
        except OSError as error:
            raise click.ClickException(f"cannot listen on {host}:{port}: {error}") from None
        click.echo(f"dodo-ingest dev server on {server.base_url} (db {db})", err=True)
        click.echo(
            f"  export DODO_PAYMENTS_BASE_URL={server.base_url}"
            + ("" if api_key else " DODO_PAYMENTS_API_KEY=dev"),
            err=True,
        )
        if faults:
            click.echo(f"  injecting faults: {faults} (seed {seed})", err=True)
        if deduction_lag:
            click.echo(
                f"  credit balances count usage {deduction_lag:g} s after it arrives", err=True
            )
        while not stop.wait(0.5):
            pass
    finally:
        server.stop()
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    stats = server.stats
    click.echo(
        f"stopped: {stats['events_ingested']} events ingested, "
        f"{stats['duplicates_ignored']} duplicates ignored",
        err=True,
    )
