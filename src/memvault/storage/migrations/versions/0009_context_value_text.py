"""SQLite: `global_context.value` holds its JSON as TEXT.

Declared `JSON`, the column had NUMERIC affinity on SQLite: a value that is a bare number
(`0`, `1.5`) was stored as a number, not as its JSON text, and reading it failed; an
integer past 64 bits became a float. TEXT affinity keeps the text as written; the rebuild
turns numbers already stored into their text. PostgreSQL (JSONB) is unchanged.

Revision ID: 0009
Revises: 0008
Create Date: 2026-11-30
"""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from alembic import op

revision = "0009"
down_revision = "0008"
branch_labels = None
depends_on = None


def _table(value: sa.types.TypeEngine[Any]) -> sa.Table:
    """The table as it is before the change (given, so `--sql` mode need not reflect it)."""
    return sa.Table(
        "global_context",
        sa.MetaData(),
        sa.Column("key", sa.String(128), primary_key=True),
        sa.Column("value", value, nullable=False),
        sa.Column("updated_at", sa.String(32), nullable=False),
        sa.Column("updated_by", sa.String(128)),
    )


def _retype(old: sa.types.TypeEngine[Any], new: sa.types.TypeEngine[Any]) -> None:
    """Rebuild the table on SQLite with `value` of type `new` (its rows copied over)."""
    if op.get_context().dialect.name != "sqlite":
        return
    with op.batch_alter_table("global_context", recreate="always", copy_from=_table(old)) as b:
        b.alter_column("value", type_=new, existing_type=old, existing_nullable=False)


def upgrade() -> None:
    _retype(sa.JSON(), sa.Text())


def downgrade() -> None:
    _retype(sa.Text(), sa.JSON())
