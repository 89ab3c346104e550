"""Rate limits and upstream token budgets: the bucket and window arithmetic on an injected
clock, then through HTTP: 429 with Retry-After for the caller over their limit only, health and
pages never limited, and a spent budget refused before any Messages request."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest
from fastapi.testclient import TestClient

from indexing.errors import RateLimited
from indexing.pool import Pool
from service.answer import Usage
from service.app import create_app
from service.audit import AuditLog
from service.auth import OPEN_CALLER, Caller
from service.keys import Keys
from service.limits import (
    Bucket,
    Limiter,
    Span,
    budget_wait,
    budgeted,
    charged,
    identity,
    spent,
    take,
)
from service.settings import Settings
from tests.fakes.anthropic_server import FakeAnthropic
from tests.service.conftest import LEAVE_QUESTION


@dataclass
class Clock:
    """Seconds that pass only when a test says so."""

    now: float = 0.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


# ---------------------------------------------------------------------- the token bucket

#: One token a second, three at most.
RATE, CAPACITY = 1.0, 3.0


@pytest.mark.parametrize(
    ("tokens", "elapsed", "left", "wait"),
    [
        (3.0, 0.0, 2.0, 0.0),  # a full bucket gives one
        (1.0, 0.0, 0.0, 0.0),  # the last one
        (0.0, 0.0, 0.0, 1.0),  # empty: a whole token to wait for
        (0.25, 0.0, 0.25, 0.75),  # part of one refilled already
        (0.0, 0.5, 0.5, 0.5),  # refilled while nobody asked
        (0.0, 1.0, 0.0, 0.0),  # exactly one refilled, and taken
        (0.0, 100.0, 2.0, 0.0),  # refilling stops at the capacity
    ],
)
def test_a_bucket_gives_a_token_or_says_how_long_until_one(
    tokens: float, elapsed: float, left: float, wait: float
) -> None:
    after, waited = take(Bucket(tokens, 10.0), now=10.0 + elapsed, rate=RATE, capacity=CAPACITY)
    assert after.tokens == pytest.approx(left)
    assert waited == pytest.approx(wait)


def test_a_refusal_costs_nothing() -> None:
    bucket = Bucket(0.5, 0.0)
    for _ in range(3):
        bucket, wait = take(bucket, now=0.0, rate=RATE, capacity=CAPACITY)
        assert wait == pytest.approx(0.5)
    assert take(bucket, now=0.5, rate=RATE, capacity=CAPACITY)[1] == 0.0


@pytest.mark.parametrize(
    ("per_minute", "burst", "admitted", "retry_after"),
    [
        (60, 3, 3, 1.0),  # a burst of three, then one a second
        (6, 1, 1, 10.0),  # one at once, then one every ten seconds
        (1, 2, 2, 60.0),
        (0.5, 1, 1, 120.0),
    ],
)
def test_a_caller_gets_the_burst_then_waits_for_the_rate(
    per_minute: float, burst: int, admitted: int, retry_after: float
) -> None:
    clock = Clock()
    limiter = Limiter(per_minute=per_minute, burst=burst, clock=clock)
    for _ in range(admitted):
        limiter.admit("key_a")
    with pytest.raises(RateLimited) as refused:
        limiter.admit("key_a")
    assert refused.value.retry_after == pytest.approx(retry_after)
    assert refused.value.kind == "rate_limited"
    limiter.admit("key_b")  # someone else is not affected
    clock.advance(retry_after)
    limiter.admit("key_a")


def test_no_rate_means_no_limit() -> None:
    limiter = Limiter(per_minute=0, burst=1, clock=Clock())
    for _ in range(1000):
        limiter.admit("key_a")
    assert limiter.callers() == 0


def test_idle_callers_are_forgotten_and_memory_is_bounded() -> None:
    clock = Clock()
    limiter = Limiter(per_minute=60, burst=5, clock=clock, max_callers=100)
    limiter.admit("key_a")
    clock.advance(5.0)  # key_a's bucket is full again: forgetting it changes nothing
    limiter.admit("key_b")
    assert limiter.callers() == 1
    for n in range(1000):
        limiter.admit(f"address:10.0.{n // 256}.{n % 256}")
    assert limiter.callers() == 100


# ---------------------------------------------------------------------- the hourly window

HOUR = Span(length=3600.0, slot=60.0)


@pytest.mark.parametrize(
    ("charges", "budget", "now", "wait"),
    [
        ([], 1000, 0.0, 0.0),
        ([(0.0, 999)], 1000, 10.0, 0.0),  # under the budget: admitted
        ([(0.0, 1000)], 1000, 10.0, 3650.0),  # at it: until its minute has left the hour
        ([(0.0, 5000)], 1000, 10.0, 3650.0),  # one answer overran it: the same
        ([(0.0, 600), (130.0, 500)], 1000, 200.0, 3460.0),  # the oldest minute is enough
        ([(0.0, 600), (130.0, 500)], 500, 200.0, 3580.0),  # both minutes must go
        ([(0.0, 600), (30.0, 500)], 1000, 40.0, 3620.0),  # one minute, one slot
        ([(0.0, 5000)], 1000, 3660.0, 0.0),  # an hour and its minute later: forgotten
    ],
)
def test_a_spent_budget_says_how_long_until_the_hour_frees_enough(
    charges: list[tuple[float, int]], budget: int, now: float, wait: float
) -> None:
    window: tuple[tuple[int, int], ...] = ()
    for at, tokens in charges:
        window = charged(window, tokens, now=at, span=HOUR)
    assert budget_wait(window, budget, now=now, span=HOUR) == pytest.approx(wait)


def test_charges_in_one_minute_share_a_slot_and_leave_together() -> None:
    window = charged((), 100, now=0.0, span=HOUR)
    window = charged(window, 50, now=59.0, span=HOUR)
    assert len(window) == 1 and spent(window, now=59.0, span=HOUR) == 150
    assert spent(window, now=3659.0, span=HOUR) == 150
    assert spent(window, now=3660.0, span=HOUR) == 0


@pytest.mark.parametrize(
    ("usage", "counted"),
    [
        (Usage(), 0),
        (Usage(input_tokens=100, output_tokens=20), 120),
        (Usage(input_tokens=5, output_tokens=20, cache_creation_input_tokens=900), 925),
        (Usage(input_tokens=5, output_tokens=20, cache_read_input_tokens=900), 25),
    ],
)
def test_the_budget_counts_input_output_and_cache_writes_not_cache_reads(
    usage: Usage, counted: int
) -> None:
    assert budgeted(usage) == counted


def test_a_caller_over_budget_waits_and_others_do_not() -> None:
    clock = Clock(now=30.0)
    limiter = Limiter(tokens_per_hour=1000, clock=clock, span=HOUR)
    limiter.check_budget("key_a")
    limiter.charge("key_a", 1200)
    with pytest.raises(RateLimited) as refused:
        limiter.check_budget("key_a")
    assert refused.value.retry_after == pytest.approx(3630.0)
    limiter.check_budget("key_b")
    clock.advance(3630.0)
    limiter.check_budget("key_a")
    assert limiter.spent("key_a") == 0 and limiter.callers() == 0


# ---------------------------------------------------------------------- whom it counts against


@pytest.mark.parametrize(
    ("caller", "address", "who"),
    [
        (OPEN_CALLER, "10.0.0.7", "address:10.0.0.7"),
        (OPEN_CALLER, None, "address:unknown"),
        (Caller(owner="key_u", groups=[], role="user", key_id="key_u"), "10.0.0.7", "key_u"),
        (Caller(owner="key_a", groups=None, role="admin", key_id="key_a"), "10.0.0.7", "key_a"),
        (
            Caller(owner="key_f:ann", groups=["hr"], role="user", key_id="key_f"),
            "10.0.0.7",
            "key_f:ann",
        ),
        (
            Caller(owner="key_w", groups=[], role="widget", key_id="key_w"),
            "10.0.0.7",
            "key_w@10.0.0.7",
        ),
    ],
    ids=["open", "open-no-address", "user", "admin", "front-end-user", "widget-visitor"],
)
def test_requests_count_against_the_key_its_user_or_the_address(
    caller: Caller, address: str | None, who: str
) -> None:
    assert identity(caller, address) == who


# ---------------------------------------------------------------------- through HTTP


@pytest.fixture
def clock() -> Clock:
    return Clock(now=1000.0)


@pytest.fixture
def limited(settings: Settings, sample_pool: Pool, clock: Clock) -> Iterator[TestClient]:
    """The sample pool's app allowing two requests at once, then one a second, per caller."""
    limiter = Limiter(per_minute=60, burst=2, clock=clock)
    with TestClient(create_app(settings, pool=sample_pool, limiter=limiter)) as client:
        yield client


def bearer(secret: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {secret}"}


ROUTE_BODY = {"question": "annual leave"}


def test_the_request_after_the_burst_is_a_429_with_retry_after(
    limited: TestClient, sample_pool: Pool, clock: Clock
) -> None:
    keys = Keys(sample_pool.store)
    first, second = keys.create(role="user")[1], keys.create(role="user")[1]
    for _ in range(2):
        assert limited.post("/v1/route", json=ROUTE_BODY, headers=bearer(first)).status_code == 200
    refused = limited.post("/v1/route", json=ROUTE_BODY, headers=bearer(first))
    assert refused.status_code == 429
    assert refused.headers["retry-after"] == "1"
    error = refused.json()["error"]
    assert error["type"] == "rate_limited" and "try again in 1 second" in error["message"]
    assert first not in refused.text
    # Another key has its own bucket; the first one's refills with time.
    assert limited.post("/v1/route", json=ROUTE_BODY, headers=bearer(second)).status_code == 200
    clock.advance(1.0)
    assert limited.post("/v1/route", json=ROUTE_BODY, headers=bearer(first)).status_code == 200


@pytest.mark.parametrize(
    ("method", "path", "body"),
    [
        ("POST", "/v1/ask", {"question": "how many days of annual leave?"}),
        ("POST", "/v1/route", ROUTE_BODY),
        ("GET", "/v1/info", None),
        ("GET", "/v1/documents", None),
        ("GET", "/v1/conversations/conv_unknown", None),
    ],
)
def test_every_api_endpoint_counts_against_the_same_bucket(
    limited: TestClient, method: str, path: str, body: object
) -> None:
    for _ in range(2):
        limited.get("/v1/info")
    refused = limited.request(method, path, json=body)
    assert refused.status_code == 429, refused.text
    assert refused.json()["error"]["type"] == "rate_limited"


@pytest.mark.parametrize("path", ["/healthz", "/readyz", "/", "/admin", "/widget.js"])
def test_health_and_the_pages_are_never_limited(limited: TestClient, path: str) -> None:
    for _ in range(2):
        limited.get("/v1/info")
    assert limited.get("/v1/info").status_code == 429
    for _ in range(5):
        assert limited.get(path).status_code == 200


def test_the_limits_come_from_the_settings() -> None:
    settings = Settings(rate_limit_per_minute=30, rate_limit_burst=4, tokens_per_hour=50_000)
    limiter = Limiter.from_settings(settings)
    assert (limiter.rate, limiter.capacity, limiter.budget) == (0.5, 4.0, 50_000)
    assert not Limiter.from_settings(Settings()).limits_requests
    assert not Limiter.from_settings(Settings()).limits_tokens


# ---------------------------------------------------------------------- the token budget


@pytest.fixture
def budgeted_claude(
    claude_settings: Settings, claude_pool: Pool, clock: Clock
) -> Iterator[tuple[TestClient, Limiter]]:
    limiter = Limiter(tokens_per_hour=1, clock=clock)
    with TestClient(create_app(claude_settings, pool=claude_pool, limiter=limiter)) as client:
        yield client, limiter


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_caller_over_budget_is_refused_before_any_messages_request(
    budgeted_claude: tuple[TestClient, Limiter],
    claude_pool: Pool,
    fake_anthropic: FakeAnthropic,
    clock: Clock,
    stream: bool,
) -> None:
    client, limiter = budgeted_claude
    keys = Keys(claude_pool.store)
    spender, other = keys.create(role="user"), keys.create(role="user")
    body = {"question": LEAVE_QUESTION, "stream": stream}
    first = client.post("/v1/ask", json=body, headers=bearer(spender[1]))
    assert first.status_code == 200
    assert limiter.spent(spender[0].id) > 1  # one answer took the caller over the budget
    assert len(fake_anthropic.messages.bodies()) == 1

    refused = client.post("/v1/ask", json=body, headers=bearer(spender[1]))
    assert refused.status_code == 429
    assert refused.headers["content-type"] == "application/json"
    assert refused.json()["error"]["type"] == "rate_limited"
    # Charged at 1000 s, in the minute (960-1020 s) that has left the hour at 4620 s.
    assert refused.headers["retry-after"] == str(4620 - 1000)
    assert len(fake_anthropic.messages.bodies()) == 1
    # Audited as refused, having sent nothing.
    refusal = AuditLog(claude_pool.store).entries(limit=1)[0]
    assert (refusal.outcome, refusal.error, refusal.file_ids) == ("failed", "rate_limited", [])

    assert client.post("/v1/ask", json=body, headers=bearer(other[1])).status_code == 200
    clock.advance(3660.0)
    assert client.post("/v1/ask", json=body, headers=bearer(spender[1])).status_code == 200


def test_the_budget_is_charged_with_the_answers_usage(
    claude_settings: Settings, claude_pool: Pool, clock: Clock
) -> None:
    limiter = Limiter(tokens_per_hour=10_000_000, clock=clock)
    with TestClient(create_app(claude_settings, pool=claude_pool, limiter=limiter)) as client:
        first = client.post("/v1/ask", json={"question": LEAVE_QUESTION}).json()
        again = client.post("/v1/ask", json={"question": LEAVE_QUESTION + " again"}).json()
    usages = [Usage(**answer["usage"]) for answer in (first, again)]
    assert usages[1].cache_read_input_tokens > 0  # the second read the first one's cache
    assert limiter.spent("address:testclient") == sum(budgeted(u) for u in usages)


def test_an_abstention_costs_no_budget(
    budgeted_claude: tuple[TestClient, Limiter], fake_anthropic: FakeAnthropic
) -> None:
    client, limiter = budgeted_claude
    for _ in range(3):
        assert client.post("/v1/ask", json={"question": "xylophone quokka"}).status_code == 200
    assert limiter.spent("address:testclient") == 0
    assert fake_anthropic.messages.bodies() == []


def test_a_question_nothing_matches_is_answered_even_over_budget(
    budgeted_claude: tuple[TestClient, Limiter], fake_anthropic: FakeAnthropic
) -> None:
    client, limiter = budgeted_claude
    assert client.post("/v1/ask", json={"question": LEAVE_QUESTION}).status_code == 200
    assert limiter.spent("address:testclient") > 1  # over the budget of 1

    nothing = client.post("/v1/ask", json={"question": "xylophone quokka", "stream": True})
    refused = client.post("/v1/ask", json={"question": LEAVE_QUESTION})

    assert nothing.status_code == 200 and "No document" in nothing.text
    assert refused.status_code == 429
    assert len(fake_anthropic.messages.bodies()) == 1


def test_an_extractive_pool_is_never_budget_limited(
    settings: Settings, sample_pool: Pool, clock: Clock
) -> None:
    limiter = Limiter(tokens_per_hour=1, clock=clock)
    with TestClient(create_app(settings, pool=sample_pool, limiter=limiter)) as client:
        limiter.charge("address:testclient", 1_000)  # even a caller who spent it elsewhere
        for _ in range(3):
            response = client.post("/v1/ask", json={"question": LEAVE_QUESTION})
            assert response.status_code == 200 and response.json()["mode"] == "extractive"
