"""The in-memory inverted index that routing reads.

Built from the stored BM25 summaries at start-up and changed in place afterwards: adding,
replacing or removing a document touches only that document's terms, never the whole index.

Layout. Every document occupies a *slot* (an integer, never reused until the next compaction).
Per slot: its length, whether it is alive, its terms. Per term (keyed by the term's 64-bit hash,
see ``indexing.summary``): a postings list of (slot, tf) pairs in growable numpy arrays, and a
document frequency. A removed document's slot is marked dead and its length norm set to
infinity, so its stale postings score exactly zero until that term's list is compacted (once
stale entries outnumber live ones).

Scoring is term-at-a-time. Each postings list caches its saturated term-frequency factor
``tf·(k1+1)/(tf + norm)``, recomputed only after document lengths change, so a query costs one
multiply-and-scatter per term. The top k are found exactly without sorting every candidate:
the k-th best score among the rarest term's documents bounds the winners from below. All reads
and writes take one lock, so a replacement (remove the old, add the new) is a single step.

Filters. Groups and tags are *labels*: one boolean array over the slots per label, so a caller's
groups or a tag is a mask at hand. Attributes are *columns*: per attribute name and kind of
value (``indexing.filters``), the (slot, value) pairs of the documents that carry it, text as
codes. A condition is one vectorised comparison over its column (equality, ``isin`` or a range),
scattered into a mask. Columns, not a label per value, because attribute values can be as
many as the documents (a creation time, a description): a label per value would cost a slot
array per document. Both are combined into one mask of allowed slots *before* ranking.

Passages. A document may also bring its passages (``indexing.passages``: its headed sections,
long ones cut into overlapping windows). They are units of their own, with their own postings,
lengths and document frequencies over all passages, kept in the same vocabulary. A document's
score is its whole-text BM25 plus ``passage_weight`` times the BM25 of its best passage: a long
policy that answers a question in one section is no longer outscored by a short page that
mentions every term once. Passages are appended in document order, so they stay grouped by
document slot, and they are renumbered together with the documents.

Meaning. With semantic routing (``indexing.semantic``) each passage also brings a sentence
vector, kept in one matrix row per passage unit. A question's vector against that matrix gives
each document its best passage's similarity (the vectors carry the document's title too, see
``indexing.semantic.passage_vectors``). The two scores are fused by a convex
combination, ``(1 - w)·bm25 + w·similarity``, after scaling each to [0, 1] over the allowed
documents (BM25 by its best score, similarity between its lowest and highest). Unlike fusing
ranks, this keeps how far apart the candidates are; the README compares it with reciprocal rank
fusion. The service fuses whole-document BM25 (``passage_weight=0`` unless configured): the
closest passage already rewards a document that answers in one section. A question that
matches no term of any document still routes to nothing.
"""

from __future__ import annotations

import gc
import itertools
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

import numpy as np
import numpy.typing as npt

from indexing.bm25 import VARIANTS, BM25Params, FloatArray, Variant, length_norm
from indexing.filters import Between, Condition, Filters, Kind, Value, comparables
from indexing.summary import EmbeddingArray, HashArray, PassageVectors, TermVector, term_hash

IntArray = npt.NDArray[np.int32]
F32Array = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]
F32Matrix = npt.NDArray[np.float32]

T = TypeVar("T")

_MIN_CAPACITY = 4
_COMPACT_MIN_DEAD = 1024
#: Fewest forgotten terms worth renumbering the vocabulary for.
_COMPACT_MIN_DEAD_TERMS = 4096
_NO_IDS: IntArray = np.zeros(0, np.int32)


@dataclass(frozen=True)
class IndexEntry:
    """One document as the index sees it: its summary plus what routing filters on.

    The terms come as a stored ``vector`` or, for convenience, as ``term_freqs``; the index
    keeps neither once the document is in (``get``/``entries`` return entries without them).
    """

    file_id: str
    document_id: str
    title: str
    term_freqs: Mapping[str, int] = field(default_factory=dict)
    length: int = 0
    token_estimate: int = 0
    tags: frozenset[str] = frozenset()
    groups: frozenset[str] = frozenset()
    attributes: Mapping[str, Any] = field(default_factory=dict)
    vector: TermVector | None = None
    passages: PassageVectors | None = None

    def terms(self) -> TermVector:
        return self.vector if self.vector is not None else TermVector.from_counts(self.term_freqs)


@dataclass(frozen=True)
class Hit:
    """A routed document: its entry, its score, and what each query term contributed."""

    entry: IndexEntry
    score: float
    contributions: dict[str, float] = field(default_factory=dict)
    #: The character span of its best-scoring passage in the extracted text, if one scored.
    passage: tuple[int, int] | None = None


@dataclass(frozen=True)
class _Scored:
    scores: FloatArray
    matched: BoolArray | None
    passage_scores: FloatArray | None


class _GrowableArray:
    """A numpy array with amortised O(1) append (capacity doubling)."""

    __slots__ = ("data", "n")

    def __init__(self, dtype: npt.DTypeLike, capacity: int = _MIN_CAPACITY) -> None:
        self.data: np.ndarray = np.zeros(max(capacity, _MIN_CAPACITY), dtype=dtype)
        self.n = 0

    @classmethod
    def wrap(cls, values: np.ndarray) -> _GrowableArray:
        arr = cls.__new__(cls)
        arr.data = values
        arr.n = len(values)
        return arr

    def reserve(self, extra: int) -> None:
        needed = self.n + extra
        if needed > len(self.data):
            grown = np.zeros(max(needed, 2 * len(self.data), _MIN_CAPACITY), self.data.dtype)
            grown[: self.n] = self.data[: self.n]
            self.data = grown

    def append(self, value: float | int | bool) -> None:
        self.reserve(1)
        self.data[self.n] = value
        self.n += 1

    def extend(self, values: np.ndarray) -> None:
        self.reserve(len(values))
        self.data[self.n : self.n + len(values)] = values
        self.n += len(values)

    def view(self) -> np.ndarray:
        return self.data[: self.n]


class _Embeddings:
    """One sentence vector per passage unit, as float32 rows, and whether the passage came with
    one (its row is zeros if not). No matrix at all until the first vector arrives."""

    __slots__ = ("data", "n", "present")

    def __init__(self) -> None:
        self.data: F32Matrix | None = None
        self.n = 0
        self.present = _GrowableArray(np.bool_)

    @classmethod
    def wrap(cls, rows: F32Matrix | None, present: BoolArray) -> _Embeddings:
        embeddings = cls()
        embeddings.data, embeddings.n = rows, len(present)
        embeddings.present = _GrowableArray.wrap(present)
        return embeddings

    def extend(self, rows: np.ndarray | None, count: int) -> None:
        """Rows for ``count`` new passage units (``None``: they come without vectors)."""
        if rows is not None and self.data is None:
            self.data = np.zeros((max(self.n + count, _MIN_CAPACITY), rows.shape[1]), np.float32)
        # A vector of another width comes from another model: not comparable, so left out.
        fits = rows is not None and self.data is not None and rows.shape[1] == self.data.shape[1]
        if self.data is not None:
            needed = self.n + count
            if needed > len(self.data):
                grown = np.zeros((max(needed, 2 * len(self.data)), self.data.shape[1]), np.float32)
                grown[: self.n] = self.data[: self.n]
                self.data = grown
            self.data[self.n : needed] = rows if fits else 0.0
        self.present.extend(np.full(count, fits))
        self.n += count

    def view(self) -> F32Matrix | None:
        return None if self.data is None else self.data[: self.n]

    def memory_bytes(self) -> int:
        return 0 if self.data is None else self.data.nbytes + self.present.data.nbytes


class _Column:
    """One attribute's values of one kind: (slot, key) pairs, in arrival order; a removed
    document's pairs stay until the next compaction (masks are cut to living slots). Text is
    stored as codes, so every column compares as numbers."""

    __slots__ = ("codes", "keys", "slots")

    def __init__(self, kind: Kind) -> None:
        self.slots = _GrowableArray(np.int32)
        self.keys = _GrowableArray(np.float64)
        self.codes: dict[str, int] | None = {} if kind == "text" else None

    def encode(self, value: Value) -> float | None:
        """The stored key of ``value``; None for text no document in the column holds."""
        if self.codes is None:
            return float(value.key)
        code = self.codes.get(str(value.key))
        return None if code is None else float(code)

    def extend(self, slots: Sequence[int], values: Sequence[Value]) -> None:
        codes = self.codes
        keys = (
            [float(v.key) for v in values]
            if codes is None
            else [float(codes.setdefault(str(v.key), len(codes))) for v in values]
        )
        self.slots.extend(np.asarray(slots, np.int32))
        self.keys.extend(np.asarray(keys, np.float64))

    def select(self, condition: Condition, kind: Kind) -> BoolArray | None:
        """Which pairs meet ``condition`` (None when none can: another kind, unknown text)."""
        keys = self.keys.view()
        if isinstance(condition, Between):
            return condition.within(keys) if condition.kind == kind else None
        wanted = [self.encode(v) for v in condition.values if v.kind == kind]
        codes = [code for code in wanted if code is not None]
        if not codes:
            return None
        selected: BoolArray = keys == codes[0] if len(codes) == 1 else np.isin(keys, codes)
        return selected


class _Postings:
    """The slots holding one term, the term's frequency in each, and the cached tf factor."""

    __slots__ = ("factor", "factor_version", "slots", "stale", "tfs")

    def __init__(self, slots: np.ndarray | None = None, tfs: np.ndarray | None = None) -> None:
        if slots is None or tfs is None:
            # Empty until the first posting: every term has a passage list too, and most
            # terms of a pool without passages (or of tests' plain entries) never get one.
            self.slots = _GrowableArray.wrap(np.zeros(0, np.int32))
            self.tfs = _GrowableArray.wrap(np.zeros(0, np.float32))
        else:
            self.slots = _GrowableArray.wrap(slots)
            self.tfs = _GrowableArray.wrap(tfs)
        self.stale = 0
        self.factor: F32Array | None = None
        self.factor_version = -1

    def append(self, slot: int, tf: float) -> None:
        self.slots.append(slot)
        self.tfs.append(tf)
        self.factor = None

    def drop_dead(self, alive: BoolArray) -> None:
        slots = self.slots.view()
        keep = alive[slots]
        self.slots = _GrowableArray.wrap(slots[keep].copy())
        self.tfs = _GrowableArray.wrap(self.tfs.view()[keep].copy())
        self.stale = 0
        self.factor = None


class _Units:
    """BM25 statistics over one kind of unit (whole documents, or passages).

    Per unit: its length and whether it is alive. Per term id (ids are shared by every kind of
    unit): a postings list in unit order and the number of living units holding the term.
    """

    def __init__(self, params: BM25Params) -> None:
        self.params = params
        self.postings: list[_Postings] = []
        self.df = _GrowableArray(np.int64)
        self.lengths = _GrowableArray(np.float64)
        self.alive = _GrowableArray(np.bool_)
        self.total_length = 0.0
        self.n_alive = 0
        self._norm_cache: F32Array | None = None
        self.version = 0  # bumped whenever lengths or the average length change

    @property
    def count(self) -> int:
        """Units ever added since the last renumbering, dead ones included."""
        return self.lengths.n

    @property
    def avg_length(self) -> float:
        return self.total_length / self.n_alive if self.n_alive else 0.0

    def grow_vocabulary(self, size: int) -> None:
        grown = size - len(self.postings)
        if grown > 0:
            self.df.extend(np.zeros(grown, np.int64))
            self.postings.extend(_Postings() for _ in range(grown))

    def load(self, ids: IntArray, tfs: F32Array, sizes: np.ndarray, lengths: np.ndarray) -> None:
        """Replace every unit: ``ids``/``tfs`` are the units' terms concatenated, ``sizes``
        how many belong to each unit. Ids must be below the vocabulary size."""
        units = np.repeat(np.arange(len(sizes), dtype=np.int32), sizes)
        order = np.argsort(ids, kind="stable")
        sorted_ids = ids[order]
        bounds = np.searchsorted(sorted_ids, np.arange(len(self.postings) + 1))
        self.df = _GrowableArray.wrap(np.diff(bounds).astype(np.int64))
        units, sorted_tfs = units[order], tfs[order]
        self.postings = [
            _Postings(units[lo:hi], sorted_tfs[lo:hi])
            for lo, hi in itertools.pairwise(bounds.tolist())
        ]
        lengths = np.asarray(lengths, np.float64)
        self.lengths = _GrowableArray.wrap(lengths.copy())
        self.alive = _GrowableArray.wrap(np.ones(len(lengths), np.bool_))
        self.total_length = float(lengths.sum())
        self.n_alive = len(lengths)
        self.changed()

    def append(self, ids: IntArray, tfs: F32Array, sizes: np.ndarray, lengths: np.ndarray) -> int:
        """Add units (terms as in ``load``, each unit's ids distinct); returns the first unit."""
        first = self.lengths.n
        units = np.repeat(np.arange(first, first + len(sizes), dtype=np.int32), sizes)
        self.lengths.extend(np.asarray(lengths, np.float64))
        self.alive.extend(np.ones(len(sizes), np.bool_))
        np.add.at(self.df.data, ids, 1)
        postings = self.postings
        for tid, unit, tf in zip(ids.tolist(), units.tolist(), tfs.tolist(), strict=True):
            postings[tid].append(unit, tf)
        self.total_length += float(np.sum(lengths))
        self.n_alive += len(sizes)
        self.changed()
        return first

    def retire(self, first: int, count: int, ids: IntArray) -> None:
        """Mark ``count`` units from ``first`` dead; ``ids``: all their terms (as added)."""
        if not count:
            return
        self.alive.data[first : first + count] = False
        self.total_length -= float(self.lengths.data[first : first + count].sum())
        self.n_alive -= count
        np.subtract.at(self.df.data, ids, 1)
        alive = self.alive.view()
        held, times = np.unique(ids, return_counts=True)
        for tid, stale in zip(held.tolist(), times.tolist(), strict=True):
            postings = self.postings[tid]
            postings.stale += stale
            if postings.stale >= 16 and 2 * postings.stale > postings.slots.n:
                postings.drop_dead(alive)
        self.changed()

    def renumber(self) -> IntArray:
        """Drop dead units, numbering the living consecutively in their order; returns the
        old → new numbers (-1 for the dead)."""
        alive = self.alive.view()
        new_number = (np.cumsum(alive) - 1).astype(np.int32)
        new_number[~alive] = -1
        for postings in self.postings:
            slots = postings.slots.view()
            keep = alive[slots]
            postings.slots = _GrowableArray.wrap(new_number[slots[keep]])
            postings.tfs = _GrowableArray.wrap(postings.tfs.view()[keep].copy())
            postings.stale = 0
            postings.factor = None
        self.lengths = _GrowableArray.wrap(self.lengths.view()[alive].copy())
        self.alive = _GrowableArray.wrap(np.ones(self.n_alive, np.bool_))
        self.changed()
        return new_number

    def keep_terms(self, kept: BoolArray) -> None:
        """Drop the statistics of the term ids not ``kept``, numbering the rest consecutively
        in their order (``kept`` may be longer: this kind of unit grows its vocabulary late)."""
        kept = kept[: len(self.postings)]
        self.postings = [p for p, keep in zip(self.postings, kept.tolist(), strict=True) if keep]
        self.df = _GrowableArray.wrap(self.df.view()[kept].copy())

    def changed(self) -> None:
        self._norm_cache = None
        self.version += 1

    def memory_bytes(self) -> int:
        total = sum(
            p.slots.data.nbytes + p.tfs.data.nbytes + (0 if p.factor is None else p.factor.nbytes)
            for p in self.postings
        )
        return total + sum(a.data.nbytes for a in (self.df, self.lengths, self.alive))

    # --------------------------------------------------------------------------------- scoring

    def idf(self, ids: IntArray, variant: Variant) -> FloatArray:
        df = self.df.data[ids].astype(np.float64)
        return variant.idf(df, self._vocabulary_df, self.n_alive, self.params.epsilon)

    def _vocabulary_df(self) -> FloatArray:
        df = self.df.view()
        return df[df > 0].astype(np.float64)

    def norms(self) -> F32Array:
        """``k1·(1 − b + b·|d|/avgdl)`` per unit (infinite for dead units), until lengths change."""
        if self._norm_cache is None or len(self._norm_cache) != self.lengths.n:
            p = self.params
            norms = length_norm(self.lengths.view(), self.avg_length, p.k1, p.b)
            norms[~self.alive.view()] = np.inf
            self._norm_cache = norms.astype(np.float32)
        return self._norm_cache

    def factor(self, postings: _Postings) -> F32Array:
        """``tf·(k1+1) / (tf + norm)`` for every posting of a term, cached until lengths change."""
        if postings.factor is None or postings.factor_version != self.version:
            tfs = postings.tfs.view()
            norms = self.norms()[postings.slots.view()]
            factor = tfs * np.float32(self.params.k1 + 1.0)
            factor /= tfs + norms
            postings.factor = factor
            postings.factor_version = self.version
        return postings.factor

    def accumulate(
        self, ids: IntArray, weights: FloatArray, *, track: bool
    ) -> tuple[FloatArray, BoolArray | None]:
        """Scores for every unit; with ``track``, also which units hold at least one term."""
        n = self.lengths.n
        scores = np.zeros(n, np.float64)
        matched = np.zeros(n, np.bool_) if track else None
        for tid, weight in zip(ids.tolist(), weights.tolist(), strict=True):
            postings = self.postings[tid]
            slots = postings.slots.view()
            # ufunc.at is numpy's fastest scatter-add, but only without a cast: the addends
            # must already be float64 (a float32 array times a Python float stays float32).
            np.add.at(scores, slots, np.multiply(self.factor(postings), weight, dtype=np.float64))
            if matched is not None:
                matched[slots] = True
        if matched is not None:
            matched &= self.alive.view()
        return scores, matched

    def term_scores(self, units: IntArray, ids: IntArray, weights: FloatArray) -> FloatArray:
        """What each term adds to each of ``units``: a (units × terms) table.

        One lookup per term for all the units at once: postings are kept in unit order, so
        the units' positions come from a binary search.
        """
        table = np.zeros((len(units), len(ids)))
        for column, (tid, weight) in enumerate(zip(ids.tolist(), weights.tolist(), strict=True)):
            postings = self.postings[tid]
            held = postings.slots.view()
            if not len(held):
                continue
            at = np.minimum(np.searchsorted(held, units), len(held) - 1)
            present = held[at] == units
            table[present, column] = weight * self.factor(postings)[at[present]]
        return table


@dataclass(frozen=True)
class _Passages:
    """Where one document's passages are among the passage units, and their terms (needed
    to retire them)."""

    first: int
    count: int
    ids: IntArray


@dataclass(frozen=True)
class _Query:
    """A question resolved against the vocabulary: term ids, how often each was asked, the
    document-level weights and the terms' text."""

    ids: IntArray
    reps: FloatArray
    weights: FloatArray
    names: list[str]


class InvertedIndex:
    """BM25 over documents (and their passages) held in memory; see the module docstring."""

    def __init__(self, params: BM25Params | None = None) -> None:
        self.params = params or BM25Params()
        self._variant = VARIANTS[self.params.variant]
        self._lock = threading.RLock()
        self._reset()

    def _reset(self) -> None:
        self._vocab: dict[int, int] = {}  # term hash -> term id
        self._docs = _Units(self.params)
        self._passages = _Units(self.params)
        self._reset_slots()

    def _reset_slots(self) -> None:
        self._entries: list[IndexEntry | None] = []
        self._doc_terms: list[IntArray | None] = []
        self._doc_passages: list[_Passages | None] = []
        self._owner = _GrowableArray(np.int32)  # passage unit -> document slot
        self._spans = _GrowableArray(np.uint32)  # passage unit -> (start, end), flattened
        self._embeddings = _Embeddings()  # passage unit -> sentence vector
        self._slot_of: dict[str, int] = {}
        self._file_of_document: dict[str, str] = {}
        self._labels: dict[tuple[str, str], _GrowableArray] = {}
        self._columns: dict[str, dict[Kind, _Column]] = {}

    # ----------------------------------------------------------------- size and introspection

    def __len__(self) -> int:
        return self._docs.n_alive

    def __contains__(self, file_id: object) -> bool:
        return file_id in self._slot_of

    @property
    def avg_length(self) -> float:
        return self._docs.avg_length

    @property
    def passage_count(self) -> int:
        return self._passages.n_alive

    def entries(self) -> Iterator[IndexEntry]:
        with self._lock:
            live = [e for e in self._entries if e is not None]
        return iter(live)

    def get(self, file_id: str) -> IndexEntry | None:
        with self._lock:
            slot = self._slot_of.get(file_id)
            return None if slot is None else self._entries[slot]

    def file_of(self, document_id: str) -> str | None:
        """The file id under which a document is indexed, if it is."""
        return self._file_of_document.get(document_id)

    def document_frequency(self, term: str) -> int:
        tid = self._vocab.get(term_hash(term))
        return 0 if tid is None else int(self._docs.df.data[tid])

    def memory_bytes(self, *, passages: bool = True, embeddings: bool = True) -> int:
        """Bytes held by the numpy arrays (postings, per-document terms and per-slot data);
        without ``passages`` or ``embeddings``, what the index would hold with none."""
        with self._lock:
            total = self._docs.memory_bytes()
            total += sum(ids.nbytes for ids in self._doc_terms if ids is not None)
            arrays = [*self._labels.values()]
            if passages and self._passages.postings:  # statistics exist once passages did
                total += self._passages.memory_bytes()
                total += sum(p.ids.nbytes for p in self._doc_passages if p is not None)
                arrays += [self._owner, self._spans]
                if embeddings:
                    total += self._embeddings.memory_bytes()
            for columns in self._columns.values():
                arrays += [a for column in columns.values() for a in (column.slots, column.keys)]
            return total + sum(a.data.nbytes for a in arrays)

    # ------------------------------------------------------------------------------- changes

    def add(self, entry: IndexEntry) -> None:
        """Add a document; a document already present under that file id is replaced."""
        with self._lock:
            self._remove_locked(entry.file_id)
            self._add_locked(entry)
            self._maybe_compact()

    def replace(self, old_file_id: str | None, entry: IndexEntry) -> None:
        """Swap one version for another in a single step: readers see the old or the new."""
        with self._lock:
            if old_file_id is not None:
                self._remove_locked(old_file_id)
            self._remove_locked(entry.file_id)
            self._add_locked(entry)
            self._maybe_compact()

    def apply_documents(self, document_ids: Iterable[str], entries: Iterable[IndexEntry]) -> None:
        """Make the given documents look exactly like ``entries`` (absent ones are removed),
        as one step for readers."""
        with self._lock:
            for document_id in document_ids:
                file_id = self._file_of_document.get(document_id)
                if file_id is not None:
                    self._remove_locked(file_id)
            for entry in entries:
                self._remove_locked(entry.file_id)
                self._add_locked(entry)
            self._maybe_compact()

    def remove(self, file_id: str) -> bool:
        """Remove a document; returns whether it was present."""
        with self._lock:
            removed = self._remove_locked(file_id)
            self._maybe_compact()
            return removed

    def bulk_load(self, entries: Iterable[IndexEntry]) -> None:
        """Replace the whole index with ``entries``: one vectorised pass over all postings.

        Python's cycle collector is paused meanwhile, ``entries`` being read inside the pause
        too: a 100,000-document load keeps over a million container objects (entries, postings
        lists), none in a cycle, and its allocations set off about ten full collections that
        walk all of them again, an eighth of the load.
        """
        with _cycle_collection_paused():
            unique = list({entry.file_id: entry for entry in entries}.values())
            vectors = [entry.terms() for entry in unique]
            with self._lock:
                self._reset()
                self._load_slots(unique)
                lengths = np.fromiter(
                    (e.length for e in unique), dtype=np.float64, count=len(unique)
                )
                vocabulary = self._load_documents(vectors, lengths)
                self._load_passages(unique, vocabulary)

    def _load_slots(self, entries: list[IndexEntry]) -> None:
        n = len(entries)
        self._entries = [_bare(e) for e in entries]
        self._slot_of = {e.file_id: slot for slot, e in enumerate(entries)}
        self._file_of_document = {e.document_id: e.file_id for e in entries}
        members: dict[tuple[str, str], list[int]] = {}
        for slot, entry in enumerate(entries):
            for key in _label_keys(entry):
                members.setdefault(key, []).append(slot)
        for key, slots in members.items():
            mask = np.zeros(n, np.bool_)
            mask[slots] = True
            self._labels[key] = _GrowableArray.wrap(mask)
        self._load_columns(entries)

    def _load_columns(self, entries: list[IndexEntry]) -> None:
        pairs: dict[tuple[str, Kind], tuple[list[int], list[Value]]] = {}
        # Values repeat across documents (a department, a region): type each once.
        seen: dict[tuple[type, object], list[Value]] = {}
        for slot, entry in enumerate(entries):
            for name, raw in entry.attributes.items():
                scalar = isinstance(raw, str | int | float)
                typed = seen.get((type(raw), raw)) if scalar else None
                if typed is None:
                    typed = comparables(raw)
                    if scalar:
                        seen[type(raw), raw] = typed
                for value in typed:
                    slots, values = pairs.setdefault((name, value.kind), ([], []))
                    slots.append(slot)
                    values.append(value)
        for (name, kind), (slots, values) in pairs.items():
            self._column(name, kind).extend(slots, values)

    def _load_documents(self, vectors: list[TermVector], lengths: FloatArray) -> HashArray:
        """Number the vocabulary in hash order and load the documents' postings; returns the
        vocabulary's hashes (a term's id is its position)."""
        sizes = np.fromiter((len(v) for v in vectors), dtype=np.int64, count=len(vectors))
        hashes = np.concatenate([v.hashes for v in vectors]) if vectors else np.zeros(0, np.int64)
        counts = np.concatenate([v.counts for v in vectors]) if vectors else np.zeros(0, np.uint32)
        order = np.argsort(hashes, kind="stable")
        sorted_hashes = hashes[order]
        starts = np.ones(len(sorted_hashes), np.bool_)
        starts[1:] = sorted_hashes[1:] != sorted_hashes[:-1]
        unique: HashArray = sorted_hashes[starts]
        term_ids = np.empty(len(hashes), np.int32)
        term_ids[order] = np.cumsum(starts) - 1
        self._vocab = dict(zip(unique.tolist(), range(len(unique)), strict=True))
        self._docs.grow_vocabulary(len(unique))
        self._docs.load(term_ids, counts.astype(np.float32), sizes, lengths)
        # Hashes are sorted within each vector and ids follow hash order, so each document's
        # term ids come out sorted.
        self._doc_terms = list(np.split(term_ids, np.cumsum(sizes)[:-1])) if vectors else []
        return unique

    def _load_passages(self, entries: list[IndexEntry], vocabulary: HashArray) -> None:
        counts = [0 if e.passages is None else len(e.passages) for e in entries]
        with_passages = [e.passages for e in entries if e.passages is not None and len(e.passages)]
        if not with_passages:
            self._doc_passages = [_Passages(0, 0, _NO_IDS) for _ in entries]
            return
        layout = np.concatenate([p.layout for p in with_passages])
        ids, tfs, sizes = _load_passage_terms(
            np.concatenate([p.hashes for p in with_passages]),
            np.concatenate([p.counts for p in with_passages]),
            layout[:, 0],
            vocabulary,
        )
        self._passages.grow_vocabulary(len(vocabulary))
        self._passages.load(ids, tfs, sizes, layout[:, 1])
        self._owner = _GrowableArray.wrap(
            np.repeat(np.arange(len(entries), dtype=np.int32), counts)
        )
        self._spans = _GrowableArray.wrap(layout[:, 2:4].reshape(-1).copy())
        self._embeddings = _load_embeddings(with_passages)
        firsts = (np.cumsum(counts) - counts).tolist()
        terms_per_document = np.bincount(
            self._owner.view(), weights=sizes, minlength=len(entries)
        ).astype(np.int64)
        # Views of ``ids``, as ``np.split`` gives, without its overhead per piece.
        pieces = itertools.pairwise([0, *np.cumsum(terms_per_document).tolist()])
        self._doc_passages = [
            _Passages(first, count, ids[lo:hi])
            for first, count, (lo, hi) in zip(firsts, counts, pieces, strict=True)
        ]

    def _term_ids(self, vector: TermVector) -> IntArray:
        """Ids for a document's term hashes (in their order), creating ids for new terms."""
        vocab = self._vocab
        ids = np.fromiter(
            (vocab.setdefault(h, len(vocab)) for h in vector.hashes.tolist()),
            dtype=np.int32,
            count=len(vector),
        )
        self._docs.grow_vocabulary(len(vocab))
        return ids

    def _add_locked(self, entry: IndexEntry) -> None:
        vector = entry.terms()
        ids = self._term_ids(vector)
        order = np.argsort(ids)
        sorted_ids = ids[order]
        slot = len(self._entries)
        self._entries.append(_bare(entry))
        self._doc_terms.append(sorted_ids)
        self._slot_of[entry.file_id] = slot
        self._file_of_document[entry.document_id] = entry.file_id
        unit = self._docs.append(
            sorted_ids,
            vector.counts[order].astype(np.float32),
            np.array([len(ids)]),
            np.array([entry.length]),
        )
        assert unit == slot
        for arr in self._labels.values():
            arr.append(False)
        for key in _label_keys(entry):
            self._label_array(key).data[slot] = True
        for name, raw in entry.attributes.items():
            for value in comparables(raw):
                self._column(name, value.kind).extend([slot], [value])
        self._add_passages(slot, entry.passages, vector.hashes, ids)

    def _add_passages(
        self, slot: int, passages: PassageVectors | None, hashes: HashArray, ids: IntArray
    ) -> None:
        if passages is None or not len(passages):
            self._doc_passages.append(_Passages(0, 0, _NO_IDS))
            return
        passage_ids, tfs, sizes = _passage_terms(
            passages.hashes, passages.counts, passages.sizes, hashes, ids
        )
        self._passages.grow_vocabulary(len(self._vocab))
        first = self._passages.append(passage_ids, tfs, sizes, passages.lengths)
        self._owner.extend(np.full(len(passages), slot, np.int32))
        self._spans.extend(passages.spans.reshape(-1))
        self._embeddings.extend(passages.embeddings, len(passages))
        self._doc_passages.append(_Passages(first, len(passages), passage_ids))

    def _remove_locked(self, file_id: str) -> bool:
        slot = self._slot_of.pop(file_id, None)
        if slot is None:
            return False
        entry = self._entries[slot]
        ids = self._doc_terms[slot]
        passages = self._doc_passages[slot]
        assert entry is not None and ids is not None and passages is not None
        self._entries[slot] = None
        self._doc_terms[slot] = None
        self._doc_passages[slot] = None
        if self._file_of_document.get(entry.document_id) == file_id:
            del self._file_of_document[entry.document_id]
        for arr in self._labels.values():
            arr.data[slot] = False
        self._docs.retire(slot, 1, ids)
        self._passages.retire(passages.first, passages.count, passages.ids)
        return True

    def _maybe_compact(self) -> None:
        """Renumber slots once dead ones outnumber the living, and then terms too if those no
        living document holds outnumber the rest (amortised O(1) per change, as each
        renumbering costs about what was added since the last). Terms die only with
        documents, so they are counted only when slots are renumbered, off the per-change
        path."""
        if self._dead_slots() > max(_COMPACT_MIN_DEAD, self._docs.n_alive):
            self._compact_slots()
            live_terms = int(np.count_nonzero(self._docs.df.view()))
            if len(self._vocab) - live_terms > max(_COMPACT_MIN_DEAD_TERMS, live_terms):
                self._compact_vocabulary()

    def _compact_vocabulary(self) -> None:
        """Forget the terms no living document holds (a long-lived index whose documents come
        and go would otherwise keep every word it ever saw) and renumber the rest in order,
        so each document's sorted term ids stay sorted. Passages hold only their document's
        terms, so the documents' frequencies decide for both."""
        kept: BoolArray = self._docs.df.view() > 0
        new_id = np.full(len(kept), -1, np.int32)
        new_id[kept] = np.arange(int(kept.sum()), dtype=np.int32)
        self._vocab = {h: int(new_id[t]) for h, t in self._vocab.items() if kept[t]}
        self._docs.keep_terms(kept)
        self._passages.keep_terms(kept)
        self._doc_terms = [None if ids is None else new_id[ids] for ids in self._doc_terms]
        self._doc_passages = [
            None if p is None else replace(p, ids=new_id[p.ids]) for p in self._doc_passages
        ]

    def _dead_slots(self) -> int:
        return len(self._entries) - self._docs.n_alive

    def _compact_slots(self) -> None:
        """Renumber live documents, and their passages, into consecutive slots."""
        live = [
            (entry, ids, passages)
            for entry, ids, passages in zip(
                self._entries, self._doc_terms, self._doc_passages, strict=True
            )
            if entry is not None and ids is not None and passages is not None
        ]
        slot_numbers = self._docs.renumber()
        passage_numbers = self._passages.renumber()
        kept = passage_numbers >= 0
        owner = slot_numbers[self._owner.view()[kept]]
        spans = self._spans.view().reshape(-1, 2)[kept]
        vectors = self._embeddings.view()
        embeddings = _Embeddings.wrap(
            None if vectors is None else vectors[kept], self._embeddings.present.view()[kept]
        )
        self._reset_slots()
        self._load_slots([entry for entry, _, _ in live])
        self._doc_terms = [ids for _, ids, _ in live]
        self._doc_passages = [
            replace(p, first=int(passage_numbers[p.first])) if p.count else p for _, _, p in live
        ]
        self._owner = _GrowableArray.wrap(owner.astype(np.int32))
        self._spans = _GrowableArray.wrap(spans.reshape(-1).copy())
        self._embeddings = embeddings

    # ------------------------------------------------------------------------ labels (filters)

    def _label_array(self, key: tuple[str, str]) -> _GrowableArray:
        arr = self._labels.get(key)
        if arr is None:
            arr = _GrowableArray.wrap(np.zeros(max(self._docs.alive.n, _MIN_CAPACITY), np.bool_))
            arr.n = self._docs.alive.n
            self._labels[key] = arr
        return arr

    def _label_mask(self, kind: str, value: str) -> BoolArray:
        arr = self._labels.get((kind, value))
        if arr is None:
            return np.zeros(self._docs.alive.n, np.bool_)
        view: BoolArray = arr.view()
        return view

    def _column(self, name: str, kind: Kind) -> _Column:
        columns = self._columns.setdefault(name, {})
        column = columns.get(kind)
        if column is None:
            column = columns[kind] = _Column(kind)
        return column

    def _condition_mask(self, name: str, condition: Condition) -> BoolArray:
        """Living slots whose attribute ``name`` meets ``condition``: one comparison per kind
        of value the attribute holds, over every document at once."""
        mask = np.zeros(self._docs.alive.n, np.bool_)
        for kind, column in self._columns.get(name, {}).items():
            selected = column.select(condition, kind)
            if selected is not None:
                mask[column.slots.view()[selected]] = True
        mask &= self._docs.alive.view()
        return mask

    def allowed_mask(
        self,
        *,
        groups: Iterable[str] | None = None,
        tags: Iterable[str] | None = None,
        filters: Filters | None = None,
    ) -> BoolArray | None:
        """Slots a caller may see: documents without groups plus those sharing one of
        ``groups`` (``None`` means no group restriction), carrying every tag in ``tags`` and
        meeting ``filters``; ``None`` when nothing restricts."""
        with self._lock:
            return self._allowed_locked(groups, tags, filters)

    def _allowed_locked(
        self,
        groups: Iterable[str] | None,
        tags: Iterable[str] | None,
        filters: Filters | None = None,
    ) -> BoolArray | None:
        mask: BoolArray | None = None
        if groups is not None:
            mask = self._label_mask("public", "").copy()
            for group in groups:
                mask |= self._label_mask("group", group)
        if filters:
            tags = [*(tags or ()), *sorted(filters.tags)]
        for tag in tags or ():
            tag_mask = self._label_mask("tag", tag)
            mask = tag_mask.copy() if mask is None else mask & tag_mask
        for name, condition in filters.attributes.items() if filters else ():
            selected = self._condition_mask(name, condition)
            mask = selected if mask is None else mask & selected
        return mask

    # --------------------------------------------------------------------------------- scoring

    def _resolve(self, query_terms: Sequence[str]) -> _Query:
        """Known query terms as ids, each weighted by its IDF times its count in the query."""
        counts: dict[int, int] = {}
        names: dict[int, str] = {}
        df = self._docs.df.data
        for term in query_terms:
            tid = self._vocab.get(term_hash(term))
            if tid is not None and df[tid] > 0:
                counts[tid] = counts.get(tid, 0) + 1
                names.setdefault(tid, term)
        ids = np.fromiter(counts, dtype=np.int32, count=len(counts))
        reps = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        weights = self._docs.idf(ids, self._variant) * reps
        return _Query(ids, reps, weights, [names[tid] for tid in counts])

    def _passage_weights(self, query: _Query) -> FloatArray:
        """The query's weights among passages: IDF from how many passages hold each term."""
        # Passage statistics grow with the vocabulary only once passages exist, and lazily
        # after: documents without passages may have brought terms since.
        self._passages.grow_vocabulary(len(self._vocab))
        return self._passages.idf(query.ids, self._variant) * query.reps

    def _passage_scores(self, query: _Query) -> FloatArray:
        """Every passage unit's BM25 for the query."""
        scores, _ = self._passages.accumulate(query.ids, self._passage_weights(query), track=False)
        return scores

    def _accumulate(self, query: _Query, passage_weight: float) -> _Scored:
        """Scores for every slot: the document's own plus ``passage_weight`` times its best
        passage's. When some weight is not positive (Okapi IDF can be zero or negative), also
        which slots matched at least one term; otherwise matching is scoring above zero."""
        signed = bool((query.weights <= 0).any())
        scores, matched = self._docs.accumulate(query.ids, query.weights, track=signed)
        if passage_weight <= 0 or not self._passages.n_alive:
            return _Scored(scores, matched, None)
        passage_scores = self._passage_scores(query)
        hit = np.flatnonzero(passage_scores > 0)
        best = np.zeros(len(scores))
        np.maximum.at(best, self._owner.data[hit], passage_scores[hit])
        scores += passage_weight * best
        return _Scored(scores, matched, passage_scores)

    def scores(
        self, query_terms: Sequence[str], *, passage_weight: float = 1.0
    ) -> dict[str, float]:
        """Every live document's score for the query (zero where nothing matched)."""
        with self._lock:
            raw = self._accumulate(self._resolve(query_terms), passage_weight).scores
            return {fid: float(raw[slot]) for fid, slot in self._slot_of.items()}

    def search(
        self,
        query_terms: Sequence[str],
        *,
        top_k: int,
        allowed: BoolArray | None = None,
        groups: Iterable[str] | None = None,
        tags: Iterable[str] | None = None,
        filters: Filters | None = None,
        token_budget: int | None = None,
        passage_weight: float = 1.0,
        min_coverage: float = 0.0,
        query_vector: np.ndarray | None = None,
        semantic_weight: float = 0.5,
        explain: bool = True,
    ) -> list[Hit]:
        """The best ``top_k`` documents matching at least one query term, best first.

        Documents outside ``groups``/``tags``/``filters`` (or the explicit ``allowed`` mask)
        are excluded before ranking. With ``token_budget``, documents are taken in rank order
        while their token estimates fit; one that does not fit is skipped for the next.
        ``min_coverage``: return nothing unless the best document holds at least this share of
        the question's weight (see ``coverage``). ``query_vector``: the question's sentence
        vector, to fuse the passages' semantic ranking with BM25's at ``semantic_weight``.
        """
        if top_k <= 0:
            return []
        with self._lock:
            query = self._resolve(query_terms)
            if not len(query.ids):
                return []
            scored = self._accumulate(query, passage_weight)
            scores, matched = scored.scores, scored.matched
            mask = allowed if allowed is not None else self._allowed_locked(groups, tags, filters)
            similarities = None
            if query_vector is not None and semantic_weight > 0 and self._embeddings.n:
                similarities = self._similarities(query_vector)
            if similarities is not None:
                ranked, scores = self._fuse(
                    scores, matched, mask, similarities, semantic_weight, top_k, token_budget
                )
            elif matched is None:
                if mask is not None:
                    scores[~mask[: len(scores)]] = 0.0
                ranked = self._rank_positive(scores, query, top_k, token_budget)
            else:
                if mask is not None:
                    matched &= mask[: len(matched)]
                ranked = self._rank(scores, np.flatnonzero(matched), top_k, token_budget)
            if ranked and min_coverage > 0 and self._coverage(ranked[0], query) < min_coverage:
                return []
            passage_scores = scored.passage_scores
            by_meaning = query_vector is not None and semantic_weight > 0
            if (
                passage_scores is None
                and by_meaning
                and self._needs_words_for_passages(ranked, similarities)
            ):
                passage_scores = self._passage_scores(query)
            best = [self._best_passage(slot, passage_scores, similarities) for slot in ranked]
            explained = (
                self._contributions(ranked, query, passage_weight, scored.passage_scores)
                if explain
                else [{} for _ in ranked]
            )
            return [
                Hit(self._entry(slot), float(scores[slot]), contributions, self._span(unit))
                for slot, unit, contributions in zip(ranked, best, explained, strict=True)
            ]

    def _coverage(self, slot: int, query: _Query) -> float:
        """The share of the question's weight (IDF × count) held by the document's terms."""
        table = self._docs.term_scores(np.array([slot], np.int32), query.ids, query.weights)
        total = float(np.abs(query.weights).sum())
        return float(np.abs(query.weights)[table[0] != 0].sum()) / total if total else 0.0

    def _best_passage(
        self, slot: int, passage_scores: FloatArray | None, similarities: F32Array | None = None
    ) -> int | None:
        """The passage of this document's text closest in meaning to the question, when the
        question and the document have vectors; otherwise the one that scored best by words,
        if any did. (On the 18F handbook, the closest passage held the page's answer for 70
        of 98 questions, the best by words for 62.) A generated description (the last
        passage, an empty span after the text, ``indexing.ingest.indexed_passages``) scores
        like any passage but is never the one reported: it is no part of the text to show or
        quote."""
        passages = self._doc_passages[slot]
        if passages is None or not passages.count:
            return None
        count = passages.count
        last = 2 * (passages.first + count - 1)
        spans = self._spans.data
        if spans[last + 1] <= spans[last]:  # the last passage is a description (or no words)
            count -= 1
            if not count:
                return None
        window = slice(passages.first, passages.first + count)
        if similarities is not None:
            closest = similarities[window]
            best = int(np.argmax(closest))
            if np.isfinite(closest[best]):
                return passages.first + best
        if passage_scores is not None:
            own = passage_scores[window]
            best = int(np.argmax(own))
            if own[best] > 0:
                return passages.first + best
        return None

    def _needs_words_for_passages(self, slots: list[int], similarities: F32Array | None) -> bool:
        """Whether, routing by meaning with passages unscored by words (``passage_weight=0``),
        some routed document has no vectors yet (``similarities`` is None when no document
        has any): its passage is then the best by words, which must be scored for it. (By
        words only, ``passage_weight=0`` reports no passage: whole documents were asked for.)"""
        if not self._passages.n_alive:
            return False
        return any(
            (passages := self._doc_passages[slot]) is not None
            and passages.count > 0
            and (similarities is None or not np.isfinite(similarities[passages.first]))
            for slot in slots
        )

    def _top_scoring_unit(self, slot: int, passage_scores: FloatArray | None) -> int | None:
        """The passage unit whose BM25 ``_accumulate`` added to this document's score (any of
        its passages, a description included), if one scored."""
        passages = self._doc_passages[slot]
        if passage_scores is None or passages is None or not passages.count:
            return None
        own = passage_scores[passages.first : passages.first + passages.count]
        best = int(np.argmax(own))
        return passages.first + best if own[best] > 0 else None

    def _similarities(self, vector: np.ndarray) -> F32Array | None:
        """Every passage unit's similarity to the question: the dot product, which for the stored
        vectors is a mix of the question's cosines to the passage and to its document's title
        (``indexing.semantic.passage_vectors``)."""
        matrix = self._embeddings.view()
        if matrix is None or vector.shape != (matrix.shape[1],):
            return None
        similarities = np.asarray(matrix @ vector.astype(np.float32), dtype=np.float32)
        similarities[~self._embeddings.present.view()] = -np.inf
        return similarities

    def _fuse(
        self,
        scores: FloatArray,
        matched: BoolArray | None,
        mask: BoolArray | None,
        similarities: F32Array,
        semantic_weight: float,
        top_k: int,
        budget: int | None,
    ) -> tuple[list[int], FloatArray]:
        """A convex combination of BM25 and best-passage similarity, each scaled to [0, 1]
        over the allowed documents (BM25 alone for a document without vectors, and unscaled
        when no allowed document has any); returns the ranked slots and their scores."""
        slots = len(scores)
        allowed = self._docs.alive.view()[:slots].copy()
        if mask is not None:
            allowed &= mask[:slots]
        lexical = matched & allowed if matched is not None else (scores > 0) & allowed
        words = np.where(lexical, np.maximum(scores, 0.0), 0.0)
        closest = _best_per_document(self._owner.view(), similarities, slots)
        by_meaning = allowed & np.isfinite(closest)
        if by_meaning.any():
            if words.max() > 0:
                words /= words.max()
            meaning = np.zeros(slots)
            low, high = closest[by_meaning].min(), closest[by_meaning].max()
            meaning[by_meaning] = (closest[by_meaning] - low) / (high - low) if high > low else 1.0
            weight = min(semantic_weight, 1.0)
            fused = (1.0 - weight) * words + weight * meaning
            # A document still waiting for its vectors (``indexing.ingest.vectorise``) ranks by
            # its words alone, not by its words at a discount against documents that have both.
            waiting = lexical & ~by_meaning
            fused[waiting] = words[waiting]
        else:
            fused = words  # no allowed document has vectors: BM25 on its own scale, as by words
        chosen = np.flatnonzero((lexical | by_meaning) & (fused > 0))
        depth = top_k if budget is None else len(chosen)
        ordered = _best_first(fused, chosen, depth)
        ranked = ordered[:top_k] if budget is None else self._within_budget(ordered, top_k, budget)
        return ranked, fused

    def _span(self, unit: int | None) -> tuple[int, int] | None:
        if unit is None:
            return None
        start, end = self._spans.data[2 * unit : 2 * unit + 2].tolist()
        return int(start), int(end)

    def _rank_positive(
        self, scores: FloatArray, query: _Query, top_k: int, budget: int | None
    ) -> list[int]:
        """Ranking when every match scores above zero: bound the winners from below first."""
        if budget is None:
            postings = self._docs.postings
            rarest = min(query.ids.tolist(), key=lambda tid: postings[tid].slots.n)
            sample = scores[postings[rarest].slots.view()]
            if len(sample) >= top_k:
                floor = np.partition(sample, len(sample) - top_k)[len(sample) - top_k]
                if floor > 0:
                    return _best_first(scores, np.flatnonzero(scores >= floor), top_k)
        return self._rank(scores, np.flatnonzero(scores > 0), top_k, budget)

    def _rank(
        self, scores: FloatArray, slots: np.ndarray, top_k: int, budget: int | None
    ) -> list[int]:
        if not len(slots):
            return []
        # With a budget some winners may be skipped, so look a little deeper than k first, and
        # through every candidate only if that did not fill k.
        depth = top_k if budget is None else max(4 * top_k, 32)
        ordered = _best_first(scores, slots, depth)
        if budget is None:
            return ordered[:top_k]
        chosen = self._within_budget(ordered, top_k, budget)
        if len(chosen) < top_k and len(ordered) < len(slots):
            chosen = self._within_budget(_best_first(scores, slots, len(slots)), top_k, budget)
        return chosen

    def _within_budget(self, ordered: list[int], top_k: int, budget: int) -> list[int]:
        def tokens(slot: int) -> int:
            entry = self._entries[slot]
            assert entry is not None
            return entry.token_estimate

        return within_budget(ordered, tokens, top_k, budget)

    def _entry(self, slot: int) -> IndexEntry:
        entry = self._entries[slot]
        assert entry is not None
        return entry

    def _contributions(
        self,
        slots: list[int],
        query: _Query,
        passage_weight: float,
        passage_scores: FloatArray | None,
    ) -> list[dict[str, float]]:
        """What each query term added to each routed document's BM25 score, through the
        document and through the passage whose BM25 was added (its best by words, which with
        meaning need not be the passage reported), largest first."""
        table = self._docs.term_scores(np.asarray(slots, np.int32), query.ids, query.weights)
        best = [self._top_scoring_unit(slot, passage_scores) for slot in slots]
        rows = [row for row, unit in enumerate(best) if unit is not None]
        if rows and passage_weight > 0:
            units = np.asarray([best[row] for row in rows], np.int32)
            weights = self._passage_weights(query)
            table[rows] += passage_weight * self._passages.term_scores(units, query.ids, weights)
        out = []
        rows_of_values: list[list[float]] = table.tolist()
        for row_values in rows_of_values:
            pairs = [
                (name, value) for name, value in zip(query.names, row_values, strict=True) if value
            ]
            out.append(dict(sorted(pairs, key=lambda kv: -kv[1])))
        return out


def _bare(entry: IndexEntry) -> IndexEntry:
    """The entry without its terms: the postings hold them, and a copy per document would
    double the index's memory."""
    if entry.vector is None and not entry.term_freqs and entry.passages is None:
        return entry
    return replace(entry, term_freqs={}, vector=None, passages=None)


def within_budget(
    ordered: Iterable[T], tokens: Callable[[T], int], top_k: int, budget: int
) -> list[T]:
    """The first ``top_k`` of ``ordered`` whose ``tokens`` fit in ``budget`` together, in
    order; one that does not fit is skipped for the next."""
    chosen: list[T] = []
    spent = 0
    for item in ordered:
        cost = tokens(item)
        if spent + cost <= budget:
            chosen.append(item)
            spent += cost
            if len(chosen) == top_k:
                break
    return chosen


def _best_per_document(owner: np.ndarray, values: np.ndarray, slots: int) -> FloatArray:
    """Each slot's largest value among its passage units (-inf for a slot with none). Passages
    are appended in slot order and renumbered in it, so ``owner`` never decreases and each
    slot's units are one run: a reduction per run, several times faster than ``maximum.at``."""
    best = np.full(slots, -np.inf)
    if len(owner):
        starts = np.flatnonzero(np.concatenate(([True], owner[1:] != owner[:-1])))
        best[owner[starts]] = np.maximum.reduceat(values, starts)
    return best


@contextmanager
def _cycle_collection_paused() -> Iterator[None]:
    """Pause Python's cycle collector for a bulk load and resume it after, unless it was off
    already. Reference counting still frees what the load discards, and the objects it keeps
    are scanned by the collections that follow it, once instead of ten times. The pause is
    process-wide: cycles other threads drop meanwhile wait for the end of the load."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def _load_embeddings(passages: list[PassageVectors]) -> _Embeddings:
    """The passages' vectors as one matrix (zeros where a document has none).

    One ``concatenate`` writes every document's float16 block straight into the float32
    matrix, converting as it copies: no loop over documents, no float16 copy of the whole.
    """
    counts = np.fromiter((len(p) for p in passages), np.int64, count=len(passages))
    widths = [p.embeddings.shape[1] for p in passages if p.embeddings is not None]
    if not widths:
        return _Embeddings.wrap(None, np.zeros(int(counts.sum()), np.bool_))
    fits = np.zeros(len(passages), np.bool_)
    blocks: list[np.ndarray] = []
    blank: EmbeddingArray | None = None  # zeros, for documents without (usable) vectors
    for i, p in enumerate(passages):
        # A vector of another width comes from another model: left out, like a missing one.
        if p.embeddings is not None and p.embeddings.shape[1] == widths[0]:
            fits[i] = True
            rows = p.embeddings
            if len(rows) != len(p):  # as assigning them to its passages would: spread or fail
                rows = np.broadcast_to(rows, (len(p), widths[0]))
            blocks.append(rows)
        else:
            if blank is None:
                blank = np.zeros((int(counts.max()), widths[0]), np.float16)
            blocks.append(blank[: len(p)])
    present = np.repeat(fits, counts)
    matrix = np.empty((len(present), widths[0]), np.float32)
    np.concatenate(blocks, out=matrix, casting="unsafe")
    return _Embeddings.wrap(matrix, present)


#: The most vocabulary terms a hash bucket may hold for ``_vocabulary_positions`` to probe it;
#: uniform hashes put about one term in two buckets, and more than 16 in one essentially never.
_MAX_BUCKET = 16


def _vocabulary_positions(known: HashArray, hashes: HashArray) -> tuple[IntArray, BoolArray]:
    """Where each of ``hashes`` is in ``known`` (sorted, distinct, not empty), and whether it
    is there at all (a missing hash gets some position, to be ignored).

    Term hashes are uniform, so their top bits spread the vocabulary over about twice as many
    buckets as terms, and a table of where each bucket starts finds a hash in a probe or two,
    against ``np.searchsorted``'s binary search of some 17 steps per hash (a 100,000-document
    pool's 26 million passage terms: 0.6 s instead of 1.9 s). Should hashes crowd one bucket
    (not uniform), the binary search it is.
    """
    bits = len(known).bit_length() + 1
    bounds = np.arange((1 << bits) + 1, dtype=np.uint64)
    starts = np.searchsorted(_hash_buckets(known, bits), bounds)
    if int(np.diff(starts).max()) > _MAX_BUCKET:
        at = np.minimum(np.searchsorted(known, hashes), len(known) - 1)
        return at.astype(np.int32), known[at] == hashes
    buckets = _hash_buckets(hashes, bits)
    # An empty bucket past the last term starts at len(known): probe the last term instead,
    # which is in another bucket, so it cannot match.
    at = np.minimum(starts[:-1], len(known) - 1).astype(np.int32)[buckets]
    found = known[at] == hashes
    ends = starts[1:]
    todo = np.flatnonzero(~found)
    while len(todo):  # at most _MAX_BUCKET rounds, each over the hashes still unplaced
        following = at[todo] + 1
        inside = following < ends[buckets[todo]]
        todo, following = todo[inside], following[inside]
        at[todo] = following
        hit = known[following] == hashes[todo]
        found[todo[hit]] = True
        todo = todo[~hit]
    return at, found


def _hash_buckets(hashes: HashArray, bits: int) -> npt.NDArray[np.uint64]:
    """The top ``bits`` bits of each hash, in the hashes' order: the sorted vocabulary's come
    out sorted. (Signed order is unsigned order with the sign bit flipped.)"""
    buckets = hashes.astype(np.uint64)  # by value: a copy, whatever the byte order
    buckets ^= np.uint64(1 << 63)
    buckets >>= np.uint64(64 - bits)
    return buckets


def _load_passage_terms(
    hashes: HashArray, counts: np.ndarray, sizes: np.ndarray, known: HashArray
) -> tuple[IntArray, F32Array, np.ndarray]:
    """``_passage_terms`` for a bulk load, where a term's id is its position in the sorted
    vocabulary ``known``, found by ``_vocabulary_positions``."""
    if not len(known):
        return _passage_terms(hashes, counts, sizes, known, _NO_IDS)
    ids, found = _vocabulary_positions(known, hashes)
    sizes = np.asarray(sizes, np.int64)
    if found.all():
        return ids, counts.astype(np.float32), sizes
    passage_of = np.repeat(np.arange(len(sizes)), sizes)
    sizes = np.bincount(passage_of[found], minlength=len(sizes))
    return ids[found], counts[found].astype(np.float32), sizes


def _passage_terms(
    hashes: HashArray, counts: np.ndarray, sizes: np.ndarray, known: HashArray, known_ids: IntArray
) -> tuple[IntArray, F32Array, np.ndarray]:
    """Passages' terms as term ids, given the (sorted) hashes ``known`` and their ids; also
    their counts and each passage's number of terms. A term its document lacks can only come
    from a damaged summary; it is dropped rather than given an id of its own."""
    if not len(known):
        return _NO_IDS, np.zeros(0, np.float32), np.zeros(len(sizes), np.int64)
    at = np.minimum(np.searchsorted(known, hashes), len(known) - 1)
    valid = known[at] == hashes
    sizes = np.asarray(sizes, np.int64)
    if not valid.all():
        passage_of = np.repeat(np.arange(len(sizes)), sizes)
        sizes = np.bincount(passage_of[valid], minlength=len(sizes))
    return known_ids[at[valid]].astype(np.int32), counts[valid].astype(np.float32), sizes


def _label_keys(entry: IndexEntry) -> list[tuple[str, str]]:
    keys = [("tag", t) for t in entry.tags] + [("group", g) for g in entry.groups]
    if not entry.groups:
        keys.append(("public", ""))
    return keys


def _best_first(scores: FloatArray, slots: np.ndarray, depth: int) -> list[int]:
    """The ``depth`` best of ``slots`` (ascending), by score then slot: a tie at the cut goes to
    the lower slot, so a shorter list is always a prefix of a longer one."""
    if len(slots) > depth:
        negated = -scores[slots]
        kth = np.partition(negated, depth - 1)[depth - 1]
        better = slots[negated < kth]
        slots = np.concatenate([better, slots[negated == kth][: depth - len(better)]])
    order = np.lexsort((slots, -scores[slots]))
    ordered: list[int] = slots[order].tolist()
    return ordered
