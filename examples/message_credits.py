"""Message credits with a daily bonus drip and a team-wide shared pool (Lovable style).

Billing model
    A workspace (a team) buys a plan with monthly message credits, and gets a small bonus of
    free credits every day on top. All members of the workspace draw on one shared pool. A
    chat message costs a fixed amount; an agent message (one that builds or edits the app)
    costs more, depending on how much work it did. When the pool cannot pay for a message,
    the message is refused until the next drip or a top-up.

How it is built
    - The workspace is the Dodo customer (``team_nimbus``); the member who sent the message
      goes into the event's metadata (``memberId``), so one balance serves the whole team and
      usage can still be broken down per member.
    - Each message tracks one ``message.sent`` event with ``credits``, ``mode`` and
      ``memberId``; its id is the message id (a retried request cannot bill twice).
    - Meters: ``Message credits`` sums ``credits`` (drawing on the ``Message credits``
      entitlement, one to one) and ``Messages`` counts messages.
    - Grants are ledger credit entries: the monthly allowance, and a daily drip whose
      idempotency key is the date, so a drip job that runs twice grants once (the second
      attempt gets 409 Conflict).
    - The per-member breakdown reads the team's events back with ``client.events.list``.

Run it
    python examples/message_credits.py

    Offline: an embedded dev server stands in for the billing API (or set
    DODO_PAYMENTS_BASE_URL to a running ``dodo-ingest dev-server``); three days are simulated
    in a few seconds. It prints ``drip``, ``message`` and ``member`` lines, then ``usage`` and
    ``balance`` lines.
"""

from __future__ import annotations

from collections import defaultdict
from decimal import Decimal

from _local import billing_api, link_meter_to_credits, print_result, print_usage

from dodo_ingest import ConflictError, DodoClient, Ingestion, MeterAggregation

TEAM_ID = "team_nimbus"
MONTHLY_CREDITS = 10
DAILY_BONUS_CREDITS = 5
CHAT_MESSAGE_CREDITS = Decimal("1")
# (day, message id, member, mode, credits of an agent message or None for chat)
MESSAGES: list[tuple[str, str, str, str, Decimal | None]] = [
    ("2026-11-23", "msg_001", "mem_ana", "agent", Decimal("1.5")),
    ("2026-11-23", "msg_002", "mem_ben", "chat", None),
    ("2026-11-23", "msg_003", "mem_ana", "agent", Decimal("2.3")),
    ("2026-11-23", "msg_004", "mem_chen", "agent", Decimal("0.9")),
    ("2026-11-24", "msg_005", "mem_ben", "agent", Decimal("3.2")),
    ("2026-11-24", "msg_006", "mem_ana", "chat", None),
    ("2026-11-24", "msg_007", "mem_chen", "agent", Decimal("4.1")),
    ("2026-11-24", "msg_008", "mem_ana", "agent", Decimal("2.6")),
    ("2026-11-24", "msg_009", "mem_ben", "agent", Decimal("1.8")),
    ("2026-11-25", "msg_010", "mem_chen", "agent", Decimal("2.4")),
    ("2026-11-25", "msg_011", "mem_ana", "agent", Decimal("5.0")),
    ("2026-11-25", "msg_012", "mem_ben", "chat", None),
    ("2026-11-25", "msg_013", "mem_ana", "agent", Decimal("1.1")),
]


def drip(client: DodoClient, entitlement_id: str, day: str) -> str:
    """The daily bonus job: grant today's free credits once, however often it runs."""
    try:
        client.credits.create_ledger_entry(
            entitlement_id,
            TEAM_ID,
            amount=DAILY_BONUS_CREDITS,
            reason=f"daily bonus {day}",
            idempotency_key=f"{TEAM_ID}-daily-{day}",
        )
    except ConflictError:
        return "already-granted"
    return "granted"


def main() -> None:
    with (
        billing_api() as (base_url, api_key),
        DodoClient(api_key=api_key, base_url=base_url) as client,
    ):
        spent = client.meters.create(
            name="Message credits",
            event_name="message.sent",
            measurement_unit="credits",
            aggregation=MeterAggregation("sum", "credits"),
        )
        messages = client.meters.create(
            name="Messages",
            event_name="message.sent",
            measurement_unit="messages",
            aggregation=MeterAggregation("count"),
        )
        pool = client.credits.create_entitlement(
            name="Message credits", unit="credits", precision=1
        )
        link_meter_to_credits(base_url, spent.id, pool.id, "1")
        client.credits.create_ledger_entry(
            pool.id,
            TEAM_ID,
            amount=MONTHLY_CREDITS,
            reason="Pro plan, monthly credits",
            idempotency_key=f"{TEAM_ID}-monthly-2026-11",
        )

        with Ingestion(api_key=api_key, base_url=base_url) as ingestion:
            today = None
            for day, message_id, member, mode, agent_credits in MESSAGES:
                if day != today:
                    today = day
                    print_result("drip", day=day, result=drip(client, pool.id, day))
                    # A second run of the scheduler on the same day grants nothing.
                    print_result("drip", day=day, result=drip(client, pool.id, day))
                cost = CHAT_MESSAGE_CREDITS if agent_credits is None else agent_credits
                left = client.credits.balance(pool.id, TEAM_ID).balance
                if left < cost:
                    print_result("message", id=message_id, member=member, status="refused")
                    continue
                # ... the message is answered here ...
                ingestion.track(
                    TEAM_ID,
                    event_name="message.sent",
                    metadata={"memberId": member, "mode": mode, "credits": float(cost)},
                    event_id=message_id,
                )
                print_result("message", id=message_id, member=member, status="sent")
                # Make the next balance check see this message (the sender would in a second).
                ingestion.flush()

        per_member: dict[str, Decimal] = defaultdict(Decimal)
        count: dict[str, int] = defaultdict(int)
        for event in client.events.list(customer_id=TEAM_ID, event_name="message.sent"):
            metadata = event.metadata or {}
            member_id = str(metadata["memberId"])
            per_member[member_id] += Decimal(str(metadata["credits"]))
            count[member_id] += 1
        for member_id in sorted(per_member):
            print_result(
                "member",
                team=TEAM_ID,
                member=member_id,
                credits=per_member[member_id],
                messages=count[member_id],
            )
        print_usage(base_url, {"message-credits": spent.id, "messages": messages.id})
        balance = client.credits.balance(pool.id, TEAM_ID)
        print_result(
            "balance",
            customer=TEAM_ID,
            entitlement="message-credits",
            balance=balance.balance,
            overage=balance.overage,
        )


if __name__ == "__main__":
    main()
