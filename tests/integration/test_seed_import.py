"""Imports from the seed systems: seed 001's and seed 003's tables (built with their own
DDL) and seed 002's JSON data directory, into each backend."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from memvault import MemVault, Settings
from memvault.errors import InvalidArgumentError

# Seed 001's table as its model describes it (migrations/001_add_long_term_memory.sql).
SEED001_DDL = """
CREATE TABLE users (id INTEGER PRIMARY KEY, username VARCHAR(255), email VARCHAR(255));
CREATE TABLE long_term_memory (
    id INTEGER PRIMARY KEY,
    user_id INTEGER NOT NULL REFERENCES users(id),
    namespace VARCHAR(255) NOT NULL,
    key VARCHAR(255) NOT NULL,
    content TEXT NOT NULL,
    tags JSON,
    importance FLOAT DEFAULT 0.5,
    access_count INTEGER DEFAULT 0,
    last_accessed_at TIMESTAMP,
    expires_at TIMESTAMP,
    is_deleted BOOLEAN DEFAULT FALSE,
    created_at TIMESTAMP,
    updated_at TIMESTAMP,
    CONSTRAINT uq_ltm_user_ns_key UNIQUE (user_id, namespace, key)
);
CREATE INDEX ix_ltm_user_ns ON long_term_memory (user_id, namespace);
CREATE INDEX ix_ltm_importance ON long_term_memory (importance);
"""
# Seed 003's migration, as written there.
SEED003_DDL = """
CREATE TABLE user_memories (
    id SERIAL PRIMARY KEY,
    user_id INTEGER NOT NULL,
    content TEXT NOT NULL,
    created_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    updated_at TIMESTAMP DEFAULT CURRENT_TIMESTAMP,
    CONSTRAINT fk_user FOREIGN KEY (user_id) REFERENCES users(id)
);
CREATE INDEX idx_user_memories_user_id ON user_memories(user_id);
"""
USERS = [(1, "ana", "ana@example.com"), (2, "ben", None)]
LTM = [
    # id, user, namespace, key, content, tags, importance, access, last access, expires, deleted
    (1, 1, "prefs", "tea", "Likes green tea", '["drinks", "morning"]', 0.8, 3,
     "2025-03-01 10:00:00", None, False, "2025-01-01 09:00:00", "2025-02-01 09:00:00"),
    (2, 1, "prefs", "old", "Used to like coffee", "[]", 0.4, 0, None, None, True,
     "2025-01-02 09:00:00", "2025-01-05 09:00:00"),
    (3, 1, "trips", "rome", "Rome trip in May", None, None, 1, None, "2030-01-01 00:00:00",
     False, "2025-01-03 09:00:00", "2025-01-03 09:00:00"),
    (4, 2, "work", "role", "Works as a nurse", '["work"]', 0.6, 0, None, None, False,
     "2025-01-04 09:00:00", "2025-01-04 09:00:00"),
    (5, 2, "bad ns!", "x", "a bad namespace", "[]", 0.5, 0, None, None, False,
     "2025-01-04 09:00:00", "2025-01-04 09:00:00"),
    (6, 2, "work", "tags", "tags that are not JSON", "not json", 0.5, 0, None, None, False,
     "2025-01-04 09:00:00", "2025-01-04 09:00:00"),
    (7, 2, "work", "imp", "importance too high", "[]", 7.0, 0, None, None, False,
     "2025-01-04 09:00:00", "2025-01-04 09:00:00"),
    (8, 2, "work", "blank", "   ", "[]", 0.5, 0, None, None, False,
     "2025-01-04 09:00:00", "2025-01-04 09:00:00"),
]  # fmt: skip
SUMMARIES = [
    (1, 1, "Ana likes tea (old).", "2025-01-01 09:00:00", "2025-01-01 09:00:00"),
    (2, 1, "Ana likes green tea and travels.", "2025-01-01 09:00:00", "2025-02-01 09:00:00"),
    (3, 2, "Ben is a nurse.", "2025-01-04 09:00:00", "2025-01-04 09:00:00"),
]
INSERT_LTM = (
    "INSERT INTO long_term_memory (id, user_id, namespace, key, content, tags, importance, "
    "access_count, last_accessed_at, expires_at, is_deleted, created_at, updated_at) "
    "VALUES ({})"
)
INSERT_SUM = "INSERT INTO user_memories (id, user_id, content, created_at, updated_at) VALUES ({})"


def _sqlite_seed(path: Path) -> str:
    with sqlite3.connect(path) as conn:
        conn.executescript(SEED001_DDL + SEED003_DDL)
        conn.executemany("INSERT INTO users VALUES (?, ?, ?)", USERS)
        conn.executemany(INSERT_LTM.format(", ".join("?" * 13)), LTM)
        conn.executemany(INSERT_SUM.format(", ".join("?" * 5)), SUMMARIES)
    return f"sqlite:///{path}"


def _check(v: MemVault, report: Any, *, json_column: bool = False) -> None:
    skipped = {
        "bad namespace": 1,
        "tags are not a JSON list": 1,
        "importance outside 0..1": 1,
        "empty or oversized content": 1,
    }
    if json_column:  # PostgreSQL's json type refuses the row with broken tags
        del skipped["tags are not a JSON list"]
    assert report.sources["long_term_memory"] == {"rows": 8 - json_column, "skipped": skipped}
    assert report.sources["user_memories"] == {
        "rows": 3,
        "skipped": {"an older summary of the same user": 1},
    }
    assert report.counts["memory"] == {"imported": 4}
    assert v.get_user("1").username == "ana"
    page = v.list_memories("1", filters={"include_deleted": True}, order="created_asc").items
    tea, old, rome = page
    assert (tea.namespace, tea.key, tea.content) == ("prefs", "tea", "Likes green tea")
    assert tea.tags == ["drinks", "morning"]
    assert tea.importance == 0.8
    assert tea.access_count == 3
    assert tea.created_at.isoformat() == "2025-01-01T09:00:00+00:00"
    assert tea.metadata == {"imported_from": "seed001", "source_id": 1}
    assert old.deleted_at is not None
    assert rome.expires_at is not None
    assert rome.expires_at.year == 2030
    assert rome.importance == 0.5
    assert v.get_summary("1").content == "Ana likes green tea and travels."  # type: ignore[union-attr]
    assert v.get_summary("2").content == "Ben is a nurse."  # type: ignore[union-attr]
    hits = v.search("1", "what does she drink", k=1)
    assert hits[0].memory.memory_id == tea.memory_id


def test_seed_001_and_003_tables_from_sqlite(settings: Settings, tmp_path: Path) -> None:
    url = _sqlite_seed(tmp_path / "seed.db")
    with MemVault(settings) as v:
        dry = v.import_seed_sql(url, dry_run=True)
        assert dry.counts["memory"] == {"imported": 4}
        assert v.list_users() == []
        report = v.import_seed_sql(url)
        _check(v, report)
        again = v.import_seed_sql(url)
        assert again.counts["memory"] == {"exists": 4}
        assert again.counts["summary"] == {"exists": 2}
        assert v.count() == 3  # live ones: the deleted one stays deleted


@pytest.mark.postgres
def test_seed_tables_from_postgresql(settings: Settings) -> None:
    import psycopg

    from tests.conftest import ADMIN_URL

    name = f"memvault_seed_{os.getpid()}"
    base = ADMIN_URL.rpartition("/")[0]
    with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}"')
        admin.execute(f'CREATE DATABASE "{name}"')
    url = f"{base}/{name}"
    try:
        with psycopg.connect(url, autocommit=True) as conn:
            conn.execute(SEED001_DDL)
            conn.execute(SEED003_DDL)
            with conn.cursor() as cur:
                cur.executemany("INSERT INTO users VALUES (%s, %s, %s)", USERS)
                cur.executemany(
                    INSERT_LTM.format(", ".join(["%s"] * 13)), [r for r in LTM if r[0] != 6]
                )
                cur.executemany(INSERT_SUM.format(", ".join(["%s"] * 5)), SUMMARIES)
        with MemVault(settings) as v:
            _check(v, v.import_seed_sql(url), json_column=True)
    finally:
        with psycopg.connect(ADMIN_URL, autocommit=True) as admin:
            admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def test_a_database_without_seed_tables_is_refused(settings: Settings, tmp_path: Path) -> None:
    empty = tmp_path / "empty.db"
    sqlite3.connect(empty).close()
    with MemVault(settings) as v, pytest.raises(InvalidArgumentError, match="neither"):
        v.import_seed_sql(f"sqlite:///{empty}")


def _elysia_dir(root: Path) -> Path:
    root.mkdir()
    (root / "users_index.json").write_text(
        json.dumps({"user123": {"username": "JohnDoe", "created_at": "2025-01-01T00:00:00"}})
    )
    u = root / "user123"
    u.mkdir()
    (u / "user_profile.json").write_text(
        json.dumps(
            {
                "user_id": "user123",
                "username": "JohnDoe",
                "created_at": "2025-01-01T00:00:00",
                "preferred_language": "en",
            }
        )
    )
    (u / "conversation_history.json").write_text(
        json.dumps(
            [
                {"role": "user", "content": "Hello, Elysia!", "timestamp": "2025-01-02T10:00:00"},
                {"role": "assistant", "content": "Hi John!", "timestamp": "2025-01-02T10:00:05"},
                {"role": "narrator", "content": "???", "timestamp": "2025-01-02T10:00:06"},
                {"role": "user", "content": "", "timestamp": "2025-01-02T10:00:07"},
            ]
        )
    )
    (u / "user_facts.json").write_text(
        json.dumps(
            [
                {"fact": "Lives in New York", "category": "location", "timestamp": "2025-01-02"},
                {"fact": "Is allergic to cats", "category": "health", "importance": 0.9},
                {"fact": "", "category": "general"},
            ]
        )
    )
    (u / "interaction_metrics.json").write_text(
        json.dumps(
            {
                "total_messages": 2,
                "messages_by_role": {"user": 1, "assistant": 1},
                "current_streak": 3,
                "longest_streak": 5,
                "last_active_date": "2025-01-02",
                "logins": 4,
            }
        )
    )
    (u / "permanent_memories.json").write_text(
        json.dumps([{"content": "Birthday is March 3", "tags": ["dates"]}])
    )
    broken = root / "user456"
    broken.mkdir()
    (broken / "user_facts.json").write_text("{not json")
    (root / "global_context.json").write_text(json.dumps({"assistant_name": "Elysia"}))
    return root


def test_seed_002_data_directory(settings: Settings, tmp_path: Path) -> None:
    data = _elysia_dir(tmp_path / "data")
    with MemVault(settings) as v:
        report = v.import_seed_elysia(data)
        assert report.sources["conversation_history.json"] == {
            "rows": 4,
            "skipped": {"unknown role": 1, "empty or oversized content": 1},
        }
        assert report.sources["user_facts.json"]["skipped"] == {
            "empty or oversized content": 1,
            "unreadable: JSONDecodeError": 1,
        }
        user = v.get_user("user123")
        assert user.username == "JohnDoe"
        assert user.profile == {"preferred_language": "en"}
        assert [m.content for m in v.get_message_history("user123")] == [
            "Hello, Elysia!",
            "Hi John!",
        ]
        facts = {str(f.content): f for f in v.get_user_facts("user123")}
        assert set(facts) == {"Lives in New York", "Is allergic to cats"}
        assert facts["Is allergic to cats"].importance == 0.9
        assert facts["Lives in New York"].category == "location"
        assert [str(m.content) for m in v.get_permanent_memories("user123")] == [
            "Birthday is March 3"
        ]
        m = v.get_metrics("user123")
        assert (m.total_messages, m.current_streak, m.longest_streak) == (2, 3, 5)
        assert m.counters == {"logins": 4}
        assert v.get_global_context() == {"assistant_name": "Elysia"}
        again = v.import_seed_elysia(data)
        assert again.counts["message"] == {"exists": 2}
        assert again.counts["memory"] == {"exists": 3}
    with MemVault(settings) as v, pytest.raises(InvalidArgumentError):
        v.import_seed_elysia(tmp_path)  # no seed 002 files there


def test_import_seed_cli(tmp_path: Path) -> None:
    data = _elysia_dir(tmp_path / "data")
    env = dict(os.environ, MEMVAULT_DATA_DIR=str(tmp_path / "mv"), COLUMNS="200")
    env.pop("MEMVAULT_DATABASE_URL", None)
    r = subprocess.run(
        [sys.executable, "-m", "memvault", "import-seed", "elysia", str(data)],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert (
        "conversation_history.json: 4 read; skipped: 1 empty or oversized content, 1 unknown role"
        in r.stdout
    )
    assert "message: 2 imported" in r.stdout
