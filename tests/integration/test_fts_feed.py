"""SQLite feeds its full-text index in batches (migration 0012, storage/fts_feed.py): new
rows wait until about `FEED_AFTER` of them do, a lexical search indexes what waits of its
user before it reads, and the index always matches the rows (FTS5's own integrity check
against the memory table) whatever happens to waiting rows: updates, deletions, purges,
reused rowids, rows of another process, hand-written SQL, a downgrade."""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from memvault import FrozenClock, MemVault, Settings
from memvault.storage import fts_feed, migrate

BACKENDS = ("sqlite",)  # PostgreSQL indexes text in the row's own transaction


def _path(settings: Settings) -> str:
    return settings.database_url.removeprefix("sqlite:///")


def _one(settings: Settings, sql: str, *args: object) -> object:
    conn = sqlite3.connect(_path(settings))
    try:
        return conn.execute(sql, args).fetchone()[0]
    finally:
        conn.close()


def _waiting(settings: Settings) -> int:
    return int(_one(settings, f"SELECT count(*) FROM memories WHERE pk > ({fts_feed.WATERMARK})"))


def _consistent(settings: Settings) -> None:
    """FTS5 compares every indexed document with the memory table (rank 1: the external
    content too); any waiting row would fail it as well."""
    conn = sqlite3.connect(_path(settings))
    try:
        conn.execute("INSERT INTO memories_fts(memories_fts, rank) VALUES ('integrity-check', 1)")
    finally:
        conn.close()


def _found(vault: MemVault, user: str, query: str) -> list[str]:
    return [h.memory.memory_id for h in vault.search(user, query, mode="lexical", k=50)]


def test_rows_wait_until_a_search_of_their_user_feeds_them(
    settings: Settings, clock: FrozenClock
) -> None:
    with MemVault(settings, clock=clock) as vault:
        a = vault.add_many("alice", [{"content": f"walrus number {i}"} for i in range(30)])
        b = vault.add("bob", "a walrus of bob's")
        assert _waiting(settings) == 31
        assert sorted(_found(vault, "alice", "walrus")) == sorted(m.memory_id for m in a)
        assert _waiting(settings) == 0  # a feed indexes every waiting row, bob's too
        _consistent(settings)
        c = vault.add("carol", "a walrus of carol's")
        assert _found(vault, "bob", "walrus") == [b.memory_id]
        assert _waiting(settings) == 1  # bob had nothing waiting: carol's row still waits
        assert _found(vault, "carol", "walrus") == [c.memory_id]
        assert _waiting(settings) == 0


def test_the_writer_feeds_once_enough_rows_wait(
    settings: Settings, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fts_feed, "FEED_AFTER", 50)
    with MemVault(settings, clock=clock) as vault:
        vault.add_many("alice", [{"content": f"otter {i}"} for i in range(30)])
        assert _waiting(settings) == 30
        vault.add_many("alice", [{"content": f"otter {i}"} for i in range(30, 60)])
        assert _waiting(settings) == 0  # 60 waited: the second batch fed them all
        _consistent(settings)
        vault.add("alice", "otter 60")
        assert _waiting(settings) == 1
    assert _waiting(settings) == 0  # a clean close feeds what waits
    _consistent(settings)


def test_waiting_rows_changed_or_deleted_are_indexed_as_they_are(
    settings: Settings, clock: FrozenClock
) -> None:
    with MemVault(settings, clock=clock) as vault:
        kept = vault.add("alice", "the heron by the pond")
        edited = vault.add("alice", "the heron in the rain", tags=["birds"])
        gone = vault.add("alice", "the heron that flew off")
        vault.update("alice", edited.memory_id, content="a kingfisher in the rain")
        vault.delete("alice", gone.memory_id)
        assert _waiting(settings) >= 2  # none of it was indexed yet
        assert _found(vault, "alice", "heron") == [kept.memory_id]
        assert _found(vault, "alice", "kingfisher") == [edited.memory_id]
        _consistent(settings)
        # indexed rows change through the triggers, as before
        vault.update("alice", kept.memory_id, content="the egret by the pond")
        assert _found(vault, "alice", "heron") == []
        assert _found(vault, "alice", "egret") == [kept.memory_id]
        _consistent(settings)


def test_a_purged_last_row_gives_its_rowid_to_a_new_row_that_is_found(
    settings: Settings, clock: FrozenClock
) -> None:
    with MemVault(settings, clock=clock) as vault:
        first = vault.add("alice", "a lynx in the snow")
        last = vault.add("alice", "a bobcat in the snow")
        assert len(_found(vault, "alice", "snow")) == 2  # both indexed
        top = _one(settings, "SELECT max(pk) FROM memories")
        vault.delete("alice", last.memory_id)
        clock.advance(days=settings.soft_delete_retention_days + 1)
        vault.purge()
        assert _one(settings, "SELECT max(pk) FROM memories") == int(str(top)) - 1
        new = vault.add("alice", "a marten in the snow")
        assert _one(settings, "SELECT max(pk) FROM memories") == top  # the rowid again
        assert sorted(_found(vault, "alice", "snow")) == sorted([first.memory_id, new.memory_id])
        assert _found(vault, "alice", "marten") == [new.memory_id]
        _consistent(settings)


WRITER = """
import sys
from memvault import MemVault, Settings
with MemVault(Settings(data_dir=sys.argv[1], database_url=sys.argv[2])) as v:
    v.add_many("alice", [{"content": "a badger from the other process"}] * 3)
    import os
    os._exit(0)  # no clean close: its rows stay waiting
"""


def _leave_waiting(settings: Settings) -> None:
    """Three rows of another process that ended without closing its store."""
    done = subprocess.run(
        [sys.executable, "-c", WRITER, str(settings.data_dir), settings.database_url],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr


def test_rows_another_process_left_waiting_are_found(
    settings: Settings, clock: FrozenClock
) -> None:
    with MemVault(settings, clock=clock) as vault:
        vault.add("alice", "a badger of this process")
        _leave_waiting(settings)
        assert _waiting(settings) == 4
        assert len(_found(vault, "alice", "badger")) == 4
        _consistent(settings)


def test_rows_inserted_by_hand_sql_are_indexed_too(settings: Settings, clock: FrozenClock) -> None:
    with MemVault(settings, clock=clock) as vault:
        made = vault.add("alice", "a stoat in the hedge")
        conn = sqlite3.connect(_path(settings))
        try:
            cols = [r[1] for r in conn.execute("PRAGMA table_info(memories)") if r[1] != "pk"]
            row = conn.execute(
                f"SELECT {', '.join(cols)} FROM memories WHERE memory_id = ?", (made.memory_id,)
            ).fetchone()
            values = dict(zip(cols, row, strict=True))
            values.update(
                memory_id="mem_01JZZZZZZZZZZZZZZZZZZZZZZZ",
                key="by-hand",
                content="a weasel in the hedge",
                content_hash="0" * 64,
            )
            with conn:
                conn.execute(
                    f"INSERT INTO memories ({', '.join(values)}) "
                    f"VALUES ({', '.join('?' * len(values))})",
                    list(values.values()),
                )
        finally:
            conn.close()
        assert _found(vault, "alice", "weasel") == ["mem_01JZZZZZZZZZZZZZZZZZZZZZZZ"]
        _consistent(settings)


def test_downgrading_feeds_the_waiting_rows(settings: Settings, clock: FrozenClock) -> None:
    with MemVault(settings, clock=clock) as vault:
        found = vault.add("alice", "a vole under the lawn")
        assert _found(vault, "alice", "vole") == [found.memory_id]
    _leave_waiting(settings)  # as a killed process leaves them
    assert _waiting(settings) == 3
    url = settings.database_url
    migrate.downgrade(url, "0011")
    assert _waiting(settings) == 0
    _consistent(settings)
    migrate.upgrade(url)
    assert migrate.current_revision(url) == migrate.HEAD_REVISION
    with MemVault(settings, clock=clock) as vault:
        assert len(_found(vault, "alice", "badger")) == 3


def test_the_upgrade_guards_the_triggers_and_keeps_every_row_indexed(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'm.db'}"
    migrate.upgrade(url, "0011")
    conn = sqlite3.connect(tmp_path / "m.db")
    triggers = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
    conn.close()
    assert "WHEN" not in triggers["memories_fts_ad"]
    migrate.upgrade(url)
    conn = sqlite3.connect(tmp_path / "m.db")
    triggers = dict(conn.execute("SELECT name, sql FROM sqlite_master WHERE type = 'trigger'"))
    conn.close()
    assert "memories_fts_docsize" in triggers["memories_fts_ad"]
    assert "memories_fts_docsize" in triggers["memories_fts_au"]


def test_asking_whether_rows_wait_reads_only_the_rows_past_the_watermark(
    settings: Settings, clock: FrozenClock
) -> None:
    with MemVault(settings, clock=clock) as vault:
        vault.add_many("alice", [{"content": f"row {i}"} for i in range(200)])
    conn = sqlite3.connect(_path(settings))
    try:
        conn.execute("ANALYZE")
        plans = [
            " ".join(str(r[-1]) for r in conn.execute(f"EXPLAIN QUERY PLAN {sql}", args))
            for sql, args in ((fts_feed._WAITING_FOR, ("alice",)), (fts_feed._FEED, (0,)))
        ]
    finally:
        conn.close()
    for plan in plans:
        assert "SEARCH memories USING INTEGER PRIMARY KEY (rowid>?)" in plan, plan


def test_a_search_that_cannot_feed_answers_from_the_index_as_it_is(
    settings: Settings, clock: FrozenClock, caplog: pytest.LogCaptureFixture
) -> None:
    _leave_waiting(settings)  # as a killed process leaves them
    quick = settings.model_copy(update={"sqlite_busy_timeout_s": 0.3})
    with MemVault(quick, clock=clock) as vault:
        holder = sqlite3.connect(_path(settings), isolation_level=None)
        holder.execute("BEGIN IMMEDIATE")  # another process's writer, busy for long
        try:
            assert _found(vault, "alice", "badger") == []  # not an error: no entries yet
        finally:
            holder.execute("ROLLBACK")
            holder.close()
        assert "without the newest rows" in caplog.text
        assert len(_found(vault, "alice", "badger")) == 3  # the lock gone, fed
