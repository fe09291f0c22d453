"""``dodo-ingest outbox status|dead-letters|retry`` on real outbox files."""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from dodo_ingest import EventInput
from dodo_ingest.delivery import Outbox
from dodo_ingest.devserver import DevServer
from tests.cli.conftest import Cli, recent, write_jsonl


def refused_by_the_api(
    cli: Cli, tmp_path: Path, make_events: Callable[..., list[dict[str, Any]]]
) -> Path:
    """An outbox holding one dead letter the dev server refused (an event 61 minutes old)."""
    events = make_events(20)
    old = {**events[0], "event_id": "too-old", "timestamp": recent(61 * 60)}
    file = write_jsonl(tmp_path / "usage.jsonl", [*events, old])
    outbox = tmp_path / "usage.db"
    result = cli("send", str(file), "--outbox", str(outbox), "--old-events", "send")
    assert result.exit_code == 1
    return outbox


def buried(outbox: Path, event_id: str) -> None:
    """Put one fresh event in ``outbox`` as a dead letter, as the sender does after a 400."""
    event = EventInput(event_id, "cus_7", "api.call", datetime.now(UTC), {"n": 1})
    with Outbox(outbox) as box:
        box.register()
        box.append(event_id, time.time(), json.dumps(event.to_dict()))
        box.bury(box.fetch(10), "HTTP 400: refused for the test", 400)


def test_status_and_dead_letters(
    cli: Cli, tmp_path: Path, make_events: Callable[..., list[dict[str, Any]]]
) -> None:
    outbox = refused_by_the_api(cli, tmp_path, make_events)

    assert cli.json("outbox", "status", str(outbox)) == {
        "path": str(outbox),
        "pending": 0,
        "dead_letters": 1,
    }
    (letter,) = cli.json("outbox", "dead-letters", str(outbox))
    assert letter["event"]["event_id"] == "too-old"
    assert letter["event"]["customer_id"] == "cus_0"
    assert letter["status_code"] == 400
    assert "older than 1 hour" in letter["reason"]
    assert letter["failed_at"].endswith("Z")

    table = cli("outbox", "dead-letters", str(outbox))
    assert table.exit_code == 0
    assert "1 dead letter(s)" in table.stdout
    assert "too-old" in table.stdout
    assert "older than 1 hour" in table.stdout
    status = cli("outbox", "status", str(outbox))
    assert "dead letters" in status.stdout


def test_retry_puts_dead_letters_back_and_delivers_them(
    cli: Cli, server: DevServer, tmp_path: Path
) -> None:
    outbox = tmp_path / "app.db"
    buried(outbox, "evt-a")
    buried(outbox, "evt-b")

    moved = cli.json("outbox", "retry", str(outbox), "evt-a")
    assert moved == {"path": str(outbox), "retried": 1}
    assert cli.json("outbox", "status", str(outbox))["pending"] == 1

    delivered = cli.json("outbox", "retry", str(outbox), "--deliver")
    assert delivered["retried"] == 1  # evt-b
    assert (delivered["delivered"], delivered["dead_lettered"], delivered["pending"]) == (2, 0, 0)
    assert sorted(server.event_ids()) == ["evt-a", "evt-b"]
    assert cli.json("outbox", "status", str(outbox)) == {
        "path": str(outbox),
        "pending": 0,
        "dead_letters": 0,
    }


def test_retry_of_an_event_the_api_refuses_again_fails(
    cli: Cli, tmp_path: Path, make_events: Callable[..., list[dict[str, Any]]]
) -> None:
    outbox = refused_by_the_api(cli, tmp_path, make_events)

    result = cli("outbox", "retry", str(outbox), "--deliver")

    assert result.exit_code == 1
    assert "1 dead letter(s)" in result.stdout
    assert "dead-lettered 1" in result.stdout
    assert cli.json("outbox", "status", str(outbox))["dead_letters"] == 1


def test_a_missing_or_foreign_file_is_an_error(cli: Cli, tmp_path: Path) -> None:
    missing = cli("outbox", "status", str(tmp_path / "nope.db"))
    assert missing.exit_code == 1
    assert "no outbox at" in missing.stderr
    assert not (tmp_path / "nope.db").exists()

    foreign = tmp_path / "notes.txt"
    foreign.write_text("not a database " * 100)
    result = cli("outbox", "dead-letters", str(foreign))
    assert result.exit_code == 1
    assert "is not an outbox file" in result.stderr
