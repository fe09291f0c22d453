"""The ``dodo-ingest`` command (needs the ``cli`` extra: click and rich).

Subcommands live in :mod:`dodo_ingest._cli`, one module per command group; each imports its
heavy dependencies only when it runs.
"""

from __future__ import annotations

import logging

import click

from ._cli._api import balance, events, meters
from ._cli._demo import demo
from ._cli._devserver import dev_server
from ._cli._outbox import outbox
from ._cli._relay import relay
from ._cli._send import send
from ._cli._usage import usage

__all__ = ["main"]


@click.group()
@click.version_option(package_name="dodo-ingest")
@click.option(
    "-v", "--verbose", is_flag=True, help="Show the SDK's log (retries, pauses) on stderr."
)
def main(verbose: bool) -> None:
    """dodo-ingest: usage-based billing on the Dodo Payments billing API.

    Commands that call the API take --api-key, --base-url and --environment, defaulting to
    DODO_PAYMENTS_API_KEY, DODO_PAYMENTS_BASE_URL and DODO_PAYMENTS_ENVIRONMENT.
    """
    logger = logging.getLogger("dodo_ingest")
    level = logger.level
    handler: logging.Handler
    if verbose:
        from rich.logging import RichHandler

        from ._cli._common import console

        handler = RichHandler(console=console(stderr=True), show_path=False)
        logger.setLevel(logging.INFO)
    else:  # the SDK's warnings would garble the progress bar; the summary reports them
        handler = logging.NullHandler()
    logger.addHandler(handler)

    def restore() -> None:
        logger.removeHandler(handler)
        logger.setLevel(level)

    click.get_current_context().call_on_close(restore)


for command in (send, events, meters, usage, balance, outbox, relay, dev_server, demo):
    main.add_command(command)
