"""PostgreSQL: pgvector, full-text search, GIN on tags, JSON kept as written, change notices.

Nothing changes on SQLite. On PostgreSQL:

1. `CREATE EXTENSION vector` (pgvector); a server without it stops the migration with the
   commands that install it (docs/backends.md).
2. JSON documents (metadata, profiles, history snapshots, ...) become `json`, which keeps an
   object's keys in the order they were written, as SQLite does (`jsonb` sorts them). Tags
   stay `jsonb`, with a GIN index (seed 001), so tag filters use it.
3. `memories.search_tsv`: a generated `tsvector` of content (weight A), tags (B) and the
   search context (C: neighbouring turns, dates in words), with a GIN index.
4. `memory_vectors.vector` becomes a pgvector `vector`. No memvault release wrote vectors to
   PostgreSQL before this revision; any row there is dropped and `memvault reindex
   --missing` embeds it again.
5. User ids and global context keys compare byte by byte (`COLLATE "C"`), as SQLite's
   BINARY does, whatever the database's default collation: listings by user id page in
   the same order on both backends.
6. Change notices for read caches in other processes: statement triggers on `memories` and
   `users` send `pg_notify('memvault_changes', json)` naming the memories and their users
   (or, for a large statement, the users only) a committed transaction changed. An update
   that changes only the access counters sends nothing.

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-29
"""

from __future__ import annotations

from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None

TEXT_CONFIG = "english"
_JSON_COLUMNS = (
    ("users", "profile"),
    ("memories", "content_object"),
    ("memories", "metadata"),
    ("memory_history", "snapshot"),
    ("messages", "metadata"),
    ("sessions", "metadata"),
    ("user_metrics", "messages_by_role"),
    ("user_metrics", "counters"),
    ("global_context", "value"),
    ("audit_log", "details"),
)
# Every memories column but the access counters: an update naming one of them notifies.
_NOTIFY_COLUMNS = (
    "memory_id, user_id, namespace, key, memory_type, content, content_object, metadata, "
    "tags, category, importance, expires_at, session_id, agent_id, version, deleted_at, "
    "created_at, updated_at, search_context"
)


def _row(alias: str) -> str:
    """The watched columns of a transition-table row (`json` has no equality: as text)."""
    json_columns = {c for t, c in _JSON_COLUMNS if t == "memories"}
    return ", ".join(
        f"{alias}.{c}::text" if c in json_columns else f"{alias}.{c}"
        for c in _NOTIFY_COLUMNS.split(", ")
    )


# Text columns ordered or compared by value in listings: (table, column, length).
_BYTE_ORDER = (
    ("users", "user_id", 128),
    ("memories", "user_id", 128),
    ("messages", "user_id", 128),
    ("sessions", "user_id", 128),
    ("summaries", "user_id", 128),
    ("user_metrics", "user_id", 128),
    ("memory_history", "user_id", 128),
    ("memory_vectors", "user_id", 128),
    ("api_keys", "user_id", 128),
    ("audit_log", "user_id", 128),
    ("global_context", "key", 128),
)

_CHANGED_ROWS = {
    "INSERT": "SELECT user_id, memory_id FROM changed_new",
    "DELETE": "SELECT user_id, memory_id FROM changed_old",
    "UPDATE": (
        "SELECT n.user_id, n.memory_id FROM changed_new n JOIN changed_old o ON o.pk = n.pk "
        f"WHERE ({_row('o')}) IS DISTINCT FROM ({_row('n')})"
    ),
}


def _notify_function(event: str) -> str:
    """The trigger function of one event on `memories`: a notice naming the memories the
    statement changed, or their users when that is too long, or everything."""
    rows = _CHANGED_ROWS[event]
    return f"""
CREATE FUNCTION memvault_notify_memories_{event.lower()}() RETURNS trigger LANGUAGE plpgsql
AS $fn$
DECLARE
    payload text;
BEGIN
    SELECT json_build_object('m', json_agg(DISTINCT jsonb_build_array(c.user_id, c.memory_id)),
                             'u', json_agg(DISTINCT c.user_id))::text
        INTO payload FROM ({rows}) AS c HAVING count(*) > 0;
    IF payload IS NULL THEN
        RETURN NULL;
    END IF;
    IF octet_length(payload) > 7900 THEN
        SELECT json_build_object('u', json_agg(DISTINCT c.user_id))::text INTO payload
            FROM ({rows}) AS c;
        IF octet_length(payload) > 7900 THEN
            payload := '{{"all": true}}';
        END IF;
    END IF;
    PERFORM pg_notify('memvault_changes', payload);
    RETURN NULL;
END
$fn$
"""


_NOTIFY_USERS = """
CREATE FUNCTION memvault_notify_users() RETURNS trigger LANGUAGE plpgsql AS $fn$
DECLARE
    payload text;
BEGIN
    SELECT json_build_object('u', json_agg(user_id))::text INTO payload FROM changed_old;
    IF payload IS NULL OR octet_length(payload) > 7900 THEN
        payload := '{"all": true}';
    END IF;
    PERFORM pg_notify('memvault_changes', payload);
    RETURN NULL;
END
$fn$
"""


def _postgres() -> bool:
    return op.get_context().dialect.name == "postgresql"


def _require_pgvector() -> None:
    if op.get_context().as_sql:  # `memvault db sql`: the DBA's server is not reachable
        return
    bind = op.get_bind()
    available = bind.exec_driver_sql(
        "SELECT 1 FROM pg_available_extensions WHERE name = 'vector'"
    ).first()
    if available is None:
        raise RuntimeError(
            "memvault needs the pgvector extension ('vector') on this PostgreSQL server and "
            "the server does not have it installed. Install pgvector for the server's "
            "PostgreSQL version (docs/backends.md shows the commands), then run the "
            "migration again."
        )


def upgrade() -> None:
    if not _postgres():
        return
    _require_pgvector()
    op.execute("CREATE EXTENSION IF NOT EXISTS vector")
    for table, column in _JSON_COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE json USING {column}::json")
    for table, column, length in _BYTE_ORDER:
        op.execute(f'ALTER TABLE {table} ALTER COLUMN {column} TYPE varchar({length}) COLLATE "C"')
    op.execute("CREATE INDEX ix_memories_tags ON memories USING gin (tags)")
    op.execute(
        "ALTER TABLE memories ADD COLUMN search_tsv tsvector GENERATED ALWAYS AS ("
        f"setweight(to_tsvector('{TEXT_CONFIG}', content), 'A') || "
        f"setweight(jsonb_to_tsvector('{TEXT_CONFIG}', tags, '[\"string\"]'), 'B') || "
        f"setweight(to_tsvector('{TEXT_CONFIG}', coalesce(search_context, '')), 'C')"
        ") STORED"
    )
    op.execute("CREATE INDEX ix_memories_search_tsv ON memories USING gin (search_tsv)")
    op.execute("DELETE FROM memory_vectors")
    op.execute("ALTER TABLE memory_vectors ALTER COLUMN vector TYPE vector USING NULL")
    op.execute(_NOTIFY_USERS)
    for event in ("INSERT", "UPDATE", "DELETE"):
        op.execute(_notify_function(event))
        tables = {
            "INSERT": "NEW TABLE AS changed_new",
            "UPDATE": "OLD TABLE AS changed_old NEW TABLE AS changed_new",
            "DELETE": "OLD TABLE AS changed_old",
        }[event]
        op.execute(
            f"CREATE TRIGGER memvault_memories_{event.lower()} AFTER {event} ON memories "
            f"REFERENCING {tables} FOR EACH STATEMENT "
            f"EXECUTE FUNCTION memvault_notify_memories_{event.lower()}()"
        )
    op.execute(
        "CREATE TRIGGER memvault_users_delete AFTER DELETE ON users "
        "REFERENCING OLD TABLE AS changed_old FOR EACH STATEMENT "
        "EXECUTE FUNCTION memvault_notify_users()"
    )


def downgrade() -> None:
    if not _postgres():
        return
    for name, table in (
        ("memvault_users_delete", "users"),
        ("memvault_memories_update", "memories"),
        ("memvault_memories_delete", "memories"),
        ("memvault_memories_insert", "memories"),
    ):
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS memvault_notify_users()")
    for event in ("insert", "update", "delete"):
        op.execute(f"DROP FUNCTION IF EXISTS memvault_notify_memories_{event}()")
    op.execute("DELETE FROM memory_vectors")
    op.execute("ALTER TABLE memory_vectors ALTER COLUMN vector TYPE bytea USING NULL")
    op.execute("DROP INDEX IF EXISTS ix_memories_search_tsv")
    op.execute("ALTER TABLE memories DROP COLUMN search_tsv")
    op.execute("DROP INDEX IF EXISTS ix_memories_tags")
    for table, column in _JSON_COLUMNS:
        op.execute(f"ALTER TABLE {table} ALTER COLUMN {column} TYPE jsonb USING {column}::jsonb")
    for table, column, length in _BYTE_ORDER:
        op.execute(
            f'ALTER TABLE {table} ALTER COLUMN {column} TYPE varchar({length}) COLLATE "default"'
        )
