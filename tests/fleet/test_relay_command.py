"""``dodo-ingest relay URL`` and ``dodo-ingest outbox status|dead-letters|retry URL`` on a
Redis stream (real ``redis-server``, real dev server over HTTP; the relay runs as a real
process where a signal stops it)."""

from __future__ import annotations

import json
import signal
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from click.testing import CliRunner, Result

from dodo_ingest import Ingestion
from dodo_ingest.cli import main
from dodo_ingest.delivery import RedisOutbox, Relay
from dodo_ingest.devserver import DevServer
from tests._redis import _free_port
from tests.fleet._fleet import (
    API_KEY,
    GROUP,
    Process,
    RelayProcess,
    held,
    stream_body,
    wait_until,
)

STREAM = "cmd-usage"
REFUSED = "evt_refused"


@pytest.fixture(autouse=True)
def _clean_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("DODO_PAYMENTS_API_KEY", "DODO_PAYMENTS_BASE_URL", "DODO_PAYMENTS_ENVIRONMENT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def server() -> Iterator[DevServer]:
    """A dev server that accepts only :data:`API_KEY`."""
    with DevServer(api_key=API_KEY) as running:
        yield running


@pytest.fixture
def url(redis_server) -> str:
    return f"{redis_server.url}?stream={STREAM}"


def run(*args: str) -> Result:
    """``dodo-ingest ARGS`` in this process (click's runner); exceptions are not caught, so
    a traceback fails the test."""
    return CliRunner().invoke(main, list(args), env={"COLUMNS": "250"}, catch_exceptions=False)


def run_json(*args: str) -> Any:
    result = run(*args, "--json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def produce(url: str, count: int, customer: str = "cus_1") -> list[str]:
    with Ingestion(outbox=url, deliver=False, event_name="fleet.call") as producer:
        return [producer.track(customer, metadata={"n": n}) for n in range(count)]


def refused_body() -> str:
    """An event the API refuses (400: a metadata value longer than 500 characters), as a
    producer that does not check it would write it."""
    body = json.loads(stream_body(REFUSED))
    body["metadata"] = {"prompt": "x" * 600}
    return json.dumps(body)


def bury(url: str, *event_ids: str) -> None:
    """Make dead letters of valid events, as a relay does when it gives up on them."""
    with RedisOutbox(url, consumer="gave-up") as box:
        box.register()
        for event_id in event_ids:
            box.append(event_id, time.time(), stream_body(event_id))
        box.bury(box.fetch(100), "HTTP 503: gave up for the test", 503)
        box.release()


# --- the relay command --------------------------------------------------------------------------


def test_the_relay_delivers_prints_json_counters_and_stops_on_sigterm(
    redis_server, server, url, tmp_path
):
    ids = produce(url, 1_500)
    client = redis_server.client()
    with RelayProcess(url, server.base_url, tmp_path, "relay-1", stats_interval=0.1) as relay:
        assert relay.started() == {"relay": "relay-1", "stream": STREAM, "group": GROUP}
        counters = relay.wait_counters(
            lambda c: c["delivered"] == 1_500 and c["pending"] == 0, "1,500 delivered"
        )
        assert counters == {
            "received": 1_500,
            "claimed": 0,
            "delivered": 1_500,
            "ingested": 1_500,
            "retried": 0,
            "dead_lettered": 0,
            "pending": 0,
            "lag": 0,
            "dead_letters": 0,
        }
        more = produce(url, 20, customer="cus_2")  # delivered while it runs
        relay.wait_counters(
            lambda c: c["delivered"] == 1_520 and c["pending"] == 0, "the next 20 delivered"
        )
        lines_before = len(relay.lines)
        code, last = relay.terminate()
        assert code == 0
        assert len(relay.lines) > lines_before  # a final counters line after the signal
        assert (last["delivered"], last["dead_lettered"], last["pending"]) == (1_520, 0, 0)
        assert relay.stderr() == ""
    assert sorted(server.event_ids()) == sorted(ids + more)
    assert "relay-1" not in held(client, STREAM)  # it stopped holding nothing: it left the group


def test_the_relay_in_text_stops_on_ctrl_c(redis_server, server, url, tmp_path):
    ids = produce(url, 5)
    argv = [sys.executable, "-m", "dodo_ingest", "relay", url, "--consumer", "relay-txt"]
    argv += ["--stats-interval", "0.1", "--base-url", server.base_url, "--api-key", API_KEY]
    with Process(argv, tmp_path, "relay-txt") as relay:
        _, first = relay.expect(lambda line: line.startswith("relay "), "its first line")
        assert first == (
            f"relay relay-txt delivering {STREAM} (group {GROUP}) from {redis_server.url}"
        )
        _, line = relay.expect(lambda text: "delivered 5," in text, "5 delivered")
        assert line.startswith("received 5, claimed 0, delivered 5, ingested 5, retried 0,")
        relay.process.send_signal(signal.SIGINT)
        assert relay.wait() == 0
        assert relay.lines[-1].startswith("received 5, claimed 0, delivered 5,")
        assert "Traceback" not in relay.stderr()
        assert API_KEY not in "\n".join(relay.lines) + relay.stderr()
    assert sorted(server.event_ids()) == sorted(ids)


def test_a_relay_started_before_redis_is_up_delivers_once_it_is(
    redis_server, server, url, tmp_path
):
    redis_server.stop()
    with RelayProcess(url, server.base_url, tmp_path, "early", stats_interval=0.1) as relay:
        relay.started()
        unknown = relay.wait_counters(lambda c: c["pending"] is None, "counters without Redis")
        assert (unknown["lag"], unknown["dead_letters"]) == (None, None)
        redis_server.start()
        ids = produce(url, 50)
        relay.wait_counters(
            lambda c: c["delivered"] == 50 and c["pending"] == 0, "50 delivered", timeout=30
        )
        code, _ = relay.terminate()
        assert code == 0
    assert sorted(server.event_ids()) == sorted(ids)


def test_a_url_that_is_not_redis_is_a_usage_error_naming_it():
    result = run("relay", "http://127.0.0.1:6379/0", "--api-key", API_KEY)
    assert result.exit_code == 2
    assert "Invalid value for URL: must be a redis://, rediss:// or unix:// URL" in result.stderr


@pytest.mark.parametrize(
    ("bad_url", "message"),
    [
        (
            "redis://127.0.0.1:notaport/0",
            "invalid Redis URL 'redis://127.0.0.1:notaport/0': Port could not be cast",
        ),
        ("redis://127.0.0.1:6379/0?claim_idle=soon", "claim_idle in the URL must be a number"),
        ("redis://127.0.0.1:6379/0?maxlen=many", "maxlen in the URL must be an int"),
        ("redis://:hunter2@127.0.0.1:notaport/0", "invalid Redis URL 'redis://:***@127.0.0.1"),
    ],
)
def test_a_bad_redis_url_is_a_usage_error_naming_it(bad_url, message):
    result = run("relay", bad_url, "--api-key", API_KEY)
    assert result.exit_code == 2
    assert f"Error: {message}" in result.stderr
    assert "Traceback" not in result.output
    assert "hunter2" not in result.output


def test_a_relay_without_an_api_key_is_a_usage_error(redis_server):
    result = run("relay", redis_server.url)
    assert result.exit_code == 2
    assert "Error: no API key: pass --api-key or set DODO_PAYMENTS_API_KEY" in result.stderr
    assert redis_server.client().exists("dodo-usage") == 0  # it did not start


# --- outbox commands on a Redis stream -----------------------------------------------------------


def test_status_shows_pending_in_flight_per_consumer_lag_and_dead_letters(redis_server, url):
    with (
        RedisOutbox(url, consumer="relay-a") as relay_a,
        RedisOutbox(url, consumer="relay-b") as relay_b,
    ):
        relay_a.register()
        for n in range(10):
            relay_a.append(f"evt_{n}", time.time(), stream_body(f"evt_{n}", n=n))
        assert len(relay_a.fetch(4)) == 4
        rows = relay_b.fetch(3)
        relay_b.bury(rows[:1], "HTTP 400: refused for the test", 400)

    status = run_json("outbox", "status", url)
    consumers = status.pop("consumers")
    oldest = status.pop("oldest_age")
    assert status == {
        "url": redis_server.url,
        "stream": STREAM,
        "group": GROUP,
        "pending": 9,
        "in_flight": 6,
        "lag": 3,
        "dead_letters": 1,
    }
    assert 0 <= oldest < 60
    assert [(c["name"], c["pending"]) for c in consumers] == [("relay-a", 4), ("relay-b", 2)]
    assert all(0 <= c["idle"] < 60 for c in consumers)

    table = run("outbox", "status", url)
    assert table.exit_code == 0
    for text in ("in flight", "lag (unread)", "dead letters", "relay-a", "relay-b", STREAM):
        assert text in table.stdout


def test_status_of_an_empty_redis(redis_server):
    status = run_json("outbox", "status", redis_server.url)
    assert status == {
        "url": redis_server.url,
        "stream": "dodo-usage",
        "group": GROUP,
        "pending": 0,
        "in_flight": 0,
        "lag": None,
        "dead_letters": 0,
        "oldest_age": None,
        "consumers": [],
    }


def test_dead_letters_lists_what_the_api_refused_and_retry_puts_it_back(redis_server, server, url):
    good = produce(url, 3)
    with RedisOutbox(url) as box:
        box.append(REFUSED, time.time(), refused_body())
    with Relay(url, api_key=API_KEY, base_url=server.base_url) as relay:
        wait_until(lambda: relay.stats.pending == 0, "the relay to settle the stream")
        assert relay.stats.dead_lettered == 1
    assert sorted(server.event_ids()) == sorted(good)

    (letter,) = run_json("outbox", "dead-letters", url)
    assert letter["event"]["event_id"] == REFUSED
    assert letter["event"]["metadata"] == {"prompt": "x" * 600}
    assert letter["status_code"] == 400
    assert "metadata" in letter["reason"]
    assert letter["reason"].startswith("HTTP 400")
    assert letter["failed_at"].endswith("Z")
    table = run("outbox", "dead-letters", url)
    assert table.exit_code == 0
    assert "1 dead letter(s)" in table.stdout
    assert REFUSED in table.stdout

    assert run_json("outbox", "retry", url, "evt_unknown") == {"path": url, "retried": 0}
    # Put back and delivered now: the API refuses it again, so it is a dead letter again
    # (exit status 1).
    again = run(
        "outbox", "retry", url, REFUSED, "--deliver", "--json", "--api-key", API_KEY,
        "--base-url", server.base_url, "--timeout", "20",
    )  # fmt: skip
    assert again.exit_code == 1, again.output
    assert json.loads(again.stdout) == {
        "path": url,
        "retried": 1,
        "delivered": 0,
        "dead_lettered": 1,
        "pending": 0,
    }
    assert [d["event"]["event_id"] for d in run_json("outbox", "dead-letters", url)] == [REFUSED]

    # Put back without delivering: the next relay will send it.
    assert run_json("outbox", "retry", url, REFUSED) == {"path": url, "retried": 1}
    status = run_json("outbox", "status", url)
    assert (status["pending"], status["lag"], status["dead_letters"]) == (1, 1, 0)
    stored = redis_server.client().xrange(STREAM)
    assert [fields[b"i"].decode() for _, fields in stored] == [REFUSED]
    assert sorted(server.event_ids()) == sorted(good)


def test_retry_with_deliver_sends_a_dead_letter_the_api_now_accepts(redis_server, server, url):
    bury(url, "evt_later")
    assert run_json("outbox", "status", url)["dead_letters"] == 1

    result = run(
        "outbox", "retry", url, "--deliver", "--json", "--api-key", API_KEY,
        "--base-url", server.base_url, "--timeout", "20",
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == {
        "path": url,
        "retried": 1,
        "delivered": 1,
        "dead_lettered": 0,
        "pending": 0,
    }
    assert server.event_ids() == ["evt_later"]
    assert run_json("outbox", "dead-letters", url) == []


def test_retry_with_deliver_also_delivers_what_was_put_back_earlier(redis_server, server, url):
    """As on an outbox file (tests/cli/test_outbox_commands.py): ``retry EVT`` puts a dead
    letter back, a later ``retry --deliver`` delivers it ("and anything else pending").

    Regression test of a bug in 6d6f324: with no dead letter moved by the call, ``flush()``
    had no stream position to wait for and returned at once, so nothing was delivered."""
    bury(url, "evt-a")
    assert run_json("outbox", "retry", url, "evt-a") == {"path": url, "retried": 1}

    result = run(
        "outbox", "retry", url, "--deliver", "--json", "--api-key", API_KEY,
        "--base-url", server.base_url, "--timeout", "20",
    )  # fmt: skip
    assert json.loads(result.stdout) == {
        "path": url,
        "retried": 0,
        "delivered": 1,
        "dead_lettered": 0,
        "pending": 0,
    }
    assert result.exit_code == 0
    assert server.event_ids() == ["evt-a"]


@pytest.mark.parametrize(
    "args",
    [["status"], ["status", "--json"], ["dead-letters"], ["retry"], ["retry", "evt_1"]],
    ids=" ".join,
)
def test_a_redis_that_cannot_be_reached_is_a_one_line_error(args):
    url = f"redis://:hunter2@127.0.0.1:{_free_port()}/0?stream={STREAM}"
    result = run("outbox", args[0], url, *args[1:])
    assert result.exit_code == 1
    assert result.stdout == ""
    assert result.stderr.startswith("Error: Redis error: ")
    assert "connecting to 127.0.0.1" in result.stderr
    assert result.stderr.count("\n") == 1
    assert "hunter2" not in result.stderr
