"""The SQL store on SQLite and PostgreSQL: migrations, atomic versions, paging, the change log."""

from __future__ import annotations

import base64
import hashlib
import json
from collections import Counter
from collections.abc import Iterator
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from alembic import command
from sqlalchemy import inspect, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import select

from indexing.errors import DocumentNotFound, InvalidInput
from indexing.filters import any_of, between
from indexing.models import Change, Summary
from indexing.store import (
    NewVersion,
    Store,
    alembic_config,
    encode_cursor,
    make_engine,
    schema_is_current,
)
from indexing.summary import TermVector

TABLES = {
    "alembic_version",
    "changes",
    "contents",
    "documents",
    "pool_meta",
    "retired_files",
    "summaries",
    "upload_intents",
}


@pytest.fixture
def store(database_url: str) -> Iterator[Store]:
    store = Store.open(database_url)
    yield store
    store.close()


def version(
    source: str = "/docs/leave.md",
    file_id: str = "file_leave_1",
    text: str = "annual leave carries over",
    *,
    tags: tuple[str, ...] = (),
    groups: tuple[str, ...] = (),
    attributes: dict[str, Any] | None = None,
) -> NewVersion:
    terms = Counter(text.split())
    return NewVersion(
        source=source,
        title=source.rsplit("/", 1)[-1],
        filename=source.rsplit("/", 1)[-1],
        format="markdown",
        mime_type="text/plain",
        content_hash=hashlib.sha256(f"{source}\n{text}".encode()).hexdigest(),
        file_id=file_id,
        size_bytes=len(text),
        token_estimate=len(text) // 4,
        page_count=None,
        warnings=[],
        tags=list(tags),
        groups=list(groups),
        attributes=attributes or {},
        terms=dict(terms),
        length=sum(terms.values()),
        original=text.encode(),
        text=text,
        page_spans=None,
    )


def summaries(store: Store) -> dict[str, str]:
    """file id → document id for every stored summary."""
    with store.session() as session:
        return {s.file_id: s.document_id for s in session.exec(select(Summary))}


def changes(store: Store) -> list[tuple[str, str, str | None]]:
    return [(c.op, c.document_id, c.file_id) for c in store.changes_since(0)]


# -------------------------------------------------------------------------------- migrations


def test_migrations_create_the_schema_in_an_empty_database(store: Store) -> None:
    assert TABLES.issubset(inspect(store.engine).get_table_names())
    assert schema_is_current(store.engine)


def test_opening_twice_is_idempotent(database_url: str) -> None:
    first = Store.open(database_url)
    second = Store.open(database_url)
    try:
        assert schema_is_current(second.engine)
        assert second.count_documents() == 0
    finally:
        first.close()
        second.close()


def test_an_existing_pool_is_upgraded_in_place_and_keeps_its_data(database_url: str) -> None:
    store = Store.open(database_url)
    committed = store.commit_version(version=version(), intent_id=None)
    store.close()

    reopened = Store.open(database_url)
    try:
        assert schema_is_current(reopened.engine)
        assert reopened.get_document(committed.document.id).file_id == "file_leave_1"
    finally:
        reopened.close()


# ---------------------------------------------------------------------------------- versions


def test_commit_version_creates_a_document_with_its_summary_and_content(store: Store) -> None:
    committed = store.commit_version(version=version(), intent_id=None)

    doc = committed.document
    assert committed.created and committed.replaced_file_id is None
    assert (doc.version, doc.file_id, doc.status) == (1, "file_leave_1", "active")
    assert summaries(store) == {"file_leave_1": doc.id}
    assert store.get_content(doc.id).text == "annual leave carries over"
    assert changes(store) == [("upsert", doc.id, "file_leave_1")]


def test_commit_version_replaces_the_previous_version(store: Store) -> None:
    first = store.commit_version(version=version(), intent_id=None).document

    committed = store.commit_version(
        version=version(file_id="file_leave_2", text="leave no longer carries over"),
        intent_id=None,
    )

    doc = committed.document
    assert not committed.created
    assert committed.replaced_file_id == "file_leave_1"
    assert (doc.id, doc.version, doc.file_id) == (first.id, 2, "file_leave_2")
    assert summaries(store) == {"file_leave_2": doc.id}
    assert store.get_content(doc.id).text == "leave no longer carries over"
    assert [(r.file_id, r.reason) for r in store.retired_files()] == [
        ("file_leave_1", "replaced by a new version")
    ]
    assert changes(store) == [
        ("upsert", doc.id, "file_leave_1"),
        ("upsert", doc.id, "file_leave_2"),
    ]


def test_a_failed_replacement_leaves_the_current_version_whole(store: Store) -> None:
    current = store.commit_version(version=version(), intent_id=None).document
    store.commit_version(version=version("/docs/travel.md", "file_travel"), intent_id=None)
    before = (summaries(store), changes(store), store.retired_files())

    # The new version claims a file id another document already uses: the commit must fail
    # as a whole, not after swapping the summary or retiring the old file.
    clash = version(file_id="file_travel", text="a new leave text")
    with pytest.raises(IntegrityError):
        store.commit_version(version=clash, intent_id=None)

    assert store.get_document(current.id).file_id == "file_leave_1"
    assert store.get_content(current.id).text == "annual leave carries over"
    assert (summaries(store), changes(store), store.retired_files()) == before


def test_commit_version_clears_its_upload_intent(store: Store) -> None:
    intent_id = store.record_intent(
        source="/docs/leave.md", filename="leave.md", content_hash="h", owner="host:1"
    )
    store.set_intent_file(intent_id=intent_id, file_id="file_leave_1")
    other = store.record_intent(
        source="/docs/other.md", filename="other.md", content_hash="h2", owner="host:1"
    )

    store.commit_version(version=version(), intent_id=intent_id)

    assert [i.id for i in store.intents()] == [other]


def test_intents_are_listed_with_their_file_ids_until_dropped(store: Store) -> None:
    first = store.record_intent(source="/a.md", filename="a.md", content_hash="ha", owner="h:1")
    second = store.record_intent(source="/b.md", filename="b.md", content_hash="hb", owner="h:1")
    store.set_intent_file(intent_id=second, file_id="file_b")

    assert [(i.id, i.source, i.file_id) for i in store.intents()] == [
        (first, "/a.md", None),
        (second, "/b.md", "file_b"),
    ]

    store.drop_intent(intent_id=first)
    assert [i.id for i in store.intents()] == [second]


def test_delete_document_removes_it_and_retires_its_file(store: Store) -> None:
    doc = store.commit_version(version=version(), intent_id=None).document
    kept = store.commit_version(version=version("/docs/travel.md", "file_travel"), intent_id=None)

    store.delete_document(document_id=doc.id)

    with pytest.raises(DocumentNotFound):
        store.get_document(doc.id)
    with pytest.raises(DocumentNotFound):
        store.get_content(doc.id)
    assert summaries(store) == {"file_travel": kept.document.id}
    assert [r.file_id for r in store.retired_files()] == ["file_leave_1"]
    assert changes(store)[-1] == ("delete", doc.id, "file_leave_1")
    assert store.referenced_file_ids() == {"file_travel"}


def test_delete_of_an_unknown_document_is_not_found(store: Store) -> None:
    with pytest.raises(DocumentNotFound, match="doc_nope"):
        store.delete_document(document_id="doc_nope")


def test_update_metadata_logs_a_change_and_keeps_the_file(store: Store) -> None:
    doc = store.commit_version(version=version(tags=("hr",)), intent_id=None).document
    seen = store.latest_change()

    updated = store.update_metadata(
        document_id=doc.id, title="Leave", tags=["policy", "hr", "policy"], groups=["staff"]
    )

    assert (updated.title, updated.tags, updated.groups) == ("Leave", ["hr", "policy"], ["staff"])
    assert updated.file_id == "file_leave_1" and updated.version == 1
    assert [(c.op, c.document_id) for c in store.changes_since(seen)] == [("upsert", doc.id)]
    stored = store.get_document(doc.id)
    assert (stored.tags, stored.groups) == (["hr", "policy"], ["staff"])


# ------------------------------------------------------------------------------------ paging


def make_documents(store: Store, count: int) -> list[str]:
    """``count`` documents tagged "common"; their ids, sorted."""
    ids = []
    for n in range(count):
        v = version(f"/docs/{n}.md", f"file_{n}", f"document number {n}", tags=("common",))
        ids.append(store.commit_version(version=v, intent_id=None).document.id)
    return sorted(ids)


def all_pages(store: Store, *, limit: int, tag: str | None = None) -> list[list[str]]:
    pages, cursor = [], None
    while True:
        docs, cursor = store.list_documents(limit=limit, cursor=cursor, tag=tag)
        pages.append([d.id for d in docs])
        if cursor is None:
            return pages


def test_list_documents_pages_through_every_document_once_in_id_order(store: Store) -> None:
    ids = make_documents(store, 5)

    assert all_pages(store, limit=2) == [ids[0:2], ids[2:4], ids[4:5]]
    assert all_pages(store, limit=5) == [ids]


@pytest.mark.parametrize("limit", [1, 2, 10])
def test_list_documents_filters_by_tag_across_pages(store: Store, limit: int) -> None:
    ids = make_documents(store, 7)
    # Tag documents far down the id order, so a page must look past untagged ones.
    for doc_id in (ids[3], ids[6]):
        store.update_metadata(document_id=doc_id, tags=["rare"])

    pages = all_pages(store, limit=limit, tag="rare")

    assert [doc_id for page in pages for doc_id in page] == [ids[3], ids[6]]
    assert all(0 < len(page) <= limit for page in pages)


def test_a_tag_no_document_has_gives_one_empty_page(store: Store) -> None:
    make_documents(store, 3)
    assert store.list_documents(tag="nobody") == ([], None)


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "not a cursor!",
        _b64(b"\xff\xfe"),
        _b64(json.dumps(["after"]).encode()),
        _b64(json.dumps({"before": "doc_1"}).encode()),
        _b64(json.dumps({"after": 5}).encode()),
    ],
    ids=["garbage", "not-utf8", "json-list", "no-after", "after-not-a-string"],
)
def test_an_invalid_cursor_is_invalid_input(store: Store, cursor: str) -> None:
    with pytest.raises(InvalidInput, match="invalid cursor"):
        store.list_documents(cursor=cursor)


def test_a_cursor_past_the_end_gives_an_empty_page(store: Store) -> None:
    make_documents(store, 2)
    assert store.list_documents(cursor=encode_cursor("doc_zzzz")) == ([], None)


# ------------------------------------------------------------------------- index, meta, time


def test_index_entries_give_the_routing_view_of_all_or_some_documents(store: Store) -> None:
    leave = store.commit_version(
        version=version(tags=("hr",), groups=("staff",)), intent_id=None
    ).document
    travel = store.commit_version(
        version=version("/docs/travel.md", "file_travel", "travel travel receipts"),
        intent_id=None,
    ).document

    entries = {e.file_id: e for e in store.index_entries()}
    only_travel = [e.document_id for e in store.index_entries([travel.id])]

    assert set(entries) == {"file_leave_1", "file_travel"}
    assert entries["file_leave_1"].document_id == leave.id
    assert entries["file_leave_1"].tags == frozenset({"hr"})
    assert entries["file_leave_1"].groups == frozenset({"staff"})
    stored = entries["file_travel"].terms()
    expected = TermVector.from_counts({"travel": 2, "receipts": 1})
    assert stored.hashes.tolist() == expected.hashes.tolist()
    assert stored.counts.tolist() == expected.counts.tolist()
    assert entries["file_travel"].length == 3
    assert only_travel == [travel.id]


def test_attributes_reach_the_routing_view_and_follow_updates(store: Store) -> None:
    attributes = {"department": "HR", "effective": "2024-04-01", "region": ["UK", "IE"], "n": 2}
    doc = store.commit_version(version=version(attributes=attributes), intent_id=None).document
    assert [e.attributes for e in store.index_entries()] == [attributes]

    store.update_metadata(document_id=doc.id, attributes={"department": "Finance"})

    assert [e.attributes for e in store.index_entries([doc.id])] == [{"department": "Finance"}]
    assert store.get_document(doc.id).attributes == {"department": "Finance"}


@pytest.mark.parametrize("limit", [1, 2, 50])
def test_list_documents_filters_by_attributes_across_pages(store: Store, limit: int) -> None:
    for n in range(8):
        attributes = {"n": n, "parity": ["even", "odd"][n % 2], "day": f"2024-01-{n + 1:02d}"}
        v = version(f"/docs/{n}.md", f"file_{n}", f"document number {n}", attributes=attributes)
        store.commit_version(version=v, intent_id=None)

    def listed(**conditions: Any) -> list[int]:
        found, cursor = [], None
        while True:
            docs, cursor = store.list_documents(limit=limit, cursor=cursor, attributes=conditions)
            found += [d.attributes["n"] for d in docs]
            if cursor is None:
                return sorted(found)

    assert listed(parity=any_of(["odd"])) == [1, 3, 5, 7]
    assert listed(parity=any_of(["odd"]), n=between({"gt": 2, "lte": 5})) == [3, 5]
    assert listed(day=between({"gte": "2024-01-07"})) == [6, 7]
    assert listed(parity=any_of(["none"])) == []


def test_excerpts_cut_the_text_by_character_in_the_database(store: Store) -> None:
    text = "Congé annuel: 25 jours — reportables jusqu'au 31 mars."
    doc = store.commit_version(version=version(text=text), intent_id=None).document
    spans = [(doc.id, 0, 5), (doc.id, 14, 22), (doc.id, 40, 500), (doc.id, 3, 3), ("gone", 0, 9)]
    assert store.excerpts(spans) == [text[0:5], text[14:22], text[40:500], "", ""]


def test_meta_is_stored_and_replaced(store: Store) -> None:
    assert store.get_meta("index_params") is None

    store.set_meta("index_params", {"bm25": {"k1": 1.2}})
    store.set_meta("index_params", {"bm25": {"k1": 0.9}})

    assert store.get_meta("index_params") == {"bm25": {"k1": 0.9}}


def test_timestamps_come_back_timezone_aware_in_utc(store: Store) -> None:
    before = datetime.now(UTC)
    doc = store.commit_version(version=version(), intent_id=None).document
    store.commit_version(version=version(file_id="file_leave_2"), intent_id=None)
    store.record_intent(source="/x.md", filename="x.md", content_hash="h", owner="h:1")
    after = datetime.now(UTC)

    stamps = [
        store.get_document(doc.id).created_at,
        store.get_document(doc.id).updated_at,
        store.intents()[0].created_at,
        store.retired_files()[0].created_at,
        *(c.at for c in store.changes_since(0)),
    ]
    for stamp in stamps:
        assert stamp.utcoffset() == timedelta(0)
        assert before <= stamp <= after


def test_stored_content_keeps_the_original_bytes_and_reads_them_apart(store: Store) -> None:
    v = replace(version(), original=b"\x00\xffbinary original")
    doc = store.commit_version(version=v, intent_id=None).document

    assert store.get_original(doc.id) == b"\x00\xffbinary original"
    content = store.get_content(doc.id)
    assert content.text == v.text
    assert "original" in inspect(content).unloaded  # text readers never load it
    with pytest.raises(DocumentNotFound):
        store.get_original("doc_gone")


def test_change_log_is_ordered_and_read_from_a_position(store: Store) -> None:
    doc = store.commit_version(version=version(), intent_id=None).document
    middle = store.latest_change()
    store.update_metadata(document_id=doc.id, title="Leave")
    store.delete_document(document_id=doc.id)

    later = store.changes_since(middle)
    with store.session() as session:
        every = list(session.exec(select(Change)))

    assert [c.op for c in later] == ["upsert", "delete"]
    assert [c.seq for c in every] == sorted(c.seq for c in every)
    assert store.latest_change() == later[-1].seq


def test_a_pool_with_json_summaries_upgrades_in_place(database_url: str) -> None:
    """Revision 0001 kept summaries as JSON; 0002 converts them to hashed vectors."""
    engine = make_engine(database_url)
    config = alembic_config()
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.upgrade(config, "0001")
        now = datetime.now(UTC)
        connection.execute(
            text(
                "INSERT INTO documents (id, source, title, tags, groups, attributes, filename,"
                " format, mime_type, content_hash, file_id, version, size_bytes, token_estimate,"
                " warnings, status, created_at, updated_at) VALUES ('doc_old', '/old.md',"
                " 'Old', '[]', '[]', '{}', 'old.md', 'markdown', 'text/plain', 'h', 'file_old',"
                " 1, 10, 3, '[]', 'active', :now, :now)"
            ),
            {"now": now},
        )
        connection.execute(
            text(
                "INSERT INTO summaries (file_id, document_id, length, terms)"
                " VALUES ('file_old', 'doc_old', 3, :terms)"
            ),
            {"terms": json.dumps({"leav": 2, "annual": 1})},
        )
    engine.dispose()

    store = Store.open(database_url)
    try:
        assert schema_is_current(store.engine)
        (entry,) = list(store.index_entries())
    finally:
        store.close()
    expected = TermVector.from_counts({"leav": 2, "annual": 1})
    assert entry.file_id == "file_old" and entry.length == 3
    assert entry.terms().hashes.tolist() == expected.hashes.tolist()
    assert entry.terms().counts.tolist() == expected.counts.tolist()


def test_processes_opening_a_fresh_pool_at_once_migrate_it_once(database_url: str) -> None:
    """A server and a cron job starting together both open an empty database."""
    from concurrent.futures import ThreadPoolExecutor

    def open_and_count(_: int) -> int:
        opened = Store.open(database_url)
        try:
            return opened.count_documents()
        finally:
            opened.close()

    with ThreadPoolExecutor(max_workers=4) as workers:
        assert list(workers.map(open_and_count, range(4))) == [0, 0, 0, 0]
    store = Store.open(database_url)
    try:
        assert schema_is_current(store.engine)
    finally:
        store.close()
