"""Cheaper writes: full-text indexing per batch, history snapshots copied on change.

1. SQLite: the writer indexes new memories in full-text itself, in one statement per batch.

The insert trigger of 0001 fed FTS5 one row per trigger call; FTS5 flushes its pending terms
at every nested statement, so a 100-row batch wrote 100 tiny segments and the trigger alone
cost 3x the rest of the insert (measured: 44,700 rows/s through the trigger against 142,000
rows/s with one INSERT ... SELECT per batch). Updates and deletes keep their triggers: they
are rare and must see the old values.

Rows inserted by hand SQL are not indexed until `memvault reindex --lexical` (FTS5 'rebuild').

2. History is copied on change: `memory_history.snapshot` may be NULL while its version is
the live one (the memory row holds it) and is written when the next version replaces it; a
creation without actor or reason writes no history row until the memory first changes. A
write-once memory so costs one row, not two. Rows written before this revision keep their
snapshots; downgrading writes every missing snapshot and creation row back.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

JSON = sa.JSON().with_variant(JSONB(), "postgresql")
TS = sa.DateTime(timezone=True).with_variant(sa.String(32), "sqlite")
PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def _history(snapshot_nullable: bool) -> sa.Table:
    """memory_history as 0001 made it: SQLite's batch mode copies it without reflecting,
    which also makes `memvault db sql` (offline) work."""
    return sa.Table(
        "memory_history",
        sa.MetaData(),
        sa.Column("history_id", PK, primary_key=True, autoincrement=True),
        sa.Column("memory_id", sa.String(40), nullable=False),
        sa.Column("user_id", sa.String(128), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("operation", sa.String(32), nullable=False),
        sa.Column("changed_at", TS, nullable=False),
        sa.Column("actor", sa.String(128)),
        sa.Column("reason", sa.String(256)),
        sa.Column("snapshot", JSON, nullable=snapshot_nullable),
        sa.Index("ix_memory_history_memory", "memory_id", "history_id"),
        sa.Index("ix_memory_history_user", "user_id"),
    )


_SNAPSHOT_FIELDS = (
    "memory_id",
    "user_id",
    "namespace",
    "key",
    "memory_type",
    "content",
    "metadata",
    "tags",
    "category",
    "importance",
    "expires_at",
    "session_id",
    "agent_id",
    "version",
    "deleted_at",
    "created_at",
    "updated_at",
)


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS memories_fts_ai")
    with op.batch_alter_table("memory_history", copy_from=_history(False)) as batch:
        batch.alter_column("snapshot", existing_type=JSON, nullable=True)


def downgrade() -> None:
    sqlite = op.get_context().dialect.name == "sqlite"
    # Freeze every live snapshot from its memory row, then the column can be NOT NULL again.
    if sqlite:
        pairs = ", ".join(
            f"'{f}', json(m.{f})" if f in ("metadata", "tags") else f"'{f}', m.\"{f}\""
            for f in _SNAPSHOT_FIELDS
        )
        obj = f"json_object({pairs})"
    else:
        pairs = ", ".join(f"'{f}', m.\"{f}\"" for f in _SNAPSHOT_FIELDS)
        obj = f"jsonb_build_object({pairs})"
    op.execute(
        f"UPDATE memory_history SET snapshot = (SELECT {obj} FROM memories m "
        "WHERE m.memory_id = memory_history.memory_id) WHERE snapshot IS NULL"
    )
    op.execute(
        "INSERT INTO memory_history (memory_id, user_id, version, operation, changed_at, "
        f"snapshot) SELECT m.memory_id, m.user_id, m.version, 'create', m.created_at, {obj} "
        "FROM memories m WHERE NOT EXISTS "
        "(SELECT 1 FROM memory_history h WHERE h.memory_id = m.memory_id)"
    )
    with op.batch_alter_table("memory_history", copy_from=_history(True)) as batch:
        batch.alter_column("snapshot", existing_type=JSON, nullable=False)
    if sqlite:
        op.execute(
            "CREATE TRIGGER memories_fts_ai AFTER INSERT ON memories BEGIN "
            "INSERT INTO memories_fts(rowid, content, tags) "
            "VALUES (new.pk, new.content, new.tags); END"
        )
