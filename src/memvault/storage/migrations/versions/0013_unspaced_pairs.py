"""Search: the character pairs of Chinese, Japanese and Korean text in stored memories.

From this release a memory's search context holds the overlapping character pairs of its
runs of Han, kana and Hangul (and its conversation neighbours'), so that a word inside a
run is found (`storage/search_text.py`, docs/search.md). New memories get them when they
are written; this revision gives them to the memories already stored: the contexts of
every memory whose conversation (or itself, outside one) holds text other than ASCII are
computed again and written where they changed, as `memvault reindex --lexical` would. The
full-text index follows (SQLite: the update trigger; PostgreSQL: the generated column).
Stores without such text change nothing; the rows are read once, in order, as a stream
(a server-side cursor on PostgreSQL).

Downgrading keeps the pairs: older code indexes them as words and never looks for them.

Revision ID: 0013
Revises: 0012
Create Date: 2026-12-01
"""

from __future__ import annotations

from alembic import context, op
from sqlalchemy import text

from memvault.storage.search_text import fresh_contexts

revision = "0013"
down_revision = "0012"
branch_labels = None
depends_on = None

_ROWS = (
    "SELECT pk, user_id, session_id, content, search_context FROM memories "
    "WHERE deleted_at IS NULL ORDER BY user_id, session_id, pk"
)
_SET = text("UPDATE memories SET search_context = :ctx WHERE pk = :pk")


def upgrade() -> None:
    if context.is_offline_mode():
        return  # SQL for a DBA (`memvault db sql`) reads no rows: `reindex --lexical` then
    bind = op.get_bind()
    rows = bind.exec_driver_sql(_ROWS, execution_options={"stream_results": True})
    changed = [{"ctx": ctx, "pk": pk} for pk, ctx in fresh_contexts(rows, unspaced_only=True)]
    if changed:
        bind.execute(_SET, changed)


def downgrade() -> None:
    pass
