"""Time ``import dodo_ingest`` in fresh interpreters (serverless cold starts pay for it).

Run: .venv/bin/python benchmarks/import_time.py [runs] [--no-bytecode-cache]

Prints the median wall time (and range) of ``python -c "import dodo_ingest"`` minus that of
``python -c "pass"`` (the interpreter's own start-up), and the same for
``from dodo_ingest import Ingestion`` (without the HTTP stack), ``from dodo_ingest import
DodoClient`` (which loads the HTTP stack) and an ``Ingestion`` built, over the given runs.

The serverless cold-start figure, "start-up to the first ``track()`` returning", is timed
inside the child: from its first statement to the first ``track()`` returning, in the
caller's thread (the sender thread then loads the HTTP stack in the background). It is
printed with the whole process's wall time above start-up for the same program (which
includes the sender loading the HTTP stack and delivering at exit).

The children import from bytecode caches, as an installed package does (pip compiles it):
they write and read them under a temporary ``PYTHONPYCACHEPREFIX``, warmed by one untimed
run, even where ``PYTHONDONTWRITEBYTECODE`` is set (which makes every import compile the
source again, about two thirds of this package's import time). ``--no-bytecode-cache``
measures that case instead.
"""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import tempfile
import time

FIRST_TRACK = (
    "import time; start, cpu = time.perf_counter(), time.thread_time()\n"
    "from dodo_ingest import Ingestion\n"
    "ingestion = Ingestion(api_key='sk_test_import_time_0123456', base_url='http://127.0.0.1:9',"
    " event_name='e', shutdown_timeout=0)\n"
    "ingestion.track('cus_1', metadata={'n': 1})\n"
    "print((time.perf_counter() - start) * 1000, (time.thread_time() - cpu) * 1000)\n"
)


def _first_track_ms() -> tuple[float, float, float]:
    """In-process wall time to the first ``track()`` returning, the CPU time of the caller's
    thread meanwhile (what a busy box inflates least), and the whole process's wall time."""
    start = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-c", FIRST_TRACK], check=True, capture_output=True, text=True
    )
    wall = (time.perf_counter() - start) * 1000
    caller, cpu = (float(value) for value in done.stdout.split()[-2:])
    return caller, cpu, wall


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
    args = [arg for arg in sys.argv[1:] if not arg.startswith("--")]
    runs = int(args[0]) if args else 15
    cache = tempfile.TemporaryDirectory()
    if "--no-bytecode-cache" in sys.argv:
        os.environ["PYTHONDONTWRITEBYTECODE"] = "1"
    else:
        os.environ.pop("PYTHONDONTWRITEBYTECODE", None)
        os.environ["PYTHONPYCACHEPREFIX"] = cache.name
        for code in [*IMPORTS.values(), FIRST_TRACK]:  # compiled once, before the clock
            subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
    # Interleaved rounds: a busy machine slows every variant of a round alike.
    samples: dict[str, list[float]] = {"pass": [], **{name: [] for name in IMPORTS}}
    in_thread: list[float] = []
    in_thread_cpu: list[float] = []
    whole: list[float] = []
    for _ in range(runs):
        samples["pass"] += _samples_ms("pass", 1)
        for name, code in IMPORTS.items():
            samples[name] += _samples_ms(code, 1)
        caller, cpu, wall = _first_track_ms()
        in_thread.append(caller)
        in_thread_cpu.append(cpu)
        whole.append(wall)
    base = statistics.median(samples["pass"])
    print(f"interpreter start-up {base:7.1f} ms (median of {runs})")
    for name in IMPORTS:
        values = [value - base for value in samples[name]]
        print(
            f"{name:36s} {statistics.median(values):6.1f} ms above start-up "
            f"({min(values):.1f}-{max(values):.1f})"
        )
    print(
        f"{'start-up to first track() returning':36s} {statistics.median(in_thread):6.1f} ms "
        f"in the caller's thread ({min(in_thread):.1f}-{max(in_thread):.1f})"
    )
    print(
        f"{'... its CPU time':36s} {statistics.median(in_thread_cpu):6.1f} ms "
        f"({min(in_thread_cpu):.1f}-{max(in_thread_cpu):.1f})"
    )
    process = [value - base for value in whole]
    print(
        f"{'... whole process, to exit':36s} {statistics.median(process):6.1f} ms above start-up "
        f"({min(process):.1f}-{max(process):.1f})"
    )
    print(f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    cache.cleanup()


if __name__ == "__main__":
    main()
