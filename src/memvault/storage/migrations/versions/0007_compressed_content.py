"""Large contents stored compressed.

`memories.content_z`: the whole text, zstd-compressed, for a content longer than
`limits.COMPRESS_CONTENT_FROM` characters; `content` then keeps only its first
`COMPRESS_CONTENT_FROM` characters (what the full-text index, the search context and the
embedder read). Readers get the whole text back (`storage/sql/codec.py`).

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0006"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.add_column("memories", sa.Column("content_z", sa.LargeBinary))


def downgrade() -> None:
    # Put the whole texts back first (the compressed rows only).
    import zstandard

    conn = op.get_bind()
    rows = conn.execute(
        sa.text("SELECT pk, content_z FROM memories WHERE content_z IS NOT NULL")
    ).fetchall()
    unzip = zstandard.ZstdDecompressor()
    for pk, blob in rows:
        conn.execute(
            sa.text("UPDATE memories SET content = :c WHERE pk = :pk"),
            {"c": unzip.decompress(bytes(blob)).decode(), "pk": pk},
        )
    op.execute("ALTER TABLE memories DROP COLUMN content_z")
