"""Copy a whole store between SQL backends (`memvault migrate --from URL --to URL`).

Rows are copied table by table in primary-key order, with their own keys and values: users,
memories (with their pks, access counts and search context), history with snapshots,
vectors, messages, sessions, summaries, metrics, global context, API keys (hashes) and the
audit log. Both backends hand values over in one form (times as fixed-width UTC text, JSON
as the text that was written, vectors as float32 bytes), so what arrives is what left; the
only rewrite is of `jsonb` text (PostgreSQL's tags), printed back compactly as SQLite
stores it.

Each batch is one transaction on the target, so an interrupted copy leaves a prefix of every
table; `resume=True` continues after the largest key already there. At the end, the row
count and a SHA-256 over every row of every table are compared between source and target.
Copy from a store nobody writes to meanwhile: the check reports what changed.
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import String, Table

from memvault.errors import ConflictError, InvalidArgumentError
from memvault.storage.sql import codec, tables
from memvault.storage.sql.backend import SqlBackend
from memvault.storage.sql.dbapi import Conn

# Parents before children (foreign keys), each with the column it is ordered and resumed by.
COPY_ORDER: tuple[tuple[Table, str], ...] = (
    (tables.encryption_check, "id"),
    (tables.users, "user_id"),
    (tables.memories, "pk"),
    (tables.memory_history, "history_id"),
    (tables.memory_vectors, "seq"),
    (tables.vector_index, "id"),
    (tables.messages, "pk"),
    (tables.sessions, "session_id"),
    (tables.summaries, "user_id"),
    (tables.user_metrics, "user_id"),
    (tables.global_context, "key"),
    (tables.api_keys, "key_id"),
    (tables.audit_log, "audit_id"),
    (tables.jobs, "job_id"),
)
# Integer keys drawn from a sequence on PostgreSQL: moved past the copied rows at the end.
_SEQUENCES = {
    "memories": "pk",
    "memory_history": "history_id",
    "memory_vectors": "seq",
    "messages": "pk",
    "audit_log": "audit_id",
}
_JSONB = {("memories", "tags")}
_VECTOR = ("memory_vectors", "vector")

Progress = Callable[[str, int, int], None]


@dataclass
class TableReport:
    table: str
    source_rows: int = 0
    copied: int = 0
    target_rows: int = 0
    source_sha256: str = ""
    target_sha256: str = ""

    @property
    def verified(self) -> bool:
        return (self.source_rows, self.source_sha256) == (self.target_rows, self.target_sha256)


@dataclass
class TransferReport:
    tables: list[TableReport] = field(default_factory=list)

    @property
    def verified(self) -> bool:
        return all(t.verified for t in self.tables)

    @property
    def copied(self) -> int:
        return sum(t.copied for t in self.tables)


def _is_pg(backend: SqlBackend) -> bool:
    return bool(backend.sql.pg)


def _order(backend: SqlBackend, table: Table, column: str) -> str:
    """Text keys sort byte by byte on both engines (SQLite's BINARY, PostgreSQL's "C")."""
    text_key = isinstance(table.c[column].type, String)
    return f'{column} COLLATE "C"' if _is_pg(backend) and text_key else column


def _quote(name: str) -> str:
    return f'"{name}"'


def _columns(table: Table) -> list[str]:
    return [c.name for c in table.columns]


def _normal(table: str, columns: Sequence[str], row: Sequence[Any]) -> tuple[Any, ...]:
    """A row in the form it is written and compared in (jsonb printed compactly)."""
    out = list(row)
    for i, name in enumerate(columns):
        if (table, name) in _JSONB and isinstance(out[i], str):
            out[i] = codec.dumps(json.loads(out[i]))
    return tuple(out)


def _read_rows(
    backend: SqlBackend, table: Table, key: str, after: Any, n: int, conn: Conn
) -> list[tuple[Any, ...]]:
    """Up to `n` rows of `table` past the key `after`, in key order."""
    cols = ", ".join(_quote(c) for c in _columns(table))
    where = "" if after is None else f"WHERE {_order(backend, table, key)} > ? "
    params: tuple[Any, ...] = (n,) if after is None else (after, n)
    sql = f"SELECT {cols} FROM {table.name} {where}ORDER BY {_order(backend, table, key)} LIMIT ?"
    return [tuple(r) for r in conn.execute(sql, params).fetchall()]


def _write_rows(sql: str, values: list[tuple[Any, ...]], conn: Conn) -> None:
    conn.executemany(sql, values)


def _run(sql: str, conn: Conn) -> None:
    conn.execute(sql)


def _last_key(backend: SqlBackend, table: Table, key: str, conn: Conn) -> Any:
    row = conn.execute(f"SELECT max({_order(backend, table, key)}) FROM {table.name}").fetchone()
    return None if row is None else row[0]


def _count_rows(table: Table, conn: Conn) -> int:
    return int(conn.execute(f"SELECT count(*) FROM {table.name}").fetchone()[0])


def _digest(backend: SqlBackend, table: Table, key: str, batch: int) -> tuple[int, str]:
    """(rows, SHA-256 over every row in key order)."""
    columns = _columns(table)
    h = hashlib.sha256()
    rows = 0
    after: Any = None
    while True:
        got = backend.db.read(functools.partial(_read_rows, backend, table, key, after, batch))
        for row in got:
            norm = _normal(table.name, columns, row)
            h.update(repr(tuple(v.hex() if isinstance(v, bytes) else v for v in norm)).encode())
        rows += len(got)
        if len(got) < batch:
            return rows, h.hexdigest()
        after = got[-1][columns.index(key)]


def _check_key(backend: SqlBackend) -> str | None:
    row = backend.db.read(
        lambda conn: conn.execute("SELECT key_id FROM encryption_check WHERE id = 1").fetchone()
    )
    return None if row is None else str(row[0])


def _match_encryption(source: SqlBackend, target: SqlBackend) -> None:
    """A target that opened encrypting (MEMVAULT_ENCRYPT_CONTENT) holds its own check row:
    under the source's key it gives way to the source's row; under another key the sealed
    rows would not open there, so nothing is copied."""
    theirs = _check_key(target)
    if theirs is None:
        return
    if theirs != _check_key(source):
        raise ConflictError(
            "the target store encrypts memory content, and the source does not or under another "
            "key; "
            "copy into a store opened with the source's key (or without encryption)"
        )
    if target.db.read(functools.partial(_count_rows, tables.memories)) == 0:
        target.db.write(functools.partial(_run, "DELETE FROM encryption_check"))


def transfer(
    source: SqlBackend,
    target: SqlBackend,
    *,
    resume: bool = False,
    batch: int = 1000,
    progress: Progress | None = None,
) -> TransferReport:
    """Copy every row of `source` into `target` and verify; see the module docstring."""
    if not 1 <= batch <= 100_000:
        raise InvalidArgumentError(f"batch must be in [1, 100000], got {batch}")
    _match_encryption(source, target)
    if not resume:
        held = sum(target.db.read(functools.partial(_count_rows, t)) for t, _ in COPY_ORDER)
        if held:
            raise ConflictError(
                f"the target store is not empty ({held} rows); copy into an empty store, or "
                "pass --resume to continue an interrupted copy"
            )
    report = TransferReport()
    for table, key in COPY_ORDER:
        columns = _columns(table)
        tr = TableReport(table.name)
        report.tables.append(tr)
        total = source.db.read(functools.partial(_count_rows, table))
        after = target.db.read(functools.partial(_last_key, target, table, key))
        insert = (
            f"INSERT INTO {table.name} ({', '.join(_quote(c) for c in columns)}) "
            f"VALUES ({', '.join('?' for _ in columns)})"
        )
        vec_at = columns.index(_VECTOR[1]) if table.name == _VECTOR[0] else None
        done = target.db.read(functools.partial(_count_rows, table))
        while True:
            rows = source.db.read(functools.partial(_read_rows, source, table, key, after, batch))
            if not rows:
                break
            values = [_normal(table.name, columns, r) for r in rows]
            if vec_at is not None:  # SQLite writes them a batch to a block (migration 0011)
                assert columns == ["seq", "memory_pk", "user_id", "vector"], columns
                target.db.write(functools.partial(target._hook_copy_vectors, rows=values))
            else:
                target.db.write(functools.partial(_write_rows, insert, values))
            tr.copied += len(rows)
            done += len(rows)
            after = rows[-1][columns.index(key)]
            if progress is not None:
                progress(table.name, done, total)
            if len(rows) < batch:
                break
        if _is_pg(target) and table.name in _SEQUENCES:
            col = _SEQUENCES[table.name]
            sql = (
                f"SELECT setval(pg_get_serial_sequence('{table.name}', '{col}'), "
                f"coalesce((SELECT max({col}) FROM {table.name}), 0) + 1, false)"
            )
            target.db.write(functools.partial(_run, sql))
        tr.source_rows, tr.source_sha256 = _digest(source, table, key, batch)
        tr.target_rows, tr.target_sha256 = _digest(target, table, key, batch)
    if not _is_pg(target):
        target.db.write(
            functools.partial(_run, "INSERT INTO memories_fts(memories_fts) VALUES ('rebuild')")
        )
    return report


__all__ = ["COPY_ORDER", "TableReport", "TransferReport", "transfer"]
