"""What only PostgreSQL does: the HNSW path for big users, change notices between processes,
`memvault migrate` between backends, and the server going away under load.

The rest of the contract (every service call) runs on both backends through the `settings`
fixture; these tests are about behaviour the SQLite backend has no counterpart for."""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest

from memvault import MemVault, Settings
from memvault.errors import UnavailableError
from memvault.service import admin
from memvault.storage.transfer import COPY_ORDER

from ..conftest import PostgresDatabase

BACKENDS = ("postgres",)
pytestmark = pytest.mark.postgres


def _populate(vault: MemVault) -> None:
    """A store with something in every table."""
    ids = [
        m.memory_id
        for m in vault.add_many(
            "alice",
            [
                {
                    "content": f"Alice said thing number {i} about tea and travel",
                    "tags": ["t", str(i)],
                }
                for i in range(30)
            ],
        )
    ]
    vault.add(
        "alice",
        "Lives in Lisbon; birthday 2024-05-03",
        metadata={"z": 1, "a": {"nested": [1, 2.5, "x"]}, "emoji": "🙂"},
        importance=0.9,
        ttl_seconds=3600,
    )
    vault.update("alice", ids[0], content="Alice changed her mind about tea", expected_version=1)
    vault.delete("alice", ids[1])
    vault.restore("alice", ids[1])
    vault.delete("alice", ids[2])
    vault.get("alice", ids[3])  # an access count
    s = vault.create_session("alice", metadata={"device": "phone"})
    vault.add("alice", "said in a session", session_id=s.session_id)
    for i in range(5):
        vault.add_message("alice", "user" if i % 2 == 0 else "assistant", f"message {i}")
    vault.add_user_fact("alice", "Works as a nurse", "work")
    vault.save_summary("alice", "Alice likes tea.")
    vault.set_global_context("assistant_name", {"name": "Mem", "v": [1, 2]})
    vault.create_api_key("alice", name="laptop")
    vault.create_api_key(admin=True, name="admin")
    vault.add("bob", "Bob is leaving")
    vault.erase_user("bob")  # an audit row
    vault.flush()


def _sqlite_rows(path: Path) -> dict[str, list[tuple[Any, ...]]]:
    conn = sqlite3.connect(path)
    try:
        out = {}
        for table, key in COPY_ORDER:
            cols = ", ".join(f'"{c.name}"' for c in table.columns)
            out[table.name] = conn.execute(
                f"SELECT {cols} FROM {table.name} ORDER BY {key}"
            ).fetchall()
        return out
    finally:
        conn.close()


def test_migrate_sqlite_to_postgres_and_back_is_byte_for_byte(
    settings: Settings, tmp_path: Path
) -> None:
    first = tmp_path / "first.db"
    back = tmp_path / "back.db"
    with MemVault(Settings(data_dir=tmp_path, database_url=f"sqlite:///{first}")) as v:
        _populate(v)
        before_search = [h.memory.memory_id for h in v.search("alice", "tea travel", k=5)]
    there = admin.transfer_store(settings, f"sqlite:///{first}", settings.database_url)
    assert there.verified, there
    assert there.copied > 40
    home = admin.transfer_store(settings, settings.database_url, f"sqlite:///{back}")
    assert home.verified, home
    with MemVault(settings) as pg:  # (its searches count accesses: after the copy back)
        assert pg.count("alice") == 32  # 30 + Lisbon + session memory + fact - 1 deleted
        assert [h.memory.memory_id for h in pg.search("alice", "tea travel", k=5)][:1] == (
            before_search[:1]
        )
    original, returned = _sqlite_rows(first), _sqlite_rows(back)
    for table, rows in original.items():
        assert returned[table] == rows, table
    assert sum(len(r) for r in original.values()) > 50
    assert len(original["memory_vectors"]) > 30  # vectors made the round trip too
    blocks = []
    for path in (first, back):  # written a batch to a block, not a block a row (0011)
        conn = sqlite3.connect(path)
        try:
            blocks.append(conn.execute("SELECT count(*) FROM vector_blocks").fetchone()[0])
        finally:
            conn.close()
    assert blocks[0] > 3  # a batch, then memories added and changed one at a time
    assert blocks[1] == 1  # alice's vectors, copied in one batch
    with MemVault(Settings(data_dir=tmp_path, database_url=f"sqlite:///{back}")) as v:
        after_search = [h.memory.memory_id for h in v.search("alice", "tea travel", k=5)]
    assert after_search == before_search  # full-text index rebuilt, same vectors


def test_migrate_refuses_a_non_empty_target_and_resumes(settings: Settings, tmp_path: Path) -> None:
    src = tmp_path / "src.db"
    with MemVault(Settings(data_dir=tmp_path, database_url=f"sqlite:///{src}")) as v:
        v.add_many("u", [{"content": f"memory {i}"} for i in range(250)])
    url = settings.database_url
    first = admin.transfer_store(settings, f"sqlite:///{src}", url, batch=100)
    assert first.verified
    from memvault.errors import ConflictError

    with pytest.raises(ConflictError, match="not empty"):
        admin.transfer_store(settings, f"sqlite:///{src}", url)
    # An interrupted copy: drop the last memories (and what hangs off them), then resume.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("DELETE FROM memories WHERE pk > 120")
        conn.execute("DELETE FROM vector_index")
    again = admin.transfer_store(settings, f"sqlite:///{src}", url, resume=True, batch=100)
    assert again.verified, again
    copied = {t.table: t.copied for t in again.tables}
    assert copied["memories"] == 130
    assert copied["users"] == 0


def test_migrate_from_the_command_line(settings: Settings, tmp_path: Path) -> None:
    src = tmp_path / "cli.db"
    with MemVault(Settings(data_dir=tmp_path, database_url=f"sqlite:///{src}")) as v:
        v.add("u", "hello there")
    command = [sys.executable, "-m", "memvault", "migrate", "--from", f"sqlite:///{src}"]
    command += ["--to", settings.database_url]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr
    assert "counts and checksums match" in proc.stdout
    proc = subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 4  # CONFLICT
    assert "not empty" in proc.stderr


def test_a_big_user_is_searched_through_hnsw_with_filters(settings: Settings) -> None:
    """Past `pg_hnsw_from` vectors, search walks the HNSW index with iterative scans: a
    filter that only 1 row in 10 passes still gets k rows, and the rows agree with the
    exact path."""
    big = settings.model_copy(update={"pg_hnsw_from": 50})
    exact = settings.model_copy(update={"pg_hnsw_from": 0})
    topics = ["tea", "hiking", "piano", "cooking", "chess", "sailing", "painting", "running"]
    with MemVault(big) as v:
        v.add_many(
            "big",
            [
                {
                    "content": f"Notes on {topics[i % len(topics)]}, entry {i}",
                    "namespace": "rare" if i % 10 == 0 else "common",
                }
                for i in range(400)
            ],
        )
        backend = v._inner.backend  # type: ignore[attr-defined]
        hits = v.search(
            "big", "playing the piano", k=10, mode="vector", filters={"namespaces": ["rare"]}
        )
        assert backend._sizes["big"][0] >= 50  # past pg_hnsw_from: the HNSW path
        assert backend._hnsw_dims  # the index exists
        assert len(hits) == 10
        assert all(h.memory.namespace == "rare" for h in hits)
        with psycopg.connect(settings.database_url) as conn:
            # The index serves the statement's distance expression (on 400 rows the planner
            # would rather scan: tell it not to).
            conn.execute("SET enable_seqscan = off")
            plan = "\n".join(
                r[0]
                for r in conn.execute(
                    "EXPLAIN SELECT memory_pk FROM memory_vectors ORDER BY "
                    "(vector::vector(384)) <=> (SELECT vector FROM memory_vectors LIMIT 1) "
                    "LIMIT 5"
                )
            )
        assert "ix_memory_vectors_hnsw_384" in plan
    with MemVault(exact) as v:
        exact_hits = v.search(
            "big", "playing the piano", k=10, mode="vector", filters={"namespaces": ["rare"]}
        )
    overlap = {h.memory.memory_id for h in hits} & {h.memory.memory_id for h in exact_hits}
    assert len(overlap) >= 8


def _child(code: str, url: str) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = str(Path(__file__).parents[2]) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.Popen(
        [sys.executable, "-c", code, url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


_READER = """
import asyncio, sys
from memvault import AsyncMemVault, Settings
from memvault.service.cache import ReadCache

async def main():
    v = await AsyncMemVault.open(Settings(database_url=sys.argv[1], embedder="none"))
    backend = v.backend
    cache = ReadCache(backend)
    for line in sys.stdin:
        memory_id = line.strip()
        async def load():
            got = await v.get_many("alice", [memory_id])
            return (got[0].content if got else None), frozenset([memory_id]), 64
        print(await cache.get_or_load(("get", memory_id), "alice", load), flush=True)
    await v.close()

asyncio.run(main())
"""


def test_a_cache_in_another_process_drops_what_this_one_changes(settings: Settings) -> None:
    """Two processes on one database: a write here evicts the entry cached there, through
    LISTEN/NOTIFY, within the documented bound."""
    with MemVault(settings) as v:
        m = v.add("alice", "first wording")
        child = _child(_READER, settings.database_url)
        try:
            assert child.stdin is not None
            assert child.stdout is not None
            child.stdin.write(m.memory_id + "\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "first wording"
            child.stdin.write(m.memory_id + "\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "first wording"  # from its cache
            v.update("alice", m.memory_id, content="second wording")
            time.sleep(0.2)  # the documented bound is well under this
            child.stdin.write(m.memory_id + "\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "second wording"
            v.delete("alice", m.memory_id)
            time.sleep(0.2)
            child.stdin.write(m.memory_id + "\n")
            child.stdin.flush()
            assert child.stdout.readline().strip() == "None"
        finally:
            _, errors = child.communicate(timeout=30)
            assert child.returncode == 0, errors


def _cluster() -> tuple[str, str] | None:
    """(version, name) of the local cluster this run may stop and start, else None."""
    if shutil.which("pg_ctlcluster") is None or os.geteuid() != 0:
        return None
    if not os.path.isdir("/etc/postgresql"):
        return None
    versions = sorted(os.listdir("/etc/postgresql"))
    if not versions or "127.0.0.1" not in os.environ.get(
        "MEMVAULT_TEST_POSTGRES_URL", "postgresql://postgres@127.0.0.1:5432/test"
    ):
        return None
    return versions[-1], "main"


def _pg_ctl(action: str, cluster: tuple[str, str]) -> None:
    subprocess.run(
        [
            "pg_ctlcluster",
            "--skip-systemctl-redirect",
            *cluster,
            action,
            *(["-m", "fast"] if action == "stop" else []),
        ],
        check=True,
        timeout=120,
        capture_output=True,
    )


@pytest.mark.slow
def test_the_server_restarted_under_load(settings: Settings, postgres_db: PostgresDatabase) -> None:
    """Requests fail with UNAVAILABLE while PostgreSQL is down and succeed again after it
    is back, with no manual step; nothing acknowledged is lost."""
    cluster = _cluster()
    if cluster is None:
        pytest.skip("needs root and the local Debian cluster (pg_ctlcluster) to restart it")
    acked: list[str] = []
    errors: list[str] = []
    stop = threading.Event()
    with MemVault(settings.model_copy(update={"embedder": "none", "pg_pool_timeout_s": 2.0})) as v:

        def load() -> None:
            i = 0
            while not stop.is_set():
                i += 1
                try:
                    acked.append(v.add("load", f"memory {i}").memory_id)
                    v.search("load", "memory", k=3)
                except UnavailableError as exc:
                    errors.append(exc.code.value)
                    time.sleep(0.05)

        worker = threading.Thread(target=load)
        worker.start()
        try:
            time.sleep(1.0)
            _pg_ctl("stop", cluster)
            time.sleep(2.0)
            down = len(errors)
            assert down > 0
        finally:
            _pg_ctl("start", cluster)
        deadline = time.monotonic() + 60
        before = len(acked)
        while time.monotonic() < deadline and len(acked) < before + 20:
            time.sleep(0.2)
        stop.set()
        worker.join(timeout=60)
        assert len(acked) >= before + 20, "writes did not resume after the restart"
        assert set(errors) == {"UNAVAILABLE"}
        got = v.get_many("load", acked[-1000:])
        assert len(got) == len(acked[-1000:])
        assert v.count("load") == len(acked)


def test_a_big_users_full_text_is_selected_by_its_rarest_words(settings: Settings) -> None:
    """Past `search_lexical_budget` estimated matches, the rarest words select the rows
    and every word ranks them: the selected rows keep their exact scores, and too few
    selected rows fall back to ranking every match."""
    from memvault.models import Filters
    from memvault.storage.runner import drive

    planned = settings.model_copy(update={"embedder": "none", "search_lexical_budget": 50})
    whole = settings.model_copy(update={"embedder": "none", "search_lexical_budget": 0})
    with MemVault(planned) as v:
        v.add_many("u", [{"content": f"alpha beta common words, entry {i}"} for i in range(300)])
        v.add_many("u", [{"content": f"zanzibar alpha trip {i}"} for i in range(5)])
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            conn.execute("ANALYZE memories")
        backend = v._inner.backend  # type: ignore[attr-defined]
        now = v._inner.clock.now()  # type: ignore[attr-defined]
        words = ["zanzibar", "alpha", "common"]
        few = drive(backend.lexical("u", words, Filters(), 3, now))
        assert backend.term_stats._lexemes["zanzibar"] == "zanzibar"
        plan = drive(backend._read(lambda c: backend.term_stats.select_by(c, words, 305, 50)))
        assert plan == "'zanzibar'"
        many = drive(backend.lexical("u", words, Filters(), 20, now))
    with MemVault(whole) as w:
        wb = w._inner.backend  # type: ignore[attr-defined]
        exact = {c.pk: c.lexical for c in drive(wb.lexical("u", words, Filters(), 400, now))}
    assert len(few) == 3
    for c in few:  # selected by the rare word, scored by all three
        assert c.lexical == pytest.approx(exact[c.pk])
    assert len(many) == 20  # 5 rows hold the rare word: every match was ranked instead
    assert [c.pk for c in many] == sorted(exact, key=lambda pk: (-exact[pk], pk))[:20]


def test_stale_statistics_are_refreshed_by_the_writers(settings: Settings) -> None:
    """This server runs with autovacuum off: memvault's writers ANALYZE the memory tables
    themselves once enough rows changed, so plans do not go by an empty table's stats."""

    def analyzed() -> int:
        with psycopg.connect(settings.database_url) as conn:
            row = conn.execute(
                "SELECT analyze_count FROM pg_stat_user_tables WHERE relname = 'memories'"
            ).fetchone()
            return int(row[0]) if row else 0

    before = analyzed()
    with MemVault(settings.model_copy(update={"embedder": "none"})) as v:
        for round_ in range(3):
            for i in range(60):
                v.add("stats", f"row {round_} {i}")
            time.sleep(1.1)  # table statistics reach other sessions about once a second
    deadline = time.monotonic() + 20  # the ANALYZE runs on a thread of its own
    while analyzed() <= before and time.monotonic() < deadline:
        time.sleep(0.2)
    assert analyzed() > before


def test_first_writes_of_several_instances_at_once_build_the_hnsw_index_once(
    settings: Settings,
) -> None:
    """Every instance's first write with a vector records the embedder and makes the HNSW
    index (`CREATE INDEX CONCURRENTLY`). Two such builds at once deadlocked, and inserts
    beside them failed in pgvector: the writes below failed now and then before builds
    were taken one at a time (a process lock and an advisory try-lock)."""
    import numpy as np

    rng = np.random.default_rng(5)
    vaults = [MemVault(settings) for _ in range(6)]
    errors: list[BaseException] = []
    start = threading.Barrier(len(vaults) * 2)

    def write(vault: MemVault, n: int) -> None:
        start.wait()
        try:
            for i in range(5):
                v = rng.standard_normal(384).astype(np.float32)
                vault.add(f"user{n % 3}", f"note {n}-{i}", embedding=v / np.linalg.norm(v))
        except BaseException as exc:  # noqa: BLE001 - collected, then asserted empty
            errors.append(exc)

    try:
        threads = [threading.Thread(target=write, args=(vaults[n // 2], n)) for n in range(12)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(120)
        assert errors == []
        assert (
            sum(len(v.list_memories(f"user{u}").items) for v in vaults[:1] for u in range(3)) == 60
        )
        with psycopg.connect(settings.database_url, autocommit=True) as conn:
            names = [
                r[0]
                for r in conn.execute(
                    "SELECT indexname FROM pg_indexes WHERE tablename = 'memory_vectors'"
                ).fetchall()
            ]
        assert "ix_memory_vectors_hnsw_384" in names
    finally:
        for v in vaults:
            v.close()
