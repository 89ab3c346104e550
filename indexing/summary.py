"""The BM25 summary of a document as it is stored: term frequencies, compactly.

A term is stored as a 64-bit hash of its text rather than the text itself: a summary is then two
flat arrays (sorted hashes, counts) that load with ``np.frombuffer`` and join a 100,000-document
index with one vectorised sort, instead of millions of string look-ups. Questions are hashed the
same way, so nothing needs the reverse mapping. With a vocabulary of a million terms the chance
that any two share a hash is about 3 in 100 million.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace

import numpy as np
import numpy.typing as npt

HashArray = npt.NDArray[np.int64]
CountArray = npt.NDArray[np.uint32]


def term_hash(term: str) -> int:
    """A stable signed 64-bit hash of a term (BLAKE2b, 8 bytes, little-endian)."""
    digest = hashlib.blake2b(term.encode("utf-8"), digest_size=8).digest()
    return int.from_bytes(digest, "little", signed=True)


@dataclass(frozen=True, eq=False)
class TermVector:
    """A document's terms as sorted hashes with their counts."""

    hashes: HashArray
    counts: CountArray

    @classmethod
    def from_counts(cls, term_freqs: Mapping[str, int]) -> TermVector:
        hashes = np.fromiter(
            (term_hash(t) for t in term_freqs), dtype=np.int64, count=len(term_freqs)
        )
        counts = np.fromiter(term_freqs.values(), dtype=np.uint32, count=len(term_freqs))
        order = np.argsort(hashes)
        return cls(hashes[order], counts[order])

    @classmethod
    def from_bytes(cls, hashes: bytes, counts: bytes) -> TermVector:
        return cls(np.frombuffer(hashes, dtype="<i8"), np.frombuffer(counts, dtype="<u4"))

    def to_bytes(self) -> tuple[bytes, bytes]:
        return self.hashes.astype("<i8").tobytes(), self.counts.astype("<u4").tobytes()

    def __len__(self) -> int:
        return len(self.hashes)


LayoutArray = npt.NDArray[np.uint32]
EmbeddingArray = npt.NDArray[np.float16]

#: Columns of ``PassageVectors.layout``.
_SIZE, _LENGTH, _START, _END = range(4)


@dataclass(frozen=True, eq=False)
class PassageVectors:
    """A document's passages (``indexing.passages``) as the index scores them.

    Every passage's terms as sorted hashes with counts, all passages concatenated, and a layout
    row per passage: its number of distinct terms (where its run of hashes ends), its length in
    terms and its character span in the extracted text. With semantic routing on
    (``indexing.semantic``), each passage's sentence vector too, as float16.
    """

    hashes: HashArray
    counts: CountArray
    layout: LayoutArray  # shape (passages, 4)
    embeddings: EmbeddingArray | None = None  # shape (passages, dimensions)

    @classmethod
    def from_counts(
        cls, passages: Sequence[tuple[Mapping[str, int], int, tuple[int, int]]]
    ) -> PassageVectors:
        """From (term → count, length, (start, end)) per passage."""
        vectors = [TermVector.from_counts(terms) for terms, _, _ in passages]
        rows = [
            (len(vector), length, start, end)
            for vector, (_, length, (start, end)) in zip(vectors, passages, strict=True)
        ]
        layout = np.array(rows, dtype=np.uint32).reshape(-1, 4)
        hashes = np.concatenate([v.hashes for v in vectors]) if vectors else np.zeros(0, np.int64)
        counts = np.concatenate([v.counts for v in vectors]) if vectors else np.zeros(0, np.uint32)
        return cls(hashes, counts, layout)

    @classmethod
    def from_bytes(
        cls, hashes: bytes, counts: bytes, layout: bytes, embeddings: bytes | None = None
    ) -> PassageVectors:
        rows = np.frombuffer(layout, dtype="<u4").reshape(-1, 4)
        vectors = None
        # A blob that is not one vector per passage is damaged: the passages route by words.
        if embeddings and len(rows) and len(embeddings) % (2 * len(rows)) == 0:
            vectors = np.frombuffer(embeddings, dtype="<f2").reshape(len(rows), -1)
        return cls(
            np.frombuffer(hashes, dtype="<i8"), np.frombuffer(counts, dtype="<u4"), rows, vectors
        )

    def to_bytes(self) -> tuple[bytes, bytes, bytes, bytes | None]:
        return (
            self.hashes.astype("<i8").tobytes(),
            self.counts.astype("<u4").tobytes(),
            self.layout.astype("<u4").tobytes(),
            None if self.embeddings is None else embeddings_to_bytes(self.embeddings),
        )

    def with_embeddings(self, vectors: np.ndarray) -> PassageVectors:
        """The same passages with one sentence vector each (stored as float16)."""
        if vectors.shape[0] != len(self):
            raise ValueError(f"{vectors.shape[0]} vectors for {len(self)} passages")
        return replace(self, embeddings=vectors.astype(np.float16))

    def __len__(self) -> int:
        return len(self.layout)

    @property
    def sizes(self) -> LayoutArray:
        return self.layout[:, _SIZE]

    @property
    def lengths(self) -> LayoutArray:
        return self.layout[:, _LENGTH]

    @property
    def spans(self) -> LayoutArray:
        return self.layout[:, _START : _END + 1]


def embeddings_to_bytes(vectors: np.ndarray) -> bytes:
    """Passage vectors as stored: float16, little-endian, one row per passage."""
    return vectors.astype("<f2").tobytes()


def passage_spans(layout: bytes) -> list[tuple[int, int]]:
    """The character spans of the passages in a stored layout (``PassageVectors.to_bytes``)."""
    rows = np.frombuffer(layout, dtype="<u4").reshape(-1, 4)
    return [(int(start), int(end)) for start, end in rows[:, _START : _END + 1].tolist()]
