"""The command group: help, entry points, lazy imports, ``demo``."""

from __future__ import annotations

import subprocess
import sys

import pytest
from click.testing import CliRunner
from rich.console import Console

import dodo_ingest._demo
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


def test_demo_runs_the_demo_with_a_rich_console_and_exits_with_its_status(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    consoles: list[object] = []

    def run_demo(console: Console) -> int:
        consoles.append(console)
        console.print("demo ran")
        return 3

    monkeypatch.setattr(dodo_ingest._demo, "run_demo", run_demo)
    result = CliRunner().invoke(main, ["demo"])
    assert result.exit_code == 3
    assert "demo ran" in result.stdout
    assert [type(c) for c in consoles] == [Console]
