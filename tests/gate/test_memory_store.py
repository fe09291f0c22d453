"""``MemoryStore`` against a plain reference model: the running totals never drift."""

from __future__ import annotations

from decimal import Decimal

from hypothesis import given, settings
from hypothesis import strategies as st

from dodo_ingest.gate import MemoryStore, Snapshot

KEY = "cent_1:cus_1"
LAG = 30.0


class Reference:
    """The rules of the store written the slow, obvious way."""

    def __init__(self) -> None:
        self.holds: dict[str, tuple[Decimal, float]] = {}
        self.usage: list[list] = []  # [at, unreflected amount], in time order
        self.snapshot: Snapshot | None = None

    def save(self, snapshot: Snapshot) -> None:
        current = self.snapshot
        if current is not None and snapshot.fetched_at < current.fetched_at:
            return
        self.snapshot = snapshot
        if current is not None and current.headroom > snapshot.headroom:
            left = current.headroom - snapshot.headroom
            for entry in sorted(self.usage, key=lambda e: e[0]):
                if entry[0] >= snapshot.fetched_at or left <= 0:
                    break
                taken = min(entry[1], left)
                entry[1] -= taken
                left -= taken

    def outstanding(self, reflected_before: float, now: float) -> Decimal:
        held = sum((a for a, until in self.holds.values() if until > now), Decimal(0))
        usage = sum((amount for at, amount in self.usage if at >= reflected_before), Decimal(0))
        return held + usage


operation = st.one_of(
    st.tuples(st.just("reserve"), st.integers(0, 40), st.integers(1, 120)),
    st.tuples(st.just("release"), st.integers(0, 30), st.integers(0, 40)),
    st.tuples(st.just("snapshot"), st.integers(0, 500), st.integers(0, 0)),
    st.tuples(st.just("tick"), st.integers(0, 50), st.integers(0, 0)),
)


@settings(max_examples=300, deadline=None)
@given(st.lists(operation, max_size=80))
def test_the_store_agrees_with_the_reference(operations):
    store, reference = MemoryStore(), Reference()
    now = 1000.0
    live: list[str] = []
    number = 0
    first = Snapshot(Decimal(200), Decimal(0), Decimal(200), now)
    store.save_snapshot(KEY, first)
    reference.save(first)
    for kind, a, b in operations:
        snapshot = reference.snapshot
        assert snapshot is not None
        reflected_before = snapshot.fetched_at - LAG
        if kind == "reserve":
            number += 1
            hold_id = f"h{number}"
            amount = Decimal(a) / 4
            available = snapshot.headroom - reference.outstanding(reflected_before, now)
            answer = store.reserve(
                KEY,
                hold_id,
                amount,
                headroom=snapshot.headroom,
                reflected_before=reflected_before,
                expires_at=now + b,
                now=now,
            )
            assert answer.available == available
            assert answer.admitted == (available >= amount)
            if answer.admitted:
                reference.holds[hold_id] = (amount, now + b)
                live.append(hold_id)
        elif kind == "release" and live:
            hold_id = live.pop(a % len(live))
            usage = Decimal(b) / 8
            store.release(KEY, hold_id, usage, now=now)
            reference.holds.pop(hold_id, None)
            if usage > 0:
                reference.usage.append([now, usage])
        elif kind == "snapshot":
            headroom = Decimal(a) / 2
            fresh = Snapshot(headroom, Decimal(0), headroom, now)
            store.save_snapshot(KEY, fresh)
            reference.save(fresh)
        elif kind == "tick":
            now += a
        snapshot = reference.snapshot
        reflected_before = snapshot.fetched_at - LAG
        assert store.outstanding(
            KEY, reflected_before=reflected_before, now=now
        ) == reference.outstanding(reflected_before, now)
