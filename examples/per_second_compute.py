"""Pure per-second compute, priced by hardware type (Replicate style).

Billing model
    No subscription and no credits: customers pay for the seconds their predictions run,
    at a price per second that depends on the hardware the model runs on (a CPU second is
    cheap, an A100 second is not). Every started second is billed, and a prediction that
    fails is billed for the time it ran.

How it is built
    - The worker's ``run_prediction(prediction)`` is decorated with
      ``@time_range(..., rounding="second")``: every call tracks one ``prediction.compute``
      event with ``durationSeconds`` (rounded up to whole seconds), ``status`` (``ok`` or
      ``error`` with ``errorType``) and the hardware and model. The customer, the metadata
      and the job id come from the call's argument (callables of the prediction); the job
      id makes a retried prediction idempotent.
    - Meters: one per hardware type, summing ``durationSeconds`` of its events (a meter
      filter on ``hardware``), and ``Failed predictions`` counting ``status == error``.
    - The invoice multiplies each hardware meter's total by its price per second.

Run it
    python examples/per_second_compute.py

    Offline: an embedded dev server stands in for the billing API (or set
    DODO_PAYMENTS_BASE_URL to a running ``dodo-ingest dev-server``); the "models" are short
    sleeps run by four worker threads, a few seconds in all. It prints one
    ``prediction`` line per job, then ``usage`` and ``invoice`` lines.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from decimal import Decimal

from _local import billing_api, meter_total, print_result, print_usage

from dodo_ingest import DodoClient, FilterCondition, Ingestion, MeterAggregation, MeterFilter
from dodo_ingest.blueprints.time_range import time_range

PRICE_PER_SECOND_USD = {
    "cpu": Decimal("0.000100"),
    "nvidia-t4": Decimal("0.000225"),
    "nvidia-l40s": Decimal("0.000975"),
    "nvidia-a100-80gb": Decimal("0.001400"),
}


@dataclass(frozen=True)
class Prediction:
    id: str
    owner: str
    model: str
    hardware: str
    run_seconds: float  # how long the model takes (a stand-in for real work)
    fails: bool = False


PREDICTIONS = [
    Prediction("pred_7f3a", "cus_alice", "stability-ai/sdxl", "nvidia-l40s", 0.30),
    Prediction("pred_7f3b", "cus_alice", "meta/llama-3-8b", "nvidia-a100-80gb", 1.10),
    Prediction("pred_7f3c", "cus_bob", "openai/whisper", "nvidia-t4", 0.20),
    Prediction("pred_7f3d", "cus_bob", "black-forest-labs/flux", "nvidia-l40s", 0.10, True),
    Prediction("pred_7f3e", "cus_alice", "cjwbw/rembg", "cpu", 0.05),
    Prediction("pred_7f3f", "cus_bob", "microsoft/resnet-50", "cpu", 0.10),
]


class OutOfMemoryError(RuntimeError):
    """What a model raises when the input does not fit on the GPU."""


def build_worker(ingestion: Ingestion) -> Callable[[Prediction], str]:
    """The worker function, metered per second of each call."""

    @time_range(
        ingestion,
        customer_id=lambda prediction: prediction.owner,
        event_name="prediction.compute",
        metadata=lambda prediction: {"hardware": prediction.hardware, "model": prediction.model},
        job_id=lambda prediction: prediction.id,
        rounding="second",
    )
    def run_prediction(prediction: Prediction) -> str:
        time.sleep(prediction.run_seconds)  # the model runs
        if prediction.fails:
            raise OutOfMemoryError(f"{prediction.model}: CUDA out of memory")
        return "succeeded"

    return run_prediction


def settle(run_prediction: Callable[[Prediction], str], prediction: Prediction) -> str:
    """Run one prediction; a failure is reported to the user, as the platform does."""
    try:
        return run_prediction(prediction)
    except OutOfMemoryError:
        return "failed"


def main() -> None:
    with (
        billing_api() as (base_url, api_key),
        DodoClient(api_key=api_key, base_url=base_url) as client,
    ):
        hardware_meters = {
            hardware: client.meters.create(
                name=f"Compute seconds on {hardware}",
                event_name="prediction.compute",
                measurement_unit="seconds",
                aggregation=MeterAggregation("sum", "durationSeconds"),
                filter=MeterFilter("and", (FilterCondition("hardware", "equals", hardware),)),
            ).id
            for hardware in PRICE_PER_SECOND_USD
        }
        failed = client.meters.create(
            name="Failed predictions",
            event_name="prediction.compute",
            measurement_unit="predictions",
            aggregation=MeterAggregation("count"),
            filter=MeterFilter("and", (FilterCondition("status", "equals", "error"),)),
        )

        with Ingestion(api_key=api_key, base_url=base_url) as ingestion:
            run_prediction = build_worker(ingestion)
            with ThreadPoolExecutor(max_workers=4) as workers:
                outcomes = workers.map(lambda p: settle(run_prediction, p), PREDICTIONS)
                for prediction, outcome in zip(PREDICTIONS, outcomes, strict=True):
                    print_result(
                        "prediction",
                        id=prediction.id,
                        customer=prediction.owner,
                        hardware=prediction.hardware,
                        status=outcome,
                    )

        print_usage(base_url, {f"{hw}-seconds": meter for hw, meter in hardware_meters.items()})
        print_usage(base_url, {"failed-predictions": failed.id})
        for customer_id in sorted({prediction.owner for prediction in PREDICTIONS}):
            amount = sum(
                meter_total(base_url, meter_id, customer_id) * PRICE_PER_SECOND_USD[hardware]
                for hardware, meter_id in hardware_meters.items()
            )
            print_result("invoice", customer=customer_id, usd=amount)


if __name__ == "__main__":
    main()
