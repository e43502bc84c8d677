"""Temporal validity of memories, and the durable job table of extraction and summaries.

1. `memories.valid_from` / `valid_to`: when the fact a memory states holds (NULL: since it
   was stored / still). Search and listings return what is valid now unless asked for a
   time (`as_of`) or for ended memories too (`include_superseded`).
2. `memories.superseded_by`: the memory that replaced this one (consolidation sets it with
   `valid_to`; the old memory stays, as history).
3. `jobs`: background work (extracting memories from a message, regenerating a summary).
   A job is `pending` until a worker leases it (`running`, `lease_token`, `lease_until`);
   it ends `done` in the same transaction as the memories it wrote, or returns to
   `pending` with a later `run_after` when it failed, and ends `failed` after the last
   attempt. A worker that dies leaves a lease that runs out: another worker takes the job.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True).with_variant(sa.String(32), "sqlite")


def upgrade() -> None:
    op.add_column("memories", sa.Column("valid_from", TS))
    op.add_column("memories", sa.Column("valid_to", TS))
    op.add_column("memories", sa.Column("superseded_by", sa.String(40)))
    op.create_index(
        "ix_memories_valid_to",
        "memories",
        ["user_id", "valid_to"],
        sqlite_where=sa.text("valid_to IS NOT NULL"),
        postgresql_where=sa.text("valid_to IS NOT NULL"),
    )
    op.create_table(
        "jobs",
        sa.Column("job_id", sa.String(40), primary_key=True),
        sa.Column(
            "user_id",
            sa.String(128),
            sa.ForeignKey("users.user_id", ondelete="CASCADE"),
            nullable=False,
        ),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False, server_default=sa.text("0")),
        sa.Column("run_after", TS, nullable=False),
        sa.Column("lease_token", sa.String(40)),
        sa.Column("lease_until", TS),
        sa.Column("last_error", sa.Text),
        sa.Column("result", sa.JSON()),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("updated_at", TS, nullable=False),
    )
    op.create_index("ix_jobs_due", "jobs", ["status", "run_after"])
    op.create_index("ix_jobs_user", "jobs", ["user_id", "created_at"])


def downgrade() -> None:
    op.drop_index("ix_jobs_user", table_name="jobs")
    op.drop_index("ix_jobs_due", table_name="jobs")
    op.drop_table("jobs")
    op.drop_index("ix_memories_valid_to", table_name="memories")
    # Plain ALTER TABLE on both engines (SQLite >= 3.35): a batch copy of `memories` would
    # drop its full-text triggers.
    for column in ("superseded_by", "valid_to", "valid_from"):
        op.execute(f"ALTER TABLE memories DROP COLUMN {column}")
