"""Event ids stay unique whatever the application does with :mod:`random` or ``os.fork()``, and
event times are formatted to the millisecond ``datetime`` gives."""

from __future__ import annotations

import json
import math
import random
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from dodo_ingest.blueprints import time_range
from dodo_ingest.blueprints._common import new_base_id
from dodo_ingest.client._models import format_timestamp
from dodo_ingest.delivery._ids import format_epoch, new_event_id


@pytest.fixture
def global_random() -> Iterator[None]:
    """Tests that re-seed :mod:`random` leave its state as they found it."""
    state = random.getstate()
    yield
    random.setstate(state)


def test_ids_are_evt_and_32_hex_digits_starting_with_the_unix_milliseconds() -> None:
    before = time.time_ns() // 1_000_000
    event_id = new_event_id()
    after = time.time_ns() // 1_000_000
    assert re.fullmatch(r"evt_[0-9a-f]{32}", event_id)
    assert before <= int(event_id[4:16], 16) <= after


@pytest.mark.usefixtures("global_random")
def test_reseeding_random_does_not_repeat_ids() -> None:
    ids = set()
    for _ in range(1000):
        random.seed(1234)  # what an app seeding per request (or a test suite) does
        ids.add(new_event_id())
    assert len(ids) == 1000


@pytest.mark.usefixtures("global_random")
def test_reseeding_random_does_not_repeat_stream_and_job_ids() -> None:
    ids = set()
    for _ in range(1000):
        random.seed(1234)
        ids.add(new_base_id("stream"))
    assert len(ids) == 1000


_FORK_SCRIPT = """
import json, os, random
from dodo_ingest.blueprints._common import new_base_id
from dodo_ingest.delivery._ids import new_event_id

def mint():
    random.seed(7)  # the same global state on both sides of the fork, too
    return [new_event_id()[-20:] for _ in range(200)] + [new_base_id("s") for _ in range(20)]

new_event_id()
read_end, write_end = os.pipe()
pid = os.fork()
if pid == 0:
    os.close(read_end)
    with os.fdopen(write_end, "w") as out:
        json.dump(mint(), out)
    os._exit(0)
os.close(write_end)
parent = mint()
with os.fdopen(read_end) as pipe:
    child = json.load(pipe)
_, status = os.waitpid(pid, 0)
print(json.dumps({"parent": parent, "child": child, "status": status}))
"""


@pytest.mark.skipif(not hasattr(__import__("os"), "fork"), reason="needs os.fork")
def test_a_forked_child_mints_other_ids_than_its_parent() -> None:
    # A fresh interpreter forks, so the pytest process (and its threads) is never forked.
    done = subprocess.run(
        [sys.executable, "-c", _FORK_SCRIPT], capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["status"] == 0
    parent, child = set(result["parent"]), set(result["child"])
    # Compared without the time part: the random parts alone must differ.
    assert len(parent) == len(child) == 220
    assert parent.isdisjoint(child)


def test_blueprints_and_the_sender_format_times_alike() -> None:
    assert time_range.format_epoch is format_epoch
    assert format_epoch(1700000000.123) == "2023-11-14T22:13:20.123Z"
    assert format_epoch(1700000000.0) == "2023-11-14T22:13:20.000Z"
    assert format_epoch(1700000000.9995) == "2023-11-14T22:13:20.999Z"  # truncated, as datetime
    assert format_epoch(1700000000.9999996) == "2023-11-14T22:13:21.000Z"  # µs rounds up


def test_years_before_1000_are_written_with_four_digits() -> None:
    assert format_epoch(-62135596800.0) == "0001-01-01T00:00:00.000Z"


def _expected(timestamp: float) -> str:
    """``datetime.fromtimestamp`` (microseconds rounded half to even) cut to milliseconds."""
    moment = datetime.fromtimestamp(timestamp, UTC)
    return moment.isoformat(timespec="milliseconds").replace("+00:00", "Z")


@settings(max_examples=3000, deadline=None)
@given(st.floats(min_value=-62135596800.0, max_value=253402300799.0))
def test_format_epoch_matches_datetime(timestamp: float) -> None:
    assert format_epoch(timestamp) == _expected(timestamp)


@settings(max_examples=2000, deadline=None)
@given(
    st.integers(min_value=0, max_value=2**53 // 1000 + 10),
    st.sampled_from([-0.0005, 0.0, 0.5, 0.9995, 1.0]),
    st.integers(min_value=-4, max_value=4),
    st.floats(min_value=0.0, max_value=0.999),
)
def test_format_epoch_is_exact_at_millisecond_edges(
    milli: int, edge: float, steps: int, inside: float
) -> None:
    """Times a few floats around where one millisecond's text ends and the next begins,
    formatted right after a time of the same millisecond (so the cached text is tried)."""
    first = (milli + inside) / 1000
    timestamp = (milli + edge) / 1000
    for _ in range(abs(steps)):
        timestamp = math.nextafter(timestamp, math.copysign(math.inf, steps))
    assert format_epoch(first) == _expected(first)
    assert format_epoch(timestamp) == _expected(timestamp)


@settings(max_examples=2000, deadline=None)
@given(
    st.datetimes(
        min_value=datetime(1900, 1, 1), max_value=datetime(2200, 1, 1), timezones=st.just(UTC)
    )
)
def test_the_sender_writes_a_datetime_timestamp_as_to_dict_does(moment: datetime) -> None:
    # track(timestamp=...) hands the sender moment.timestamp(); EventInput.to_dict() formats
    # the datetime itself: both must give the same text.
    assert format_epoch(moment.timestamp()) == format_timestamp(moment)
