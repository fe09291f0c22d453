"""Time ``import dodo_ingest`` in fresh interpreters (serverless cold starts pay for it).

Run: .venv/bin/python benchmarks/import_time.py [runs]

Prints the median wall time (and range) of ``python -c "import dodo_ingest"`` minus that of
``python -c "pass"`` (the interpreter's own start-up), and the same for
``from dodo_ingest import Ingestion`` (without the HTTP stack), ``from dodo_ingest import
DodoClient`` and an ``Ingestion`` built (both load the HTTP stack: what a serverless
function tracking usage pays before its first ``track()``), over the given runs.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def _samples_ms(code: str, runs: int) -> list[float]:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        samples.append((time.perf_counter() - start) * 1000)
    return samples


IMPORTS = {
    "import dodo_ingest": "import dodo_ingest",
    "from dodo_ingest import Ingestion": "from dodo_ingest import Ingestion",
    "from dodo_ingest import DodoClient": "from dodo_ingest import DodoClient",
    "... and Ingestion(...) built": (
        "from dodo_ingest import Ingestion; Ingestion(api_key='sk_test_import_time_0123456',"
        " base_url='http://127.0.0.1:9', event_name='e', shutdown_timeout=0)"
    ),
}


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    # Interleaved rounds: a busy machine slows every variant of a round alike.
    samples: dict[str, list[float]] = {"pass": [], **{name: [] for name in IMPORTS}}
    for _ in range(runs):
        samples["pass"] += _samples_ms("pass", 1)
        for name, code in IMPORTS.items():
            samples[name] += _samples_ms(code, 1)
    base = statistics.median(samples["pass"])
    print(f"interpreter start-up {base:7.1f} ms (median of {runs})")
    for name in IMPORTS:
        values = [value - base for value in samples[name]]
        print(
            f"{name:36s} {statistics.median(values):6.1f} ms above start-up "
            f"({min(values):.1f}-{max(values):.1f})"
        )


if __name__ == "__main__":
    main()
