"""The schema in SQLAlchemy Core, shared by SQLite and PostgreSQL.

Alembic revisions create these tables; `tests/integration/test_migrations.py` checks that a
migrated database matches this module. Timestamps are aware UTC: `TIMESTAMPTZ` on
PostgreSQL, fixed-width ISO-8601 text (`2026-01-01T00:00:00.000000+00:00`) on SQLite, which
sorts and compares correctly as text.
"""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB

metadata = MetaData()

Timestamp = DateTime(timezone=True).with_variant(String(32), "sqlite")
# `json` on PostgreSQL keeps an object's keys as written, as SQLite does (migration 0005);
# tags are `jsonb` there, for their GIN index.
Json = JSON()
JsonB = JSON().with_variant(JSONB(), "postgresql")
Pk = BigInteger().with_variant(Integer(), "sqlite")  # INTEGER PRIMARY KEY is SQLite's rowid

users = Table(
    "users",
    metadata,
    Column("user_id", String(128), primary_key=True),
    Column("username", String(256)),
    Column("profile", Json, nullable=False),
    Column("timezone", String(64)),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

memories = Table(
    "memories",
    metadata,
    Column("pk", Pk, primary_key=True, autoincrement=True),
    Column("memory_id", String(40), nullable=False, unique=True),
    Column("user_id", String(128), ForeignKey("users.user_id", ondelete="CASCADE"), nullable=False),
    Column("namespace", String(128), nullable=False),
    Column("key", String(256), nullable=False),
    Column("memory_type", String(32), nullable=False),
    Column("content", Text, nullable=False),
    Column("content_object", Json),
    Column("content_hash", String(64), nullable=False),
    Column("metadata", Json, nullable=False),
    Column("tags", JsonB, nullable=False),
    Column("category", String(64)),
    Column("importance", Float, nullable=False),
    Column("access_count", Integer, nullable=False, server_default=text("0")),
    Column("last_accessed_at", Timestamp),
    Column("expires_at", Timestamp),
    Column("session_id", String(128)),
    Column("agent_id", String(128)),
    Column("version", Integer, nullable=False),
    Column("deleted_at", Timestamp),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    # Neighbouring dialogue turns, for the full-text index only (migration 0003).
    Column("search_context", Text),
    # When the stated fact holds (migration 0006): NULL from means since it was stored, NULL
    # to means still; `superseded_by` names the memory that replaced it.
    Column("valid_from", Timestamp),
    Column("valid_to", Timestamp),
    Column("superseded_by", String(40)),
    # The whole text, zstd-compressed, when it is longer than limits.COMPRESS_CONTENT_FROM
    # (`content` then holds its beginning; migration 0007).
    Column("content_z", LargeBinary),
    # The id (hex) of the key that sealed this row's content and metadata into `content_z`;
    # NULL for a plain row (migration 0008, docs/backends.md#encryption).
    Column("enc_key", String(16)),
)
Index(
    "uq_memories_live_key",
    memories.c.user_id,
    memories.c.namespace,
    memories.c.key,
    unique=True,
    sqlite_where=memories.c.deleted_at.is_(None),
    postgresql_where=memories.c.deleted_at.is_(None),
)
Index("ix_memories_user_created", memories.c.user_id, memories.c.created_at)
Index("ix_memories_user_hash", memories.c.user_id, memories.c.content_hash)
Index(
    "ix_memories_user_session",
    memories.c.user_id,
    memories.c.session_id,
    memories.c.pk,
    sqlite_where=memories.c.session_id.is_not(None),
    postgresql_where=memories.c.session_id.is_not(None),
)
Index(
    "ix_memories_expires_at",
    memories.c.expires_at,
    sqlite_where=memories.c.expires_at.is_not(None),
    postgresql_where=memories.c.expires_at.is_not(None),
)
Index(
    "ix_memories_deleted_at",
    memories.c.deleted_at,
    sqlite_where=memories.c.deleted_at.is_not(None),
    postgresql_where=memories.c.deleted_at.is_not(None),
)
Index(
    "ix_memories_valid_to",
    memories.c.user_id,
    memories.c.valid_to,
    sqlite_where=memories.c.valid_to.is_not(None),
    postgresql_where=memories.c.valid_to.is_not(None),
)

memory_history = Table(
    "memory_history",
    metadata,
    Column("history_id", Pk, primary_key=True, autoincrement=True),
    Column("memory_id", String(40), nullable=False),
    Column("user_id", String(128), nullable=False),
    Column("version", Integer, nullable=False),
    Column("operation", String(32), nullable=False),
    Column("changed_at", Timestamp, nullable=False),
    Column("actor", String(128)),
    Column("reason", String(256)),
    # The state at `version`; NULL while that version is the live row (see migration 0002).
    Column("snapshot", Json),
)
Index("ix_memory_history_memory", memory_history.c.memory_id, memory_history.c.history_id)
Index("ix_memory_history_user", memory_history.c.user_id)

messages = Table(
    "messages",
    metadata,
    Column("pk", Pk, primary_key=True, autoincrement=True),
    Column("message_id", String(40), nullable=False, unique=True),
    Column("user_id", String(128), ForeignKey("users.user_id", ondelete="CASCADE"), nullable=False),
    Column("session_id", String(128)),
    Column("role", String(16), nullable=False),
    Column("content", Text, nullable=False),
    Column("metadata", Json, nullable=False),
    Column("created_at", Timestamp, nullable=False),
)
Index("ix_messages_user_pk", messages.c.user_id, messages.c.pk)

sessions = Table(
    "sessions",
    metadata,
    Column("session_id", String(40), primary_key=True),
    Column("user_id", String(128), ForeignKey("users.user_id", ondelete="CASCADE"), nullable=False),
    Column("agent_id", String(128)),
    Column("metadata", Json, nullable=False),
    Column("status", String(16), nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("ended_at", Timestamp),
)
Index("ix_sessions_user", sessions.c.user_id, sessions.c.created_at)

summaries = Table(
    "summaries",
    metadata,
    Column(
        "user_id",
        String(128),
        ForeignKey("users.user_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("content", Text, nullable=False),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

user_metrics = Table(
    "user_metrics",
    metadata,
    Column(
        "user_id",
        String(128),
        ForeignKey("users.user_id", ondelete="CASCADE"),
        primary_key=True,
    ),
    Column("total_messages", Integer, nullable=False),
    Column("messages_by_role", Json, nullable=False),
    Column("counters", Json, nullable=False),
    Column("first_interaction_at", Timestamp),
    Column("last_interaction_at", Timestamp),
    Column("current_streak", Integer, nullable=False),
    Column("longest_streak", Integer, nullable=False),
    Column("last_active_date", String(10)),
)

# One vector per memory that has one, for the embedder named in `vector_index`. A changed
# memory gets a new row (the old one is deleted). On PostgreSQL a table; on SQLite a view of
# the same columns over vectors kept a batch to a block (migration 0011, `storage/sqlite.py`).
memory_vectors = Table(
    "memory_vectors",
    metadata,
    Column("seq", Pk, primary_key=True, autoincrement=True),
    Column(
        "memory_pk",
        Pk,
        ForeignKey("memories.pk", ondelete="CASCADE"),
        nullable=False,
        unique=True,
    ),
    Column("user_id", String(128), nullable=False),
    Column("vector", LargeBinary, nullable=False),
    sqlite_autoincrement=True,
)
Index("ix_memory_vectors_user_seq", memory_vectors.c.user_id, memory_vectors.c.seq)

# The embedder the stored vectors come from (one row); another one needs `memvault reindex`.
vector_index = Table(
    "vector_index",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("model", String(256), nullable=False),
    Column("dimension", Integer, nullable=False),
    Column("created_at", Timestamp, nullable=False),
)

global_context = Table(
    "global_context",
    metadata,
    Column("key", String(128), primary_key=True),
    # JSON text; TEXT on SQLite, where a JSON column's NUMERIC affinity turned a bare number
    # into a number (revision 0009)
    Column("value", JSON().with_variant(Text(), "sqlite"), nullable=False),
    Column("updated_at", Timestamp, nullable=False),
    Column("updated_by", String(128)),
)

# API keys: the SHA-256 of the secret, never the secret; `user_id` NULL is an admin key.
api_keys = Table(
    "api_keys",
    metadata,
    Column("key_id", String(40), primary_key=True),
    Column("key_hash", String(64), nullable=False, unique=True),
    Column("prefix", String(16), nullable=False),
    Column("user_id", String(128)),
    Column("name", String(256)),
    Column("rate_per_minute", Integer),
    Column("created_at", Timestamp, nullable=False),
    Column("revoked_at", Timestamp),
)
Index("ix_api_keys_user", api_keys.c.user_id)

# Actions that leave no other trace: a user erased, a key created or revoked, a purge.
audit_log = Table(
    "audit_log",
    metadata,
    Column("audit_id", Pk, primary_key=True, autoincrement=True),
    Column("at", Timestamp, nullable=False),
    Column("actor", String(256)),
    Column("action", String(64), nullable=False),
    Column("user_id", String(128)),
    Column("details", Json, nullable=False),
    sqlite_autoincrement=True,
)
Index("ix_audit_log_user", audit_log.c.user_id, audit_log.c.audit_id)

# Background work with a lease (migration 0006): extraction of a message, a summary.
jobs = Table(
    "jobs",
    metadata,
    Column("job_id", String(40), primary_key=True),
    Column("user_id", String(128), ForeignKey("users.user_id", ondelete="CASCADE"), nullable=False),
    Column("kind", String(32), nullable=False),
    Column("payload", Json, nullable=False),
    Column("status", String(16), nullable=False),
    Column("attempts", Integer, nullable=False, server_default=text("0")),
    Column("run_after", Timestamp, nullable=False),
    Column("lease_token", String(40)),
    Column("lease_until", Timestamp),
    Column("last_error", Text),
    Column("result", Json),
    Column("created_at", Timestamp, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)
Index("ix_jobs_due", jobs.c.status, jobs.c.run_after)
Index("ix_jobs_user", jobs.c.user_id, jobs.c.created_at)

# A store that encrypts memory content holds one row here (migration 0008): the id of the
# key every row is readable with once a rotation has finished, and a sample sealed with it,
# so that a missing or wrong key stops the store at open, before anything is written.
encryption_check = Table(
    "encryption_check",
    metadata,
    Column("id", Integer, primary_key=True),
    Column("key_id", String(16), nullable=False),
    Column("sample", LargeBinary, nullable=False),
    Column("updated_at", Timestamp, nullable=False),
)

__all__ = [
    "api_keys",
    "audit_log",
    "encryption_check",
    "global_context",
    "jobs",
    "memories",
    "memory_history",
    "memory_vectors",
    "messages",
    "metadata",
    "sessions",
    "summaries",
    "user_metrics",
    "users",
    "vector_index",
]
