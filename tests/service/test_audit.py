"""The audit log: one entry per question, whole or streamed, however it ended, with the caller,
the files sent and the tokens used; the question's text only when configured; stored on SQLite
and PostgreSQL, pruned with age, listed by `kpool audit` and `GET /v1/audit`."""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from anyio.from_thread import start_blocking_portal
from click.testing import CliRunner
from fastapi.testclient import TestClient
from sqlalchemy import inspect, text
from sqlalchemy.exc import OperationalError

from indexing.errors import RateLimited, UpstreamUnavailable
from indexing.models import utcnow
from indexing.pool import Pool
from indexing.store import Store
from service.accounting import Accounting
from service.answer import Answer, AnswerEvent, Spent, StaticReply, TextDelta, Usage
from service.app import _maintain, create_app
from service.ask import Answering
from service.audit import AuditEntry, AuditLog
from service.auth import OPEN_CALLER, Caller
from service.cli import main
from service.conversations import Conversations
from service.keys import Keys
from service.limits import Limiter, identity
from service.prompt import Question
from service.routes.ask import server_sent_events
from service.settings import Settings
from tests.fakes.anthropic_server import FakeAnthropic
from tests.service.conftest import LEAVE_QUESTION
from tests.service.sse import parse_events

NOTHING_MATCHES = "xylophone quokka"


def entries(pool: Pool) -> list[AuditEntry]:
    return AuditLog(pool.store).entries()


def only_entry(pool: Pool) -> AuditEntry:
    (entry,) = entries(pool)
    return entry


def files_in(body: dict[str, Any]) -> list[str]:
    """The file ids of a Messages request's document blocks, in order."""
    return [
        block["source"]["file_id"]
        for message in body["messages"]
        if isinstance(message["content"], list)
        for block in message["content"]
        if block["type"] == "document"
    ]


def usage_of(entry: AuditEntry) -> dict[str, int]:
    return dict(entry.public()["usage"])


def ask_streamed(client: TestClient, **body: Any) -> list[Any]:
    with client.stream("POST", "/v1/ask", json={"stream": True, **body}) as response:
        return parse_events(response.read().decode())


# ---------------------------------------------------------------------- what an entry says


def test_an_answered_question_is_audited_with_the_files_sent_and_its_usage(
    claude: TestClient, claude_pool: Pool, fake_anthropic: FakeAnthropic
) -> None:
    answer = claude.post("/v1/ask", json={"question": LEAVE_QUESTION}).json()
    entry = only_entry(claude_pool)
    (sent,) = fake_anthropic.messages.bodies()
    assert entry.outcome == "answered" and entry.error is None
    assert entry.file_ids == files_in(sent) and entry.file_ids
    assert entry.document_ids == [d["document_id"] for d in answer["documents"]]
    assert usage_of(entry) == answer["usage"]
    assert entry.conversation_id == answer["conversation_id"]
    assert (entry.mode, entry.model) == ("claude", answer["model"])
    assert entry.request_id == answer["request_id"]
    assert (entry.owner, entry.key_id, entry.role) == ("anonymous", None, None)
    assert entry.address == "testclient" and not entry.streamed
    assert entry.duration_ms >= 0 and entry.at <= utcnow()
    assert entry.question is None  # not kept unless configured


def test_a_follow_up_lists_every_file_its_request_carried(
    claude: TestClient, claude_pool: Pool, fake_anthropic: FakeAnthropic
) -> None:
    first = claude.post("/v1/ask", json={"question": LEAVE_QUESTION}).json()
    follow_up = {"question": "and sick leave?", "conversation_id": first["conversation_id"]}
    assert claude.post("/v1/ask", json=follow_up).status_code == 200
    newest, _ = entries(claude_pool)
    assert newest.file_ids == files_in(fake_anthropic.messages.bodies()[-1])
    assert newest.conversation_id == first["conversation_id"]


def test_a_streamed_answer_is_audited_when_it_is_done(
    claude: TestClient, claude_pool: Pool, fake_anthropic: FakeAnthropic
) -> None:
    done = ask_streamed(claude, question=LEAVE_QUESTION)[-1]
    assert done.name == "done"
    entry = only_entry(claude_pool)
    assert entry.outcome == "answered" and entry.streamed
    assert usage_of(entry) == done.data["usage"]
    assert entry.file_ids == files_in(fake_anthropic.messages.bodies()[0])
    assert entry.conversation_id == done.data["conversation_id"]


@pytest.mark.parametrize("stream", [False, True], ids=["json", "stream"])
def test_a_question_nothing_covers_is_audited_as_abstained(
    claude: TestClient, claude_pool: Pool, stream: bool
) -> None:
    claude.post("/v1/ask", json={"question": NOTHING_MATCHES, "stream": stream})
    entry = only_entry(claude_pool)
    assert entry.outcome == "abstained"
    assert entry.file_ids == [] and entry.document_ids == []
    assert set(usage_of(entry).values()) == {0}


@pytest.mark.parametrize(
    ("fail", "status", "error"),
    [
        ("before", 503, "upstream_unavailable"),  # Anthropic refused the request
        ("midway", 200, "upstream_unavailable"),  # the stream broke after it began
    ],
)
def test_an_upstream_failure_is_audited_with_its_error_type(
    claude: TestClient,
    claude_pool: Pool,
    fake_anthropic: FakeAnthropic,
    fail: str,
    status: int,
    error: str,
) -> None:
    if fail == "before":
        fake_anthropic.fail_next(10, 529, path_prefix="/v1/messages")
    else:
        fake_anthropic.messages.stream_error_after(6)
    response = claude.post("/v1/ask", json={"question": LEAVE_QUESTION, "stream": True})
    assert response.status_code == status
    entry = only_entry(claude_pool)
    assert (entry.outcome, entry.error) == ("failed", error)
    # A stream that broke had reported its input: that was spent, and is recorded.
    spent = entry.input_tokens + entry.cache_creation_input_tokens + entry.cache_read_input_tokens
    assert (spent > 0) == (fail == "midway")
    # What was (or would have been) sent is known even when Anthropic refused it.
    assert entry.file_ids == files_in(fake_anthropic.messages.bodies()[-1]) and entry.file_ids
    assert entry.document_ids


def test_an_answer_that_cannot_be_recorded_is_charged_for_what_it_spent(
    claude: TestClient, claude_pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    def lost(*_: Any, **__: Any) -> None:
        raise OperationalError("INSERT INTO conversations ...", {}, Exception("disk I/O error"))

    monkeypatch.setattr(Conversations, "record", lost)
    with pytest.raises(OperationalError):  # a 500 to the caller; the test client re-raises
        claude.post("/v1/ask", json={"question": LEAVE_QUESTION})
    entry = only_entry(claude_pool)
    assert (entry.outcome, entry.error) == ("failed", "internal_error")
    assert entry.output_tokens > 0  # the answer was made and paid for


def test_an_unknown_conversation_is_audited_as_failed(
    claude: TestClient, claude_pool: Pool
) -> None:
    body = {"question": LEAVE_QUESTION, "conversation_id": "conv_nope"}
    assert claude.post("/v1/ask", json=body).status_code == 404
    entry = only_entry(claude_pool)
    assert (entry.outcome, entry.error, entry.file_ids) == ("failed", "not_found", [])
    assert entry.conversation_id == "conv_nope"


def test_extractive_answers_are_audited_with_no_files_sent(
    client: TestClient, sample_pool: Pool
) -> None:
    answer = client.post("/v1/ask", json={"question": LEAVE_QUESTION}).json()
    entry = only_entry(sample_pool)
    assert (entry.outcome, entry.mode, entry.model) == ("answered", "extractive", None)
    assert entry.file_ids == []  # nothing left the server
    assert entry.document_ids == [d["document_id"] for d in answer["documents"]]


def test_the_key_and_the_front_ends_user_are_recorded(
    client: TestClient, sample_pool: Pool
) -> None:
    keys = Keys(sample_pool.store)
    user, user_secret = keys.create(role="user")
    front_end, front_end_secret = keys.create(role="user", trusted_front_end=True)
    ask = {"question": LEAVE_QUESTION}
    client.post("/v1/ask", json=ask, headers={"Authorization": f"Bearer {user_secret}"})
    as_ann = {"Authorization": f"Bearer {front_end_secret}", "X-Kpool-User": "ann"}
    client.post("/v1/ask", json=ask, headers=as_ann)
    anns, users = entries(sample_pool)
    assert (users.key_id, users.owner, users.role) == (user.id, user.id, "user")
    assert (anns.key_id, anns.owner, anns.role) == (front_end.id, f"{front_end.id}:ann", "user")


@pytest.mark.parametrize("keep", [False, True])
def test_the_question_text_is_kept_only_when_configured(
    settings: Settings, sample_pool: Pool, keep: bool
) -> None:
    configured = settings.model_copy(update={"audit_questions": keep})
    with TestClient(create_app(configured, pool=sample_pool)) as client:
        client.post("/v1/ask", json={"question": LEAVE_QUESTION})
    assert only_entry(sample_pool).question == (LEAVE_QUESTION if keep else None)


def test_a_failing_audit_write_does_not_fail_the_answer(
    client: TestClient, sample_pool: Pool, caplog: pytest.LogCaptureFixture
) -> None:
    with sample_pool.store.engine.begin() as connection:
        connection.execute(text("DROP TABLE audit"))
    with caplog.at_level(logging.ERROR, logger="service.audit"):
        response = client.post("/v1/ask", json={"question": LEAVE_QUESTION})
    assert response.status_code == 200 and response.json()["answer"]
    assert "could not write the audit entry" in caplog.text


# ---------------------------------------------------------------------- a client that leaves


class _Extractive:
    """An answerer that is never asked: the replies in these tests are made by hand."""

    mode = "extractive"
    model = None

    def open(self, pool: Pool, question: Question) -> Any:
        raise AssertionError("not called")


@pytest.fixture
def audit_log(tmp_path: Path) -> Iterator[AuditLog]:
    store = Store.open(f"sqlite:///{tmp_path / 'pool.db'}")
    yield AuditLog(store)
    store.close()


def test_a_client_that_leaves_mid_stream_is_audited_as_cancelled(audit_log: AuditLog) -> None:
    accounting = Accounting(Limiter(), audit_log)
    answer = Answer("first paragraph\n\nsecond paragraph", [], [], mode="extractive")
    tally = accounting.tally(
        OPEN_CALLER,
        address="10.0.0.7",
        answerer=_Extractive(),
        text="q",
        conversation_id=None,
        streamed=True,
    )
    answering = tally.follow(Answering(Question("q", [], [], []), StaticReply(answer), lambda a: a))

    async def read_two_frames_and_leave() -> None:
        frames = server_sent_events(answering)
        await anext(frames)
        await anext(frames)
        await frames.aclose()

    with start_blocking_portal() as portal:
        portal.call(read_two_frames_and_leave)
    (entry,) = audit_log.entries()
    assert (entry.outcome, entry.streamed, entry.address) == ("cancelled", True, "10.0.0.7")


class _ClaudeLike:
    mode = "claude"
    model = "claude-test"
    judge = None

    def open(self, pool: Pool, question: Question) -> Any:
        raise AssertionError("not called")


class _SpendingReply:
    """A reply whose stream reports its cost as it goes, then sends text."""

    def __iter__(self) -> Iterator[AnswerEvent]:
        yield Spent(Usage(input_tokens=400, output_tokens=1, cache_read_input_tokens=900))
        yield TextDelta("Unused leave ")
        yield Spent(Usage(input_tokens=400, output_tokens=30, cache_read_input_tokens=900))
        yield TextDelta("carries over.")
        raise AssertionError("the client left before this")

    def close(self) -> None:
        pass


def test_a_client_that_leaves_mid_stream_is_charged_what_the_stream_reported(
    audit_log: AuditLog,
) -> None:
    limiter = Limiter(tokens_per_hour=300)
    tally = Accounting(limiter, audit_log).tally(
        OPEN_CALLER,
        address="10.0.0.7",
        answerer=_ClaudeLike(),
        text="q",
        conversation_id=None,
        streamed=True,
    )
    answering = tally.follow(Answering(Question("q", [], [], []), _SpendingReply(), lambda a: a))

    async def read_three_frames_and_leave() -> None:
        frames = server_sent_events(answering)
        for _ in range(3):  # the documents, then two pieces of text
            await anext(frames)
        await frames.aclose()

    with start_blocking_portal() as portal:
        portal.call(read_three_frames_and_leave)
    (entry,) = audit_log.entries()
    assert entry.outcome == "cancelled"
    assert (entry.input_tokens, entry.output_tokens, entry.cache_read_input_tokens) == (
        400,
        30,
        900,
    )
    with pytest.raises(RateLimited):  # 430 budgeted tokens of 300: the next question waits
        limiter.check_budget(identity(OPEN_CALLER, "10.0.0.7"))


def test_a_tally_ends_once_however_often_it_is_told(audit_log: AuditLog) -> None:
    tally = Accounting(Limiter(), audit_log).tally(
        Caller(owner="key_u", groups=[], role="user", key_id="key_u"),
        address=None,
        answerer=_Extractive(),
        text="q",
        conversation_id=None,
        streamed=False,
    )
    tally.end("failed", error=UpstreamUnavailable("overloaded"))
    tally.end("cancelled")
    (entry,) = audit_log.entries()
    assert (entry.outcome, entry.error, entry.key_id) == ("failed", "upstream_unavailable", "key_u")


# ---------------------------------------------------------------------- the store


@pytest.fixture
def stored(database_url: str) -> Iterator[AuditLog]:
    store = Store.open(database_url)
    yield AuditLog(store)
    store.close()


def entry_at(days_ago: float, **fields: Any) -> AuditEntry:
    defaults: dict[str, Any] = {"owner": "key_u", "mode": "claude", "outcome": "answered"}
    return AuditEntry(at=utcnow() - timedelta(days=days_ago), **{**defaults, **fields})


def test_the_migrated_table_has_every_column_of_the_model(stored: AuditLog) -> None:
    columns = {c["name"] for c in inspect(stored.store.engine).get_columns("audit")}
    assert columns == set(AuditEntry.model_fields)


def test_entries_come_back_newest_first_with_their_lists_and_counts(stored: AuditLog) -> None:
    assert stored.write(entry_at(2, owner="old", file_ids=["file_a", "file_b"]))
    assert stored.write(entry_at(1, owner="new", input_tokens=12, question="q?"))
    newest, oldest = stored.entries()
    assert (newest.owner, oldest.owner) == ("new", "old")
    assert oldest.file_ids == ["file_a", "file_b"] and newest.file_ids == []
    assert newest.input_tokens == 12 and newest.question == "q?"
    assert newest.at.tzinfo is not None
    assert [e.owner for e in stored.entries(limit=1)] == ["new"]
    since = utcnow() - timedelta(days=1, hours=1)
    assert [e.owner for e in stored.entries(since=since)] == ["new"]


def test_an_entry_keeps_the_reranking_models_share_apart(stored: AuditLog) -> None:
    assert stored.write(
        entry_at(
            0,
            model="answering-model",
            input_tokens=900,
            output_tokens=80,
            rerank_model="reranking-model",
            rerank_input_tokens=600,
            rerank_output_tokens=30,
        )
    )
    assert stored.write(entry_at(1, model="answering-model", input_tokens=300))
    reranked, plain = stored.entries()
    assert reranked.public()["rerank"] == {
        "model": "reranking-model",
        "input_tokens": 600,
        "output_tokens": 30,
    }
    assert "900/80/0/0 (reranking by reranking-model: 600/30)" in reranked.summary()
    assert plain.public()["rerank"] is None and "reranking" not in plain.summary()


def test_entries_older_than_the_cutoff_are_pruned(stored: AuditLog) -> None:
    for days in (200, 91, 89, 0):
        stored.write(entry_at(days, owner=f"{days} days"))
    assert stored.prune(before=utcnow() - timedelta(days=90)) == 2
    assert [e.owner for e in stored.entries()] == ["0 days", "89 days"]


def test_the_servers_hourly_maintenance_prunes_by_audit_days(
    settings: Settings, sample_pool: Pool
) -> None:
    log = AuditLog(sample_pool.store)
    log.write(entry_at(10, owner="old"))
    log.write(entry_at(1, owner="recent"))
    stop = threading.Event()
    stop.set()  # one round of maintenance, then stop
    _maintain(sample_pool, settings.model_copy(update={"audit_days": 5}), stop)
    assert [e.owner for e in log.entries()] == ["recent"]


# ---------------------------------------------------------------------- reading it back


def kpool(home: Path, *args: str) -> Any:
    return CliRunner().invoke(main, list(args), env={"KPOOL_HOME": str(home)})


def test_kpool_audit_lists_the_entries_as_json_newest_first(
    client: TestClient, settings: Settings
) -> None:
    client.post("/v1/ask", json={"question": LEAVE_QUESTION})
    client.post("/v1/ask", json={"question": NOTHING_MATCHES, "stream": True})
    result = kpool(settings.home, "audit", "--json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)
    assert [e["outcome"] for e in listed] == ["abstained", "answered"]
    assert [e["streamed"] for e in listed] == [True, False]
    assert set(listed[0]["usage"]) == {
        "input_tokens",
        "output_tokens",
        "cache_creation_input_tokens",
        "cache_read_input_tokens",
    }
    one = json.loads(kpool(settings.home, "audit", "--json", "--limit", "1").stdout)
    assert [e["id"] for e in one] == [listed[0]["id"]]
    later = (utcnow() + timedelta(hours=1)).isoformat()
    assert json.loads(kpool(settings.home, "audit", "--json", "--since", later).stdout) == []
    text_lines = kpool(settings.home, "audit").stdout.splitlines()
    assert len(text_lines) == 2 and "abstained" in text_lines[0]


def test_kpool_audit_refuses_a_bad_since(settings: Settings, sample_pool: Pool) -> None:
    result = kpool(settings.home, "audit", "--since", "last tuesday")
    assert result.exit_code == 2 and "is not an ISO date" in result.output


def test_admins_read_the_audit_over_http(client: TestClient, sample_pool: Pool) -> None:
    keys = Keys(sample_pool.store)
    admin = {"Authorization": f"Bearer {keys.create(role='admin')[1]}"}
    client.post("/v1/ask", json={"question": LEAVE_QUESTION}, headers=admin)
    page = client.get("/v1/audit?limit=10", headers=admin)
    assert page.status_code == 200
    (entry,) = page.json()["data"]
    assert entry["outcome"] == "answered" and entry["role"] == "admin"
    bad = client.get("/v1/audit?since=yesterday", headers=admin)
    assert bad.status_code == 400 and bad.json()["error"]["type"] == "invalid_request"
