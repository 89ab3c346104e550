"""What a question gets back: the answer text with numbered markers, and its citations.

Both answerers (Claude through the Messages API, and the extractive one that runs with no API
key) produce this same shape. Citations are mapped to documents through the request's own order
(``document_index``), never through the title the model repeats back.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from service.prompt import RequestDocument

Mode = Literal["claude", "extractive"]

_MARKER = re.compile(r"\[(\d+)\]")

#: How an answer that could not send the documents matching its question begins.
TOO_LONG = "The documents that match this question are too long to send"

NOT_COVERED = (
    "No document in the pool covers this question. Try other words, or ask the team that owns "
    "the policy."
)


@dataclass(frozen=True)
class Citation:
    """One cited passage. Text documents are located by characters (``start_char_index``
    inclusive, ``end_char_index`` exclusive); PDFs by pages (1-based, end exclusive)."""

    number: int
    file_id: str
    document_id: str
    document_title: str
    cited_text: str
    type: str
    start_char_index: int | None = None
    end_char_index: int | None = None
    start_page_number: int | None = None
    end_page_number: int | None = None

    def location(self) -> tuple[Any, ...]:
        """What makes two citations one: the same span of the same file, and for pages (a
        page holds many passages) the same quoted text as well."""
        return (
            self.file_id,
            self.start_char_index,
            self.end_char_index,
            self.start_page_number,
            self.end_page_number,
            self.cited_text if self.type == "page_location" else None,
        )

    def as_dict(self) -> dict[str, Any]:
        data = {
            "number": self.number,
            "file_id": self.file_id,
            "document_id": self.document_id,
            "document_title": self.document_title,
            "cited_text": self.cited_text,
            "type": self.type,
        }
        if self.type == "page_location":
            data["start_page_number"] = self.start_page_number
            data["end_page_number"] = self.end_page_number
        else:
            data["start_char_index"] = self.start_char_index
            data["end_char_index"] = self.end_char_index
        return data


@dataclass(frozen=True)
class Usage:
    input_tokens: int = 0
    output_tokens: int = 0
    cache_creation_input_tokens: int = 0
    cache_read_input_tokens: int = 0

    def as_dict(self) -> dict[str, int]:
        return {
            "input_tokens": self.input_tokens,
            "output_tokens": self.output_tokens,
            "cache_creation_input_tokens": self.cache_creation_input_tokens,
            "cache_read_input_tokens": self.cache_read_input_tokens,
        }

    def __add__(self, other: Usage) -> Usage:
        return Usage(
            self.input_tokens + other.input_tokens,
            self.output_tokens + other.output_tokens,
            self.cache_creation_input_tokens + other.cache_creation_input_tokens,
            self.cache_read_input_tokens + other.cache_read_input_tokens,
        )


@dataclass(frozen=True)
class Answer:
    """``answer`` is the text shown, with ``[n]`` markers; ``reply`` is what the model said (what
    a later turn of the conversation sends back); ``documents`` are the ones routed for it."""

    answer: str
    citations: list[Citation]
    documents: list[RequestDocument]
    mode: Mode
    model: str | None = None
    usage: Usage = field(default_factory=Usage)
    request_id: str | None = None
    reply: str = ""
    conversation_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "citations": [c.as_dict() for c in self.citations],
            "documents": documents_dict(self.documents),
            "usage": self.usage.as_dict(),
            "model": self.model,
            "mode": self.mode,
            "request_id": self.request_id,
            "conversation_id": self.conversation_id,
        }


def documents_dict(documents: Sequence[RequestDocument]) -> list[dict[str, Any]]:
    """Documents as an answer lists them, with their scores; ``documents`` come best first
    (routing's order, or the reranking model's, which the local scores need not follow)."""
    return [
        {
            "document_id": d.document_id,
            "file_id": d.file_id,
            "title": d.title,
            "score": round(d.score, 6),
        }
        for d in documents
    ]


@dataclass(frozen=True)
class TextDelta:
    """More answer text (``[n]`` markers included, each after its ``CitationFound``)."""

    text: str


@dataclass(frozen=True)
class CitationFound:
    """A citation, numbered, as soon as it is known."""

    citation: Citation


@dataclass(frozen=True)
class Finished:
    """The whole answer; always the last event of a reply."""

    answer: Answer


@dataclass(frozen=True)
class Spent:
    """What the answer has cost so far, as the API reported it while streaming (its totals,
    not an increment): what is charged if the answer never finishes."""

    usage: Usage


AnswerEvent = TextDelta | CitationFound | Spent | Finished


def events_of(answer: Answer) -> Iterator[AnswerEvent]:
    """A complete answer as events, paragraph by paragraph, each citation before its marker."""
    by_number = {c.number: c for c in answer.citations}
    announced: set[int] = set()
    paragraphs = answer.answer.split("\n\n")
    for position, paragraph in enumerate(paragraphs):
        for number in (int(n) for n in _MARKER.findall(paragraph)):
            if number in by_number and number not in announced:
                announced.add(number)
                yield CitationFound(by_number[number])
        yield TextDelta(paragraph if position == len(paragraphs) - 1 else paragraph + "\n\n")
    for citation in answer.citations:  # cited but never marked: still announced
        if citation.number not in announced:
            yield CitationFound(citation)
    yield Finished(answer)


class CitationNumbers:
    """Numbers citations in order of first appearance; the same passage keeps its number."""

    def __init__(self) -> None:
        self.citations: list[Citation] = []
        self._numbers: dict[tuple[Any, ...], int] = {}

    def number(self, citation: Citation) -> Citation:
        key = citation.location()
        if key not in self._numbers:
            self._numbers[key] = len(self.citations) + 1
            numbered = Citation(**{**citation.__dict__, "number": self._numbers[key]})
            self.citations.append(numbered)
        return self.citations[self._numbers[key] - 1]


def markers(citations: Iterable[Citation]) -> str:
    """``[1][3]`` for the citations a passage carries, each once, in order."""
    seen = dict.fromkeys(c.number for c in citations)
    return "".join(f"[{n}]" for n in seen)


def cited_document(documents: Sequence[RequestDocument], index: int) -> RequestDocument | None:
    """The document a ``document_index`` points at in this request, if it is in range."""
    return documents[index] if 0 <= index < len(documents) else None


class Reply(Protocol):
    """An answer on its way: iterate it once for its events (``Finished`` last); ``close``
    abandons it (the caller went away) and releases what it holds."""

    def __iter__(self) -> Iterator[AnswerEvent]: ...

    def close(self) -> None: ...


class StaticReply:
    """A reply whose answer is already complete."""

    def __init__(self, answer: Answer) -> None:
        self.answer = answer

    def __iter__(self) -> Iterator[AnswerEvent]:
        return events_of(self.answer)

    def close(self) -> None:
        pass


def collect(reply: Reply) -> Answer:
    """The reply's complete answer (the events in between are dropped)."""
    try:
        for event in reply:
            if isinstance(event, Finished):
                return event.answer
    finally:
        reply.close()
    raise RuntimeError("a reply ended without its answer")
