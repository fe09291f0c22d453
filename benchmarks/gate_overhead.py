"""What a credit check costs per call: ``CreditGate`` (cached balance, in-process store and
Redis store) against the hand-written check apps do today (read the balance every call).

Every variant runs ``--calls`` times per round, ``--rounds`` rounds interleaved, against the
dev server on 127.0.0.1 (and a ``redis-server`` on 127.0.0.1 started here, when one is
installed). One call is a full check: reserve + settle + release for the gate, one
``GET .../balances/{customer}`` for the baseline. Printed: wall microseconds per call, median
and min-max over the rounds, and each variant's ratio to the baseline measured in the same
round.
Usage: ``python benchmarks/gate_overhead.py [--calls 2000] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import shutil
import statistics
import sys
import time
from collections.abc import Callable
from decimal import Decimal
from pathlib import Path

from dodo_ingest import CreditGate, DodoClient
from dodo_ingest.devserver import DevServer

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

API_KEY = "sk_test_gate_benchmark_0123456789"
COST = Decimal("0.001")


def per_call(run: Callable[[], object], calls: int) -> float:
    """Wall seconds per call of ``run``."""
    start = time.perf_counter()
    for _ in range(calls):
        run()
    return (time.perf_counter() - start) / calls


def gate_call(gate: CreditGate) -> Callable[[], object]:
    def run() -> None:
        with gate.reserve("cus_bench", COST) as hold:
            hold.settle(COST)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    redis_server = None
    with DevServer() as server, DodoClient(api_key=API_KEY, base_url=server.base_url) as client:
        credits = client.credits.create_entitlement(name="Credits", unit="credits", precision=6)
        client.credits.create_ledger_entry(credits.id, "cus_bench", amount="100000000")
        variants: dict[str, Callable[[], object]] = {
            "hand-written: read the balance per call": lambda: client.credits.balance(
                credits.id, "cus_bench"
            ),
            "CreditGate, in-process store": gate_call(
                CreditGate(client, credit_entitlement_id=credits.id, refresh_interval=3600)
            ),
        }
        try:
            from dodo_ingest.gate._redis_store import RedisStore
        except ImportError:
            RedisStore = None
        if RedisStore is not None and shutil.which("redis-server"):
            from tests._redis import RedisServer

            redis_server = RedisServer(appendfsync="everysec")
            redis_server.start()
            store = RedisStore(redis_server.url)
            variants["CreditGate, Redis store (everysec)"] = gate_call(
                CreditGate(
                    client,
                    credit_entitlement_id=credits.id,
                    refresh_interval=3600,
                    store=store,
                )
            )
        else:
            print("(no Redis store or no redis-server: the Redis variant is skipped)")
        try:
            for run in variants.values():  # warm up: the first balance read, connections
                per_call(run, 50)
            results: dict[str, list[float]] = {name: [] for name in variants}
            ratios: dict[str, list[float]] = {name: [] for name in variants}
            baseline = next(iter(variants))
            for _ in range(args.rounds):
                measured = {name: per_call(run, args.calls) for name, run in variants.items()}
                for name, seconds in measured.items():
                    results[name].append(seconds * 1e6)
                    ratios[name].append(measured[baseline] / seconds)
            print(f"{args.calls} calls x {args.rounds} rounds, us per call: median (min-max)")
            for name, values in results.items():
                ratio = statistics.median(ratios[name])
                print(
                    f"  {name:42s} {statistics.median(values):9.1f} "
                    f"({min(values):.1f}-{max(values):.1f})   "
                    f"{ratio:6.1f}x faster than the hand-written check"
                )
        finally:
            if redis_server is not None:
                redis_server.cleanup()


if __name__ == "__main__":
    main()
