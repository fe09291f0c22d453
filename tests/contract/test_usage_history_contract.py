"""A subscription's usage history (``GET /subscriptions/{id}/usage-history``) against Prism
serving the billing API's OpenAPI document: the client's query and the models reading the
documented shapes, and ``dodo-ingest usage --subscription``, the command's report on the
API."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import httpx2
import pytest
from click.testing import CliRunner

from dodo_ingest import AsyncDodoClient, DodoClient
from dodo_ingest.cli import main
from dodo_ingest.client import MeterUsage, UsagePeriod

pytestmark = pytest.mark.contract


def test_usage_history_matches_the_contract(client: DodoClient, sent: list[httpx2.Request]) -> None:
    start = datetime(2026, 11, 1, tzinfo=UTC)
    periods = list(
        client.subscriptions.usage_history(
            "sub_1", meter_id="mtr_1", start=start, end=start + timedelta(days=30), limit=3
        )
    )
    assert periods and all(isinstance(period, UsagePeriod) for period in periods)
    assert all(isinstance(meter, MeterUsage) for period in periods for meter in period.meters)
    assert periods[0].start_date.tzinfo is not None
    params = dict(sent[0].url.params)
    assert sent[0].url.path == "/subscriptions/sub_1/usage-history"
    assert params == {
        "page_number": "0",
        "page_size": "100",
        "meter_id": "mtr_1",
        "start_date": "2026-11-01T00:00:00.000Z",
        "end_date": "2026-12-01T00:00:00.000Z",
    }


@pytest.mark.anyio
async def test_async_usage_history(prism_url: str) -> None:
    async with AsyncDodoClient("test_contract_key", base_url=prism_url, max_retries=0) as c:
        periods = [p async for p in c.subscriptions.usage_history("sub_1", limit=1)]
    assert len(periods) == 1


def test_the_usage_command_reports_a_subscription(prism_url: str) -> None:
    env = {"DODO_PAYMENTS_API_KEY": "test_contract_key", "DODO_PAYMENTS_BASE_URL": prism_url}
    runner = CliRunner()
    as_json = runner.invoke(main, ["usage", "--subscription", "sub_1", "--json"], env=env)
    assert as_json.exit_code == 0, as_json.output
    assert '"consumed_units"' in as_json.stdout and '"start_date"' in as_json.stdout

    table = runner.invoke(main, ["usage", "--subscription", "sub_1"], env={**env, "COLUMNS": "80"})
    assert table.exit_code == 0, table.output
    assert table.stdout.startswith("usage of subscription sub_1: ")
    assert all(len(line) <= 80 for line in table.stdout.splitlines())
