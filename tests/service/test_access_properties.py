"""Property: whatever the documents' groups, the caller's groups and the questions, nothing a
caller may not read reaches them: not in routes, answers, citations, extractive quotes, streamed
events, follow-ups in a conversation (whose caller may since have lost a group), nor in the
conversation's history; and in Claude mode, not in what is sent to the model.

Every document carries a marker word of its own in its title and in every sentence, so "nothing
reaches them" is checked as text: no marker, document id or file id of a document the caller
may not read appears anywhere in what comes back (or, in Claude mode, in the Messages request).
Questions are drawn from the documents' own words, markers included, so they do match what they
must not reveal.

The pool is built once per test; each example sets every document's groups (writing only those
that change) before it asks, so an example does not depend on the ones before it.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from indexing.ingest import IngestRequest, ingest
from indexing.pool import Pool
from service.app import create_app
from service.keys import Keys
from service.pool import open_pool
from service.settings import Settings
from tests.fakes.anthropic_server import FakeAnthropic
from tests.service.sse import parse_events

pytestmark = pytest.mark.slow

GROUPS = ("hr", "legal", "board", "it")
MARKERS = (
    "kxalpha",
    "kxbravo",
    "kxcharlie",
    "kxdelta",
    "kxecho",
    "kxfoxtrot",
    "kxgolf",
    "kxhotel",
    "kxindia",
    "kxjuliet",
)
TOPICS = (
    "leave",
    "salary",
    "travel",
    "laptop",
    "password",
    "expenses",
    "overtime",
    "contract",
    "holiday",
    "security",
)
WORDS = TOPICS + MARKERS
OWN_WORDS = frozenset({"question", "terms"})


def document_text(n: int) -> str:
    """Sentences on two topics, each naming the document's marker."""
    marker, first, second = MARKERS[n], TOPICS[n], TOPICS[(n + 3) % len(TOPICS)]
    sentences = [
        f"The {marker} rules on {first} apply to every employee of the company.",
        f"Requests about {second} under {marker} go to the manager within ten days.",
        f"Under {marker}, {first} and {second} records are kept for six years.",
    ]
    return f"# Policy {marker}\n\n" + "\n\n".join(sentences) + "\n"


class Pooled:
    """The pool, a client of its app, a trusted front end's key, and (Claude mode) the fake."""

    def __init__(
        self,
        pool: Pool,
        client: TestClient,
        front_end_key: str,
        ids: list[str],
        fake: FakeAnthropic | None = None,
    ) -> None:
        self.pool, self.client, self.front_end_key = pool, client, front_end_key
        self.ids, self.fake = ids, fake

    def __repr__(self) -> str:  # printed with a failing example: keep it short
        return f"Pooled({len(self.ids)} documents)"

    def assign(self, groups: list[frozenset[str]]) -> None:
        """Give document n the groups ``groups[n]`` (writing only what changes)."""
        for document_id, wanted in zip(self.ids, groups, strict=True):
            doc = self.pool.store.get_document(document_id)
            if frozenset(doc.groups) != wanted:
                self.pool.store.update_metadata(document_id=document_id, groups=sorted(wanted))
        self.pool.refresh()

    def forbidden(self, groups: list[frozenset[str]], caller: frozenset[str]) -> list[str]:
        """What must not reach a caller in ``caller``: the unreadable documents' markers, ids
        and file ids."""
        hidden = []
        for n, (document_id, wanted) in enumerate(zip(self.ids, groups, strict=True)):
            if wanted and wanted.isdisjoint(caller):
                doc = self.pool.store.get_document(document_id)
                hidden += [MARKERS[n], document_id, doc.file_id or document_id]
        return hidden

    def headers(self, caller: frozenset[str]) -> dict[str, str]:
        return {
            "Authorization": f"Bearer {self.front_end_key}",
            "X-Kpool-User": "ann",
            "X-Kpool-Groups": ",".join(sorted(caller)),
        }


def build(settings_: Settings, fake: FakeAnthropic | None = None) -> Iterator[Pooled]:
    pool = open_pool(settings_)
    ids = []
    for n, marker in enumerate(MARKERS):
        data = document_text(n).encode()
        request = IngestRequest(source=f"policies/{marker}.md", data=data, title=f"Policy {marker}")
        outcome = ingest(pool, request)
        assert outcome.document_id is not None
        ids.append(outcome.document_id)
    _, secret = Keys(pool.store).create(role="user", trusted_front_end=True)
    try:
        with TestClient(create_app(settings_, pool=pool)) as client:
            yield Pooled(pool, client, secret, ids, fake)
    finally:
        pool.close()


@pytest.fixture(scope="module")
def extractive(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pooled]:
    home = tmp_path_factory.mktemp("properties") / "home"
    yield from build(Settings(home=home, refresh_seconds=60))


@pytest.fixture
def with_claude(tmp_path: Path, fake_anthropic: FakeAnthropic) -> Iterator[Pooled]:
    yield from build(
        Settings(
            home=tmp_path / "home",
            anthropic_api_key=fake_anthropic.api_key,  # type: ignore[arg-type]
            anthropic_base_url=fake_anthropic.base_url,
            anthropic_max_retries=0,
            refresh_seconds=60,
        ),
        fake_anthropic,
    )


group_sets = st.frozensets(st.sampled_from(GROUPS), max_size=2)
assignments = st.lists(group_sets, min_size=len(MARKERS), max_size=len(MARKERS))
questions = st.lists(st.sampled_from(WORDS), min_size=1, max_size=5).map(" ".join)

#: One example: every document's groups, the caller's groups for a first question and for a
#: follow-up in the same conversation, and the two questions.
CONVERSATIONS = {
    "groups": assignments,
    "first_caller": group_sets,
    "later_caller": group_sets,
    "first": questions,
    "follow_up": questions,
}

PROPERTY = settings(
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def assert_hidden(what: str, shown: Any, forbidden: list[str]) -> None:
    """``shown`` (JSON, or an event stream) has none of ``forbidden``; the caller's own words
    (a route's ``question`` and ``terms``, a history's questions) are theirs to see."""
    text = shown if isinstance(shown, str) else json.dumps(without_own_words(shown))
    leaked = [item for item in forbidden if item in text]
    assert not leaked, f"{what} leaked {leaked}: {text[:500]}"


def without_own_words(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: without_own_words(v) for k, v in value.items() if k not in OWN_WORDS}
    if isinstance(value, list):
        return [without_own_words(v) for v in value]
    return value


def without_questions(body: dict[str, Any], questions: set[str]) -> dict[str, Any]:
    """A Messages body without the caller's own questions (their words, not the pool's)."""
    messages = [
        {**m, "content": [b for b in m["content"] if b.get("text") not in questions]}
        for m in body["messages"]
    ]
    return {**body, "messages": messages}


def ask(pooled: Pooled, caller: frozenset[str], body: dict[str, Any]) -> Any:
    response = pooled.client.post("/v1/ask", json=body, headers=pooled.headers(caller))
    assert response.status_code == 200, response.text
    return response


def check_one_conversation(
    pooled: Pooled,
    groups: list[frozenset[str]],
    first_caller: frozenset[str],
    later_caller: frozenset[str],
    first: str,
    follow_up: str,
    after: Callable[[frozenset[str]], None] = lambda caller: None,
) -> None:
    """Route, ask, ask streamed, then a follow-up with other groups, and the history;
    ``after(caller)`` runs after each caller's part."""
    pooled.assign(groups)
    hidden_first = pooled.forbidden(groups, first_caller)
    routed = pooled.client.post(
        "/v1/route", json={"question": first}, headers=pooled.headers(first_caller)
    )
    assert_hidden("a route", routed.json(), hidden_first)
    answer = ask(pooled, first_caller, {"question": first}).json()
    assert_hidden("an answer", answer, hidden_first)
    streamed = ask(pooled, first_caller, {"question": first, "stream": True}).text
    assert parse_events(streamed)[-1].name == "done"
    assert_hidden("a streamed answer", streamed, hidden_first)
    after(first_caller)

    hidden_later = pooled.forbidden(groups, later_caller)
    body = {"question": follow_up, "conversation_id": answer["conversation_id"], "stream": True}
    later = ask(pooled, later_caller, body).text
    assert parse_events(later)[-1].name == "done"
    assert_hidden("a follow-up", later, hidden_later)
    history = pooled.client.get(
        f"/v1/conversations/{answer['conversation_id']}", headers=pooled.headers(later_caller)
    )
    assert_hidden("a conversation's history", history.json(), hidden_later)
    after(later_caller)


@settings(PROPERTY, max_examples=700)
@given(**CONVERSATIONS)
def test_extractive_answers_never_show_a_caller_what_they_may_not_read(
    extractive: Pooled,
    groups: list[frozenset[str]],
    first_caller: frozenset[str],
    later_caller: frozenset[str],
    first: str,
    follow_up: str,
) -> None:
    check_one_conversation(extractive, groups, first_caller, later_caller, first, follow_up)


@settings(PROPERTY, max_examples=300)
@given(**CONVERSATIONS)
def test_claude_never_receives_or_returns_what_the_caller_may_not_read(
    with_claude: Pooled,
    groups: list[frozenset[str]],
    first_caller: frozenset[str],
    later_caller: frozenset[str],
    first: str,
    follow_up: str,
) -> None:
    fake = with_claude.fake
    assert fake is not None
    checked = len(fake.messages.bodies())

    def requests_hide_from(caller: frozenset[str]) -> None:
        nonlocal checked
        bodies = fake.messages.bodies()
        for body in bodies[checked:]:
            sent = without_questions(body, {first, follow_up})
            assert_hidden("a request to the model", sent, with_claude.forbidden(groups, caller))
        checked = len(bodies)

    check_one_conversation(
        with_claude, groups, first_caller, later_caller, first, follow_up, requests_hide_from
    )
