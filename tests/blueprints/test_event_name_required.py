"""A blueprint built on an Ingestion without a default event name refuses to be built
without one: the mistake surfaces where it is written, not as failures at every event."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from dodo_ingest import EventValidationError, Ingestion
from dodo_ingest.blueprints.object_storage import meter_upload
from dodo_ingest.blueprints.stream import meter_stream
from dodo_ingest.blueprints.time_range import time_range


@pytest.fixture
def ingestion() -> Iterator[Ingestion]:
    with Ingestion(api_key="k" * 16, base_url="http://127.0.0.1:9", shutdown_timeout=0.1) as it:
        yield it


BUILDERS: list[Callable[[Ingestion], Any]] = [
    lambda ingestion: time_range(ingestion, "cus_1"),
    lambda ingestion: meter_stream(ingestion, "cus_1"),
    lambda ingestion: meter_upload(ingestion, "cus_1", b"payload"),
]


@pytest.mark.parametrize("build", BUILDERS)
def test_missing_event_name_is_refused_at_construction(
    ingestion: Ingestion, build: Callable[[Ingestion], Any]
) -> None:
    with pytest.raises(EventValidationError, match="event_name"):
        build(ingestion)
    assert ingestion.stats.enqueued == 0


def test_the_pipeline_default_is_enough() -> None:
    with Ingestion(
        api_key="k" * 16, base_url="http://127.0.0.1:9", event_name="usage", shutdown_timeout=0.1
    ) as ingestion:
        assert ingestion.event_name == "usage"
        time_range(ingestion, "cus_1")
        meter_stream(ingestion, "cus_1")
