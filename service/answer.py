"""What a question gets back: the answer text with numbered markers, and its citations.

Both answerers (Claude through the Messages API, and the extractive one that runs with no API
key) produce this same shape. Citations are mapped to documents through the request's own order
(``document_index``), never through the title the model repeats back.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from service.prompt import RequestDocument

Mode = Literal["claude", "extractive"]

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
        return (
            self.file_id,
            self.start_char_index,
            self.end_char_index,
            self.start_page_number,
            self.end_page_number,
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


@dataclass(frozen=True)
class Answer:
    answer: str
    citations: list[Citation]
    documents: list[RequestDocument]
    mode: Mode
    model: str | None = None
    usage: Usage = field(default_factory=Usage)
    request_id: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {
            "answer": self.answer,
            "citations": [c.as_dict() for c in self.citations],
            "documents": [
                {
                    "document_id": d.document_id,
                    "file_id": d.file_id,
                    "title": d.title,
                    "score": round(d.score, 6),
                }
                for d in sorted(self.documents, key=lambda d: -d.score)
            ],
            "usage": self.usage.as_dict(),
            "model": self.model,
            "mode": self.mode,
            "request_id": self.request_id,
        }


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
