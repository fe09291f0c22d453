"""Data that looks like rich markup is shown as it is, never interpreted."""

from __future__ import annotations

from dodo_ingest import DodoClient, EventInput
from dodo_ingest.devserver import DevServer
from tests.cli.conftest import API_KEY, Cli


def test_ids_and_metadata_with_brackets_are_printed_verbatim(cli: Cli, server: DevServer) -> None:
    with DodoClient(API_KEY, base_url=server.base_url) as client:
        client.events.ingest(
            [EventInput("evt_[/]1", "cus_[bold]x", "n", metadata={"path": "/v1/[/id]"})]
        )
    listed = cli("events", "list")
    assert listed.exit_code == 0, listed.output
    assert "evt_[/]1" in listed.stdout
    assert "cus_[bold]x" in listed.stdout
    assert 'path="/v1/[/id]"' in listed.stdout
    got = cli("events", "get", "evt_[/]1")
    assert got.exit_code == 0, got.output
    assert "event evt_[/]1" in got.stdout
