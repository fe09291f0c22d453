"""Character quotas with rollover and tiered overage, plus the audio's bytes (ElevenLabs style).

Billing model
    A text-to-speech plan includes a monthly quota of characters. On the Starter plan,
    generation is blocked once the quota cannot cover a request. The Creator plan allows
    overage up to a limit (1,000 characters beyond the quota): requests run into it until the
    limit would be passed, then they are blocked too. Overage is billed in tiers: the first
    block over the quota at one price per thousand characters, everything after it at a lower
    one. The audio delivered is metered in bytes too (for bandwidth and fair-use reporting;
    it is not what the customer pays for). Unused characters roll over into the next month,
    once; the overage is invoiced at the end of the month.

How it is built
    - Each plan is a credit entitlement in characters (precision 0) holding the monthly quota:
      ``Starter characters`` without overage, ``Creator characters`` with ``overage_enabled``,
      an ``overage_limit`` and ``overage_behavior="invoice_at_billing"``. Both have
      ``rollover_enabled`` (100 %) with ``max_rollover_count=1``. The quota is granted every
      30 days (on the dev server, a credit cycle stands in for the subscription). The
      ``Characters`` meter draws on both, one credit per character.
    - One ``CreditGate`` per plan reserves a request's characters (known before synthesis)
      for its customer. What is left is the quota, plus the overage limit still unused on the
      Creator plan, minus what the customer used; a request that does not fit raises
      ``InsufficientCreditsError`` and nothing is synthesized or billed.
    - Each synthesis request tracks one ``tts.characters`` event with ``characters`` (the
      length of the text), the voice and the model. Its id is derived from the request id, so
      a retried request cannot bill twice.
    - The audio is streamed through ``meter_stream``: the chunks pass unchanged and one
      ``tts.audio_bytes`` event with ``bytes`` is tracked when the stream ends.
    - Meters: ``Characters`` sums ``characters``; ``Audio bytes`` sums ``bytes``.
    - At the end of the period, the overage is computed from the characters meter's total as
      the server aggregated it (``overage_usd``); the server's balance shows the same overage.
    - A webhook endpoint on 127.0.0.1 (``client.webhooks.create``) receives the credit
      lifecycle events, each verified with ``Webhook`` and the endpoint's secret. The test
      clock then lets a month pass: the Starter customer's unused characters roll over
      (``credit.rolled_over``), the Creator customer's overage is invoiced
      (``credit.overage_charged``), and the new month's quota is granted.

Run it
    python examples/character_quotas.py

    Offline: an embedded dev server stands in for the billing API (or set
    DODO_PAYMENTS_BASE_URL to a running ``dodo-ingest dev-server``); a stand-in synthesizer
    produces 120 bytes of audio per character. It prints one ``request`` line per request
    (``generated``, or ``blocked`` with the characters still ``available``), then ``usage``
    lines, one ``balance month=1`` and one ``invoice`` line per customer, the ``webhook``
    lines received once the month has passed, and one ``balance month=2`` line per customer.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from decimal import ROUND_HALF_UP, Decimal

from _local import (
    LocalServer,
    advance_clock,
    billing_api,
    grant_every_month,
    link_meter_to_credits,
    meter_total,
    print_result,
    print_usage,
    wait_for_deliveries,
)
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from dodo_ingest import (
    CreditGate,
    DodoClient,
    Ingestion,
    InsufficientCreditsError,
    MeterAggregation,
)
from dodo_ingest.blueprints.stream import meter_stream
from dodo_ingest.client.webhooks import (
    CreditBalanceLowEvent,
    CreditLedgerEvent,
    Webhook,
    WebhookEvent,
    WebhookPayloadError,
    WebhookVerificationError,
)

INCLUDED_CHARACTERS = 500  # per month, on both plans
CREATOR_OVERAGE_LIMIT = 1000  # characters beyond the quota the Creator plan allows
PLANS = {"cus_audiobooks": "creator", "cus_podcast": "starter"}
# (characters in the tier, or None for the rest; USD per 1,000 characters)
OVERAGE_TIERS: list[tuple[int | None, Decimal]] = [
    (500, Decimal("0.30")),
    (None, Decimal("0.24")),
]
LIFECYCLE_EVENTS = [  # the webhooks the app acts on
    "credit.balance_low",
    "credit.rolled_over",
    "credit.rollover_forfeited",
    "credit.overage_charged",
    "credit.expired",
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
    (
        "req_006",
        "cus_podcast",
        "host-bright",
        "Segment two. A starter is a small, stubborn ecosystem of wild yeast and lactic acid "
        "bacteria, and like any ecosystem it sulks when the weather changes. Cold slows the "
        "yeast far more than the bacteria, so a starter kept in the fridge turns sour and "
        "sluggish, and the first loaf after a long rest comes out flat. The fix is boring and "
        "reliable: two or three feedings at room temperature, equal weights of flour and "
        "water, until it doubles within six hours again.",
    ),
    (
        "req_007",
        "cus_audiobooks",
        "narrator-deep",
        "Epilogue. The ships anchored in the bay for three days while the storm blew itself "
        "out, and on the fourth morning they were gone, leaving nothing behind but a crate of "
        "oranges on the jetty and a letter addressed, in careful capitals, to the keeper of "
        "the light.",
    ),
    (
        "req_008",
        "cus_podcast",
        "host-bright",
        "Quick listener question before the break: can you freeze a starter? Yes. Dry a thin "
        "layer on baking paper, crumble it into a jar, and it will keep for months.",
    ),
    (
        "req_009",
        "cus_audiobooks",
        "narrator-warm",
        "Afterword, read by the author. Thank you for staying to the very end.",
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


def webhook_receiver(received: list[WebhookEvent]) -> Starlette:
    """The app's webhook endpoint: verifies each delivery, then keeps the event.

    Set ``app.state.webhook`` (a ``Webhook`` with the endpoint's secret) before serving.
    """

    async def receive(request: Request) -> Response:
        webhook: Webhook = request.app.state.webhook
        try:
            event = webhook.unwrap(await request.body(), request.headers)
        except (WebhookVerificationError, WebhookPayloadError):
            return Response(status_code=400)
        # In production: warn on credit.balance_low, put overage_charged on the invoice,
        # show the rolled-over characters in the customer's dashboard.
        received.append(event)
        return Response(status_code=204)

    return Starlette(routes=[Route("/webhooks/dodo", receive, methods=["POST"])])


def customer_of(event: WebhookEvent) -> str:
    """The customer a credit event is about."""
    if isinstance(event, (CreditLedgerEvent, CreditBalanceLowEvent)):
        return event.data.customer_id
    return ""


def print_webhook(event: WebhookEvent) -> None:
    """One ``webhook`` line: the type, the customer and, for ledger events, the amount."""
    if isinstance(event, CreditLedgerEvent):
        print_result(
            "webhook", type=event.type, customer=event.data.customer_id, amount=event.data.amount
        )
    elif isinstance(event, CreditBalanceLowEvent):
        # The balance it names depends on how the usage was batched: not printed.
        print_result("webhook", type=event.type, customer=event.data.customer_id)


def print_balance(
    client: DodoClient, entitlements: dict[str, str], customer_id: str, month: int
) -> None:
    """One ``balance`` line: the customer's balance and overage on its plan."""
    plan = PLANS[customer_id]
    balance = client.credits.balance(entitlements[plan], customer_id)
    print_result(
        "balance",
        month=month,
        customer=customer_id,
        plan=plan,
        balance=balance.balance,
        overage=balance.overage,
    )


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
        # The plans (in production: credit entitlements attached to the plans' products).
        entitlements = {
            "starter": client.credits.create_entitlement(
                name="Starter characters",
                unit="characters",
                precision=0,
                rollover_enabled=True,
                max_rollover_count=1,
            ).id,
            "creator": client.credits.create_entitlement(
                name="Creator characters",
                unit="characters",
                precision=0,
                overage_enabled=True,
                overage_limit=str(CREATOR_OVERAGE_LIMIT),
                overage_behavior="invoice_at_billing",
                rollover_enabled=True,
                max_rollover_count=1,
            ).id,
        }
        for entitlement_id in entitlements.values():
            link_meter_to_credits(base_url, characters.id, entitlement_id, "1")
        # The webhook endpoint, registered with the credit events it handles.
        received: list[WebhookEvent] = []
        app = webhook_receiver(received)
        receiver = LocalServer(app)
        endpoint = client.webhooks.create(
            f"{receiver.url}/webhooks/dodo", filter_types=LIFECYCLE_EVENTS
        )
        app.state.webhook = Webhook(client.webhooks.secret(endpoint.id))
        for customer_id, plan in PLANS.items():  # the monthly quota of each subscriber
            grant_every_month(base_url, entitlements[plan], customer_id, INCLUDED_CHARACTERS)
        gates = {
            plan: CreditGate(client, credit_entitlement_id=entitlement_id)
            for plan, entitlement_id in entitlements.items()
        }

        with receiver, Ingestion(api_key=api_key, base_url=base_url) as ingestion:
            for request_id, customer_id, voice, text in REQUESTS:
                gate = gates[PLANS[customer_id]]
                try:
                    # The cost is known before the work: the text's length, held until the
                    # block ends and then counted as used (until the balance shows it).
                    hold = gate.reserve(customer_id, len(text))
                except InsufficientCreditsError as blocked:
                    print_result(
                        "request",
                        id=request_id,
                        customer=customer_id,
                        characters=len(text),
                        status="blocked",
                        available=blocked.available,
                    )
                    continue
                with hold:
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
                print_result(
                    "request",
                    id=request_id,
                    customer=customer_id,
                    characters=len(text),
                    status="generated",
                )
            ingestion.flush()  # every event reaches the billing API before the totals

            print_usage(base_url, {"characters": characters.id, "audio-bytes": audio.id})
            for customer_id in sorted(PLANS):
                print_balance(client, entitlements, customer_id, month=1)
                total = meter_total(base_url, characters.id, customer_id)
                print_result(
                    "invoice",
                    customer=customer_id,
                    characters=total,
                    included=INCLUDED_CHARACTERS,
                    overage_characters=max(total - INCLUDED_CHARACTERS, 0),
                    overage_usd=overage_usd(total),
                )

            # A month passes: unused characters roll over, the overage is invoiced, and the
            # new month's quota is granted; the webhooks arrive.
            advance_clock(base_url, days=30)
            wait_for_deliveries(base_url, endpoint.id)
        for event in sorted(received, key=customer_of):  # in order, customer by customer
            print_webhook(event)
        for customer_id in sorted(PLANS):
            print_balance(client, entitlements, customer_id, month=2)
        client.webhooks.delete(endpoint.id)


if __name__ == "__main__":
    main()
