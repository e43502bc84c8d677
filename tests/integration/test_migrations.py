"""Alembic revisions build exactly the schema of `storage/sql/tables.py`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import create_engine, inspect, text

from memvault import Settings
from memvault.storage import migrate
from memvault.storage.sql.tables import metadata


def test_head_constant_matches_revision_files() -> None:
    assert migrate.head_revision() == migrate.HEAD_REVISION


def test_migrated_sqlite_matches_tables_module(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url)
    engine = create_engine(url)
    with engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)
        names = set(inspect(conn).get_table_names())
        views = set(inspect(conn).get_view_names())
    engine.dispose()
    # FTS5 keeps its index in shadow tables that the SQLAlchemy metadata does not describe.
    diff = [
        d for d in diff if not (d[0] == "remove_table" and d[1].name.startswith("memories_fts"))
    ]
    # SQLite keeps vectors in blocks; `memory_vectors` is a view of them (migration 0011).
    blocks = {
        ("add_table", "memory_vectors"),
        ("add_index", "ix_memory_vectors_user_seq"),
        ("remove_table", "vector_blocks"),
        ("remove_index", "ix_vector_blocks_user_seq"),
        ("remove_table", "vector_data"),
        ("remove_table", "vector_slots"),
    }
    assert {(d[0], d[1].name) for d in diff} >= blocks
    diff = [d for d in diff if (d[0], d[1].name) not in blocks]
    assert diff == []
    assert "memory_vectors" in views
    assert {"memories", "memories_fts", "memory_history", "users", "messages"} <= names
    assert migrate.current_revision(url) == migrate.HEAD_REVISION


def test_downgrade_to_base_and_back(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url)
    migrate.downgrade(url, "base")
    assert migrate.current_revision(url) is None
    migrate.upgrade(url)
    assert migrate.current_revision(url) == migrate.HEAD_REVISION


@pytest.mark.parametrize("dialect", ["sqlite", "postgresql"])
def test_offline_sql_has_every_table(dialect: str) -> None:
    sql = migrate.offline_sql(dialect)
    for table in (
        "users",
        "memories",
        "memory_history",
        "messages",
        "sessions",
        "summaries",
        "user_metrics",
        "global_context",
    ):
        assert f"CREATE TABLE {table}" in sql
    assert "uq_memories_live_key" in sql
    assert ("memories_fts" in sql) == (dialect == "sqlite")
    assert ("JSONB" in sql) == (dialect == "postgresql")


def test_upgrade_from_0001_keeps_full_text_in_step(tmp_path: Path) -> None:
    """A file written at revision 0001 (insert trigger) upgrades to head: old rows stay
    searchable, new rows are indexed by the writer, updates re-index through the trigger."""
    from memvault import MemVault, Settings

    db = tmp_path / "m.db"
    url = f"sqlite:///{db}"
    migrate.upgrade(url, "0001")
    engine = create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql(
            "INSERT INTO users(user_id, profile, created_at, updated_at) "
            "VALUES ('u', '{}', '2026-01-01T00:00:00.000000+00:00', "
            "'2026-01-01T00:00:00.000000+00:00')"
        )
        conn.exec_driver_sql(
            'INSERT INTO memories(memory_id, user_id, namespace, "key", memory_type, content,'
            " content_hash, metadata, tags, importance, access_count, version, created_at,"
            " updated_at) VALUES ('mem_01JD3Q00000000000000000000', 'u', 'default', 'k',"
            " 'note', 'old walrus fact', 'h', '{}', '[]', 0.5, 0, 1,"
            " '2026-01-01T00:00:00.000000+00:00', '2026-01-01T00:00:00.000000+00:00')"
        )
    engine.dispose()
    with MemVault(Settings(data_dir=tmp_path, database_url=url)) as vault:
        assert migrate.current_revision(url) == migrate.HEAD_REVISION
        assert [h.memory.key for h in vault.search("u", "walrus", mode="lexical")] == ["k"]
        new = vault.add_many("u", [{"content": f"narwhal number {i}"} for i in range(3)])
        assert len(vault.search("u", "narwhal", mode="lexical")) == 3
        vault.update("u", new[0].memory_id, content="a pelican now")
        assert len(vault.search("u", "narwhal", mode="lexical")) == 2
        assert [h.memory.memory_id for h in vault.search("u", "pelican", mode="lexical")] == [
            new[0].memory_id
        ]


def test_downgrade_to_0001_freezes_live_snapshots(tmp_path: Path) -> None:
    """0002 leaves the live version's snapshot empty; going back to 0001 (NOT NULL) fills
    every one from its memory row, and history reads the same before and after."""
    import json

    from memvault import MemVault, Settings

    url = f"sqlite:///{tmp_path / 'm.db'}"
    with MemVault(Settings(data_dir=tmp_path, database_url=url)) as vault:
        a, b = vault.add_many(
            "u", [{"content": "first", "tags": ["t"], "metadata": {"n": 1}}, {"content": "b"}]
        )
        vault.update("u", a.memory_id, content="second")
        before = [e.snapshot for e in vault.history("u", a.memory_id)]
        before_b = [e.snapshot for e in vault.history("u", b.memory_id)]
    migrate.downgrade(url, "0001")
    engine = create_engine(url)
    with engine.connect() as conn:
        snaps = conn.exec_driver_sql(
            "SELECT memory_id, version, snapshot FROM memory_history ORDER BY history_id"
        ).fetchall()
    engine.dispose()
    assert all(s is not None for _, _, s in snaps)
    frozen = {(m, v): json.loads(s) for m, v, s in snaps}
    assert frozen[(b.memory_id, 1)]["content"] == "b"  # creation row written back
    assert frozen[(a.memory_id, 2)]["content"] == "second"
    assert frozen[(a.memory_id, 2)]["tags"] == ["t"]
    assert frozen[(a.memory_id, 2)]["metadata"] == {"n": 1}
    migrate.upgrade(url)
    with MemVault(Settings(data_dir=tmp_path, database_url=url)) as vault:
        assert [e.snapshot for e in vault.history("u", a.memory_id)] == before
        assert [e.snapshot for e in vault.history("u", b.memory_id)] == before_b
        assert [e.history_id for e in vault.history("u", b.memory_id)] != [0]  # stored now
        vault.revert("u", a.memory_id, 1)
        assert vault.get("u", a.memory_id).content == "first"


@pytest.mark.postgres
def test_postgres_downgrade_to_base_and_back(postgres_db: object) -> None:
    """On a database of its own: every revision's downgrade and upgrade run on PostgreSQL
    (0005 adds pgvector, json columns, byte-order collations, the change triggers)."""
    import psycopg

    from ..conftest import ADMIN_URL

    base, _, _ = ADMIN_URL.rpartition("/")
    name = f"memvault_migrations_{__import__('os').getpid()}"
    with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}"')
        conn.execute(f'CREATE DATABASE "{name}"')
    url = f"{base}/{name}"
    try:
        migrate.upgrade(url)
        assert migrate.current_revision(url) == migrate.HEAD_REVISION
        with psycopg.connect(url) as conn:
            kinds = dict(
                conn.execute(
                    "SELECT column_name, udt_name FROM information_schema.columns "
                    "WHERE table_name = 'memories'"
                ).fetchall()
            )
            triggers = {r[0] for r in conn.execute("SELECT tgname FROM pg_trigger")}
        assert kinds["metadata"] == "json"
        assert kinds["tags"] == "jsonb"
        assert kinds["search_tsv"] == "tsvector"
        assert {"memvault_memories_insert", "memvault_users_delete"} <= triggers
        migrate.downgrade(url, "base")
        assert migrate.current_revision(url) is None
        migrate.upgrade(url)
        assert migrate.current_revision(url) == migrate.HEAD_REVISION
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_upgrade_to_0009_turns_stored_numbers_back_into_json(tmp_path: Path) -> None:
    """Before 0009 a global value that was a bare number was stored as a number (NUMERIC
    affinity) and could not be read; the upgrade keeps it, as JSON text."""
    from memvault import MemVault, Settings

    db = tmp_path / "m.db"
    url = f"sqlite:///{db}"
    migrate.upgrade(url, "0008")
    engine = create_engine(url)
    with engine.begin() as conn:
        for key, text in (("zero", "0"), ("half", "1.5"), ("word", '"hi"'), ("list", "[1]")):
            conn.exec_driver_sql(
                "INSERT INTO global_context(key, value, updated_at) VALUES (?, ?, ?)",
                (key, text, "2026-01-01T00:00:00.000000+00:00"),
            )
        rows = conn.exec_driver_sql("SELECT key, typeof(value) FROM global_context").all()
        kinds = {key: kind for key, kind in rows}
    engine.dispose()
    assert kinds["zero"] == "integer"  # what the old column did to the text '0'
    with MemVault(Settings(data_dir=tmp_path, database_url=url)) as vault:
        assert migrate.current_revision(url) == migrate.HEAD_REVISION
        assert vault.get_global_context() == {"zero": 0, "half": 1.5, "word": "hi", "list": [1]}
        vault.set_global_context("big", 10**30)  # past 64 bits: kept exactly
        assert vault.get_global_context()["big"] == 10**30


def test_opening_a_store_at_head_does_not_import_alembic(tmp_path: Path) -> None:
    """alembic is imported only to migrate: a process that opens, writes and searches a
    store already at the newest revision never loads it (docs/backends.md, Migrations)."""
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url)
    code = (
        "import sys\n"
        "from memvault import MemVault, Settings\n"
        f"with MemVault(Settings(data_dir={str(tmp_path)!r}, database_url={url!r},"
        " embedder='none')) as v:\n"
        "    v.add('u1', 'alembic stays out')\n"
        "    assert v.search('u1', 'alembic')\n"
        "print('alembic' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "False"


def test_0011_moves_vectors_into_blocks_and_back(tmp_path: Path) -> None:
    """Upgrading keeps every vector under its `seq`, a block per user's run of rows; the
    downgrade gives the one-row-per-vector table back with the same rows."""
    import numpy as np

    from memvault import MemVault, Settings

    url = f"sqlite:///{tmp_path / 'm.db'}"
    rng = np.random.default_rng(11)
    vecs = rng.standard_normal((25, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    with MemVault(Settings(data_dir=tmp_path, database_url=url)) as vault:
        for user, start, n in (("alice", 0, 10), ("bob", 10, 5)):
            vault.add_many(
                user, [{"content": f"n{i}", "embedding": vecs[i]} for i in range(start, start + n)]
            )
        for i in range(15, 25):  # one at a time: small blocks, which the upgrade joins
            vault.add("alice", f"n{i}", embedding=vecs[i])
        gone = vault.add("bob", "replaced soon", embedding=vecs[0])
        vault.update("bob", gone.memory_id, content="replaced now")  # embedded again

    def rows() -> list[tuple[object, ...]]:
        engine = create_engine(url)
        with engine.connect() as conn:
            out = conn.exec_driver_sql(
                "SELECT seq, memory_pk, user_id, vector FROM memory_vectors ORDER BY seq"
            ).all()
        engine.dispose()
        return [tuple(r) for r in out]

    at_head = rows()
    assert len(at_head) == 26
    migrate.downgrade(url, "0010")
    assert rows() == at_head
    engine = create_engine(url)
    with engine.connect() as conn:
        assert "memory_vectors" in inspect(conn).get_table_names()
    engine.dispose()
    migrate.upgrade(url)
    assert rows() == at_head
    engine = create_engine(url)
    with engine.connect() as conn:
        blocks = conn.exec_driver_sql(
            "SELECT user_id, length(pks) / 16 FROM vector_blocks ORDER BY seq"
        ).all()
    engine.dispose()
    assert [tuple(b) for b in blocks] == [("alice", 20), ("bob", 6)]
    with MemVault(Settings(data_dir=tmp_path, database_url=url)) as vault:
        hits = vault.search("alice", "x", mode="vector", k=20, query_vector=vecs[17])
        assert hits[0].memory.content == "n17"
        assert len(hits) == 20


def test_0013_gives_stored_chinese_japanese_and_korean_their_pairs(
    backend: str, settings: Settings
) -> None:
    """Memories written before 0013 have no character pairs in their search context; the
    upgrade (run when a store is opened) computes them, and leaves other contexts alone."""
    from memvault import MemVault

    if backend == "jsonfs":
        pytest.skip("the JSON-file backend builds its index, contexts included, at open")
    plain = settings.model_copy(update={"embedder": "none"})
    with MemVault(plain) as vault:
        tea = vault.add("alice", "我喜欢喝绿茶")
        note = vault.add("alice", "plain words, 2023-10-13")
        ask = vault.add("alice", "你周末做什么", session_id="s")
        say = vault.add("alice", "去公园跑步", session_id="s")
        ids = [m.memory_id for m in (tea, note, ask, say)]
        kept = vault.inspect("alice", note.memory_id)
    before = {  # what the code before 0013 wrote
        tea.memory_id: None,
        ask.memory_id: "去公园跑步",
        say.memory_id: "你周末做什么",
    }
    engine = create_engine(migrate.engine_url(settings.database_url))
    with engine.begin() as conn:
        for memory_id, ctx in before.items():
            conn.execute(
                text("UPDATE memories SET search_context = :c WHERE memory_id = :m"),
                {"c": ctx, "m": memory_id},
            )
        conn.execute(text("UPDATE alembic_version SET version_num = '0012'"))
        note_ctx = conn.execute(
            text("SELECT search_context FROM memories WHERE memory_id = :m"), {"m": ids[1]}
        ).scalar_one()
    engine.dispose()
    with MemVault(plain) as vault:  # opening upgrades
        assert migrate.current_revision(settings.database_url) == migrate.HEAD_REVISION
        found = lambda q: [h.memory.memory_id for h in vault.search("alice", q, mode="lexical")]  # noqa: E731
        assert found("绿茶") == [tea.memory_id]
        assert found("公园") == [say.memory_id, ask.memory_id]
        assert vault.inspect("alice", note.memory_id).version == kept.version
    engine = create_engine(migrate.engine_url(settings.database_url))
    with engine.connect() as conn:
        after = dict(conn.execute(text("SELECT memory_id, search_context FROM memories")).all())
    engine.dispose()
    assert after[note.memory_id] == note_ctx == "october 13 2023 friday"  # untouched
    assert after[tea.memory_id] == "我喜 喜欢 欢喝 喝绿 绿茶 我喜 喜欢 欢喝 喝绿 绿茶"
    assert after[ask.memory_id] == (
        "去公园跑步 你周 周末 末做 做什 什么 你周 周末 末做 做什 什么 去公 公园 园跑 跑步"
    )
