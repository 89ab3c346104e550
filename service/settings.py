"""Every setting of the service, read once from the environment (``KPOOL_*``).

One typed object, built by ``get_settings()`` and injected everywhere; tests build their own.
A bad or contradictory value fails at start-up with a message that names the variable.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Annotated, Literal
from urllib.parse import urlsplit

import Stemmer
from pydantic import (
    AliasChoices,
    Field,
    SecretStr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import ErrorDetails
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from indexing.analyzer import STOPWORD_SETS, AnalyzerParams
from indexing.bm25 import VARIANTS, BM25Params
from indexing.errors import ConfigurationError
from indexing.extract import ExtractLimits
from indexing.passages import PassageParams
from indexing.pool import PoolConfig
from service.rerank import RerankMode, RerankPolicy
from service.router import RoutingOptions

FilesBackendName = Literal["auto", "local", "anthropic"]


class Settings(BaseSettings):
    """The service's configuration; the README's table lists each field and its variable."""

    model_config = SettingsConfigDict(env_prefix="KPOOL_", extra="ignore", frozen=True)

    home: Path = Field(default=Path(".kpool"), description="Data directory of the pool.")
    database_url: str | None = Field(
        default=None, description="SQLAlchemy URL; default: SQLite file in the data directory."
    )
    files_backend: FilesBackendName = Field(
        default="auto", description="auto: anthropic when an API key is set, else local."
    )
    anthropic_api_key: SecretStr | None = Field(
        default=None,
        validation_alias=AliasChoices("ANTHROPIC_API_KEY", "KPOOL_ANTHROPIC_API_KEY"),
        description="Anthropic API key; its presence selects the anthropic backend.",
    )
    anthropic_base_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("KPOOL_ANTHROPIC_BASE_URL", "ANTHROPIC_BASE_URL"),
        description="Anthropic API base URL (a proxy or a test server).",
    )
    anthropic_timeout: float = Field(default=60.0, gt=0, description="Seconds per API call.")
    anthropic_max_retries: int = Field(
        default=3, ge=0, le=10, description="SDK retries on 429/5xx."
    )
    model: str = Field(
        default="claude-sonnet-5-5", description="Claude model that answers (with an API key)."
    )
    max_tokens: int = Field(default=1024, ge=1, le=64_000, description="Longest answer, tokens.")
    system_prompt: str | None = Field(
        default=None, description="Replaces the built-in system prompt."
    )
    host: str = Field(default="127.0.0.1", description="Interface `kpool serve` binds to.")
    allow_no_auth: bool = Field(
        default=False,
        description="Serve beyond loopback even though no API key exists (anyone may call).",
    )
    port: int = Field(default=8000, ge=1, le=65535, description="Port `kpool serve` binds to.")
    top_k: int = Field(default=3, ge=1, le=100, description="Documents routed per question.")
    token_budget: int = Field(
        default=150_000, ge=1, description="Estimated tokens the routed documents may use."
    )
    passage_weight: float | None = Field(
        default=None,
        ge=0,
        description="How much a document's best passage adds to its BM25 score (0: whole "
        "documents). Unset: 1 by words only; 0 with KPOOL_SEMANTIC, whose best-passage "
        "similarity already scores the passages.",
    )
    min_coverage: float = Field(
        default=0.0,
        ge=0,
        le=1,
        description="Route nothing when the best document holds less than this share of the "
        "question's weighted terms (0: never).",
    )
    semantic: bool = Field(
        default=True,
        description="Route by meaning too: a small embedding model, run locally, fused with "
        "BM25 (needs `make semantic`, which `make run` does; costs about 0.1 s of CPU per "
        "passage after ingest and 12 ms per question). False: route by words only.",
    )
    semantic_weight: float = Field(
        default=0.5,
        ge=0,
        le=1,
        description="Share of meaning in a document's score, the rest BM25's, each scaled to "
        "0-1 (with KPOOL_SEMANTIC).",
    )
    rerank: RerankMode = Field(
        default="off",
        description="Rerank the routed candidates with a small Claude model (API key only): "
        "off; uncertain (only when the top two are within KPOOL_RERANK_MARGIN); always (every "
        "question, which abstention needs). About 2,300 input tokens a question.",
    )
    rerank_model: str = Field(default="claude-haiku-5-5", description="Model that reranks.")
    rerank_candidates: int = Field(
        default=8, ge=2, le=20, description="Best local candidates shown to it."
    )
    rerank_margin: float = Field(
        default=0.15,
        ge=0,
        le=1,
        description="uncertain: rerank when (first - second) / first is below this.",
    )
    rerank_timeout: float = Field(
        default=10.0,
        gt=0,
        description="Seconds the reranking request may take (one retry) before the local "
        "ranking is used.",
    )
    rerank_abstain: bool = Field(
        default=True,
        description="Route nothing when the reranking model finds no candidate answers.",
    )
    expand: bool = Field(
        default=False,
        description="Describe each document once with a small Claude model (API key only): a "
        "few sentences and the questions it answers, indexed with it so questions in other "
        "words find it. One request per document version, after it is stored.",
    )
    expand_model: str = Field(
        default="claude-haiku-5-5", max_length=100, description="Model that describes."
    )
    passage_window: int = Field(default=300, ge=1, description="Words per passage window.")
    passage_stride: int = Field(default=150, ge=1, description="Words between window starts.")
    bm25_variant: str = Field(default="lucene", description="lucene or okapi.")
    bm25_k1: float = Field(default=1.2, ge=0, description="BM25 term-frequency saturation.")
    bm25_b: float = Field(default=0.75, ge=0, le=1, description="BM25 length normalisation.")
    analyzer_stemmer: str = Field(default="english", description="Snowball stemmer, or none.")
    analyzer_stopwords: str = Field(default="lucene-english", description="Stopword list.")
    max_file_bytes: int = Field(
        default=50 * 1024 * 1024, ge=1, description="Largest file accepted for ingest."
    )
    max_pdf_pages: int = Field(default=2_000, ge=1, description="Most pages read from a PDF.")
    ingest_concurrency: int = Field(
        default=4, ge=1, le=64, description="Parallel uploads in bulk ingest."
    )
    refresh_seconds: float = Field(
        default=2.0,
        gt=0,
        description="How often the server picks up documents changed by other processes.",
    )
    cors_origins: Annotated[tuple[str, ...], NoDecode] = Field(
        default=(),
        description="Origins (comma-separated) whose pages may call the API, e.g. the widget's.",
    )
    conversation_turns: int = Field(
        default=10, ge=1, le=100, description="Earlier turns of a conversation sent to Claude."
    )
    conversation_days: float = Field(
        default=30, gt=0, description="Days after its last question that a conversation is kept."
    )
    rate_limit_per_minute: float = Field(
        default=0, ge=0, description="Requests a minute each caller may make, sustained (0: off)."
    )
    rate_limit_burst: int = Field(
        default=10, ge=1, description="Requests a caller may make at once before the rate applies."
    )
    tokens_per_hour: int = Field(
        default=0,
        ge=0,
        description="Anthropic tokens a caller may use an hour, cache reads aside (0: off).",
    )
    audit_questions: bool = Field(
        default=False, description="Keep each question's text in the audit log."
    )
    audit_days: float = Field(default=90, gt=0, description="Days an audit entry is kept.")

    @field_validator("passage_weight", mode="before")
    @classmethod
    def _blank_is_unset(cls, value: object) -> object:
        """``KPOOL_PASSAGE_WEIGHT=`` (blank) leaves the default that depends on meaning."""
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("cors_origins", mode="before")
    @classmethod
    def _split_origins(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("cors_origins")
    @classmethod
    def _valid_origins(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        return tuple(normalise_origin(origin) for origin in value)

    @field_validator("bm25_variant")
    @classmethod
    def _known_variant(cls, value: str) -> str:
        if value not in VARIANTS:
            raise ValueError(f"must be one of {', '.join(sorted(VARIANTS))}")
        return value

    @field_validator("analyzer_stemmer")
    @classmethod
    def _known_stemmer(cls, value: str) -> str:
        known = ["none", *Stemmer.algorithms()]
        if value not in known:
            raise ValueError(f"must be one of {', '.join(known)}")
        return value

    @field_validator("analyzer_stopwords")
    @classmethod
    def _known_stopwords(cls, value: str) -> str:
        if value not in STOPWORD_SETS:
            raise ValueError(f"must be one of {', '.join(sorted(STOPWORD_SETS))}")
        return value

    @model_validator(mode="after")
    def _backend_has_key(self) -> Settings:
        if self.files_backend == "anthropic" and self.anthropic_api_key is None:
            raise ValueError(
                "KPOOL_FILES_BACKEND=anthropic needs ANTHROPIC_API_KEY; "
                "set it, or use KPOOL_FILES_BACKEND=local"
            )
        return self

    @model_validator(mode="after")
    def _rerank_has_key(self) -> Settings:
        if self.rerank != "off" and self.backend_name != "anthropic":
            raise ValueError(
                f"KPOOL_RERANK={self.rerank} asks Claude, which needs ANTHROPIC_API_KEY and the "
                "anthropic files backend; set the key, or KPOOL_RERANK=off"
            )
        return self

    @model_validator(mode="after")
    def _expand_has_key(self) -> Settings:
        if self.expand and self.backend_name != "anthropic":
            raise ValueError(
                "KPOOL_EXPAND asks Claude, which needs ANTHROPIC_API_KEY and the anthropic files "
                "backend; set the key, or KPOOL_EXPAND=0"
            )
        return self

    @model_validator(mode="after")
    def _stride_within_window(self) -> Settings:
        if self.passage_stride > self.passage_window:
            raise ValueError(
                f"KPOOL_PASSAGE_STRIDE ({self.passage_stride}) must not exceed "
                f"KPOOL_PASSAGE_WINDOW ({self.passage_window}): windows would leave gaps"
            )
        return self

    def deprecated_model_warning(self) -> str | None:
        """A warning when the configured model is in the pinned SDK's deprecated list."""
        from anthropic._data.deprecated_models import DEPRECATED_MODELS

        end = DEPRECATED_MODELS.get(self.model)
        if end is None:
            return None
        return f"KPOOL_MODEL={self.model} is deprecated and reaches end of life on {end}"

    @property
    def backend_name(self) -> Literal["local", "anthropic"]:
        if self.files_backend == "auto":
            return "anthropic" if self.anthropic_api_key else "local"
        return self.files_backend

    def routing_options(self) -> RoutingOptions:
        passage_weight = self.passage_weight
        if passage_weight is None:
            passage_weight = 0.0 if self.semantic else 1.0
        return RoutingOptions(
            passage_weight=passage_weight,
            min_coverage=self.min_coverage,
            semantic_weight=self.semantic_weight if self.semantic else 0.0,
        )

    def rerank_policy(self) -> RerankPolicy:
        return RerankPolicy(
            mode=self.rerank,
            candidates=self.rerank_candidates,
            margin=self.rerank_margin,
            abstain=self.rerank_abstain,
        )

    def pool_config(self) -> PoolConfig:
        return PoolConfig(
            data_dir=self.home,
            database_url=self.database_url,
            analyzer=AnalyzerParams(
                stemmer=self.analyzer_stemmer, stopwords=self.analyzer_stopwords
            ),
            bm25=BM25Params(k1=self.bm25_k1, b=self.bm25_b, variant=self.bm25_variant),
            passages=PassageParams(window=self.passage_window, stride=self.passage_stride),
            limits=ExtractLimits(max_bytes=self.max_file_bytes, max_pages=self.max_pdf_pages),
            semantic=self.semantic,
        )


def normalise_origin(origin: str) -> str:
    """``scheme://host[:port]`` in lower case, as browsers send it in ``Origin``."""
    parts = urlsplit(origin.strip().rstrip("/"))
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"{origin!r} is not an origin like https://intranet.example.com")
    if parts.path or parts.query or parts.fragment or parts.username:
        raise ValueError(f"{origin!r} is not an origin: no path, query or user part")
    default_port = {"http": 80, "https": 443}[parts.scheme]
    port = f":{parts.port}" if parts.port and parts.port != default_port else ""
    return f"{parts.scheme}://{parts.hostname}{port}"


def load_settings() -> Settings:
    """Settings from the environment, with validation errors turned into a clear message."""
    try:
        return Settings()
    except ValidationError as exc:
        problems = "; ".join(_describe(error) for error in exc.errors())
        raise ConfigurationError(f"invalid configuration: {problems}") from None


def _describe(error: ErrorDetails) -> str:
    loc = error.get("loc") or ()
    name = str(loc[0]) if isinstance(loc, tuple) and loc else ""
    variable = f"KPOOL_{name.upper()}" if name else "settings"
    return f"{variable}: {error.get('msg')}"


@lru_cache
def get_settings() -> Settings:
    return load_settings()
