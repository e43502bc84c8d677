"""Front doors: API keys and the audit log.

1. `api_keys`: a key is stored as the SHA-256 of its secret (the secret is 32 random bytes,
   so a fast unsalted hash is safe to store and lets a request find its key by index);
   `prefix` is the first characters of the secret, shown by `memvault keys list`. A key is
   bound to one user or is an admin key (`user_id` NULL).
2. `audit_log`: who did what to whom, for actions that leave no other trace (a user erased,
   a key created or revoked, a purge).

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-29
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects.postgresql import JSONB

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

TS = sa.DateTime(timezone=True).with_variant(sa.String(32), "sqlite")
JSON = sa.JSON().with_variant(JSONB(), "postgresql")
PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "api_keys",
        sa.Column("key_id", sa.String(40), primary_key=True),
        sa.Column("key_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("prefix", sa.String(16), nullable=False),
        sa.Column("user_id", sa.String(128)),
        sa.Column("name", sa.String(256)),
        sa.Column("rate_per_minute", sa.Integer),
        sa.Column("created_at", TS, nullable=False),
        sa.Column("revoked_at", TS),
    )
    op.create_index("ix_api_keys_user", "api_keys", ["user_id"])
    op.create_table(
        "audit_log",
        sa.Column("audit_id", PK, primary_key=True, autoincrement=True),
        sa.Column("at", TS, nullable=False),
        sa.Column("actor", sa.String(256)),
        sa.Column("action", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(128)),
        sa.Column("details", JSON, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_index("ix_audit_log_user", "audit_log", ["user_id", "audit_id"])


def downgrade() -> None:
    op.drop_index("ix_audit_log_user", table_name="audit_log")
    op.drop_table("audit_log")
    op.drop_index("ix_api_keys_user", table_name="api_keys")
    op.drop_table("api_keys")
