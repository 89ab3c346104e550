"""The BM25 summary of a document as it is stored: term frequencies, compactly.

A term is stored as a 64-bit hash of its text rather than the text itself: a summary is then two
flat arrays (sorted hashes, counts) that load with ``np.frombuffer`` and join a 100,000-document
index with one vectorised sort, instead of millions of string look-ups. Questions are hashed the
same way, so nothing needs the reverse mapping. With a vocabulary of a million terms the chance
that any two share a hash is about 3 in 100 million.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass

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
