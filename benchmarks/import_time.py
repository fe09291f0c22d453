"""Time ``import dodo_ingest`` in fresh interpreters (serverless cold starts pay for it).

Run: .venv/bin/python benchmarks/import_time.py [runs]

Prints the median wall time of ``python -c "import dodo_ingest"`` minus that of
``python -c "pass"`` (the interpreter's own start-up), and the same for
``from dodo_ingest import DodoClient`` (which loads the HTTP stack), over the given runs.
"""

from __future__ import annotations

import statistics
import subprocess
import sys
import time


def _median_ms(code: str, runs: int) -> float:
    samples = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-c", code], check=True)
        samples.append((time.perf_counter() - start) * 1000)
    return statistics.median(samples)


def main() -> None:
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 15
    base = _median_ms("pass", runs)
    lazy = _median_ms("import dodo_ingest", runs)
    full = _median_ms("from dodo_ingest import DodoClient", runs)
    print(f"interpreter start-up            {base:7.1f} ms")
    print(f"import dodo_ingest              {lazy - base:7.1f} ms above start-up")
    print(f"from dodo_ingest import DodoClient {full - base:4.1f} ms above start-up")


if __name__ == "__main__":
    main()
