"""SQLite: vectors stored a batch to a row (PostgreSQL is unchanged).

A user's vectors were one row each (1.5 KB for 384 dimensions, two to a page); a search
that finds a user's matrix out of memory read them row by row: 130 us at p50 and 210 at
p95 for 100 vectors, in a new process over 1,000 users x 100 (the peer benchmark's first
searches). Read as one block of the batch they were written in: 29 and 37 us.

- `vector_blocks`: a batch's memory keys (`pks`, 16 hexadecimal digits each, in the order
  of its vectors; `0000000000000000` where the memory's vector was deleted since) and the
  width in bytes of one vector; `seq` only grows (the search cache reads the blocks past
  the largest `seq` it holds).
- `vector_data`: the block's vectors, one float32 row after the other, in a table of its
  own so that marking an entry deleted rewrites the small `pks` text, not the vectors.
- `vector_slots`: where each memory's vector is (block, slot), under the `seq` and the
  cascade from `memories` that `memory_vectors` had.
- `memory_vectors` becomes a view of the same columns as before (`seq, memory_pk, user_id,
  vector`), with triggers: inserting a row into it writes a block of one, deleting a row
  deletes its slot. Statements that wrote and read the table one memory at a time (merges,
  the JSON-file store, transfers between stores, backups) work unchanged; the writer of a
  batch and the search cache use the blocks directly (`storage/sqlite.py`).
- Deleting a slot (by the view, or by the cascade when a memory is deleted) marks its entry
  in the block's `pks`; a block with no live entry left is deleted.

Revision ID: 0011
Revises: 0010
Create Date: 2026-11-30
"""

from __future__ import annotations

from typing import Any

from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

BLOCK = 128  # vectors a block of the copied rows holds at most (as `sqlite.VECTOR_BLOCK`)
DEAD = "0" * 16

VIEW_AND_TRIGGERS = (
    "CREATE VIEW memory_vectors (seq, memory_pk, user_id, vector) AS "
    "SELECT s.seq, s.memory_pk, b.user_id, substr(d.vectors, s.slot * b.width + 1, b.width) "
    "FROM vector_slots s JOIN vector_blocks b ON b.seq = s.block "
    "JOIN vector_data d ON d.block = s.block",
    "CREATE TRIGGER memory_vectors_insert INSTEAD OF INSERT ON memory_vectors BEGIN "
    "INSERT INTO vector_blocks (user_id, width, pks) "
    "VALUES (NEW.user_id, length(NEW.vector), printf('%016x', NEW.memory_pk)); "
    "INSERT INTO vector_data (block, vectors) VALUES (last_insert_rowid(), NEW.vector); "
    "INSERT INTO vector_slots (seq, memory_pk, block, slot) "
    "VALUES (NEW.seq, NEW.memory_pk, (SELECT max(seq) FROM vector_blocks), 0); END",
    "CREATE TRIGGER memory_vectors_delete INSTEAD OF DELETE ON memory_vectors BEGIN "
    "DELETE FROM vector_slots WHERE seq = OLD.seq; END",
    "CREATE TRIGGER vector_slots_gone AFTER DELETE ON vector_slots BEGIN "
    f"UPDATE vector_blocks SET pks = substr(pks, 1, OLD.slot * 16) || '{DEAD}' "
    "|| substr(pks, OLD.slot * 16 + 17) WHERE seq = OLD.block; "
    "DELETE FROM vector_blocks WHERE seq = OLD.block AND ltrim(pks, '0') = ''; END",
)


def _sqlite() -> bool:
    return bool(op.get_context().dialect.name == "sqlite")


def upgrade() -> None:
    if not _sqlite():
        return
    op.execute(
        "CREATE TABLE vector_blocks (seq INTEGER PRIMARY KEY AUTOINCREMENT, "
        "user_id VARCHAR(128) NOT NULL, width INTEGER NOT NULL, pks TEXT NOT NULL)"
    )
    op.execute("CREATE INDEX ix_vector_blocks_user_seq ON vector_blocks (user_id, seq)")
    op.execute(
        "CREATE TABLE vector_data (block INTEGER PRIMARY KEY "
        "REFERENCES vector_blocks (seq) ON DELETE CASCADE, vectors BLOB NOT NULL)"
    )
    op.execute(
        "CREATE TABLE vector_slots (seq INTEGER PRIMARY KEY, memory_pk INTEGER NOT NULL "
        "UNIQUE REFERENCES memories (pk) ON DELETE CASCADE, block INTEGER NOT NULL, "
        "slot INTEGER NOT NULL)"
    )
    if op.get_context().as_sql:  # an SQL script: one block a vector, in plain SQL
        op.execute(
            "INSERT INTO vector_blocks (seq, user_id, width, pks) "
            "SELECT seq, user_id, length(vector), printf('%016x', memory_pk) FROM memory_vectors"
        )
        op.execute(
            "INSERT INTO vector_data (block, vectors) SELECT seq, vector FROM memory_vectors"
        )
        op.execute(
            "INSERT INTO vector_slots (seq, memory_pk, block, slot) "
            "SELECT seq, memory_pk, seq, 0 FROM memory_vectors"
        )
    else:
        _copy_in_blocks()
    op.execute("DROP INDEX ix_memory_vectors_user_seq")
    op.execute("DROP TABLE memory_vectors")
    for statement in VIEW_AND_TRIGGERS:
        op.execute(statement)


def _copy_in_blocks() -> None:
    """Each user's rows, in `seq` order, as blocks of up to `BLOCK` vectors."""
    conn = op.get_bind()
    rows = conn.exec_driver_sql(
        "SELECT seq, memory_pk, user_id, vector FROM memory_vectors ORDER BY user_id, seq"
    )
    pending: list[tuple[Any, ...]] = []

    def flush() -> None:
        if not pending:
            return
        cur = conn.exec_driver_sql(
            "INSERT INTO vector_blocks (user_id, width, pks) VALUES (?, ?, ?)",
            (pending[0][2], len(pending[0][3]), "".join(f"{r[1]:016x}" for r in pending)),
        )
        block = cur.lastrowid
        conn.exec_driver_sql(
            "INSERT INTO vector_data (block, vectors) VALUES (?, ?)",
            (block, b"".join(r[3] for r in pending)),
        )
        conn.exec_driver_sql(
            "INSERT INTO vector_slots (seq, memory_pk, block, slot) VALUES (?, ?, ?, ?)",
            [(r[0], r[1], block, i) for i, r in enumerate(pending)],
        )
        pending.clear()

    while chunk := rows.fetchmany(BLOCK):  # a big store is not read into memory at once
        for row in chunk:
            if pending and (
                row[2] != pending[0][2]
                or len(row[3]) != len(pending[0][3])
                or len(pending) >= BLOCK
            ):
                flush()
            pending.append(tuple(row))
    flush()


def downgrade() -> None:
    if not _sqlite():
        return
    op.execute(
        "CREATE TABLE memory_vectors_rows (seq INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT, "
        "memory_pk INTEGER NOT NULL UNIQUE REFERENCES memories (pk) ON DELETE CASCADE, "
        "user_id VARCHAR(128) NOT NULL, vector BLOB NOT NULL)"
    )
    op.execute("INSERT INTO memory_vectors_rows SELECT * FROM memory_vectors")
    for name in ("memory_vectors_insert", "memory_vectors_delete", "vector_slots_gone"):
        op.execute(f"DROP TRIGGER {name}")
    op.execute("DROP VIEW memory_vectors")
    op.execute("DROP TABLE vector_slots")
    op.execute("DROP TABLE vector_data")
    op.execute("DROP TABLE vector_blocks")
    op.execute("ALTER TABLE memory_vectors_rows RENAME TO memory_vectors")
    op.execute("CREATE INDEX ix_memory_vectors_user_seq ON memory_vectors (user_id, seq)")
