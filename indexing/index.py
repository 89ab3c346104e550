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
"""

from __future__ import annotations

import itertools
import threading
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import numpy.typing as npt

from indexing.bm25 import VARIANTS, BM25Params, FloatArray, length_norm
from indexing.filters import Between, Condition, Filters, Kind, Value, comparables
from indexing.summary import TermVector, term_hash

IntArray = npt.NDArray[np.int32]
F32Array = npt.NDArray[np.float32]
BoolArray = npt.NDArray[np.bool_]

_MIN_CAPACITY = 4
_COMPACT_MIN_DEAD = 1024


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

    def terms(self) -> TermVector:
        return self.vector if self.vector is not None else TermVector.from_counts(self.term_freqs)


@dataclass(frozen=True)
class Hit:
    """A routed document: its entry, its score, and what each query term contributed."""

    entry: IndexEntry
    score: float
    contributions: dict[str, float] = field(default_factory=dict)


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
            self.slots = _GrowableArray(np.int32)
            self.tfs = _GrowableArray(np.float32)
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


@dataclass(frozen=True)
class _Query:
    """A question resolved against the vocabulary: term ids, their weights and their text."""

    ids: IntArray
    weights: FloatArray
    names: list[str]


class InvertedIndex:
    """BM25 over documents held in memory; see the module docstring for the layout."""

    def __init__(self, params: BM25Params | None = None) -> None:
        self.params = params or BM25Params()
        self._variant = VARIANTS[self.params.variant]
        self._lock = threading.RLock()
        self._reset()

    def _reset(self) -> None:
        self._vocab: dict[int, int] = {}  # term hash -> term id
        self._postings: list[_Postings] = []
        self._df = _GrowableArray(np.int64)
        self._reset_slots()

    def _reset_slots(self) -> None:
        self._lengths = _GrowableArray(np.float64)
        self._alive = _GrowableArray(np.bool_)
        self._entries: list[IndexEntry | None] = []
        self._doc_terms: list[tuple[IntArray, F32Array] | None] = []
        self._slot_of: dict[str, int] = {}
        self._file_of_document: dict[str, str] = {}
        self._labels: dict[tuple[str, str], _GrowableArray] = {}
        self._columns: dict[str, dict[Kind, _Column]] = {}
        self._total_length = 0.0
        self._n_alive = 0
        self._norm_cache: F32Array | None = None
        self._version = 0  # bumped whenever lengths or the average length change

    # ----------------------------------------------------------------- size and introspection

    def __len__(self) -> int:
        return self._n_alive

    def __contains__(self, file_id: object) -> bool:
        return file_id in self._slot_of

    @property
    def avg_length(self) -> float:
        return self._total_length / self._n_alive if self._n_alive else 0.0

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
        return 0 if tid is None else int(self._df.data[tid])

    def memory_bytes(self) -> int:
        """Bytes held by the numpy arrays (postings, per-document terms and per-slot data)."""
        with self._lock:
            total = 0
            for p in self._postings:
                total += p.slots.data.nbytes + p.tfs.data.nbytes
                total += 0 if p.factor is None else p.factor.nbytes
            total += sum(t[0].nbytes + t[1].nbytes for t in self._doc_terms if t is not None)
            arrays = [self._df, self._lengths, self._alive, *self._labels.values()]
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
        """Replace the whole index with ``entries``: one vectorised pass over all postings."""
        unique = {entry.file_id: entry for entry in entries}
        vectors = [entry.terms() for entry in unique.values()]
        with self._lock:
            self._reset()
            self._load_slots(list(unique.values()))
            self._load_postings(vectors)

    def _load_slots(self, entries: list[IndexEntry]) -> None:
        n = len(entries)
        self._entries = [_bare(e) for e in entries]
        self._slot_of = {e.file_id: slot for slot, e in enumerate(entries)}
        self._file_of_document = {e.document_id: e.file_id for e in entries}
        lengths = np.fromiter((e.length for e in entries), dtype=np.float64, count=n)
        self._lengths = _GrowableArray.wrap(lengths)
        self._alive = _GrowableArray.wrap(np.ones(n, np.bool_))
        members: dict[tuple[str, str], list[int]] = {}
        for slot, entry in enumerate(entries):
            for key in _label_keys(entry):
                members.setdefault(key, []).append(slot)
        for key, slots in members.items():
            mask = np.zeros(n, np.bool_)
            mask[slots] = True
            self._labels[key] = _GrowableArray.wrap(mask)
        self._load_columns(entries)
        self._total_length = float(lengths.sum())
        self._n_alive = n

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

    def _load_postings(self, vectors: list[TermVector]) -> None:
        sizes = np.fromiter((len(v) for v in vectors), dtype=np.int64, count=len(vectors))
        hashes = np.concatenate([v.hashes for v in vectors]) if vectors else np.zeros(0, np.int64)
        counts = np.concatenate([v.counts for v in vectors]) if vectors else np.zeros(0, np.uint32)
        slots = np.repeat(np.arange(len(vectors), dtype=np.int32), sizes)
        order = np.argsort(hashes, kind="stable")
        sorted_hashes = hashes[order]
        starts = np.ones(len(sorted_hashes), np.bool_)
        starts[1:] = sorted_hashes[1:] != sorted_hashes[:-1]
        unique = sorted_hashes[starts]
        term_ids = np.empty(len(hashes), np.int32)
        term_ids[order] = np.cumsum(starts) - 1
        bounds = np.append(np.flatnonzero(starts), len(sorted_hashes))
        self._vocab = dict(zip(unique.tolist(), range(len(unique)), strict=True))
        self._df = _GrowableArray.wrap(np.diff(bounds).astype(np.int64))
        sorted_slots = slots[order]
        sorted_tfs = counts[order].astype(np.float32)
        self._postings = [
            _Postings(sorted_slots[lo:hi], sorted_tfs[lo:hi])
            for lo, hi in itertools.pairwise(bounds.tolist())
        ]
        # Hashes are sorted within each vector and ids follow hash order, so each document's
        # term ids come out sorted, as ``_contributions`` needs.
        if not vectors:  # np.split of an empty array still yields one (empty) piece
            self._doc_terms = []
            return
        cuts = np.cumsum(sizes)[:-1]
        doc_ids = np.split(term_ids, cuts)
        doc_tfs = np.split(counts.astype(np.float32), cuts)
        self._doc_terms = list(zip(doc_ids, doc_tfs, strict=True))

    def _term_ids(self, vector: TermVector) -> IntArray:
        """Ids for a document's term hashes, creating ids for new terms."""
        vocab = self._vocab
        known = len(vocab)
        ids = np.fromiter(
            (vocab.setdefault(h, len(vocab)) for h in vector.hashes.tolist()),
            dtype=np.int32,
            count=len(vector),
        )
        grown = len(vocab) - known
        if grown:
            self._df.extend(np.zeros(grown, np.int64))
            self._postings.extend(_Postings() for _ in range(grown))
        return ids

    def _add_locked(self, entry: IndexEntry) -> None:
        vector = entry.terms()
        ids = self._term_ids(vector)
        order = np.argsort(ids)
        ids, tfs = ids[order], vector.counts[order].astype(np.float32)
        slot = len(self._entries)
        self._entries.append(_bare(entry))
        self._doc_terms.append((ids, tfs))
        self._slot_of[entry.file_id] = slot
        self._file_of_document[entry.document_id] = entry.file_id
        self._lengths.append(float(entry.length))
        self._alive.append(True)
        for arr in self._labels.values():
            arr.append(False)
        for key in _label_keys(entry):
            self._label_array(key).data[slot] = True
        for name, raw in entry.attributes.items():
            for value in comparables(raw):
                self._column(name, value.kind).extend([slot], [value])
        self._df.data[ids] += 1
        postings = self._postings
        for tid, tf in zip(ids.tolist(), tfs.tolist(), strict=True):
            postings[tid].append(slot, tf)
        self._total_length += entry.length
        self._n_alive += 1
        self._changed()

    def _remove_locked(self, file_id: str) -> bool:
        slot = self._slot_of.pop(file_id, None)
        if slot is None:
            return False
        entry = self._entries[slot]
        terms = self._doc_terms[slot]
        assert entry is not None and terms is not None
        self._entries[slot] = None
        self._doc_terms[slot] = None
        if self._file_of_document.get(entry.document_id) == file_id:
            del self._file_of_document[entry.document_id]
        self._alive.data[slot] = False
        for arr in self._labels.values():
            arr.data[slot] = False
        self._total_length -= entry.length
        self._n_alive -= 1
        ids = terms[0]
        self._df.data[ids] -= 1
        alive = self._alive.view()
        for tid in ids.tolist():
            postings = self._postings[tid]
            postings.stale += 1
            if postings.stale >= 16 and 2 * postings.stale > postings.slots.n:
                postings.drop_dead(alive)
        self._changed()
        return True

    def _changed(self) -> None:
        self._norm_cache = None
        self._version += 1

    def _maybe_compact(self) -> None:
        """Renumber slots once dead ones outnumber the living (amortised O(1) per change)."""
        if self._dead_slots() > max(_COMPACT_MIN_DEAD, self._n_alive):
            self._compact_slots()

    def _dead_slots(self) -> int:
        return len(self._entries) - self._n_alive

    def _compact_slots(self) -> None:
        """Renumber live documents into consecutive slots (after many removals)."""
        live = [
            (entry, terms)
            for entry, terms in zip(self._entries, self._doc_terms, strict=True)
            if entry is not None and terms is not None
        ]
        self._reset_slots()
        self._df.data[:] = 0
        self._load_slots([entry for entry, _ in live])
        self._doc_terms = [terms for _, terms in live]
        per_term_slots: list[np.ndarray] = []
        per_term_ids: list[np.ndarray] = []
        per_term_tfs: list[np.ndarray] = []
        for slot, (_, (ids, tfs)) in enumerate(live):
            per_term_ids.append(ids)
            per_term_tfs.append(tfs)
            per_term_slots.append(np.full(len(ids), slot, np.int32))
        ids_all = np.concatenate(per_term_ids) if live else np.zeros(0, np.int32)
        tfs_all = np.concatenate(per_term_tfs) if live else np.zeros(0, np.float32)
        slots_all = np.concatenate(per_term_slots) if live else np.zeros(0, np.int32)
        order = np.argsort(ids_all, kind="stable")
        ids_all, tfs_all, slots_all = ids_all[order], tfs_all[order], slots_all[order]
        bounds = np.searchsorted(ids_all, np.arange(len(self._postings) + 1))
        self._df.data[: len(self._postings)] = np.diff(bounds)
        self._postings = [
            _Postings(slots_all[lo:hi], tfs_all[lo:hi])
            for lo, hi in itertools.pairwise(bounds.tolist())
        ]

    # ------------------------------------------------------------------------ labels (filters)

    def _label_array(self, key: tuple[str, str]) -> _GrowableArray:
        arr = self._labels.get(key)
        if arr is None:
            arr = _GrowableArray.wrap(np.zeros(max(self._alive.n, _MIN_CAPACITY), np.bool_))
            arr.n = self._alive.n
            self._labels[key] = arr
        return arr

    def _label_mask(self, kind: str, value: str) -> BoolArray:
        arr = self._labels.get((kind, value))
        if arr is None:
            return np.zeros(self._alive.n, np.bool_)
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
        mask = np.zeros(self._alive.n, np.bool_)
        for kind, column in self._columns.get(name, {}).items():
            selected = column.select(condition, kind)
            if selected is not None:
                mask[column.slots.view()[selected]] = True
        mask &= self._alive.view()
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

    def _norms(self) -> F32Array:
        """``k1·(1 − b + b·|d|/avgdl)`` per slot (infinite for dead slots), until lengths change."""
        if self._norm_cache is None or len(self._norm_cache) != self._lengths.n:
            p = self.params
            norms = length_norm(self._lengths.view(), self.avg_length, p.k1, p.b)
            norms[~self._alive.view()] = np.inf
            self._norm_cache = norms.astype(np.float32)
        return self._norm_cache

    def _factor(self, postings: _Postings) -> F32Array:
        """``tf·(k1+1) / (tf + norm)`` for every posting of a term, cached until lengths change."""
        if postings.factor is None or postings.factor_version != self._version:
            tfs = postings.tfs.view()
            norms = self._norms()[postings.slots.view()]
            factor = tfs * np.float32(self.params.k1 + 1.0)
            factor /= tfs + norms
            postings.factor = factor
            postings.factor_version = self._version
        return postings.factor

    def _resolve(self, query_terms: Sequence[str]) -> _Query:
        """Known query terms as ids, each weighted by its IDF times its count in the query."""
        counts: dict[int, int] = {}
        names: dict[int, str] = {}
        for term in query_terms:
            tid = self._vocab.get(term_hash(term))
            if tid is not None and self._df.data[tid] > 0:
                counts[tid] = counts.get(tid, 0) + 1
                names.setdefault(tid, term)
        ids = np.fromiter(counts, dtype=np.int32, count=len(counts))
        reps = np.fromiter(counts.values(), dtype=np.float64, count=len(counts))
        df = self._df.data[ids].astype(np.float64)
        idf = self._variant.idf(df, self._vocabulary_df, self._n_alive, self.params.epsilon)
        return _Query(ids, idf * reps, [names[tid] for tid in counts])

    def _vocabulary_df(self) -> FloatArray:
        df = self._df.view()
        return df[df > 0].astype(np.float64)

    def _accumulate(self, query: _Query) -> tuple[FloatArray, BoolArray | None]:
        """Scores for every slot; plus, when some weight is not positive (Okapi IDF can be
        zero or negative), which slots matched at least one term. Otherwise matching is simply
        scoring above zero."""
        n = self._lengths.n
        scores = np.zeros(n, np.float64)
        signed = bool((query.weights <= 0).any())
        matched = np.zeros(n, np.bool_) if signed else None
        for tid, weight in zip(query.ids.tolist(), query.weights.tolist(), strict=True):
            postings = self._postings[tid]
            slots = postings.slots.view()
            # ufunc.at is numpy's fastest scatter-add, but only without a cast: the addends
            # must already be float64 (a float32 array times a Python float stays float32).
            np.add.at(scores, slots, np.multiply(self._factor(postings), weight, dtype=np.float64))
            if matched is not None:
                matched[slots] = True
        if matched is not None:
            matched &= self._alive.view()
        return scores, matched

    def scores(self, query_terms: Sequence[str]) -> dict[str, float]:
        """Every live document's score for the query (zero where nothing matched)."""
        with self._lock:
            raw, _ = self._accumulate(self._resolve(query_terms))
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
        explain: bool = True,
    ) -> list[Hit]:
        """The best ``top_k`` documents matching at least one query term, best first.

        Documents outside ``groups``/``tags``/``filters`` (or the explicit ``allowed`` mask)
        are excluded before ranking. With ``token_budget``, documents are taken in rank order
        while their token estimates fit; one that does not fit is skipped for the next.
        """
        if top_k <= 0:
            return []
        with self._lock:
            query = self._resolve(query_terms)
            if not len(query.ids):
                return []
            scores, matched = self._accumulate(query)
            mask = allowed if allowed is not None else self._allowed_locked(groups, tags, filters)
            if matched is None:
                if mask is not None:
                    scores[~mask[: len(scores)]] = 0.0
                ranked = self._rank_positive(scores, query, top_k, token_budget)
            else:
                if mask is not None:
                    matched &= mask[: len(matched)]
                ranked = self._rank(scores, np.flatnonzero(matched), top_k, token_budget)
            explained = self._contributions(ranked, query) if explain else [{} for _ in ranked]
            return [
                Hit(self._entry(slot), float(scores[slot]), contributions)
                for slot, contributions in zip(ranked, explained, strict=True)
            ]

    def _rank_positive(
        self, scores: FloatArray, query: _Query, top_k: int, budget: int | None
    ) -> list[int]:
        """Ranking when every match scores above zero: bound the winners from below first."""
        if budget is None:
            rarest = min(query.ids.tolist(), key=lambda tid: self._postings[tid].slots.n)
            sample = scores[self._postings[rarest].slots.view()]
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
        chosen: list[int] = []
        spent = 0
        for slot in ordered:
            entry = self._entries[slot]
            assert entry is not None
            if spent + entry.token_estimate <= budget:
                chosen.append(slot)
                spent += entry.token_estimate
                if len(chosen) == top_k:
                    break
        return chosen

    def _entry(self, slot: int) -> IndexEntry:
        entry = self._entries[slot]
        assert entry is not None
        return entry

    def _contributions(self, slots: list[int], query: _Query) -> list[dict[str, float]]:
        """What each query term added to each routed document's score, largest first.

        One lookup per term for all the documents at once: postings lists are kept in slot
        order, so the documents' positions come from a binary search.
        """
        winners = np.asarray(slots, dtype=np.int32)
        table = np.zeros((len(slots), len(query.ids)))
        for column, (tid, weight) in enumerate(
            zip(query.ids.tolist(), query.weights.tolist(), strict=True)
        ):
            postings = self._postings[tid]
            held = postings.slots.view()
            if not len(held):
                continue
            at = np.minimum(np.searchsorted(held, winners), len(held) - 1)
            present = held[at] == winners
            table[present, column] = weight * self._factor(postings)[at[present]]
        out = []
        for row in table.tolist():
            pairs = [(name, value) for name, value in zip(query.names, row, strict=True) if value]
            out.append(dict(sorted(pairs, key=lambda kv: -kv[1])))
        return out


def _bare(entry: IndexEntry) -> IndexEntry:
    """The entry without its terms: the postings hold them, and a copy per document would
    double the index's memory."""
    if entry.vector is None and not entry.term_freqs:
        return entry
    return replace(entry, term_freqs={}, vector=None)


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
