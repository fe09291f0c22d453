"""Subscription GPU time with a fast/relax fallback after the quota (Midjourney style).

Billing model
    The subscription includes a monthly amount of fast GPU time. A job runs in fast mode (right
    away, on dedicated GPUs) when the fast time left covers the longest such a job can take
    (its kind's worst case); otherwise it runs in relax mode: queued behind other work, but
    unlimited and not charged. Time is counted per job, in whole GPU-seconds rounded up, and
    only while the GPU works on the job (not while it waits in the relax queue).

How it is built
    - Every job runs inside ``time_range(..., rounding="second")``: one ``gpu.time`` event
      with ``durationSeconds``, the ``mode`` and the job kind. The job id is the event id's
      base, so a retried job is not billed twice.
    - Meters: ``Fast GPU time`` and ``Relax GPU time`` sum ``durationSeconds`` of the events
      whose ``mode`` is ``fast`` / ``relax`` (meter filters); ``Jobs`` counts every job.
    - A ``Fast GPU time`` credit entitlement holds the plan's seconds; the fast meter draws on
      it. A ``CreditGate`` on it picks the path: ``gate.would_fit(customer, worst case)``
      chooses fast or relax without refusing anything; a fast job then reserves its worst
      case and settles the seconds it was billed, so the next decision counts it at once
      (before the billing API's balance shows it). An upscale may take up to 2 GPU-seconds,
      the other kinds 1, so an upscale falls back to relax while an imagine still fits.

Run it
    python examples/gpu_subscription.py

    Offline: an embedded dev server stands in for the billing API (or set
    DODO_PAYMENTS_BASE_URL to a running ``dodo-ingest dev-server``); the "GPU work" is a short
    sleep, so the whole run takes a few seconds. It prints one ``job`` line per job (with the
    fast seconds the gate says are left before it), then ``usage`` and ``balance`` lines.
"""

from __future__ import annotations

import math
import time

from _local import billing_api, link_meter_to_credits, print_result, print_usage

from dodo_ingest import (
    CreditGate,
    DodoClient,
    FilterCondition,
    Ingestion,
    InsufficientCreditsError,
    Meter,
    MeterAggregation,
    MeterFilter,
)
from dodo_ingest.blueprints.time_range import time_range

CUSTOMER_ID = "cus_studio_lumen"
PLAN_FAST_SECONDS = 5
RELAX_QUEUE_WAIT = 0.05  # seconds a relax job waits for a GPU (not billed)
# The longest a job of each kind runs, in billed GPU-seconds: what a fast job must fit.
WORST_CASE_SECONDS = {"imagine": 1, "vary": 1, "upscale": 2}
# (job id, kind, seconds of GPU work); every job finishes within a second, so each is
# billed 1 GPU-second.
JOBS = [
    ("job_0001", "imagine", 0.20),
    ("job_0002", "upscale", 0.05),
    ("job_0003", "vary", 0.10),
    ("job_0004", "imagine", 0.20),
    ("job_0005", "upscale", 0.05),
    ("job_0006", "imagine", 0.20),
    ("job_0007", "vary", 0.10),
    ("job_0008", "upscale", 0.05),
]


def render(kind: str, gpu_seconds: float) -> None:
    """Stand-in for the image model."""
    time.sleep(gpu_seconds)


def mode_meter(client: DodoClient, mode: str) -> Meter:
    """A meter summing GPU seconds of the jobs run in ``mode``."""
    return client.meters.create(
        name=f"{mode.capitalize()} GPU time",
        event_name="gpu.time",
        measurement_unit="GPU seconds",
        aggregation=MeterAggregation("sum", "durationSeconds"),
        filter=MeterFilter("and", (FilterCondition("mode", "equals", mode),)),
    )


def main() -> None:
    with (
        billing_api() as (base_url, api_key),
        DodoClient(api_key=api_key, base_url=base_url) as client,
    ):
        fast = mode_meter(client, "fast")
        relax = mode_meter(client, "relax")
        jobs = client.meters.create(
            name="Jobs",
            event_name="gpu.time",
            measurement_unit="jobs",
            aggregation=MeterAggregation("count"),
        )
        fast_time = client.credits.create_entitlement(
            name="Fast GPU time", unit="GPU seconds", precision=0
        )
        link_meter_to_credits(base_url, fast.id, fast_time.id, "1")
        # The plan's monthly fast time (in production: part of the subscription product).
        client.credits.create_ledger_entry(
            fast_time.id, CUSTOMER_ID, amount=PLAN_FAST_SECONDS, reason="Basic plan, monthly"
        )

        gate = CreditGate(client, credit_entitlement_id=fast_time.id)

        with Ingestion(api_key=api_key, base_url=base_url) as ingestion:
            for job_id, kind, gpu_seconds in JOBS:
                left = gate.available(CUSTOMER_ID)
                worst_case = WORST_CASE_SECONDS[kind]
                mode = "fast" if gate.would_fit(CUSTOMER_ID, worst_case) else "relax"
                hold = None
                if mode == "fast":
                    try:
                        hold = gate.reserve(CUSTOMER_ID, worst_case)
                    except InsufficientCreditsError:  # taken meanwhile by a concurrent job
                        mode = "relax"
                if mode == "relax":
                    time.sleep(RELAX_QUEUE_WAIT)  # waits for a free GPU, not billed
                started = time.monotonic()
                with time_range(
                    ingestion,
                    CUSTOMER_ID,
                    "gpu.time",
                    {"mode": mode, "kind": kind},
                    job_id=job_id,
                    rounding="second",
                ):
                    render(kind, gpu_seconds)
                if hold is not None:
                    # What time_range billed (whole seconds, rounded up), not the worst case.
                    hold.settle(math.ceil(time.monotonic() - started))
                    hold.release()
                print_result("job", id=job_id, kind=kind, mode=mode, fast_seconds_left=left)

        print_usage(base_url, {"fast-gpu-seconds": fast.id, "relax-gpu-seconds": relax.id})
        print_usage(base_url, {"jobs": jobs.id})
        balance = client.credits.balance(fast_time.id, CUSTOMER_ID)
        print_result(
            "balance",
            customer=CUSTOMER_ID,
            entitlement="fast-gpu-seconds",
            balance=balance.balance,
            overage=balance.overage,
        )


if __name__ == "__main__":
    main()
