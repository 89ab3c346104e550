"""Document expansion (``indexing.expansion``): a describer's text joins a document's words and
passages, stays with its version through new titles and re-indexes, goes with a new version,
and is never stored over a document that changed while the model wrote it."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from typing import Any

import numpy as np
import pytest

from indexing.analyzer import AnalyzerParams
from indexing.errors import DocumentNotFound
from indexing.expansion import DescribeFailed, Description, expand
from indexing.ingest import (
    IngestRequest,
    indexed_passages,
    ingest,
    reindex,
    summarise,
    update_metadata,
    vectorise,
)
from indexing.models import Summary
from indexing.pool import Pool
from indexing.semantic import passage_vectors
from indexing.store import Expanded, ExpansionClaim, Retitled, SummaryOutdated
from indexing.store import _summary_is as summary_is
from service.router import RoutingOptions, route
from tests.indexing.conftest import OpenPool
from tests.indexing.test_semantic import needs_model

DOCUMENTS = {
    "Animals at work": "Staff may bring a well-behaved companion animal to the office on "
    "Fridays, with their team's agreement. Assistance animals are welcome every day.",
    "Parking": "Visitors park in lot C. Staff park in lot A and may not use visitor spaces.",
}
#: Written by "the model" for the first document: words its text never uses.
DOG_DESCRIPTION = "Bringing pets such as a dog or cat into the workplace.\nCan I bring my dog?"
WORDS_ONLY = RoutingOptions(semantic_weight=0.0)


class Describer:
    """Describes from a table by title, records what it read, and can fail or act meanwhile."""

    model = "test-describer"
    longest_request = 1.0

    def __init__(self, texts: dict[str, str] | None = None) -> None:
        self.texts = texts or {}
        self.read: list[tuple[str, str]] = []
        self.failures: dict[str, DescribeFailed] = {}
        self.meanwhile: Callable[[str], Any] | None = None

    def describe(self, title: str, text: str) -> Description:
        self.read.append((title, text))
        if title in self.failures:
            raise self.failures[title]
        if self.meanwhile is not None:
            self.meanwhile(title)
        return Description(self.texts.get(title, f"About {title.lower()}."), self.model, 700, 60)


def ingest_all(pool: Pool) -> dict[str, str]:
    """Title → document id."""
    ids = {}
    for title, text in DOCUMENTS.items():
        request = IngestRequest(source=title, data=text.encode(), filename="a.txt", title=title)
        outcome = ingest(pool, request)
        assert outcome.document_id is not None
        ids[title] = outcome.document_id
    return ids


def titles(pool: Pool, question: str) -> list[str]:
    return [d.title for d in route(pool, question, top_k=3, options=WORDS_ONLY).documents]


def test_a_description_lets_its_words_find_the_document(pool: Pool) -> None:
    ingest_all(pool)
    assert "Animals at work" not in titles(pool, "what about my dog?")

    describer = Describer({"Animals at work": DOG_DESCRIPTION})
    report = expand(pool, describer)
    assert (report.described, report.failed, report.interrupted) == (2, 0, None)
    assert (report.input_tokens, report.output_tokens) == (1400, 120)
    # the describer read each document's own title and extracted text
    assert sorted(describer.read) == sorted(DOCUMENTS.items())

    pool.refresh()
    routed = route(pool, "what about my dog?", top_k=3, options=WORDS_ONLY)
    assert routed.documents[0].title == "Animals at work"
    # its best passage is the description, which is no span of the text
    assert routed.documents[0].passage is None
    assert pool.store.awaiting_expansion(limit=10) == []
    assert pool.store.count_awaiting_expansion() == 0
    assert expand(pool, describer).described == 0  # each version is described once
    ids = {d.title: d.id for d in pool.store.list_documents(limit=10)[0]}
    stored = pool.store.get_content(ids["Animals at work"])
    assert stored.expansion == DOG_DESCRIPTION and stored.expansion_model == "test-describer"
    assert (stored.expansion_input_tokens, stored.expansion_output_tokens) == (700, 60)


def test_the_description_is_one_more_passage_after_the_texts_own(pool: Pool) -> None:
    text = "# Pets\nDogs on Fridays.\n# Assistance animals\nWelcome every day."
    plain = summarise(pool, "Animals", text)
    described = summarise(pool, "Animals", text, "Bringing a cat to the office.")
    spans = [tuple(span) for span in described.passages.spans.tolist()]
    assert spans[:-1] == [tuple(span) for span in plain.passages.spans.tolist()]
    assert spans[-1] == (len(text), len(text))
    assert described.terms["cat"] == 1 and "cat" not in plain.terms
    assert described.length > plain.length
    last = indexed_passages("Animals", text, "Bringing a cat.", pool.config.passages)[-1]
    assert last[1] == "Animals\nBringing a cat."


def test_a_new_title_and_a_reindex_keep_the_description(pool: Pool) -> None:
    ids = ingest_all(pool)
    expand(pool, Describer({"Animals at work": DOG_DESCRIPTION}))
    update_metadata(pool, document_id=ids["Animals at work"], title="Office animals policy")
    pool.refresh()
    assert titles(pool, "what about my dog?")[0] == "Office animals policy"
    assert reindex(pool) == 2
    pool.refresh()
    assert titles(pool, "what about my dog?")[0] == "Office animals policy"
    assert pool.store.get_content(ids["Animals at work"]).expansion == DOG_DESCRIPTION


def test_a_new_version_is_described_anew(pool: Pool) -> None:
    ids = ingest_all(pool)
    expand(pool, Describer({"Animals at work": DOG_DESCRIPTION}))
    changed = IngestRequest(
        source="Animals at work",
        data=b"No animals in the office, assistance animals excepted.",
        filename="a.txt",
        title="Animals at work",
    )
    assert ingest(pool, changed).status == "updated"
    pool.refresh()
    assert "Animals at work" not in titles(pool, "what about my dog?")
    due = pool.store.awaiting_expansion(limit=10)
    assert [d.document_id for d in due] == [ids["Animals at work"]]
    assert pool.store.get_content(ids["Animals at work"]).expansion is None
    describer = Describer({"Animals at work": "Dogs are not allowed."})
    assert expand(pool, describer).described == 1
    assert describer.read == [("Animals at work", changed.data.decode())]


def test_a_description_is_never_stored_over_a_document_that_changed(pool: Pool) -> None:
    ids = ingest_all(pool)
    describer = Describer({"Animals at work": DOG_DESCRIPTION})

    def retitle_parking(title: str) -> None:
        if title == "Parking":
            update_metadata(pool, document_id=ids["Parking"], title="Car parks")

    describer.meanwhile = retitle_parking
    report = expand(pool, describer)
    assert (report.described, report.lost) == (1, 1)  # the retitled one was dropped
    (due,) = pool.store.awaiting_expansion(limit=10)
    assert due.title == "Car parks"
    describer.meanwhile = None
    assert expand(pool, describer).described == 1
    assert pool.store.get_content(ids["Parking"]).expansion == "About car parks."


def test_the_store_refuses_a_stale_or_second_description(pool: Pool) -> None:
    ids = ingest_all(pool)
    due = {d.document_id: d for d in pool.store.awaiting_expansion(limit=10)}[ids["Parking"]]
    content = pool.store.get_content(ids["Parking"])
    summary = summarise(pool, due.title, content.text, "Where to park.")

    def expanded(**changes: Any) -> Expanded:
        fields = dict(
            document_id=due.document_id,
            file_id=due.file_id,
            content_hash=content.content_hash,
            title=due.title,
            text="Where to park.",
            model="m",
            input_tokens=1,
            output_tokens=1,
            terms=summary.terms,
            length=summary.length,
            passages=summary.passages,
        )
        return Expanded(**{**fields, **changes})

    assert not pool.store.add_expansion(expanded(title="Car parks"))
    assert not pool.store.add_expansion(expanded(content_hash="0" * 64))
    assert not pool.store.add_expansion(expanded(file_id="file-elsewhere"))
    assert pool.store.add_expansion(expanded())
    assert not pool.store.add_expansion(expanded(text="Something else."))
    assert pool.store.get_content(ids["Parking"]).expansion == "Where to park."
    # nor is a described version marked as not described, nor another version
    mark = {"model": "m", "input_tokens": 1, "output_tokens": 0}
    assert not pool.store.mark_undescribed(
        document_id=ids["Parking"], content_hash=content.content_hash, **mark
    )
    other = pool.store.get_content(ids["Animals at work"])
    assert not pool.store.mark_undescribed(
        document_id=other.document_id, content_hash="0" * 64, **mark
    )
    assert pool.store.mark_undescribed(
        document_id=other.document_id, content_hash=other.content_hash, **mark
    )
    # and a marked version takes no description later
    animals = pool.store.get_document(ids["Animals at work"])
    assert animals.file_id is not None
    assert not pool.store.add_expansion(
        expanded(
            document_id=animals.id,
            file_id=animals.file_id,
            content_hash=other.content_hash,
            title=animals.title,
        )
    )
    assert pool.store.get_content(ids["Animals at work"]).expansion == ""


def test_a_retitle_or_reindex_read_before_a_description_landed_writes_nothing(
    pool: Pool,
) -> None:
    ids = ingest_all(pool)
    doc_id = ids["Animals at work"]
    content = pool.store.get_content(doc_id)
    file_id = pool.store.get_document(doc_id).file_id
    assert file_id is not None
    undescribed = summarise(pool, "Animals at work", content.text)
    retitled = summarise(pool, "Office animals", content.text)
    expand(pool, Describer({"Animals at work": DOG_DESCRIPTION}))
    assert not pool.store.update_summary(
        file_id=file_id,
        terms=undescribed.terms,
        length=undescribed.length,
        passages=undescribed.passages,
        title="Animals at work",
        expanded=False,
    )
    stale = Retitled(file_id, retitled.terms, retitled.length, retitled.passages, expanded=False)
    with pytest.raises(SummaryOutdated):
        pool.store.update_metadata(
            document_id=doc_id, title="Office animals", retitled=stale, title_was="Animals at work"
        )
    pool.refresh()
    assert titles(pool, "what about my dog?")[0] == "Animals at work"
    # through ingest, which reads again, the new title keeps the description
    update_metadata(pool, document_id=doc_id, title="Office animals")
    pool.refresh()
    assert titles(pool, "what about my dog?")[0] == "Office animals"


def test_a_document_the_model_cannot_describe_is_left_out_and_holds_up_no_other(
    pool: Pool,
) -> None:
    ingest_all(pool)
    describer = Describer()
    describer.failures["Parking"] = DescribeFailed("HTTP 400", kind="request", input_tokens=9)
    report = expand(pool, describer)
    assert (report.described, report.failed, report.input_tokens) == (1, 1, 709)
    assert [d.title for d in pool.store.awaiting_expansion(limit=10)] == ["Parking"]
    assert expand(pool, describer).failed == 0  # not tried again by this process
    assert len(describer.read) == 2


def test_a_version_the_model_would_not_describe_is_not_paid_for_again(
    open_pool: OpenPool,
) -> None:
    pool = open_pool()
    ids = ingest_all(pool)
    describer = Describer()
    describer.failures["Parking"] = DescribeFailed(
        "the model did not call describe_document (stop: refusal)",
        kind="reply",
        input_tokens=500,
        output_tokens=5,
    )
    assert expand(pool, describer).failed == 1
    marked = pool.store.get_content(ids["Parking"])
    assert marked.expansion == "" and (
        marked.expansion_input_tokens,
        marked.expansion_output_tokens,
    ) == (500, 5)
    # another process (a cron run, a restarted server) does not ask again
    assert open_pool().store.awaiting_expansion(limit=10) == []
    assert pool.store.count_awaiting_expansion() == 0
    # an empty description is none: the summary and passages are the text's own
    content = pool.store.get_content(ids["Parking"])
    plain = summarise(pool, "Parking", content.text)
    (entry,) = pool.store.index_entries([ids["Parking"]])
    assert entry.passages is not None and len(entry.passages) == len(plain.passages)
    # a new version is asked about again
    changed = IngestRequest(source="Parking", data=b"Staff park in lot B.", filename="a.txt")
    ingest(pool, changed)
    assert [d.document_id for d in pool.store.awaiting_expansion(limit=10)] == [ids["Parking"]]


def test_an_outage_stops_the_run_before_another_request(pool: Pool) -> None:
    ingest_all(pool)
    describer = Describer()
    for title in DOCUMENTS:
        describer.failures[title] = DescribeFailed("HTTP 529", kind="outage")
    report = expand(pool, describer, workers=1)
    assert report.interrupted == "HTTP 529" and report.described == report.failed == 0
    assert len(describer.read) == 1
    assert not pool.expansion_refused  # nothing held against the documents
    describer.failures.clear()
    assert expand(pool, describer).described == 2


def test_failures_in_a_row_stop_the_run_as_an_outage_would(pool: Pool) -> None:
    for n in range(8):
        text = f"Policy number {n} on parking."
        ingest(pool, IngestRequest(source=f"p{n}", data=text.encode(), filename="a.txt"))
    describer = Describer()
    describer.failures = {
        d.title: DescribeFailed("HTTP 400: credit", kind="request")
        for d in pool.store.list_documents(limit=10)[0]
    }
    report = expand(pool, describer, workers=1)
    assert report.failed == 3 and report.interrupted is not None
    assert "3 documents in a row" in report.interrupted and "HTTP 400: credit" in report.interrupted
    assert len(describer.read) == 3  # not a request per document
    # a loop that goes on after its pause counts on, and stops again at the next failure
    again = expand(pool, describer, workers=1, streak=report.streak)
    assert again.failed == 1 and again.interrupted is not None and again.streak == 4
    assert len(describer.read) == 4


def test_a_success_between_failures_starts_the_count_again(pool: Pool) -> None:
    for n in range(6):
        text = f"Policy number {n} on parking."
        ingest(pool, IngestRequest(source=f"p{n}", data=text.encode(), filename="a.txt"))
    order = [d.title for d in pool.store.awaiting_expansion(limit=10)]
    describer = Describer()
    for title in order[:2] + order[3:5]:  # fail, fail, describe, fail, fail, describe
        describer.failures[title] = DescribeFailed("HTTP 400", kind="request")
    report = expand(pool, describer, workers=1)
    assert (report.described, report.failed, report.interrupted) == (2, 4, None)
    assert report.streak == 0


def test_a_description_that_cannot_be_stored_is_not_paid_for_again(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    ingest_all(pool)

    def broken(expanded: Expanded) -> bool:
        raise RuntimeError("disk full")

    monkeypatch.setattr(pool.store, "add_expansion", broken)
    describer = Describer()
    report = expand(pool, describer)
    assert report.failed == 2 and report.input_tokens == 1400
    assert expand(pool, describer).handled == 0
    assert len(describer.read) == 2


def test_the_server_and_ingest_walk_the_queue_from_opposite_ends(pool: Pool) -> None:
    ingest_all(pool)
    ascending = [d.document_id for d in pool.store.awaiting_expansion(limit=10)]
    descending = [d.document_id for d in pool.store.awaiting_expansion(limit=10, descending=True)]
    assert descending == list(reversed(ascending)) and ascending == sorted(ascending)
    (last,) = pool.store.awaiting_expansion(limit=1, after=descending[0], descending=True)
    assert last.document_id == ascending[0]


def test_a_claimed_document_is_left_to_its_claimant_until_released_or_lapsed(
    pool: Pool,
) -> None:
    ids = ingest_all(pool)
    animals, parking = ids["Animals at work"], ids["Parking"]
    files = {d.document_id: d.file_id for d in pool.store.awaiting_expansion(limit=10)}

    def claim(document_id: str, seconds: float = 60) -> ExpansionClaim | None:
        return pool.store.claim_expansion(document_id, file_id=files[document_id], seconds=seconds)

    held = claim(animals)
    assert held is not None
    assert held.content_hash == pool.store.get_content(animals).content_hash
    assert claim(animals) is None  # held
    assert [d.document_id for d in pool.store.awaiting_expansion(limit=10)] == [parking]
    assert pool.store.count_awaiting_expansion() == 2  # still waiting, whoever asks
    pool.store.release_expansion(animals, replace(held, until=held.until + 1))  # not this one
    assert claim(animals) is None
    pool.store.release_expansion(animals, held)
    assert claim(animals, seconds=-1) is not None  # lapsed at once
    assert claim(animals) is not None
    # a claim is on a version: a new one is a new row, unclaimed whoever held the old one,
    # and a process that read the old version cannot claim the new one by mistake
    changed = IngestRequest(
        source="Animals at work", data=b"No animals.", filename="a.txt", title="Animals at work"
    )
    assert ingest(pool, changed).status == "updated"
    assert claim(animals) is None
    due = {d.document_id: d.file_id for d in pool.store.awaiting_expansion(limit=10)}
    assert set(due) == {animals, parking} and due[animals] != files[animals]
    # a described version cannot be claimed
    assert expand(pool, Describer()).described == 2
    assert claim(parking) is None


def test_a_version_replaced_before_its_claim_is_not_paid_for(pool: Pool) -> None:
    """The loop read the old version's file; the new one is left for the next look, and only
    the new one is described."""
    ingest_all(pool)
    describer = Describer()
    stale = pool.store.awaiting_expansion(limit=10)
    changed = IngestRequest(
        source="Parking", data=b"Park anywhere now.", filename="a.txt", title="Parking"
    )
    assert ingest(pool, changed).status == "updated"
    import indexing.expansion as expansion_module

    outcomes = [expansion_module._describe(pool, describer, due) for due in stale]
    assert sum(o.lost for o in outcomes) == 1 and sum(o.described for o in outcomes) == 1
    assert expand(pool, describer).described == 1
    assert [text for _, text in describer.read].count("Park anywhere now.") == 1


def test_a_version_replaced_between_claim_and_read_is_not_paid_for(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = ingest_all(pool)
    store = pool.store
    real_get_content = store.get_content

    def replaced_first(document_id: str) -> Any:
        if document_id == ids["Parking"]:
            changed = IngestRequest(
                source="Parking", data=b"Park anywhere now.", filename="a.txt", title="Parking"
            )
            monkeypatch.setattr(store, "get_content", real_get_content)
            assert ingest(pool, changed).status == "updated"
        return real_get_content(document_id)

    monkeypatch.setattr(store, "get_content", replaced_first)
    describer = Describer()
    report = expand(pool, describer, workers=1)
    assert report.lost == 1 and "Parking" not in [t for t, _ in describer.read]
    assert expand(pool, describer).described == 1
    assert [text for _, text in describer.read].count("Park anywhere now.") == 1
    assert store.count_awaiting_expansion() == 0


def test_two_processes_describe_each_document_once(open_pool: OpenPool) -> None:
    """A replica that starts while another is mid-request passes its document by; the first
    then finds the second's document described and does not ask about it either."""
    first, second = open_pool(), open_pool()
    ingest_all(first)
    asked_by_second = Describer()
    asked_by_first = Describer()
    reports = []

    def second_starts(title: str) -> None:
        if not reports:
            reports.append(expand(second, asked_by_second))

    asked_by_first.meanwhile = second_starts
    report = expand(first, asked_by_first, workers=1)
    (one,), (other,) = asked_by_first.read, asked_by_second.read
    assert {one[0], other[0]} == set(DOCUMENTS)
    assert (report.described, report.lost) == (1, 1)
    assert (reports[0].described, reports[0].lost) == (1, 0)
    assert first.store.count_awaiting_expansion() == 0


def test_a_failed_request_gives_its_claim_up(open_pool: OpenPool) -> None:
    first, second = open_pool(), open_pool()
    ingest_all(first)
    describer = Describer()
    for title in DOCUMENTS:
        describer.failures[title] = DescribeFailed("overloaded", kind="outage")
    report = expand(first, describer, workers=1)
    assert report.interrupted and len(describer.read) == 1
    # another process may ask at once, without waiting for the claim to lapse
    assert len(second.store.awaiting_expansion(limit=10)) == 2
    assert expand(second, Describer()).described == 2


def test_a_description_landing_during_a_reindex_is_kept(
    pool: Pool, monkeypatch: pytest.MonkeyPatch
) -> None:
    ids = ingest_all(pool)
    describer = Describer({"Animals at work": DOG_DESCRIPTION})
    real = pool.store.update_summary
    landed = []

    def update_after_a_description_lands(**kwargs: Any) -> bool:
        if not landed:
            landed.append(expand(pool, describer).described)
        return real(**kwargs)

    monkeypatch.setattr(pool.store, "update_summary", update_after_a_description_lands)
    assert reindex(pool) == 2 and landed == [2]
    pool.refresh()
    assert titles(pool, "what about my dog?")[0] == "Animals at work"
    assert pool.store.get_content(ids["Animals at work"]).expansion == DOG_DESCRIPTION


def test_a_description_over_a_summary_reindexed_otherwise_is_not_stored(
    open_pool: OpenPool,
) -> None:
    """A server on the old parameters describes a document that a ``kpool reindex`` under
    new ones has already done: storing it would put an old-parameter summary back. It is not
    stored, not asked about again by that process, and counts as a failure (three in a row
    pause the loop)."""
    old = open_pool()
    ids = ingest_all(old)
    new = open_pool(check_params=False, analyzer=AnalyzerParams(stopwords="none"))
    describer = Describer()

    def reindexed_meanwhile(title: str) -> None:
        if title == "Parking":
            reindex(new)

    describer.meanwhile = reindexed_meanwhile
    report = expand(old, describer, workers=1)
    parking = ids["Parking"]
    # the other document, described before or after the re-index, fared the same or landed
    assert report.failed >= 1 and report.described + report.failed == 2
    assert report.last_failure is not None and "other parameters" in report.last_failure
    assert old.store.get_content(parking).expansion is None
    assert expand(old, describer).handled == 0  # not asked again by this process
    # the re-index's summary stands
    file_id = old.store.get_document(parking).file_id
    with new.store.session() as session:
        stored = session.get(Summary, file_id)
        made_anew = summarise(new, "Parking", DOCUMENTS["Parking"])
        assert stored is not None and summary_is(
            stored, made_anew.terms, made_anew.length, made_anew.passages
        )


def test_deleting_a_document_takes_its_description(pool: Pool) -> None:
    ids = ingest_all(pool)
    expand(pool, Describer())
    from indexing.ingest import delete_document

    delete_document(pool, ids["Parking"])
    with pytest.raises(DocumentNotFound):
        pool.store.get_content(ids["Parking"])
    assert pool.store.get_content(ids["Animals at work"]).expansion == "About animals at work."


def test_routing_reports_the_texts_best_passage_never_the_description(pool: Pool) -> None:
    text = "# Parking\nStaff park in lot A.\n# Visitors\nVisitors park in lot C near the gate."
    ingest(pool, IngestRequest(source="p", data=text.encode(), filename="a.md", title="Car parks"))
    expand(pool, Describer({"Car parks": "Where visitors leave their car; visitors visitors."}))
    pool.refresh()
    (doc,) = route(pool, "where do visitors park?", top_k=1, options=WORDS_ONLY).documents
    assert doc.passage is not None
    assert text[doc.passage[0] : doc.passage[1]].startswith("Visitors park in lot C")


@needs_model
def test_the_description_gets_a_sentence_vector_of_its_own(open_pool: OpenPool) -> None:
    pool = open_pool(semantic=True)
    ids = ingest_all(pool)
    expand(pool, Describer({"Animals at work": DOG_DESCRIPTION}))
    assert pool.store.count_awaiting_vectors() == 2  # described before it had vectors
    assert vectorise(pool) == 2
    entries = {e.document_id: e for e in pool.store.index_entries()}
    animals = entries[ids["Animals at work"]].passages
    assert animals is not None and animals.embeddings is not None
    text = pool.store.get_content(ids["Animals at work"]).text
    assert len(animals) == len(indexed_passages("Animals at work", text, "x", pool.config.passages))
    assert np.all(np.isfinite(animals.embeddings.astype(np.float32)))
    pool.refresh()
    fused = route(pool, "is my puppy allowed in the office?", top_k=1)
    assert fused.documents[0].title == "Animals at work"


@needs_model
def test_a_description_after_the_vectors_adds_only_its_own(open_pool: OpenPool) -> None:
    """The text's passages keep the vectors they have; the description's is made by the
    describing process, and the whole is what computing them all afresh would give."""
    pool = open_pool(semantic=True)
    ids = ingest_all(pool)
    assert vectorise(pool) == 2
    before = {e.document_id: e.passages for e in pool.store.index_entries()}
    assert expand(pool, Describer({"Animals at work": DOG_DESCRIPTION})).described == 2
    assert pool.store.count_awaiting_vectors() == 0  # nothing to compute again
    for entry in pool.store.index_entries():
        kept, now = before[entry.document_id], entry.passages
        assert kept is not None and kept.embeddings is not None
        assert now is not None and now.embeddings is not None
        assert len(now) == len(kept) + 1
        np.testing.assert_array_equal(now.embeddings[:-1], kept.embeddings)
        content = pool.store.get_content(entry.document_id)
        texts = indexed_passages(entry.title, content.text, content.expansion, pool.config.passages)
        afresh = passage_vectors(pool.encoder, entry.title, [t for _, t in texts])
        assert afresh is not None
        np.testing.assert_allclose(now.embeddings.astype(np.float32), afresh, atol=2e-3)
    pool.refresh()
    (top,) = route(pool, "is my puppy allowed in the office?", top_k=1).documents
    assert top.document_id == ids["Animals at work"]


@needs_model
def test_vectors_made_otherwise_are_made_again_with_the_description(
    open_pool: OpenPool, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Kept vectors must be the text's passages' as now cut: vectors stored for another cut
    (here, one passage fewer) are not extended but computed again."""
    pool = open_pool(semantic=True)
    ingest_all(pool)
    assert vectorise(pool) == 2
    import indexing.store as store_module

    real = store_module._described_vectors

    def other_cut(summary: Any, passages: Any, description: Any) -> Any:
        summary.passage_layout = summary.passage_layout[:-16]  # a layout row is 16 bytes
        return real(summary, passages, description)

    monkeypatch.setattr(store_module, "_described_vectors", other_cut)
    assert expand(pool, Describer()).described == 2
    assert pool.store.count_awaiting_vectors() == 2
    assert vectorise(pool) == 2


@needs_model
def test_vectors_read_before_a_description_landed_are_not_stored(open_pool: OpenPool) -> None:
    pool = open_pool(semantic=True)
    ingest_all(pool)
    early = pool.store.awaiting_vectors(limit=10)
    expand(pool, Describer())
    import indexing.ingest as ingest_module

    # the vectoriser reads the text now, with its description, against the layout read before
    assert not any(ingest_module._add_vectors(pool, due, None) for due in early)
    assert not pool.vectors_refused  # not mistaken for passages cut otherwise
    assert vectorise(pool) == 2


@needs_model
def test_meaning_reports_a_passage_of_the_text_too(open_pool: OpenPool) -> None:
    pool = open_pool(semantic=True)
    ingest_all(pool)
    expand(pool, Describer({"Animals at work": DOG_DESCRIPTION}))
    vectorise(pool)
    pool.refresh()
    (doc,) = route(pool, "is my puppy allowed in the office?", top_k=1).documents
    assert doc.passage is not None and doc.passage[1] > doc.passage[0]
