"""Producer programs the lifecycle tests run as real subprocesses."""

from __future__ import annotations

import subprocess
import sys
import textwrap
from pathlib import Path

HEADER = """
import json, os, sys, time
from dodo_ingest.delivery import Ingestion
API_KEY = "sk_test_SECRET_delivery_key_0123456789"
BASE_URL = sys.argv[1]
OUTBOX = sys.argv[2] if len(sys.argv) > 2 and sys.argv[2] != "-" else None
"""


def run(
    tmp_path: Path, body: str, *args: str, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    """Run ``HEADER + body`` with ``args`` in a fresh interpreter; return the finished process."""
    script = write(tmp_path, body)
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def write(tmp_path: Path, body: str) -> Path:
    """Write ``HEADER + body`` to a script file and return its path."""
    script = tmp_path / f"producer_{abs(hash(body))}.py"
    script.write_text(HEADER + textwrap.dedent(body))
    return script
