"""`Statements.insert_rows` (SQLite's batch insert, binding only the columns some row of the
batch sets) stores every batch exactly as the insert binding all 27 columns does: for any
mix of rows leaving columns at their defaults or setting them (to values that look like
defaults too: `0.0`, `'{} '`, a key that is another row's id), the stored rows are equal,
column for column."""

from __future__ import annotations

import sqlite3
import tempfile
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy.dialects import sqlite as sqlite_dialect

from memvault import MemVault, Settings
from memvault.storage.sql import codec
from memvault.storage.sql.queries import NEW_ROW_DEFAULTS, Statements

COLUMNS = (*codec.INSERT_COLUMNS, "search_context")
OTHER: dict[str, Any] = {  # a value each optional column may hold instead of its default
    "content_object": st.sampled_from(['{"a":1}', "{}"]),
    "metadata": st.sampled_from(['{"k":"v"}', "{} ", "[]"]),
    "tags": st.sampled_from(['["a"]', "{}", "[] "]),
    "category": st.sampled_from(["work", ""]),
    "access_count": st.sampled_from([1, 0.0, 7]),
    "last_accessed_at": st.just("2026-01-02T00:00:00+00:00"),
    "expires_at": st.just("2026-01-03T00:00:00+00:00"),
    "session_id": st.sampled_from(["s1", "NULL"]),
    "agent_id": st.sampled_from(["a1", "'"]),
    "version": st.sampled_from([2, 1.0, 0]),
    "deleted_at": st.just("2026-01-04T00:00:00+00:00"),
    "valid_from": st.just("2025-01-01T00:00:00+00:00"),
    "valid_to": st.just("2027-01-01T00:00:00+00:00"),
    "superseded_by": st.just("mem_01JD3Q0000000000000000000X"),
    "content_z": st.just(b"\x00zipped"),
    "enc_key": st.just("k1"),
    "search_context": st.sampled_from(["monday january", "it's"]),
}
assert set(OTHER) == set(NEW_ROW_DEFAULTS)


@st.composite
def rows(draw: st.DrawFn) -> list[tuple[Any, ...]]:
    out = []
    for i in range(draw(st.integers(1, 6))):
        mid = f"mem_{i:026d}"
        created = draw(st.sampled_from(["2026-01-01T00:00:00+00:00", "2026-01-01T00:00:01+00:00"]))
        values: dict[str, Any] = {
            "memory_id": mid,
            "user_id": "u1",
            "namespace": "default",
            "key": draw(st.sampled_from([mid, "k" + str(i), f"mem_{i + 1:026d}"])),
            "memory_type": "note",
            "content": "tea at five",
            "content_hash": "ab" * 32,
            "importance": draw(st.sampled_from([0.5, 0.0, 1.0])),
            "created_at": created,
            "updated_at": draw(st.sampled_from([created, "2026-02-01T00:00:00+00:00"])),
        }
        for name, other in OTHER.items():
            values[name] = draw(other) if draw(st.booleans()) else NEW_ROW_DEFAULTS[name]
        out.append(tuple(values[c] for c in COLUMNS))
    return out


def _stored(conn: sqlite3.Connection) -> list[tuple[Any, ...]]:
    names = ", ".join(f'"{c}"' for c in COLUMNS)
    return conn.execute(f"SELECT {names} FROM memories ORDER BY pk").fetchall()


def _memories_ddl() -> str:
    """The memory table as memvault's migrations make it (read once)."""
    with tempfile.TemporaryDirectory() as where:
        db = Path(where) / "schema.db"
        MemVault(Settings(data_dir=where, database_url=f"sqlite:///{db}")).close()
        conn = sqlite3.connect(db)
        try:
            return str(
                conn.execute(
                    "SELECT sql FROM sqlite_master WHERE tbl_name = 'memories' AND type = 'table'"
                ).fetchone()[0]
            )
        finally:
            conn.close()


DDL = _memories_ddl()
SQL = Statements(sqlite_dialect.dialect(paramstyle="named"))  # type: ignore[no-untyped-call]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(batch=rows())
def test_a_batch_is_stored_as_the_full_insert_stores_it(batch: list[tuple[Any, ...]]) -> None:
    assert SQL.insert_memory_positional is not None
    stored = []
    for statement, values in (SQL.insert_rows(batch), (SQL.insert_memory_positional, batch)):
        conn = sqlite3.connect(":memory:")
        conn.execute(DDL)  # the table alone: no index refuses a row of this batch
        conn.executemany(statement, values)
        stored.append(_stored(conn))
        conn.close()
    assert stored[0] == stored[1]
    assert [tuple(map(type, r)) for r in stored[0]] == [tuple(map(type, r)) for r in stored[1]]


def test_the_usual_new_memory_binds_its_own_values_only() -> None:
    mid = "mem_" + "0" * 26
    at = "2026-01-01T00:00:00+00:00"
    given_values = {"memory_id": mid, "user_id": "u1", "namespace": "default", "key": mid}
    given_values |= {"memory_type": "note", "content": "tea", "content_hash": "ab" * 32}
    given_values |= {"importance": 0.5, "created_at": at, "updated_at": at}
    row = tuple(given_values.get(c, NEW_ROW_DEFAULTS.get(c)) for c in COLUMNS)
    statement, values = SQL.insert_rows([row])
    assert values == [(mid, "u1", "default", "note", "tea", 0.5, at, "ab" * 32)]
    assert statement.count("?") == 10  # the key and updated_at repeat ?1 and ?7


def test_an_empty_batch_binds_nothing() -> None:
    assert SQL.insert_rows([]) == (SQL.insert_memory_positional, [])
