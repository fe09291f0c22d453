"""Start and stop Prism serving the billing API's real OpenAPI document (../shared/contracts)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

CONTRACTS = Path(__file__).resolve().parents[2] / "shared" / "contracts"
SPEC = CONTRACTS / "dodo-openapi.yml"
LAUNCHER = CONTRACTS / "prism-mock.sh"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _unavailable(reason: str) -> None:
    """Skip locally; in CI (``CI`` set) a missing contract server is a failure."""
    if os.environ.get("CI"):
        pytest.fail(f"contract tests must run in CI: {reason}")
    pytest.skip(reason)


@contextmanager
def prism_server() -> Iterator[str]:
    """Serve the contract with Prism (``--lenient-metadata``) on a free port; yield its URL."""
    if not SPEC.is_file() or not LAUNCHER.is_file():
        _unavailable(f"the contract document is missing ({SPEC})")
    if shutil.which("node") is None or shutil.which("npm") is None:
        _unavailable("Node.js/npm is not installed, so Prism cannot serve the contract")
    port = _free_port()
    state_dir = Path(os.environ.get("TMPDIR", "/tmp")) / f"dodo-ingest-prism-{os.getpid()}"
    env = {**os.environ, "PYTHON": sys.executable, "STATE_DIR": str(state_dir)}
    started = subprocess.run(
        [
            "bash",
            str(LAUNCHER),
            "start",
            "-p",
            str(port),
            "-t",
            "120",
            "--lenient-metadata",
            "--",
            "-v",
            "error",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=300,
        check=False,
    )
    if started.returncode != 0:
        pytest.fail(f"Prism did not start:\n{started.stderr[-3000:]}")
    url = started.stdout.strip().splitlines()[-1]
    try:
        yield url
    finally:
        subprocess.run(
            ["bash", str(LAUNCHER), "stop", "-p", str(port)],
            capture_output=True,
            env=env,
            timeout=60,
            check=False,
        )
