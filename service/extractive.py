"""The answerer that needs no API key: the best sentences of the routed documents, quoted.

Passage-level BM25: the routed documents' stored text is split into sentences, the sentences are
scored against the question with the pool's own analyzer and index code, and the best few are
returned verbatim with ``char_location`` citations (``text[start:end] == cited_text``).
"""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Iterator, Sequence

from indexing.errors import DocumentNotFound
from indexing.index import IndexEntry, InvertedIndex
from indexing.pool import Pool
from service.answer import NOT_COVERED, Answer, Citation, CitationNumbers, markers
from service.prompt import RequestDocument

MAX_SENTENCES = 3
#: Shorter passages are headings or fragments: they match well and say little.
MIN_PASSAGE_TERMS = 5
#: A sentence ends at . ! or ? followed by a space or line end, or at a blank line / bullet.
_SENTENCE = re.compile(r"\S(?:.*?)(?:[.!?](?=\s|$)|(?=\n\s*\n)|(?=\n\s*[-*•]\s)|$)", re.DOTALL)
_MAX_SENTENCE_CHARS = 600


def sentence_spans(text: str) -> Iterator[tuple[int, int]]:
    """[start, end) of each sentence of ``text``, trimmed of surrounding whitespace."""
    for match in _SENTENCE.finditer(text):
        start, end = match.start(), match.end()
        while end > start and text[end - 1].isspace():
            end -= 1
        if end - start > _MAX_SENTENCE_CHARS:
            end = start + _MAX_SENTENCE_CHARS
        if end > start:
            yield start, end


def answer_extractively(pool: Pool, question: str, documents: Sequence[RequestDocument]) -> Answer:
    """Quote the sentences of ``documents`` that best match ``question``."""
    passages = InvertedIndex(pool.config.bm25)
    entries: list[IndexEntry] = []
    texts: dict[str, str] = {}
    for doc in documents:
        try:
            text = pool.store.get_content(doc.document_id).text
        except DocumentNotFound:
            continue  # deleted while the question was in flight: answer from the others
        texts[doc.document_id] = text
        for start, end in sentence_spans(text):
            if text[start] == "#":
                continue  # a Markdown heading
            terms = pool.analyzer.terms(text[start:end])
            if len(terms) >= MIN_PASSAGE_TERMS:
                entries.append(
                    IndexEntry(
                        file_id=f"{doc.document_id}:{start}:{end}",
                        document_id=f"{doc.document_id}:{start}",
                        title=doc.title,
                        term_freqs=Counter(terms),
                        length=len(terms),
                    )
                )
    passages.bulk_load(entries)
    hits = passages.search(
        pool.analyzer.question_terms(question), top_k=MAX_SENTENCES, explain=False
    )
    if not hits:
        return Answer(NOT_COVERED, [], list(documents), mode="extractive")
    by_id = {doc.document_id: doc for doc in documents}
    numbers = CitationNumbers()
    lines = []
    for hit in hits:
        document_id, first, last = hit.entry.file_id.rsplit(":", 2)
        start, end = int(first), int(last)
        doc = by_id[document_id]
        quote = texts[document_id][start:end]
        citation = numbers.number(
            Citation(
                number=0,
                file_id=doc.file_id,
                document_id=doc.document_id,
                document_title=doc.title,
                cited_text=quote,
                type="char_location",
                start_char_index=start,
                end_char_index=end,
            )
        )
        lines.append(f"{quote} {markers([citation])}")
    intro = "These passages of the documents match your question:"
    return Answer(
        "\n\n".join([intro, *lines]), numbers.citations, list(documents), mode="extractive"
    )
