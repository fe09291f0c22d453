"""The command's output fits an 80-column terminal, a pipe and a CI log.

Each command runs as a real process with ``COLUMNS=80`` and its output piped (not a
terminal), against a dev server holding data of realistic width: long event ids, several
metadata keys, meter filters, dead-letter reasons, paths longer than a line.
"""

from __future__ import annotations

import json
import os
import subprocess
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from click.testing import CliRunner

from dodo_ingest import DodoClient, EventInput, FilterCondition, MeterAggregation, MeterFilter
from dodo_ingest._cli._common import fold
from dodo_ingest.cli import main
from dodo_ingest.devserver import DevServer

from .conftest import API_KEY, COMMAND, write_jsonl

LONG_IDS = [f"llm_{index:02d}5c0f9e2b7a1d4e6f8a3b9c0d1e2f3a4b5c6d7e8f" for index in range(3)]


@pytest.fixture(scope="module")
def server() -> Iterator[DevServer]:
    with DevServer(api_key=API_KEY) as running:
        with DodoClient(api_key=API_KEY, base_url=running.base_url) as client:
            client.events.ingest(
                [
                    EventInput(
                        event_id,
                        "cus_enterprise_customer_0001",
                        "llm.chat_completion",
                        metadata={
                            "inputTokens": 1117,
                            "outputTokens": 46,
                            "totalTokens": 1163,
                            "model": "gpt-4o-mini-2024-07-18",
                            "provider": "openai",
                            "feature": "support-chat",
                        },
                    )
                    for event_id in LONG_IDS
                ]
            )
            client.meters.create(
                name="Chat tokens of paying plans",
                event_name="llm.chat_completion",
                measurement_unit="tokens",
                aggregation=MeterAggregation("sum", "totalTokens"),
                filter=MeterFilter(
                    "and",
                    [
                        FilterCondition("model", "equals", "gpt-4o-mini-2024-07-18"),
                        FilterCondition("feature", "equals", "support-chat"),
                        FilterCondition("totalTokens", "greater_than", 10),
                    ],
                ),
            )
        yield running


def run(server: DevServer, *args: str, columns: int = 80) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DODO_PAYMENTS_")}
    env.update(
        DODO_PAYMENTS_API_KEY=API_KEY,
        DODO_PAYMENTS_BASE_URL=server.base_url,
        COLUMNS=str(columns),
    )
    return subprocess.run(
        [str(COMMAND), *args], env=env, capture_output=True, text=True, timeout=120, check=False
    )


def assert_fits(output: str, columns: int = 80) -> None:
    wide = [line for line in output.splitlines() if len(line) > columns]
    assert wide == [], "\n".join(wide)


def test_events_list_fits_and_keeps_ids_whole(server: DevServer) -> None:
    done = run(server, "events", "list")
    assert done.returncode == 0, done.stderr
    assert_fits(done.stdout + done.stderr)
    lines = done.stdout.splitlines()
    for event_id in LONG_IDS:
        assert event_id in lines  # one line each, never cut
    assert any(line.strip().startswith("metadata") and "inputTokens=1117" in line for line in lines)


def test_a_wide_terminal_gets_the_table(server: DevServer) -> None:
    done = run(server, "events", "list", columns=400)
    assert done.returncode == 0, done.stderr
    header = [line for line in done.stdout.splitlines() if "event_id" in line]
    assert len(header) == 1
    assert "customer_id" in header[0] and "metadata" in header[0]
    for event_id in LONG_IDS:
        assert any(
            event_id in line and "llm.chat_completion" in line for line in done.stdout.splitlines()
        )


def test_meters_list_fits_with_its_filter(server: DevServer) -> None:
    done = run(server, "meters", "list")
    assert done.returncode == 0, done.stderr
    assert_fits(done.stdout + done.stderr)
    text = " ".join(line.strip() for line in done.stdout.splitlines())
    assert '"key": "model"' in text and "(and)" in text


def test_balance_fits(server: DevServer) -> None:
    with DodoClient(api_key=API_KEY, base_url=server.base_url) as client:
        entitlement = client.credits.create_entitlement(
            name="Prepaid credits of the enterprise plan", unit="credits"
        )
        client.credits.create_ledger_entry(
            entitlement.id, "cus_enterprise_customer_0001", amount="1250000.75"
        )
        client.credits.create_ledger_entry(
            entitlement.id, "cus_enterprise_customer_0001", amount="99.25"
        )
    done = run(server, "balance", entitlement.id, "cus_enterprise_customer_0001")
    assert done.returncode == 0, done.stderr
    assert_fits(done.stdout + done.stderr)
    assert entitlement.id in done.stdout
    assert "2 grant(s), oldest first" in done.stdout
    assert "1250000.75" in done.stdout and "never" in done.stdout


def test_usage_fits_and_keeps_names_whole(server: DevServer) -> None:
    done = run(server, "usage")
    assert done.returncode == 0, done.stderr
    assert_fits(done.stdout + done.stderr)
    lines = done.stdout.splitlines()
    assert any("Chat tokens of paying plans" in line for line in lines)
    assert any("cus_enterprise_customer_0001" in line for line in lines)
    assert any(line.split() == ["value", str(1163 * len(LONG_IDS))] for line in lines)


def test_usage_against_the_api_is_one_line_that_fits(server: DevServer) -> None:
    done = run(server, "usage", "--base-url", server.base_url + "/api")
    assert done.returncode == 1
    assert_fits(done.stderr)
    assert len(done.stderr.splitlines()) == 1


def test_send_summary_and_outbox_commands_fit(server: DevServer, tmp_path: Path) -> None:
    directory = tmp_path / "a-directory-with-a-rather-long-name" / "and-another-level-below-it"
    directory.mkdir(parents=True)
    outbox = directory / "usage-outbox-for-the-backfill.db"
    old = (datetime.now(UTC) - timedelta(hours=3)).isoformat()
    file = write_jsonl(
        directory / "usage.jsonl",
        [
            {
                "event_id": f"{LONG_IDS[0]}-old-{i}",
                "customer_id": "cus_1",
                "event_name": "e",
                "timestamp": old,
            }
            for i in range(2)
        ],
    )

    sent = run(server, "send", str(file), "--outbox", str(outbox), "--old-events", "send")
    assert sent.returncode == 1, sent.stdout + sent.stderr
    assert_fits(sent.stdout + sent.stderr)
    assert "older than 1 hour" in " ".join(sent.stdout.split())

    status = run(server, "outbox", "status", str(outbox))
    assert status.returncode == 0, status.stderr
    assert_fits(status.stdout)
    lines = status.stdout.splitlines()
    for part in outbox.parts[1:]:
        assert any(part in line for line in lines), (part, status.stdout)  # no name is cut
    assert any(line.split() == ["│", "dead", "letters", "│", "2", "│"] for line in lines)

    letters = run(server, "outbox", "dead-letters", str(outbox))
    assert letters.returncode == 0, letters.stderr
    assert_fits(letters.stdout)
    for i in range(2):
        assert f"{LONG_IDS[0]}-old-{i}" in letters.stdout


def test_json_output_is_unchanged_by_the_width(server: DevServer) -> None:
    narrow = run(server, "events", "list", "--json")
    wide = run(server, "events", "list", "--json", columns=250)
    assert json.loads(narrow.stdout) == json.loads(wide.stdout)


@pytest.mark.parametrize("width", [10, 23, 40, 80])
def test_fold_breaks_between_parts_and_keeps_every_character(width: int) -> None:
    text = (
        "outbox /var/lib/a-service-with-a-long-name/outboxes/usage-outbox.db, "
        "reason: HTTP 400: a_very_long_identifier_without_any_place_to_break_it_at_all"
    )
    lines = fold(text, width)
    assert all(len(line) <= width for line in lines)
    assert "".join(lines).replace(" ", "") == text.replace(" ", "")
    if width >= 40:  # names fit: no name is cut
        for name in ("a-service-with-a-long-name", "usage-outbox.db", "reason:"):
            assert any(name in line for line in lines), lines


@pytest.mark.parametrize(
    "command",
    [
        [],
        ["send"],
        ["events", "list"],
        ["events", "get"],
        ["meters", "list"],
        ["meters", "create"],
        ["balance"],
        ["usage"],
        ["outbox", "status"],
        ["outbox", "dead-letters"],
        ["outbox", "retry"],
        ["relay"],
        ["dev-server"],
        ["demo"],
    ],
    ids=lambda command: " ".join(command) or "dodo-ingest",
)
def test_help_fits(command: list[str]) -> None:
    result = CliRunner().invoke(main, [*command, "--help"], terminal_width=80)
    assert result.exit_code == 0, result.output
    assert len(result.output.splitlines()) > 3
    assert_fits(result.output)
