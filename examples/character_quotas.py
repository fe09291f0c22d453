"""Character quotas with tiered overage, plus the audio's stream bytes (ElevenLabs style).

Billing model
    A text-to-speech plan includes a monthly quota of characters. Characters beyond it are
    billed as overage in tiers: the first block over the quota at one price per thousand
    characters, everything after it at a lower one. The audio delivered is metered in bytes
    too (for bandwidth and fair-use reporting; it is not what the customer pays for).

How it is built
    - Each synthesis request tracks one ``tts.characters`` event with ``characters`` (the
      length of the text), the voice and the model. Its id is derived from the request id, so
      a retried request cannot bill twice.
    - The audio is streamed through ``meter_stream``: the chunks pass unchanged and one
      ``tts.audio_bytes`` event with ``bytes`` is tracked when the stream ends.
    - Meters: ``Characters`` sums ``characters``; ``Audio bytes`` sums ``bytes``.
    - At the end of the period, the overage is computed from the characters meter's total as
      the server aggregated it (``overage_usd``).

Run it
    python examples/character_quotas.py

    Offline: an embedded dev server stands in for the billing API (or set
    DODO_PAYMENTS_BASE_URL to a running ``dodo-ingest dev-server``); a stand-in synthesizer
    produces 120 bytes of audio per character. It prints ``usage`` lines and one ``invoice``
    line per customer.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal

from _local import billing_api, meter_total, print_result, print_usage

from dodo_ingest import DodoClient, Ingestion, MeterAggregation
from dodo_ingest.blueprints.stream import meter_stream

INCLUDED_CHARACTERS = 500
# (characters in the tier, or None for the rest; USD per 1,000 characters)
OVERAGE_TIERS: list[tuple[int | None, Decimal]] = [
    (500, Decimal("0.30")),
    (None, Decimal("0.24")),
]
AUDIO_BYTES_PER_CHARACTER = 120  # about 128 kbit/s MP3 at a normal speaking rate
CHUNK_BYTES = 4096

# (request id, customer, voice, text)
REQUESTS = [
    (
        "req_001",
        "cus_audiobooks",
        "narrator-deep",
        "Chapter one. The lighthouse keeper had not seen a ship in eleven days, and the "
        "silence had begun to feel like a second tide, rising each evening over the rocks.",
    ),
    (
        "req_002",
        "cus_audiobooks",
        "narrator-deep",
        "She climbed the spiral stairs at dusk, counting the steps the way her father had "
        "taught her, one hundred and twelve, and lit the lamp with hands that no longer "
        "trembled in the cold. Far below, the sea worked patiently at the foundations.",
    ),
    (
        "req_003",
        "cus_podcast",
        "host-bright",
        "Welcome back to the show! Today we are talking about sourdough starters, and why "
        "yours might be sulking in the back of the fridge.",
    ),
    (
        "req_004",
        "cus_audiobooks",
        "narrator-deep",
        "On the twelfth morning a sail appeared, grey against grey, and then another behind "
        "it, and then a whole line of them, as if the horizon had decided to come ashore all "
        "at once. She watched them through the brass telescope until her eye ached, trying "
        "to read the flags, trying to remember which colours meant trouble and which meant "
        "only weather. The radio, which had been dead since the storm, chose that moment to "
        "cough back to life with a voice she did not recognise, asking for the keeper by a "
        "name nobody had used in twenty years.",
    ),
    (
        "req_005",
        "cus_audiobooks",
        "narrator-warm",
        "Author's note. The lighthouse in this story is imaginary, but the stairs are real: "
        "one hundred and twelve of them, on a headland I will not name, climbed every "
        "evening by a keeper who let me count them with her. This book is for her, and for "
        "everyone who keeps a light burning for ships they may never see. Thank you for "
        "listening, and mind the rocks on your way home.",
    ),
]


def synthesize(text: str) -> Iterator[bytes]:
    """Stand-in for the TTS engine: audio chunks for ``text``."""
    remaining = len(text) * AUDIO_BYTES_PER_CHARACTER
    while remaining > 0:
        size = min(CHUNK_BYTES, remaining)
        remaining -= size
        yield b"\xff" * size


def overage_usd(characters: Decimal) -> Decimal:
    """The overage charge for a period's character total, tier by tier."""
    over = max(characters - INCLUDED_CHARACTERS, Decimal(0))
    charge = Decimal(0)
    for size, price_per_thousand in OVERAGE_TIERS:
        in_tier = over if size is None else min(over, Decimal(size))
        charge += in_tier * price_per_thousand / 1000
        over -= in_tier
    return charge.quantize(Decimal("0.01"), rounding=ROUND_HALF_UP)


def main() -> None:
    with (
        billing_api() as (base_url, api_key),
        DodoClient(api_key=api_key, base_url=base_url) as client,
    ):
        characters = client.meters.create(
            name="Characters",
            event_name="tts.characters",
            measurement_unit="characters",
            aggregation=MeterAggregation("sum", "characters"),
        )
        audio = client.meters.create(
            name="Audio bytes",
            event_name="tts.audio_bytes",
            measurement_unit="bytes",
            aggregation=MeterAggregation("sum", "bytes"),
        )

        with Ingestion(api_key=api_key, base_url=base_url) as ingestion:
            for request_id, customer_id, voice, text in REQUESTS:
                ingestion.track(
                    customer_id,
                    event_name="tts.characters",
                    metadata={"characters": len(text), "voice": voice, "model": "tts-v3"},
                    event_id=f"{request_id}:characters",
                )
                # The HTTP response body in a real server; a buffer here.
                response_body = io.BytesIO()
                with meter_stream(
                    ingestion,
                    customer_id,
                    "tts.audio_bytes",
                    {"voice": voice, "format": "mp3_44100_128"},
                    stream_id=f"{request_id}:audio",
                ) as meter:
                    for chunk in meter.wrap(synthesize(text)):
                        response_body.write(chunk)
            # Leaving the block flushed every event to the billing API.

        print_usage(base_url, {"characters": characters.id, "audio-bytes": audio.id})
        for customer_id in sorted({request[1] for request in REQUESTS}):
            total = meter_total(base_url, characters.id, customer_id)
            print_result(
                "invoice",
                customer=customer_id,
                characters=total,
                included=INCLUDED_CHARACTERS,
                overage_characters=max(total - INCLUDED_CHARACTERS, 0),
                overage_usd=overage_usd(total),
            )


if __name__ == "__main__":
    main()
