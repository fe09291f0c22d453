"""Fixtures of the command tests: a dev server, a runner of the command, event files."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from dodo_ingest.cli import main
from dodo_ingest.devserver import DevServer

API_KEY = "sk_test_SECRET_cli_key_0123456789"
COMMAND = Path(sys.executable).with_name("dodo-ingest")
ENV_VARS = ("DODO_PAYMENTS_API_KEY", "DODO_PAYMENTS_BASE_URL", "DODO_PAYMENTS_ENVIRONMENT")


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    """No DODO_PAYMENTS_* from the developer's shell leaks into a test."""
    for name in ENV_VARS:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[DevServer]:
    """A dev server on a free port that accepts only :data:`API_KEY`."""
    with DevServer(api_key=API_KEY) as running:
        yield running


@dataclass
class Cli:
    """Runs ``dodo-ingest`` in-process (click's CliRunner) with the server's settings."""

    env: dict[str, str]

    def __call__(self, *args: str, env: dict[str, str] | None = None) -> Result:
        runner = CliRunner()
        return runner.invoke(
            main, list(args), env={**self.env, **(env or {})}, catch_exceptions=False
        )

    def json(self, *args: str) -> Any:
        """Run with ``--json``, check exit status 0 and return the parsed output."""
        result = self(*args, "--json")
        assert result.exit_code == 0, result.output
        return json.loads(result.stdout)


@pytest.fixture
def cli(server: DevServer) -> Cli:
    """The command pointed at :func:`server` through the environment variables."""
    return Cli(
        {
            "DODO_PAYMENTS_API_KEY": API_KEY,
            "DODO_PAYMENTS_BASE_URL": server.base_url,
            "COLUMNS": "250",
        }
    )


def recent(seconds_ago: float = 0.0) -> str:
    """An RFC 3339 time ``seconds_ago`` before now (inside the API's window when small)."""
    return (datetime.now(UTC) - timedelta(seconds=seconds_ago)).isoformat()


def write_jsonl(path: Path, records: Sequence[dict[str, Any] | str]) -> Path:
    """Write records (objects, or raw lines) as JSON Lines."""
    with path.open("w", encoding="utf-8") as file:
        for record in records:
            file.write((record if isinstance(record, str) else json.dumps(record)) + "\n")
    return path


@pytest.fixture
def make_events() -> Callable[..., list[dict[str, Any]]]:
    """``make_events(n, prefix)``: n events in the API's shape with ids ``{prefix}-{i}``."""

    def make(count: int, prefix: str = "evt", customers: int = 3) -> list[dict[str, Any]]:
        now = recent()
        return [
            {
                "event_id": f"{prefix}-{i}",
                "customer_id": f"cus_{i % customers}",
                "event_name": "api.call",
                "timestamp": now,
                "metadata": {"tokens": i, "model": "m1"},
            }
            for i in range(count)
        ]

    return make
