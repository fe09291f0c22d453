"""``dodo-ingest usage``: each meter's total per customer from a dev server's report, as a
table or JSON, and one line saying why not against the API."""

from __future__ import annotations

import pytest

from dodo_ingest import DodoClient, EventInput, FilterCondition, MeterAggregation, MeterFilter
from dodo_ingest._cli._usage import NO_REPORT, NO_SUBSCRIPTIONS
from dodo_ingest.devserver import DevServer
from tests.cli.conftest import API_KEY, Cli


@pytest.fixture
def meters(server: DevServer) -> dict[str, str]:
    """Two meters over three customers' events; returns the meter ids by label."""
    with DodoClient(api_key=API_KEY, base_url=server.base_url) as client:
        tokens = client.meters.create(
            name="Tokens",
            event_name="llm",
            measurement_unit="tokens",
            aggregation=MeterAggregation("sum", "tokens"),
        )
        gpt = client.meters.create(
            name="GPT calls",
            event_name="llm",
            measurement_unit="calls",
            aggregation=MeterAggregation("count"),
            filter=MeterFilter("and", [FilterCondition("model", "equals", "gpt")]),
        )
        client.events.ingest(
            [
                EventInput(f"e{i}", f"cus_{i % 3}", "llm", metadata={"tokens": i, "model": m})
                for i, m in enumerate(["gpt", "gpt", "claude", "gpt", "claude", "claude", "gpt"])
            ]
        )
    return {"tokens": tokens.id, "gpt": gpt.id}


def test_usage_totals_per_meter_and_customer(cli: Cli, meters: dict[str, str]) -> None:
    items = cli.json("usage")
    totals = {(item["meter_id"], item["customer_id"]): item for item in items}
    # tokens: cus_0 gets events 0, 3, 6; cus_1 1, 4; cus_2 2, 5
    assert {key: item["value"] for key, item in totals.items() if key[0] == meters["tokens"]} == {
        (meters["tokens"], "cus_0"): "9",
        (meters["tokens"], "cus_1"): "5",
        (meters["tokens"], "cus_2"): "7",
    }
    assert {
        key: item["event_count"] for key, item in totals.items() if key[0] == meters["gpt"]
    } == {
        (meters["gpt"], "cus_0"): 3,  # events 0, 3 and 6 are gpt
        (meters["gpt"], "cus_1"): 1,
    }
    assert totals[(meters["tokens"], "cus_0")]["measurement_unit"] == "tokens"

    one = cli.json("usage", "--customer", "cus_1", "--meter", meters["tokens"])
    assert [(item["customer_id"], item["value"]) for item in one] == [("cus_1", "5")]
    assert cli.json("usage", "--customer", "cus_nobody") == []

    table = cli("usage", "--meter", meters["gpt"])
    assert table.exit_code == 0, table.output
    assert "2 usage total(s)" in table.stdout
    assert "GPT calls" in table.stdout and "count" in table.stdout
    lines = [line for line in table.stdout.splitlines() if "cus_0" in line]
    assert len(lines) == 1 and "│ 3 " in lines[0]


def test_usage_of_an_unknown_meter_names_it(cli: Cli) -> None:
    result = cli("usage", "--meter", "mtr_missing")
    assert result.exit_code == 1
    assert "mtr_missing" in result.stderr


def test_usage_against_the_api_says_it_has_no_report(cli: Cli, server: DevServer) -> None:
    """A server without /_dev (the API: a path it does not know) gets one clear line."""
    not_dev = cli("usage", env={"DODO_PAYMENTS_BASE_URL": server.base_url + "/v1"})
    assert not_dev.exit_code == 1
    assert not_dev.stderr == f"Error: {NO_REPORT}\n"
    assert len(not_dev.stderr.rstrip("\n")) <= 80

    api = cli("usage", env={"DODO_PAYMENTS_BASE_URL": "", "DODO_PAYMENTS_ENVIRONMENT": "test_mode"})
    assert api.exit_code == 1  # no request is made: the API's hosts have no report
    assert api.stderr == f"Error: {NO_REPORT}\n"


def test_a_subscription_is_the_apis_report_not_the_dev_servers(cli: Cli) -> None:
    both = cli("usage", "--customer", "cus_1", "--subscription", "sub_1")
    assert both.exit_code == 2
    assert "give --customer or --subscription, not both" in both.stderr

    on_dev = cli("usage", "--subscription", "sub_1")
    assert on_dev.exit_code == 1
    assert on_dev.stderr == f"Error: {NO_SUBSCRIPTIONS}\n"
