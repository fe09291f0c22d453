"""Every program in ``examples/`` runs as a real subprocess and prints the exact totals.

The examples run offline: each starts its own embedded dev server, and LLM calls go through
the real provider SDKs to ``MockLLMTransport``. Expected figures are derived here from the
examples' own inputs (prompts, replies, prices, quotas) and the mock's deterministic token
counts, not copied from their output. All examples start at once, in threads, the first time a
test needs one.
"""

from __future__ import annotations

import importlib.util
import itertools
import math
import os
import subprocess
import sys
import threading
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path
from types import ModuleType

import pytest

from dodo_ingest.blueprints.llm import Price
from dodo_ingest.testing import count_tokens

EXAMPLES = Path(__file__).resolve().parents[2] / "examples"
PROGRAMS = sorted(path.name for path in EXAMPLES.glob("[!_]*.py"))
TIMEOUT = 60


@dataclass(frozen=True)
class Run:
    """What one example printed."""

    returncode: int
    stdout: str
    stderr: str

    def lines(self, kind: str) -> list[dict[str, str]]:
        """The ``kind key=value ...`` lines, as dicts, in order."""
        found = []
        for line in self.stdout.splitlines():
            head, _, rest = line.partition(" ")
            if head == kind:
                found.append(dict(field.split("=", 1) for field in rest.split()))
        return found

    def usage(self) -> dict[tuple[str, str], tuple[Decimal, int]]:
        """``(meter, customer) -> (value, events)`` from the ``usage`` lines."""
        return {
            (line["meter"], line["customer"]): (Decimal(line["value"]), int(line["events"]))
            for line in self.lines("usage")
        }

    def one(self, kind: str, **match: str) -> dict[str, str]:
        """The single ``kind`` line whose fields include ``match``."""
        found = [
            line
            for line in self.lines(kind)
            if all(line.get(key) == value for key, value in match.items())
        ]
        assert len(found) == 1, (kind, match, self.stdout)
        return found[0]


def _run(program: str, env: dict[str, str] | None = None) -> Run:
    environment = {
        key: value for key, value in os.environ.items() if not key.startswith("DODO_PAYMENTS_")
    }
    environment.update(env or {})
    completed = subprocess.run(
        [sys.executable, str(EXAMPLES / program)],
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
        env=environment,
        cwd=EXAMPLES.parent,
        check=False,
    )
    return Run(completed.returncode, completed.stdout, completed.stderr)


_pool_lock = threading.Lock()
_futures: dict[str, Future[Run]] = {}


def _start_all() -> dict[str, Future[Run]]:
    with _pool_lock:
        if not _futures:
            pool = ThreadPoolExecutor(max_workers=4, thread_name_prefix="example")
            for program in PROGRAMS:
                _futures[program] = pool.submit(_run, program)
            pool.shutdown(wait=False)
        return _futures


def example(program: str) -> Run:
    """The finished run of ``examples/<program>`` (all of them are started on first use)."""
    run = _start_all()[program].result(timeout=TIMEOUT * len(PROGRAMS))
    assert run.returncode == 0, f"{program} failed:\n{run.stdout}\n{run.stderr}"
    # Nothing on stderr: no warning, and no tracking failure logged by dodo_ingest.
    assert run.stderr == "", run.stderr
    return run


@pytest.fixture(scope="module", autouse=True)
def _examples_on_path() -> Iterator[None]:
    sys.path.insert(0, str(EXAMPLES))
    yield
    sys.path.remove(str(EXAMPLES))


def load(program: str) -> ModuleType:
    """Import an example as a module (its ``main()`` does not run) to read its inputs."""
    spec = importlib.util.spec_from_file_location(f"example_{program[:-3]}", EXAMPLES / program)
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


def words(text: str) -> int:
    """Output tokens the mock reports for a reply."""
    return len(text.split(" "))


def rounded(value: Decimal, places: int) -> Decimal:
    """A balance as the server shows it: half-up to the entitlement's precision."""
    return value.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def test_every_example_is_tested() -> None:
    tested = {name[len("test_") :] + ".py" for name in globals() if name.startswith("test_")}
    assert set(PROGRAMS) <= tested, set(PROGRAMS) - tested


def test_prepaid_fiat_credits() -> None:
    ex = load("prepaid_fiat_credits.py")
    run = example("prepaid_fiat_credits.py")
    input_price = 1 / Decimal(ex.INPUT_TOKENS_PER_USD)
    output_price = 1 / Decimal(ex.OUTPUT_TOKENS_PER_USD)
    output_tokens = words(ex.REPLY)
    assert output_tokens <= ex.MAX_OUTPUT_TOKENS  # the worst case held covers the reply
    available, served, alert = ex.TOP_UP_USD, [], None
    expected: list[tuple[int, int, Decimal | None]] = []
    for number, question in enumerate(ex.QUESTIONS, start=1):
        tokens = count_tokens(ex.SYSTEM_PROMPT + question)
        worst_case = tokens * input_price + ex.MAX_OUTPUT_TOKENS * output_price
        if worst_case > available:  # the gate refuses before the model is called
            expected.append((number, 402, available))
            continue
        expected.append((number, 200, None))
        served.append(tokens)
        before = available
        available -= tokens * input_price + output_tokens * output_price
        threshold = ex.TOP_UP_USD * ex.LOW_BALANCE_PERCENT / 100
        if alert is None and rounded(available, 6) < threshold:
            alert = rounded(available, 6)
            # Each of the request's two deductions alone leaves the balance above the
            # threshold: it is crossed by the second, whichever the server makes first.
            assert before - tokens * input_price >= threshold
            assert before - output_tokens * output_price >= threshold

    assert [
        (int(line["number"]), int(line["status"]), Decimal(line["available"]))
        if "available" in line
        else (int(line["number"]), int(line["status"]), None)
        for line in run.lines("request")
    ] == expected
    assert expected[-1][1] == 402  # the workload runs out
    assert available > 0  # refused while credits were left: the worst case did not fit
    assert run.usage() == {
        ("input-tokens", "cus_acme"): (Decimal(sum(served)), len(served)),
        ("output-tokens", "cus_acme"): (Decimal(output_tokens * len(served)), len(served)),
        # Only the requests served are billed; the refused ones are not.
        ("requests", "cus_acme"): (Decimal(len(served)), len(served)),
    }
    assert run.one("balance", customer="cus_acme") == {
        "customer": "cus_acme",
        "entitlement": "usd",
        "balance": str(rounded(available, 6)),
        "overage": "0.000000",  # the gate never lets the balance go negative
    }
    # The dev server sent credit.balance_low once, signed; the gateway verified it with the
    # endpoint's secret, and refused the same delivery with a forged body.
    assert alert is not None
    assert run.lines("webhook_delivery") == [
        {"type": "credit.balance_low", "status": "delivered", "attempts": "1"}
    ]
    webhook = run.one("webhook", type="credit.balance_low")
    assert Decimal(webhook["available_balance"]) == alert
    assert webhook["threshold_percent"] == str(ex.LOW_BALANCE_PERCENT)
    assert run.one("webhook_replay") == {"forged": "400"}


def test_model_weighted_credits() -> None:
    ex = load("model_weighted_credits.py")
    run = example("model_weighted_credits.py")
    left, expected, tokens = Decimal(ex.MONTHLY_PREMIUM_REQUESTS), [], 0
    for number, (asked, prompt) in enumerate(ex.SESSION, start=1):
        used = asked if ex.REQUEST_WEIGHTS[asked] <= left else ex.FREE_MODEL
        credits = ex.REQUEST_WEIGHTS[used]
        left -= credits
        tokens += count_tokens(prompt) + words(ex.REPLY)
        expected.append(
            {"number": str(number), "asked": asked, "used": used, "credits": str(credits)}
        )

    assert run.lines("request") == expected
    assert any(line["asked"] != line["used"] for line in expected)  # the fallback happens
    spent = sum(int(line["credits"]) for line in expected)
    customer = ex.CUSTOMER_ID
    assert run.usage() == {
        ("premium-requests", customer): (Decimal(spent), len(ex.SESSION)),
        ("requests", customer): (Decimal(len(ex.SESSION)), len(ex.SESSION)),
        ("tokens", customer): (Decimal(tokens), len(ex.SESSION)),
    }
    assert run.one("balance") == {
        "customer": customer,
        "entitlement": "premium-requests",
        "balance": str(ex.MONTHLY_PREMIUM_REQUESTS - spent),
        "overage": "0",
    }


def test_character_quotas() -> None:
    ex = load("character_quotas.py")
    run = example("character_quotas.py")
    ceiling = {  # what each plan lets a customer use in the month
        "starter": ex.INCLUDED_CHARACTERS,
        "creator": ex.INCLUDED_CHARACTERS + ex.CREATOR_OVERAGE_LIMIT,
    }
    characters: dict[str, int] = {}
    requests: dict[str, int] = {}
    expected = []
    for request_id, customer, _, text in ex.REQUESTS:
        used = characters.get(customer, 0)
        line = {"id": request_id, "customer": customer, "characters": str(len(text))}
        if used + len(text) > ceiling[ex.PLANS[customer]]:  # the gate blocks it
            left = ceiling[ex.PLANS[customer]] - used
            expected.append({**line, "status": "blocked", "available": str(left)})
            continue
        expected.append({**line, "status": "generated"})
        characters[customer] = used + len(text)
        requests[customer] = requests.get(customer, 0) + 1

    assert run.lines("request") == expected
    statuses = {(ex.PLANS[line["customer"]], line["status"]) for line in expected}
    # Starter is blocked at its quota; Creator runs into overage, then is blocked at the limit;
    # a smaller request that still fits goes through after a block.
    assert statuses == {(plan, status) for plan in ceiling for status in ("generated", "blocked")}
    assert expected[-1]["status"] == "generated"
    assert run.usage() == {
        **{
            ("characters", customer): (Decimal(total), requests[customer])
            for customer, total in characters.items()
        },
        **{
            ("audio-bytes", customer): (
                Decimal(total * ex.AUDIO_BYTES_PER_CHARACTER),
                requests[customer],
            )
            for customer, total in characters.items()
        },
    }
    (first_size, first_price), (_, second_price) = ex.OVERAGE_TIERS
    for customer, total in characters.items():
        over = max(total - ex.INCLUDED_CHARACTERS, 0)
        assert run.one("balance", customer=customer, month="1") == {
            "month": "1",
            "customer": customer,
            "plan": ex.PLANS[customer],
            "balance": str(max(ex.INCLUDED_CHARACTERS - total, 0)),
            "overage": str(over),
        }
        charge = (
            min(over, first_size) * first_price + max(over - first_size, 0) * second_price
        ) / 1000
        assert run.one("invoice", customer=customer) == {
            "customer": customer,
            "characters": str(total),
            "included": str(ex.INCLUDED_CHARACTERS),
            "overage_characters": str(over),
            "overage_usd": str(rounded(charge, 2)),
        }
    # A month later (the test clock), from the webhooks the server sent and verified by the
    # example's endpoint: what was left rolled over (once allowed, 100 %), the overage was
    # invoiced, a balance that fell below 10 % of the quota was reported once, and the new
    # month's quota was granted on top of what rolled over.
    expected_webhooks = []
    for customer in sorted(characters):
        total = characters[customer]
        left, over = ex.INCLUDED_CHARACTERS - total, total - ex.INCLUDED_CHARACTERS
        if left < ex.INCLUDED_CHARACTERS / 10:
            expected_webhooks.append({"type": "credit.balance_low", "customer": customer})
        if left > 0:
            expected_webhooks.append(
                {"type": "credit.rolled_over", "customer": customer, "amount": str(left)}
            )
        if over > 0:
            expected_webhooks.append(
                {"type": "credit.overage_charged", "customer": customer, "amount": str(over)}
            )
        assert run.one("balance", customer=customer, month="2") == {
            "month": "2",
            "customer": customer,
            "plan": ex.PLANS[customer],
            "balance": str(ex.INCLUDED_CHARACTERS + max(left, 0)),
            "overage": "0",
        }
    assert run.lines("webhook") == expected_webhooks
    assert {line["type"] for line in expected_webhooks} == {
        "credit.balance_low",
        "credit.rolled_over",
        "credit.overage_charged",
    }
    # The workload reaches the second tier (within the limit) for the Creator customer and
    # stays in quota for the Starter one.
    assert max(characters.values()) > ex.INCLUDED_CHARACTERS + first_size
    assert max(characters.values()) <= ceiling["creator"]
    assert min(characters.values()) <= ex.INCLUDED_CHARACTERS


def test_gpu_subscription() -> None:
    ex = load("gpu_subscription.py")
    run = example("gpu_subscription.py")
    left, seconds, expected = ex.PLAN_FAST_SECONDS, {"fast": 0, "relax": 0}, []
    for job_id, kind, gpu_seconds in ex.JOBS:
        mode = "fast" if ex.WORST_CASE_SECONDS[kind] <= left else "relax"
        billed = math.ceil(gpu_seconds)  # rounding="second" bills each started second
        assert billed <= ex.WORST_CASE_SECONDS[kind]
        expected.append({"id": job_id, "kind": kind, "mode": mode, "fast_seconds_left": str(left)})
        seconds[mode] += billed
        if mode == "fast":
            left -= billed

    assert run.lines("job") == expected
    modes = [job["mode"] for job in expected]
    customer = ex.CUSTOMER_ID
    assert run.usage() == {
        ("fast-gpu-seconds", customer): (Decimal(seconds["fast"]), modes.count("fast")),
        ("relax-gpu-seconds", customer): (Decimal(seconds["relax"]), modes.count("relax")),
        ("jobs", customer): (Decimal(len(ex.JOBS)), len(ex.JOBS)),
    }
    assert modes.count("relax") > 0  # the quota runs out during the run
    # A job that needs more than is left falls back to relax while a smaller one still fits.
    assert any(
        later["mode"] == "fast" and earlier["mode"] == "relax"
        for earlier, later in itertools.pairwise(expected)
    )
    assert run.one("balance") == {
        "customer": customer,
        "entitlement": "fast-gpu-seconds",
        "balance": str(left),
        "overage": "0",  # fast time never goes past the plan
    }


def test_per_second_compute() -> None:
    ex = load("per_second_compute.py")
    run = example("per_second_compute.py")
    seconds: dict[tuple[str, str], int] = {}
    runs: dict[tuple[str, str], int] = {}
    invoices: dict[str, Decimal] = {}
    for prediction in ex.PREDICTIONS:
        key = (f"{prediction.hardware}-seconds", prediction.owner)
        billed = math.ceil(prediction.run_seconds)  # every started second, failures included
        seconds[key] = seconds.get(key, 0) + billed
        runs[key] = runs.get(key, 0) + 1
        price = ex.PRICE_PER_SECOND_USD[prediction.hardware]
        invoices[prediction.owner] = invoices.get(prediction.owner, Decimal(0)) + billed * price
    failures = [p for p in ex.PREDICTIONS if p.fails]

    assert run.lines("prediction") == [
        {
            "id": p.id,
            "customer": p.owner,
            "hardware": p.hardware,
            "status": "failed" if p.fails else "succeeded",
        }
        for p in ex.PREDICTIONS
    ]
    assert run.usage() == {
        **{key: (Decimal(total), runs[key]) for key, total in seconds.items()},
        ("failed-predictions", failures[0].owner): (Decimal(len(failures)), len(failures)),
    }
    assert max(seconds.values()) > 1  # one prediction runs into a second second
    assert {line["customer"]: Decimal(line["usd"]) for line in run.lines("invoice")} == invoices


def test_message_credits() -> None:
    ex = load("message_credits.py")
    run = example("message_credits.py")
    pool = Decimal(ex.MONTHLY_CREDITS)
    days, statuses = [], []
    per_member: dict[str, list[Decimal]] = {}
    for day, message_id, member, _, agent_credits in ex.MESSAGES:
        if day not in days:
            days.append(day)
            pool += ex.DAILY_BONUS_CREDITS
        cost = ex.CHAT_MESSAGE_CREDITS if agent_credits is None else agent_credits
        if pool < cost:
            statuses.append({"id": message_id, "member": member, "status": "refused"})
            continue
        pool -= cost
        per_member.setdefault(member, []).append(cost)
        statuses.append({"id": message_id, "member": member, "status": "sent"})

    assert run.lines("drip") == [
        {"day": day, "result": result} for day in days for result in ("granted", "already-granted")
    ]
    assert run.lines("message") == statuses
    assert any(line["status"] == "refused" for line in statuses)  # the pool runs dry once
    members = {
        line["member"]: (Decimal(line["credits"]), int(line["messages"]))
        for line in run.lines("member")
    }
    assert members == {m: (sum(costs), len(costs)) for m, costs in per_member.items()}
    sent = sum(len(costs) for costs in per_member.values())
    spent = sum(sum(costs) for costs in per_member.values())
    assert run.usage() == {
        ("message-credits", ex.TEAM_ID): (spent, sent),
        ("messages", ex.TEAM_ID): (Decimal(sent), sent),
    }
    assert Decimal(run.one("balance", customer=ex.TEAM_ID)["balance"]) == pool


def cost_cents(price: Price, input_tokens: int, output_tokens: int) -> Decimal:
    """``costCents`` of one request: per-million prices, half-even to a millionth of a cent."""
    per_million = input_tokens * Decimal(price.input_per_million)
    per_million += output_tokens * Decimal(price.output_per_million)
    return (per_million / 10_000).quantize(Decimal("0.000001"))


def llm_usage(
    requests: list[tuple[str, int, int, Decimal | None]],
) -> dict[tuple[str, str], tuple[Decimal, int]]:
    """Expected token, cost and request totals of ``(customer, input, output, cents)``."""
    totals: dict[tuple[str, str], tuple[Decimal, int]] = {}

    def add(meter: str, customer: str, value: Decimal) -> None:
        old, events = totals.get((meter, customer), (Decimal(0), 0))
        totals[(meter, customer)] = (old + value, events + 1)

    for customer, input_tokens, output_tokens, cents in requests:
        add("input-tokens", customer, Decimal(input_tokens))
        add("output-tokens", customer, Decimal(output_tokens))
        add("requests", customer, Decimal(1))
        if cents is not None:
            add("cost-cents", customer, cents)
    return totals


def test_openai_chat() -> None:
    ex = load("openai_chat.py")
    run = example("openai_chat.py")
    out = words(ex.REPLY)
    requests = [
        ("cus_acme", "gpt-4o-mini", count_tokens(ex.SYSTEM_PROMPT + ex.CHAT_QUESTION), out),
        ("cus_acme", "gpt-4o", count_tokens(ex.STREAM_QUESTION), out),
        ("cus_globex", "gpt-4o-mini", count_tokens(ex.RESPONSES_INPUT), out),
        ("cus_globex", "text-embedding-3-small", count_tokens("".join(ex.DOCUMENTS)), 0),
    ]
    assert run.usage() == llm_usage(
        [
            (customer, tokens_in, tokens_out, cost_cents(ex.PRICES[model], tokens_in, tokens_out))
            for customer, model, tokens_in, tokens_out in requests
        ]
    )
    assert run.stdout.count(f"assistant: {ex.REPLY}\n") == 2  # the stream arrived whole


def test_anthropic_messages() -> None:
    ex = load("anthropic_messages.py")
    run = example("anthropic_messages.py")
    out = words(ex.REPLY)
    conversation = ex.SYSTEM_PROMPT + ex.REVIEW_REQUEST + ex.REPLY + ex.FOLLOW_UP
    requests = [
        ("cus_hooli", "claude-sonnet-4-6", count_tokens(ex.SYSTEM_PROMPT + ex.REVIEW_REQUEST)),
        ("cus_hooli", "claude-sonnet-4-6", count_tokens(conversation)),
        *[(tenant, "claude-haiku-4-5", count_tokens(ex.SUMMARY_REQUEST)) for tenant in ex.TENANTS],
    ]
    assert run.usage() == llm_usage(
        [
            (customer, tokens_in, out, cost_cents(ex.PRICES[model], tokens_in, out))
            for customer, model, tokens_in in requests
        ]
    )
    assert run.stdout.count(f"claude: {ex.REPLY}\n") == 2


def test_google_genai() -> None:
    ex = load("google_genai.py")
    run = example("google_genai.py")
    out = words(ex.REPLY)
    first, second = ex.CHAT_TURNS
    requests = [
        ("cus_outdoor_co", "gemini-2.5-pro", count_tokens(ex.PRODUCT_PROMPT)),
        ("cus_outdoor_co", "gemini-2.5-flash", count_tokens(ex.STREAM_PROMPT)),
        ("cus_travel_desk", "gemini-2.5-flash", count_tokens(first)),
        # The second turn resends the first one and the model's answer.
        ("cus_travel_desk", "gemini-2.5-flash", count_tokens(first + ex.REPLY + second)),
    ]
    assert run.usage() == llm_usage(
        [
            (customer, tokens_in, out, cost_cents(ex.PRICES[model], tokens_in, out))
            for customer, model, tokens_in in requests
        ]
    )
    assert run.stdout.count(f"gemini: {ex.REPLY}\n") == 4


def test_openai_compatible() -> None:
    ex = load("openai_compatible.py")
    run = example("openai_compatible.py")
    per_provider = sum(count_tokens(question) + words(ex.REPLY) for question in ex.QUESTIONS)
    requests = len(ex.PROVIDERS) * len(ex.QUESTIONS)
    assert run.usage() == {
        **{
            (f"{provider}-tokens", ex.CUSTOMER_ID): (Decimal(per_provider), len(ex.QUESTIONS))
            for provider in ex.PROVIDERS
        },
        ("requests", ex.CUSTOMER_ID): (Decimal(requests), requests),
    }
    for provider in ex.PROVIDERS:
        assert run.stdout.count(f"{provider}: {ex.REPLY}\n") == len(ex.QUESTIONS)


def test_fastapi_gateway() -> None:
    ex = load("fastapi_gateway.py")
    run = example("fastapi_gateway.py")
    statuses = [201, 200, 200, 422, 200, 200, 401, 200, 404]
    assert [(line["method"], line["path"], int(line["status"])) for line in run.lines("call")] == [
        (method, path, status)
        for (_, method, path, _), status in zip(ex.CALLS, statuses, strict=True)
    ]
    billed: dict[str, list[int]] = {}
    for (key, _, path, _), status in zip(ex.CALLS, statuses, strict=True):
        customer = ex.API_KEYS.get(key)
        if customer is not None and path != "/health" and status != 404:
            billed.setdefault(customer, []).append(status)
    client = {line["customer"]: line for line in run.lines("client")}
    assert {customer: int(line["calls"]) for customer, line in client.items()} == {
        customer: len(codes) for customer, codes in billed.items()
    }

    expected: dict[tuple[str, str], tuple[Decimal, int]] = {}
    for customer, codes in billed.items():
        ok = sum(code < 400 for code in codes)
        expected[("api-calls", customer)] = (Decimal(ok), ok)
        if ok < len(codes):
            expected[("failed-calls", customer)] = (Decimal(len(codes) - ok), len(codes) - ok)
        # The server billed exactly the bytes the client received.
        sent = Decimal(client[customer]["response_bytes"])
        expected[("egress-bytes", customer)] = (sent, len(codes))
    assert run.usage() == expected
    # The streamed CSV report is counted in full.
    assert int(client["cus_globex"]["response_bytes"]) > ex.REPORT_ROWS * 10


def test_examples_use_the_server_named_by_the_environment() -> None:
    """With DODO_PAYMENTS_BASE_URL set, an example reports to that server and key."""
    from dodo_ingest.devserver import DevServer

    ex = load("character_quotas.py")
    key = "sk_test_examples_env_key_42"
    with DevServer(api_key=key) as server:
        run = _run(
            "character_quotas.py",
            {"DODO_PAYMENTS_BASE_URL": server.base_url, "DODO_PAYMENTS_API_KEY": key},
        )
        stored = set(server.event_ids())
    assert run.returncode == 0, run.stderr
    generated = {line["id"] for line in run.lines("request") if line["status"] == "generated"}
    blocked = {request[0] for request in ex.REQUESTS} - generated
    assert generated and blocked
    assert {f"{request_id}:characters" for request_id in generated} <= stored
    assert not {f"{request_id}:characters" for request_id in blocked} & stored  # not billed
    assert run.stdout == example("character_quotas.py").stdout


def test_gated_examples_decide_the_same_when_the_api_deducts_late() -> None:
    """The gate counts what it settled until the balance shows it: against a server that
    deducts 30 s late, the gated examples take the same decisions; only the balances they
    read (and the low-balance webhook, which follows the server's balance) differ."""
    from dodo_ingest.devserver import DevServer

    for program, kind in (
        ("gpu_subscription.py", "job"),
        ("character_quotas.py", "request"),
        ("prepaid_fiat_credits.py", "request"),
    ):
        with DevServer(deduction_lag=30) as server:
            run = _run(
                program,
                {"DODO_PAYMENTS_BASE_URL": server.base_url, "DODO_PAYMENTS_API_KEY": "dev"},
            )
        assert run.returncode == 0, run.stderr
        instant = example(program)
        assert run.lines(kind) == instant.lines(kind)
        assert run.usage() == instant.usage()
        assert run.lines("balance") != instant.lines("balance")  # not deducted yet
        if program == "character_quotas.py":  # a month on the server's clock deducts it all
            assert run.lines("webhook") == instant.lines("webhook")
            month_2 = [line for line in run.lines("balance") if line["month"] == "2"]
            assert month_2 == [line for line in instant.lines("balance") if line["month"] == "2"]
