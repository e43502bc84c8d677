"""Initial schema: users, memories with history, messages, sessions, summaries, metrics,
global context; SQLite full-text index over memory content.

Revision ID: 0001
Revises:
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True).with_variant(sa.String(32), "sqlite")
JSON = sa.JSON().with_variant(JSONB(), "postgresql")
PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _user_fk() -> sa.ForeignKey:
    return sa.ForeignKey("users.user_id", ondelete="CASCADE")


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("user_id", sa.String(128), primary_key=True),
        sa.Column("username", sa.String(256)),
        sa.Column("profile", JSON, nullable=False),
        sa.Column("timezone", sa.String(64)),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "memories",
        sa.Column("pk", PK, primary_key=True, autoincrement=True),
        sa.Column("memory_id", sa.String(40), nullable=False, unique=True),
        sa.Column("user_id", sa.String(128), _user_fk(), nullable=False),
        sa.Column("namespace", sa.String(128), nullable=False),
        sa.Column("key", sa.String(256), nullable=False),
        sa.Column("memory_type", sa.String(32), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("content_object", JSON),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("tags", JSON, nullable=False),
        sa.Column("category", sa.String(64)),
        sa.Column("importance", sa.Float, nullable=False),
        sa.Column("access_count", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("last_accessed_at", TS),
        sa.Column("expires_at", TS),
        sa.Column("session_id", sa.String(128)),
        sa.Column("agent_id", sa.String(128)),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("deleted_at", TS),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    live = sa.text("deleted_at IS NULL")
    op.create_index(
        "uq_memories_live_key",
        "memories",
        ["user_id", "namespace", "key"],
        unique=True,
        sqlite_where=live,
        postgresql_where=live,
    )
    op.create_index("ix_memories_user_namespace", "memories", ["user_id", "namespace"])
    op.create_index("ix_memories_user_created", "memories", ["user_id", "created_at"])
    op.create_index("ix_memories_importance", "memories", ["importance"])
    op.create_index("ix_memories_user_hash", "memories", ["user_id", "content_hash"])
    has_expiry = sa.text("expires_at IS NOT NULL")
    op.create_index(
        "ix_memories_expires_at",
        "memories",
        ["expires_at"],
        sqlite_where=has_expiry,
        postgresql_where=has_expiry,
    )
    is_deleted = sa.text("deleted_at IS NOT NULL")
    op.create_index(
        "ix_memories_deleted_at",
        "memories",
        ["deleted_at"],
        sqlite_where=is_deleted,
        postgresql_where=is_deleted,
    )
    op.create_table(
        "memory_history",
        sa.Column("history_id", PK, primary_key=True, autoincrement=True),
        sa.Column("memory_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.Column("actor", sa.String(128)),
        sa.Column("reason", sa.String(256)),
        sa.Column("snapshot", JSON, nullable=False),
    )
    op.create_index("ix_memory_history_memory", "memory_history", ["memory_id", "history_id"])
    op.create_index("ix_memory_history_user", "memory_history", ["user_id"])
    op.create_table(
        "messages",
        sa.Column("pk", PK, primary_key=True, autoincrement=True),
        sa.Column("message_id", sa.String(40), nullable=False, unique=True),
        sa.Column("user_id", sa.String(128), _user_fk(), nullable=False),
        sa.Column("session_id", sa.String(128)),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("created_at", TS, nullable=False),
    )
    op.create_index("ix_messages_user_pk", "messages", ["user_id", "pk"])
    op.create_table(
        "sessions",
        sa.Column("session_id", sa.String(40), primary_key=True),
        sa.Column("user_id", sa.String(128), _user_fk(), nullable=False),
        sa.Column("agent_id", sa.String(128)),
        sa.Column("metadata", JSON, nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("ended_at", TS),
    )
    op.create_index("ix_sessions_user", "sessions", ["user_id", "created_at"])
    op.create_table(
        "summaries",
        sa.Column("user_id", sa.String(128), _user_fk(), primary_key=True),
        sa.Column("content", sa.Text, nullable=False),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_table(
        "user_metrics",
        sa.Column("user_id", sa.String(128), _user_fk(), primary_key=True),
        sa.Column("total_messages", sa.Integer, nullable=False),
        sa.Column("messages_by_role", JSON, nullable=False),
        sa.Column("counters", JSON, nullable=False),
        sa.Column("first_interaction_at", TS),
        sa.Column("last_interaction_at", TS),
        sa.Column("current_streak", sa.Integer, nullable=False),
        sa.Column("longest_streak", sa.Integer, nullable=False),
        sa.Column("last_active_date", sa.String(10)),
    )
    op.create_table(
        "global_context",
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", JSON, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
        sa.Column("updated_by", sa.String(128)),
    )
    if op.get_context().dialect.name == "sqlite":
        _sqlite_fulltext()


def _sqlite_fulltext() -> None:
    # External-content FTS5 index kept in step by triggers, so every writer (memvault, a DBA's
    # hand-run SQL, a cascade from deleting a user) maintains it.
    op.execute(
        "CREATE VIRTUAL TABLE memories_fts USING fts5("
        "content, tags, content='memories', content_rowid='pk', "
        "tokenize='porter unicode61 remove_diacritics 2')"
    )
    op.execute(
        "CREATE TRIGGER memories_fts_ai AFTER INSERT ON memories BEGIN "
        "INSERT INTO memories_fts(rowid, content, tags) VALUES (new.pk, new.content, new.tags); "
        "END"
    )
    op.execute(
        "CREATE TRIGGER memories_fts_ad AFTER DELETE ON memories BEGIN "
        "INSERT INTO memories_fts(memories_fts, rowid, content, tags) "
        "VALUES ('delete', old.pk, old.content, old.tags); END"
    )
    op.execute(
        "CREATE TRIGGER memories_fts_au AFTER UPDATE OF content, tags ON memories BEGIN "
        "INSERT INTO memories_fts(memories_fts, rowid, content, tags) "
        "VALUES ('delete', old.pk, old.content, old.tags); "
        "INSERT INTO memories_fts(rowid, content, tags) VALUES (new.pk, new.content, new.tags); "
        "END"
    )


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        for name in ("memories_fts_au", "memories_fts_ad", "memories_fts_ai"):
            op.execute(f"DROP TRIGGER IF EXISTS {name}")
        op.execute("DROP TABLE IF EXISTS memories_fts")
    for table in (
        "global_context",
        "user_metrics",
        "summaries",
        "sessions",
        "messages",
        "memory_history",
        "memories",
        "users",
    ):
        op.drop_table(table)
