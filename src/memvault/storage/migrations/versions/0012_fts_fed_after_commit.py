"""SQLite: the full-text index is fed in batches, after the rows' own commit.

A batch of new memories was indexed inside its own transaction (0002: one statement a
batch), about 7 of the 48 us that SQLite spent on a memory of a 100-row batch with its
vector (raw statements, bench/bench_store.py's shape), most of it paid per statement. The
writer now commits new rows alone and `storage/fts_feed.py` indexes them once about
`FEED_AFTER` wait (one statement for ten such batches, in the writer's transaction that
finds them due), and a lexical search first indexes whatever of its user is still waiting,
so that it always finds every committed memory. (This text first said "on a thread of its
own": the writer feeds them. A feeding thread would need the interpreter lock to start,
which a caller busy in Python gives up only at its next write, where it would wait for the
feed anyway, or after the 5 ms switch interval.)

What is indexed is always a prefix: every live row up to the watermark, the largest rowid
of `memories_fts_docsize` (FTS5 keeps a row there for every document it holds), and none
above it. Deleting rows keeps that true (the watermark goes down with a deleted last row,
and a reused rowid lands above it); the update and delete triggers now touch the index
only for rows at or below the watermark (a waiting row is indexed with its values of the
moment it is fed). Rows inserted by hand SQL above the watermark are now indexed too.

Downgrading feeds every waiting row first, then restores the unguarded triggers.

Revision ID: 0012
Revises: 0011
Create Date: 2026-11-30
"""

from __future__ import annotations

from alembic import op

revision = "0012"
down_revision = "0011"
branch_labels = None
depends_on = None

WATERMARK = "(SELECT coalesce(max(id), 0) FROM memories_fts_docsize)"
_COLUMNS = "memories_fts, rowid, content, tags, search_context, owner"
_DELETE_OLD = (
    f"INSERT INTO memories_fts({_COLUMNS}) VALUES ('delete', old.pk, old.content, old.tags, "
    "old.search_context, 'u' || lower(hex(old.user_id)));"
)
_INSERT_NEW = (
    "INSERT INTO memories_fts(rowid, content, tags, search_context, owner) VALUES (new.pk, "
    "new.content, new.tags, new.search_context, 'u' || lower(hex(new.user_id)));"
)


def _triggers(guarded: bool) -> tuple[str, str]:
    when = f" WHEN old.pk <= {WATERMARK}" if guarded else ""
    return (
        f"CREATE TRIGGER memories_fts_ad AFTER DELETE ON memories{when} BEGIN {_DELETE_OLD} END",
        "CREATE TRIGGER memories_fts_au AFTER UPDATE OF content, tags, search_context ON "
        f"memories{when} BEGIN {_DELETE_OLD} {_INSERT_NEW} END",
    )


def _sqlite() -> bool:
    return bool(op.get_context().dialect.name == "sqlite")


def _swap(guarded: bool) -> None:
    op.execute("DROP TRIGGER IF EXISTS memories_fts_ad")
    op.execute("DROP TRIGGER IF EXISTS memories_fts_au")
    for sql in _triggers(guarded):
        op.execute(sql)


def upgrade() -> None:
    if _sqlite():
        _swap(True)


def downgrade() -> None:
    if not _sqlite():
        return
    op.execute(
        "INSERT INTO memories_fts(rowid, content, tags, search_context, owner) "
        "SELECT pk, content, tags, search_context, 'u' || lower(hex(user_id)) FROM memories "
        f"WHERE pk > {WATERMARK} ORDER BY pk"
    )
    _swap(False)
