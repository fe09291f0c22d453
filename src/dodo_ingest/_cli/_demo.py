"""``dodo-ingest demo``: the offline tour of the SDK against an embedded dev server."""

from __future__ import annotations

import click

from ._common import console

__all__ = ["demo"]


@click.command("demo")
def demo() -> None:
    """Run a scripted workload through the blueprints against an in-process dev server and
    print the totals it computed (no network, no key)."""
    try:
        from .._demo import run_demo
    except ImportError as error:
        raise click.ClickException(
            f"the demo needs the 'all' extra: pip install 'dodo-ingest[all]' ({error})"
        ) from None
    code = run_demo(console())
    if code:
        raise SystemExit(code)
