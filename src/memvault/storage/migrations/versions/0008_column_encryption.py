"""Memory content and metadata encrypted at rest on the SQL backends (a setting).

`memories.enc_key`: the id of the key that sealed the row's content and metadata into
`content_z` (NULL: a plain row). `encryption_check`: one row in a store that encrypts, the
key id every row reads with and a sample sealed under it (docs/backends.md#encryption).

Revision ID: 0008
Revises: 0007
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0007"
branch_labels = None
depends_on = None

Timestamp = sa.DateTime(timezone=True).with_variant(sa.String(32), "sqlite")


def upgrade() -> None:
    op.add_column("memories", sa.Column("enc_key", sa.String(16)))
    op.create_table(
        "encryption_check",
        sa.Column("id", sa.Integer, primary_key=True),
        sa.Column("key_id", sa.String(16), nullable=False),
        sa.Column("sample", sa.LargeBinary, nullable=False),
        sa.Column("updated_at", Timestamp, nullable=False),
    )


def downgrade() -> None:
    conn = op.get_bind()
    sealed = conn.execute(sa.text("SELECT count(*) FROM memories WHERE enc_key IS NOT NULL"))
    if sealed.scalar():
        raise RuntimeError(
            "memories are encrypted: export the store (`memvault export`) and import it into "
            "a plain one before downgrading below 0008"
        )
    op.drop_table("encryption_check")
    op.execute("ALTER TABLE memories DROP COLUMN enc_key")
