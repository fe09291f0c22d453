"""The command group: help, entry points, lazy imports, ``demo``."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
from click.testing import CliRunner

from dodo_ingest.cli import main
from tests.cli.conftest import COMMAND

SUBCOMMANDS = [
    ["send"],
    ["events", "list"],
    ["events", "get"],
    ["meters", "list"],
    ["meters", "create"],
    ["balance"],
    ["outbox", "status"],
    ["outbox", "dead-letters"],
    ["outbox", "retry"],
    ["dev-server"],
    ["demo"],
]


def test_help_lists_every_command() -> None:
    result = CliRunner().invoke(main, ["--help"])
    assert result.exit_code == 0
    for name in ("send", "events", "meters", "balance", "outbox", "dev-server", "demo"):
        assert f"  {name} " in result.stdout


@pytest.mark.parametrize("args", SUBCOMMANDS, ids=" ".join)
def test_every_subcommand_has_help(args: list[str]) -> None:
    result = CliRunner().invoke(main, [*args, "--help"])
    assert result.exit_code == 0, result.output
    assert "Usage: main " + " ".join(args) in result.stdout


def test_help_imports_neither_rich_nor_the_http_stack() -> None:
    code = (
        "import sys\n"
        "from dodo_ingest.cli import main\n"
        "try:\n"
        "    main(['--help'])\n"
        "except SystemExit:\n"
        "    pass\n"
        "heavy = [m for m in ('rich', 'httpx2', 'dodo_ingest.delivery', 'dodo_ingest.devserver')"
        " if m in sys.modules]\n"
        "print('HEAVY', heavy)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60
    )
    assert "HEAVY []" in result.stdout, result.stdout + result.stderr


def test_the_installed_command_and_python_m_print_the_same_help() -> None:
    installed = subprocess.run([str(COMMAND), "--help"], capture_output=True, text=True, timeout=60)
    module = subprocess.run(
        [sys.executable, "-m", "dodo_ingest", "--help"], capture_output=True, text=True, timeout=60
    )
    assert installed.returncode == module.returncode == 0
    assert installed.stdout == module.stdout
    assert installed.stdout.startswith("Usage: dodo-ingest ")


def test_demo_command_runs_the_offline_demo_end_to_end() -> None:
    done = subprocess.run(
        [str(COMMAND), "demo", "--faults", "5xx=0.2,429=0.1,lost_ack=0.1"],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "COLUMNS": "120"},
    )
    assert done.returncode == 0, done.stdout + done.stderr
    assert "Usage computed by the server" in done.stdout
    assert "All usage delivered exactly once" in done.stdout


def test_demo_refuses_a_bad_fault_spec() -> None:
    result = CliRunner().invoke(main, ["demo", "--faults", "5xx=2"])
    assert result.exit_code == 2
    assert "--faults" in result.output
