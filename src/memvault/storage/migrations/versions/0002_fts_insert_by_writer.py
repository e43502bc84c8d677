"""SQLite: the writer indexes new memories in full-text itself, in one statement per batch.

The insert trigger of 0001 fed FTS5 one row per trigger call; FTS5 flushes its pending terms
at every nested statement, so a 100-row batch wrote 100 tiny segments and the trigger alone
cost 3x the rest of the insert (measured: 44,700 rows/s through the trigger against 142,000
rows/s with one INSERT ... SELECT per batch). Updates and deletes keep their triggers: they
are rare and must see the old values.

Rows inserted by hand SQL are not indexed until `memvault reindex --lexical` (FTS5 'rebuild').

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-22
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute("DROP TRIGGER IF EXISTS memories_fts_ai")


def downgrade() -> None:
    if op.get_context().dialect.name == "sqlite":
        op.execute(
            "CREATE TRIGGER memories_fts_ai AFTER INSERT ON memories BEGIN "
            "INSERT INTO memories_fts(rowid, content, tags) "
            "VALUES (new.pk, new.content, new.tags); END"
        )
