"""``dodo-ingest demo``: the offline tour of the SDK against an embedded dev server."""

from __future__ import annotations

import click

from ._common import console

__all__ = ["demo"]


@click.command("demo")
@click.option(
    "--faults",
    default=None,
    metavar="SPEC",
    help="Make the dev server fail ingest requests on purpose, e.g. "
    "5xx=0.2,429=0.1,lost_ack=0.1 (the totals stay exact).",
)
@click.option("--seed", default=7, show_default=True, type=int, help="Seed of the faults.")
def demo(faults: str | None, seed: int) -> None:
    """Run a scripted workload through the blueprints against an in-process dev server and
    print the totals it computed (no network, no key)."""
    try:
        from .._demo import run_demo
    except ImportError as error:
        raise click.ClickException(
            f"the demo needs the 'all' extra: pip install 'dodo-ingest[all]' ({error})"
        ) from None
    from ..devserver import parse_faults

    try:
        parse_faults(faults)
    except ValueError as error:
        raise click.BadParameter(str(error), param_hint="--faults") from None
    code = run_demo(console(), faults=faults, seed=seed)
    if code:
        raise SystemExit(code)
