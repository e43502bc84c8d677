"""Settings: the only module that reads the environment.

Names: `MEMVAULT_<FIELD>`; the names older clients use are accepted too
(`DATABASE_URL`, `AUTH_DATABASE_URL`, `DATA_DIR`, `MAX_MESSAGES`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal

import platformdirs
from pydantic import AliasChoices, Field, ValidationError, model_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from memvault.errors import ConfigurationError
from memvault.limits import (
    MAX_MESSAGES_LIMIT,
    MAX_RATE_PER_MINUTE,
    MAX_REQUEST_BYTES,
    MAX_ZMQ_MESSAGE_BYTES,
    MESSAGE_ROLES,
)


def default_data_dir() -> Path:
    """The per-user data directory (`~/.local/share/memvault` on Linux)."""
    return Path(platformdirs.user_data_dir("memvault", appauthor=False))


class Settings(BaseSettings):
    """Everything configurable, with defaults that work on a laptop.

    `docs/configuration.md` documents each field; a test keeps the two in step.
    """

    model_config = SettingsConfigDict(
        env_prefix="MEMVAULT_",
        frozen=True,
        populate_by_name=True,
        extra="ignore",
    )

    data_dir: Path = Field(
        default_factory=default_data_dir,
        validation_alias=AliasChoices("MEMVAULT_DATA_DIR", "DATA_DIR", "data_dir"),
    )
    database_url: str = Field(
        "",
        validation_alias=AliasChoices(
            "MEMVAULT_DATABASE_URL", "DATABASE_URL", "AUTH_DATABASE_URL", "database_url"
        ),
    )
    max_messages: int = Field(
        100,
        ge=1,
        le=MAX_MESSAGES_LIMIT,
        validation_alias=AliasChoices("MEMVAULT_MAX_MESSAGES", "MAX_MESSAGES", "max_messages"),
    )
    default_namespace: str = "default"
    default_memory_type: str = "note"
    default_fact_category: str = "general"
    soft_delete_retention_days: float = Field(30.0, ge=0, le=3650)
    sqlite_busy_timeout_s: float = Field(30.0, gt=0, le=3600)
    sqlite_synchronous: Literal["NORMAL", "FULL"] = "NORMAL"
    # PostgreSQL connection pool (seed 001: size 10, max overflow 20, pre-ping).
    pg_pool_size: int = Field(10, ge=1, le=1000)
    pg_max_overflow: int = Field(20, ge=0, le=1000)
    pg_pool_timeout_s: float = Field(30.0, gt=0, le=3600)
    pg_pre_ping: bool = True
    pg_hnsw_from: int = Field(20_000, ge=0, le=1_000_000_000)
    access_flush_interval_s: float = Field(30.0, ge=0, le=3600)
    access_flush_max_pending: int = Field(100_000, ge=1, le=1_000_000)
    read_threads: int | None = Field(None, ge=1, le=64)  # None: per backend (docs)
    inline_point_reads: bool = True
    batch_gc_pause: bool = True
    embedder: str = "minilm"
    embed_threads: int = Field(0, ge=0, le=64)
    embed_batch: int = Field(32, ge=1, le=1024)
    embed_url: str = ""
    embed_model: str = "text-embedding-3-small"
    embed_api_key: str | None = None
    embed_dimension: int = Field(0, ge=0, le=8192)
    embed_timeout_s: float = Field(30.0, gt=0, le=600)
    vector_cache_mb: float = Field(1024.0, ge=1, le=1_000_000)
    search_lexical_budget: int = Field(4000, ge=0, le=100_000_000)
    search_weight_lexical: float = Field(1.0, ge=0, le=10)
    search_weight_vector: float = Field(0.5, ge=0, le=10)
    search_weight_neighbours: float = Field(0.15, ge=0, le=10)
    search_weight_importance: float = Field(0.1, ge=0, le=10)
    search_weight_recency: float = Field(0.05, ge=0, le=10)
    search_weight_access: float = Field(0.02, ge=0, le=10)
    search_weight_assistant: float = Field(0.3, ge=0, le=10)
    search_weight_speaker: float = Field(0.3, ge=0, le=10)
    recency_half_life_days: float = Field(30.0, gt=0, le=36500)
    auto_importance: bool = True
    dedup: Literal["facts", "all", "off"] = "facts"
    dedup_threshold: float = Field(0.95, gt=0, le=1)
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "WARNING"
    log_format: Literal["json", "text"] = "json"
    api_host: str = "127.0.0.1"
    api_port: int = Field(8080, ge=1, le=65535)
    api_workers: int = Field(1, ge=1, le=64)
    api_graceful_timeout_s: float = Field(30.0, gt=0, le=3600)
    api_fast_reads: bool = True
    auth_disabled: bool = False
    auth_cache_s: float = Field(5.0, ge=0, le=3600)
    rate_per_minute: int = Field(0, ge=0, le=MAX_RATE_PER_MINUTE)
    max_request_bytes: int = Field(1_048_576, ge=1024, le=MAX_REQUEST_BYTES)
    zmq_address: str = "tcp://127.0.0.1:5570"
    zmq_max_message_bytes: int = Field(4 * 1024 * 1024, ge=1024, le=MAX_ZMQ_MESSAGE_BYTES)
    zmq_compress_bytes: int = Field(16_384, ge=0, le=MAX_ZMQ_MESSAGE_BYTES)
    zmq_workers: int = Field(16, ge=1, le=256)
    zmq_curve_dir: str = ""
    zmq_default_user: str = "default"
    # MCP server (docs/mcp.md): the user its tools act for, the key a stdio server acts
    # with, and where `memvault mcp --http` listens.
    mcp_user: str = ""
    mcp_api_key: str | None = None
    mcp_port: int = Field(8091, ge=1, le=65535)
    zmq_cache_entries: int = Field(10_000, ge=0, le=10_000_000)
    zmq_cache_mb: float = Field(64.0, ge=0, le=1_000_000)
    zmq_cache_ttl_s: float = Field(300.0, ge=0, le=86_400)
    zmq_metrics_port: int = Field(0, ge=0, le=65535)
    search_concurrency: int = Field(8, ge=1, le=256)
    context_token_budget: int = Field(2000, ge=100, le=1_000_000)
    # Encryption at rest (docs/backends.md#encryption): the JSON-file backend's files when a
    # key is given; memory content and metadata on SQLite and PostgreSQL when
    # `encrypt_content` is on as well (a store that does so keeps doing so).
    encryption_key: str | None = None
    encryption_key_file: str = ""
    encryption_old_keys: str = ""
    encrypt_content: bool = False
    # Extraction, consolidation, summaries (docs/extraction.md).
    extractor: Literal["off", "rules", "llm"] = "off"
    extract_roles: str = "user"
    consolidate_threshold: float = Field(0.9, gt=0, le=1)
    llm_url: str = ""
    llm_model: str = ""
    llm_api_key: str | None = None
    llm_timeout_s: float = Field(30.0, gt=0, le=600)
    llm_retries: int = Field(2, ge=0, le=10)
    llm_json_mode: bool = True
    extract_prompt_file: str = ""
    summary_prompt_file: str = ""
    summary_mode: Literal["extractive", "llm"] = "extractive"
    summary_every_facts: int = Field(10, ge=0, le=100_000)
    summary_max_chars: int = Field(2000, ge=200, le=65_536)
    job_worker: bool = True
    job_lease_s: float = Field(120.0, ge=1, le=86_400)
    job_max_attempts: int = Field(5, ge=1, le=100)
    job_backoff_s: float = Field(10.0, ge=0, le=86_400)
    job_poll_s: float = Field(1.0, gt=0, le=3600)
    job_batch: int = Field(8, ge=1, le=1000)

    @model_validator(mode="after")
    def _default_database_url(self) -> Settings:
        if not self.database_url:
            object.__setattr__(self, "database_url", f"sqlite:///{self.data_dir / 'memvault.db'}")
        return self

    @model_validator(mode="after")
    def _llm_needs_an_endpoint(self) -> Settings:
        if (self.extractor == "llm" or self.summary_mode == "llm") and not (
            self.llm_url and self.llm_model
        ):
            raise ValueError(
                "extractor=llm or summary_mode=llm needs MEMVAULT_LLM_URL and MEMVAULT_LLM_MODEL"
            )
        roles = [r.strip() for r in self.extract_roles.split(",") if r.strip()]
        if not roles or any(r not in MESSAGE_ROLES for r in roles):
            raise ValueError(f"extract_roles must name roles among {list(MESSAGE_ROLES)}")
        return self

    @property
    def extract_role_set(self) -> frozenset[str]:
        return frozenset(r.strip() for r in self.extract_roles.split(",") if r.strip())


def load_settings(overrides: dict[str, Any] | None = None) -> Settings:
    """Build `Settings` from the environment plus `overrides`; a bad value raises
    `ConfigurationError` naming the setting."""
    try:
        return Settings(**(overrides or {}))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'settings'}: {err['msg']}"
            for err in exc.errors()
        )
        raise ConfigurationError(f"invalid memvault settings: {problems}") from exc
