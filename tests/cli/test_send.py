"""``dodo-ingest send``: backfills from JSON Lines and CSV against a real dev server."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from dodo_ingest import DodoClient
from dodo_ingest._cli import _backfill
from dodo_ingest.devserver import DevServer
from tests.cli.conftest import API_KEY, Cli, recent, write_jsonl


@pytest.mark.parametrize("kept", [True, False], ids=["parsed-once", "read-twice"])
def test_jsonl_backfill_delivers_every_event_with_an_exact_summary(
    cli: Cli,
    server: DevServer,
    tmp_path: Path,
    make_events: Callable[..., list[dict[str, Any]]],
    monkeypatch: pytest.MonkeyPatch,
    kept: bool,
) -> None:
    if not kept:  # as for a file too big to keep its records between the two passes
        monkeypatch.setattr(_backfill, "KEEP_RECORDS_BYTES", 0)
    events = make_events(2500)
    file = write_jsonl(tmp_path / "usage.jsonl", [*events, events[7], events[99]])

    summary = cli.json("send", str(file))

    assert sorted(server.event_ids()) == sorted(e["event_id"] for e in events)
    assert summary["ok"] is True
    assert summary["events_read"] == 2502
    assert summary["delivered"] == 2502
    assert summary["new"] == 2500
    assert summary["duplicates_ignored"] == 2  # the two ids present twice in the file
    assert summary["dead_lettered"] == 0
    assert summary["dropped"] == summary["unsettled"] == summary["skipped"] == 0

    again = cli.json("send", str(file))
    assert (again["delivered"], again["new"], again["duplicates_ignored"]) == (2502, 0, 2502)
    assert len(server.event_ids()) == 2500


def test_the_summary_table_and_progress_bar(
    cli: Cli, tmp_path: Path, make_events: Callable[..., list[dict[str, Any]]]
) -> None:
    file = write_jsonl(tmp_path / "usage.jsonl", make_events(1500))

    result = cli("send", str(file))

    assert result.exit_code == 0, result.output
    lines = {line.strip("│ ").split("│")[0].strip(): line for line in result.stdout.splitlines()}
    assert "1,500" in lines["delivered"]
    assert "1,500" in lines["new"]
    assert lines["duplicates ignored"].rstrip(" │").endswith(" 0")
    assert "delivered" in result.stderr  # the progress bar's last state
    assert "1500/1500" in result.stderr


def test_faults_are_retried_and_the_summary_stays_exact(
    cli: Cli, server: DevServer, tmp_path: Path, make_events: Callable[..., list[dict[str, Any]]]
) -> None:
    events = make_events(20_000)
    file = write_jsonl(tmp_path / "usage.jsonl", events)
    server.set_faults("5xx=0.15,lost_ack=0.15,reset=0.1", seed=3)

    summary = cli.json("send", str(file))

    stored = server.event_ids()
    assert sorted(stored) == sorted(e["event_id"] for e in events)
    assert summary["ok"] is True
    assert summary["delivered"] == 20_000
    faults = server.stats["faults_injected"]
    assert faults.get("lost_ack", 0) > 0
    # A lost acknowledgement means the server stored a batch the sender then resent: those
    # events come back as "already known", so new + duplicates still adds up exactly.
    assert summary["new"] < 20_000
    assert summary["new"] + summary["duplicates_ignored"] == 20_000
    assert server.stats["duplicates_ignored"] == summary["duplicates_ignored"]


def test_csv_column_mapping_with_typed_metadata(
    cli: Cli, server: DevServer, tmp_path: Path
) -> None:
    now = recent()
    file = tmp_path / "export.csv"
    file.write_text(
        "ref,user,kind,when,tokens,model,note\n"
        f"r-1,cus_a,llm.call,{now},120,gpt-4o,first\n"
        f"r-2,cus_b,llm.call,{now},007,o3,\n"
    )

    summary = cli.json(
        "send",
        str(file),
        "--id-column",
        "ref",
        "--customer-column",
        "user",
        "--name-column",
        "kind",
        "--timestamp-column",
        "when",
        "--metadata-column",
        "tokens:int",
        "--metadata-column",
        "model",
    )

    assert summary["new"] == 2
    with DodoClient(api_key=API_KEY, base_url=server.base_url) as client:
        first = client.events.retrieve("r-1")
        second = client.events.retrieve("r-2")
    assert (first.customer_id, first.event_name) == ("cus_a", "llm.call")
    assert first.metadata == {"tokens": 120, "model": "gpt-4o"}  # note: not a metadata column
    assert second.metadata == {"tokens": 7, "model": "o3"}


def test_csv_without_ids_gets_stable_ids_and_typed_metadata(
    cli: Cli, server: DevServer, tmp_path: Path
) -> None:
    file = tmp_path / "export.csv"
    file.write_text(
        "customer_id,timestamp,code,ratio,flag,tokens\n"
        f"cus_1,{recent()},007,1.5,true,10\n"
        f"cus_2,{recent()},x,2,false,20\n"
    )

    first = cli.json("send", str(file), "--event-name", "job.run")
    second = cli.json("send", str(file), "--event-name", "job.run")

    assert (first["new"], second["new"], second["duplicates_ignored"]) == (2, 0, 2)
    ids = server.event_ids()
    assert len(ids) == 2
    assert all(i.startswith("bf_") and len(i) == 35 for i in ids)
    events = {e["customer_id"]: e for e in cli.json("events", "list")}
    assert events["cus_1"]["metadata"] == {"code": "007", "ratio": 1.5, "flag": True, "tokens": 10}
    assert events["cus_2"]["metadata"] == {"code": "x", "ratio": 2, "flag": False, "tokens": 20}
    assert events["cus_1"]["event_name"] == "job.run"


def test_invalid_records_stop_the_command_before_anything_is_sent(
    cli: Cli, server: DevServer, tmp_path: Path, make_events: Callable[..., list[dict[str, Any]]]
) -> None:
    good = make_events(5)
    bad_metadata = {**good[0], "event_id": "too-long", "metadata": {"prompt": "x" * 501}}
    file = write_jsonl(
        tmp_path / "usage.jsonl",
        [
            *good,
            "{not json",
            {"event_name": "e", "event_id": "no-customer"},
            bad_metadata,
            {"event_name": "e", "event_id": "empty-customer", "customer_id": " "},
        ],
    )

    refused = cli("send", str(file))

    assert refused.exit_code == 2
    assert server.event_ids() == []
    assert "4 record(s) cannot be sent" in refused.stderr
    assert "line 6: not valid JSON (Expecting property name" in refused.stderr
    assert "line 7: customer_id: missing" in refused.stderr
    assert "line 9: customer_id: empty" in refused.stderr
    assert "line 8: metadata.prompt: string values must be at most 500 characters" in (
        refused.stderr
    )
    assert "--skip-invalid" in refused.stderr

    summary = cli.json("send", str(file), "--skip-invalid")
    assert summary["ok"] is True
    assert summary["skipped"] == 4
    assert [entry["line"] for entry in summary["skipped_lines"]] == [6, 7, 8, 9]
    assert sorted(server.event_ids()) == sorted(e["event_id"] for e in good)


def test_old_events_are_refused_skipped_or_sent_and_dead_lettered(
    cli: Cli, server: DevServer, tmp_path: Path, make_events: Callable[..., list[dict[str, Any]]]
) -> None:
    events = make_events(50)
    old = {**events[0], "event_id": "too-old", "timestamp": recent(61 * 60)}
    file = write_jsonl(tmp_path / "usage.jsonl", [*events, old])

    refused = cli("send", str(file))
    assert refused.exit_code == 2
    assert "1 event(s) are older than 55 minutes (oldest 61 min; line 51)" in refused.stderr
    assert server.event_ids() == []

    skipped = cli.json("send", str(file), "--old-events", "skip")
    assert skipped["ok"] is True
    assert skipped["skipped_lines"] == [{"line": 51, "reason": "old event (61 min)"}]
    assert len(server.event_ids()) == 50

    # Sent anyway, the API refuses it: a dead letter with the server's reason, exit status 1.
    result = cli("send", str(file), "--old-events", "send", "--json")
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    assert summary["ok"] is False
    assert (summary["delivered"], summary["new"], summary["dead_lettered"]) == (50, 0, 1)
    (reason,) = summary["dead_letter_reasons"]
    assert reason["count"] == 1
    assert reason["event_ids"] == ["too-old"]
    assert reason["reason"].startswith("HTTP 400:")
    assert "older than 1 hour" in reason["reason"]
    assert "too-old" not in server.event_ids()

    table = cli("send", str(file), "--old-events", "send")
    assert table.exit_code == 1
    assert "dead-lettered" in table.stdout
    assert "older than 1 hour" in table.stdout
    assert "too-old" in table.stdout


def test_a_refused_key_stops_quickly_and_is_never_printed(
    cli: Cli, server: DevServer, tmp_path: Path, make_events: Callable[..., list[dict[str, Any]]]
) -> None:
    file = write_jsonl(tmp_path / "usage.jsonl", make_events(10))
    wrong = "sk_test_WRONG_secret_value_987654321"

    result = cli("send", str(file), "--api-key", wrong, "--json", "--timeout", "20")

    assert result.exit_code == 1
    summary = json.loads(result.stdout)
    assert "HTTP 401" in summary["stopped_by"]
    assert summary["seconds"] < 10
    assert summary["unsettled"] + summary["dropped"] == 10
    assert wrong not in result.output
    assert server.event_ids() == []


def test_usage_errors_exit_2(cli: Cli, tmp_path: Path) -> None:
    file = write_jsonl(tmp_path / "usage.jsonl", [{"customer_id": "c", "event_name": "e"}])

    no_key = cli("send", str(file), env={"DODO_PAYMENTS_API_KEY": ""})
    assert no_key.exit_code == 2
    assert "no API key: pass --api-key or set DODO_PAYMENTS_API_KEY" in no_key.stderr

    bad_type = cli("send", str(file), "--metadata-column", "tokens:decimal")
    assert bad_type.exit_code == 2
    assert "TYPE one of auto, str, int, float, bool" in bad_type.stderr

    missing = cli("send", str(tmp_path / "nope.jsonl"))
    assert missing.exit_code == 2

    restart = cli("send", str(file), "--restart")
    assert restart.exit_code == 2
    assert "--restart needs --outbox" in restart.stderr


def test_a_csv_without_a_mapped_column_or_a_binary_file_is_refused(
    cli: Cli, server: DevServer, tmp_path: Path
) -> None:
    file = tmp_path / "export.csv"
    file.write_text(f"user,timestamp\ncus_1,{recent()}\n")
    result = cli("send", str(file), "--event-name", "e", "--skip-invalid")
    assert result.exit_code == 2
    assert "column 'customer_id' is not in the header (user, timestamp)" in result.stderr

    binary = tmp_path / "usage.jsonl"
    binary.write_bytes(b"\xff\xfe\x00garbage\n")
    result = cli("send", str(binary))
    assert result.exit_code == 2
    assert "not UTF-8 text" in result.stderr
    assert server.event_ids() == []


def test_verbose_shows_the_sdk_log(
    cli: Cli, tmp_path: Path, make_events: Callable[..., list[dict[str, Any]]]
) -> None:
    old = {**make_events(1)[0], "event_id": "too-old", "timestamp": recent(61 * 60)}
    file = write_jsonl(tmp_path / "usage.jsonl", [old])

    quiet = cli("send", str(file), "--old-events", "send", "--no-progress")
    verbose = cli("-v", "send", str(file), "--old-events", "send", "--no-progress")

    assert quiet.exit_code == verbose.exit_code == 1
    assert "1 event(s) dead-lettered" not in quiet.stderr
    assert "1 event(s) dead-lettered" in verbose.stderr
