"""``dodo-ingest events|meters|balance``: tables by default, JSON with --json."""

from __future__ import annotations

import json
from datetime import timedelta
from decimal import Decimal

import httpx2
import pytest

from dodo_ingest import DodoClient, EventInput
from dodo_ingest.devserver import DevServer
from tests.cli.conftest import API_KEY, Cli


@pytest.fixture
def client(server: DevServer) -> DodoClient:
    return DodoClient(api_key=API_KEY, base_url=server.base_url)


def ingest(client: DodoClient, count: int, customer: str = "cus_1") -> list[str]:
    ids = [f"{customer}-e{i}" for i in range(count)]
    client.events.ingest(
        [EventInput(i, customer, "api.call", metadata={"tokens": n}) for n, i in enumerate(ids)]
    )
    return ids


def test_events_list_as_json_and_as_a_table(cli: Cli, client: DodoClient) -> None:
    ids = ingest(client, 5) + ingest(client, 2, customer="cus_2")

    everything = cli.json("events", "list")
    assert sorted(e["event_id"] for e in everything) == sorted(ids)
    first = next(e for e in everything if e["event_id"] == "cus_1-e3")
    assert set(first) == {
        "event_id",
        "business_id",
        "customer_id",
        "event_name",
        "timestamp",
        "metadata",
    }
    assert first["metadata"] == {"tokens": 3}
    assert first["timestamp"].endswith("Z")

    filtered = cli.json("events", "list", "--customer", "cus_2")
    assert sorted(e["event_id"] for e in filtered) == ["cus_2-e0", "cus_2-e1"]
    assert len(cli.json("events", "list", "--limit", "3")) == 3

    table = cli("events", "list", "--customer", "cus_2")
    assert table.exit_code == 0, table.output
    assert "2 event(s)" in table.stdout
    assert "cus_2-e1" in table.stdout
    assert "tokens=1" in table.stdout


def test_events_get(cli: Cli, client: DodoClient) -> None:
    ingest(client, 1)
    event = cli.json("events", "get", "cus_1-e0")
    assert (event["event_id"], event["customer_id"], event["metadata"]) == (
        "cus_1-e0",
        "cus_1",
        {"tokens": 0},
    )
    missing = cli("events", "get", "nope")
    assert missing.exit_code == 1
    assert missing.stderr.startswith("Error: ")
    assert "404" in missing.stderr or "not found" in missing.stderr.lower()


def test_meters_create_and_list(cli: Cli) -> None:
    created = cli.json(
        "meters",
        "create",
        "--name",
        "GPT tokens",
        "--event-name",
        "llm.call",
        "--unit",
        "tokens",
        "--aggregation",
        "sum",
        "--key",
        "totalTokens",
        "--where",
        "model",
        "equals",
        "gpt-4o",
        "--where",
        "cached",
        "equals",
        "false",
    )
    assert created["aggregation"] == {"type": "sum", "key": "totalTokens"}
    assert created["filter"] == {
        "conjunction": "and",
        "clauses": [
            {"key": "model", "operator": "equals", "value": "gpt-4o"},
            {"key": "cached", "operator": "equals", "value": False},
        ],
    }
    listed = cli.json("meters", "list")
    assert [m["id"] for m in listed] == [created["id"]]

    table = cli("meters", "list")
    assert table.exit_code == 0
    assert "sum(totalTokens)" in table.stdout
    assert created["id"] in table.stdout

    bad = cli(
        "meters",
        "create",
        "--name",
        "x",
        "--event-name",
        "e",
        "--unit",
        "u",
        "--aggregation",
        "sum",
    )
    assert bad.exit_code == 2
    assert "aggregation.key: required for 'sum' aggregation" in bad.stderr


def test_balance(cli: Cli, client: DodoClient) -> None:
    entitlement = client.credits.create_entitlement(name="AI credits", unit="credits")
    client.credits.create_ledger_entry(entitlement.id, "cus_9", amount="25.50")

    result = cli.json("balance", entitlement.id, "cus_9")
    assert result["customer_id"] == "cus_9"
    assert result["credit_entitlement_id"] == entitlement.id
    assert Decimal(result["balance"]) == Decimal("25.50")
    assert isinstance(result["balance"], str)  # exact decimal, as the API writes it

    table = cli("balance", entitlement.id, "cus_9")
    assert table.exit_code == 0
    assert "25.5" in table.stdout
    assert cli("balance", entitlement.id, "cus_unknown").exit_code == 1


def test_balance_lists_grants_with_their_expiry(
    cli: Cli, client: DodoClient, server: DevServer
) -> None:
    entitlement = client.credits.create_entitlement(name="Characters", unit="chars", precision=0)
    expires = server.clock.now() + timedelta(days=30)
    client.credits.create_ledger_entry(entitlement.id, "cus_9", amount=100)
    expiring = httpx2.post(
        f"{server.base_url}/credit-entitlements/{entitlement.id}/balances/cus_9/ledger-entries",
        headers={"Authorization": f"Bearer {API_KEY}"},
        json={"amount": "40", "entry_type": "credit", "expires_at": expires.isoformat()},
    )
    assert expiring.status_code == 201
    client.credits.create_ledger_entry(entitlement.id, "cus_9", amount=130, entry_type="debit")

    result = cli.json("balance", entitlement.id, "cus_9")
    assert result["balance"] == "10"
    grants = result["grants"]
    assert [(g["initial_amount"], g["remaining_amount"], g["status"]) for g in grants] == [
        ("100", "0", "depleted"),  # the oldest grant is drawn first
        ("40", "10", "active"),
    ]
    assert grants[0]["expires_at"] is None
    assert grants[1]["expires_at"].startswith(expires.strftime("%Y-%m-%dT%H:%M"))

    table = cli("balance", entitlement.id, "cus_9")
    assert table.exit_code == 0, table.output
    assert "2 grant(s), oldest first" in table.stdout
    rows = {
        line.split("│")[1].strip(): line for line in table.stdout.splitlines() if "cgr_" in line
    }
    assert [cell.strip() for cell in rows[grants[0]["id"]].split("│")[2:7]] == [
        "100",
        "0",
        "depleted",
        "never",
        "api",
    ]
    assert expires.strftime("%Y-%m-%dT%H:%M") in rows[grants[1]["id"]]

    server.clock.advance(days=31)
    after = cli.json("balance", entitlement.id, "cus_9")
    assert after["balance"] == "0"
    assert [g["status"] for g in after["grants"]] == ["depleted", "expired"]


def test_connection_options_and_a_key_that_is_never_printed(server: DevServer) -> None:
    wrong = "sk_test_WRONG_secret_value_987654321"
    runner_env = {"COLUMNS": "200"}
    from click.testing import CliRunner

    from dodo_ingest.cli import main

    runner = CliRunner()
    ok = runner.invoke(
        main,
        ["meters", "list", "--json", "--api-key", API_KEY, "--base-url", server.base_url],
        env=runner_env,
    )
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout) == []

    refused = runner.invoke(
        main, ["meters", "list", "--api-key", wrong, "--base-url", server.base_url], env=runner_env
    )
    assert refused.exit_code == 1
    assert "401" in refused.stderr or "unauthor" in refused.stderr.lower()
    assert wrong not in refused.output

    no_key = runner.invoke(main, ["events", "list", "--base-url", server.base_url], env=runner_env)
    assert no_key.exit_code == 2
    assert "no API key" in no_key.stderr

    bad_env = runner.invoke(main, ["events", "list", "--environment", "prod_mode"], env=runner_env)
    assert bad_env.exit_code == 2
