"""The full-text index is merged into one segment once writes pause (`fts_plan.Compactor`,
run by the checkpoint thread): on a real SQLite store, searches answer exactly as before,
no merge runs while rows keep arriving or while the writer is busy, and a store without
the index is left alone."""

from __future__ import annotations

import random
import sqlite3
import time
from pathlib import Path

import pytest

from memvault import FrozenClock, MemVault, Settings
from memvault.storage import fts_feed, fts_plan, sqlite
from memvault.storage.fts_plan import Compactor, segment_pages, worth_merging
from memvault.storage.sql import connection
from memvault.storage.sql.connection import SqliteConnections
from tests.integration.test_lexical_scores import WORDS

BACKENDS = ("sqlite",)  # FTS5's segments are SQLite's


@pytest.fixture(autouse=True)
def _feed_every_batch(monkeypatch: pytest.MonkeyPatch) -> None:
    # the writer feeds the index a batch at a time, as a store written slowly does (with
    # bulk writes, once `FEED_AFTER` rows wait): a segment each
    monkeypatch.setattr(fts_feed, "FEED_AFTER", 1)


def _fill(v: MemVault, users: int, rng: random.Random) -> None:
    for u in range(users):  # one small batch each: FTS5 writes a segment per batch
        v.add_many(
            f"user-{u:02d}",
            [
                {"content": " ".join(rng.choice(WORDS) for _ in range(rng.randint(3, 10)))}
                for _ in range(20)
            ],
        )


def _answers(v: MemVault, queries: list[tuple[str, str]]) -> list[list[tuple[str, float]]]:
    out = []
    for user, query in queries:
        hits = v.search(user, query, k=10, mode="lexical", explain=True)
        out.append([(h.memory.memory_id, (h.explain or {})["lexical"]) for h in hits])
    return out


def _db(settings: Settings) -> Path:
    return Path(settings.database_url.removeprefix("sqlite:///"))


class _Idle:
    def __init__(self, db: SqliteConnections) -> None:
        pass

    def start(self) -> None:
        pass

    def __call__(self, conn: sqlite3.Connection) -> None:
        pass


@pytest.fixture
def by_hand(monkeypatch: pytest.MonkeyPatch) -> None:
    """The store's own checkpoint thread merges nothing: the test's `Compactor` does."""
    monkeypatch.setattr(sqlite, "Compactor", _Idle)


@pytest.mark.usefixtures("by_hand")
def test_merging_changes_no_answer(
    settings: Settings, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fts_plan, "COMPACT_QUIET_S", 0.0)
    settings = settings.model_copy(update={"embedder": "none"})
    rng = random.Random(3)
    with MemVault(settings, clock=clock) as v:
        _fill(v, 40, rng)
        queries = [
            (f"user-{rng.randrange(40):02d}", " ".join(rng.sample(WORDS, 3))) for _ in range(40)
        ]
        before = _answers(v, queries)
        conn = sqlite3.connect(_db(settings), isolation_level=None, check_same_thread=False)
        pages = segment_pages(conn)
        assert len(pages) > 2
        assert worth_merging(pages)
        db = SqliteConnections(_db(settings), busy_timeout_s=5.0, synchronous="NORMAL")
        compactor = Compactor(db)
        compactor(conn)  # the first look: the index just changed, as far as it knows
        assert compactor.steps == 0
        for _ in range(50):
            compactor(conn)
            if len(segment_pages(conn)) == 1:
                break
        assert segment_pages(conn)
        assert len(segment_pages(conn)) == 1
        assert compactor.steps >= 1
        steps = compactor.steps
        compactor(conn)  # nothing left to merge: no step, no write
        assert compactor.steps == steps
        after = _answers(v, queries)
        assert [[m for m, _ in a] for a in after] == [[m for m, _ in b] for b in before]
        for a, b in zip(after, before, strict=True):
            assert [s for _, s in a] == pytest.approx([s for _, s in b], rel=1e-9)
        # a write after the merge is found as before
        made = v.add("user-00", "a kayak lesson on the lake at sunset")
        assert made.memory_id in [h.memory.memory_id for h in v.search("user-00", "kayak lake")]
        db.close()
        conn.close()
    with sqlite3.connect(_db(settings)) as plain:
        assert plain.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        plain.execute("INSERT INTO memories_fts(memories_fts) VALUES ('integrity-check')")


@pytest.mark.usefixtures("by_hand")
def test_no_merge_while_rows_arrive_or_the_writer_is_busy(
    settings: Settings, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings.model_copy(update={"embedder": "none"})
    rng = random.Random(4)
    with MemVault(settings, clock=clock) as v:
        _fill(v, 20, rng)
        conn = sqlite3.connect(_db(settings), isolation_level=None, check_same_thread=False)
        db = SqliteConnections(_db(settings), busy_timeout_s=5.0, synchronous="NORMAL")
        compactor = Compactor(db)
        compactor(conn)
        # rows keep arriving: each look finds a changed index, so it waits for quiet
        for i in range(3):
            v.add(f"user-{i:02d}", f"another garden note {i}")
            compactor(conn)
        assert compactor.steps == 0
        monkeypatch.setattr(fts_plan, "COMPACT_QUIET_S", 0.0)
        with db.write_lock:  # another thread of the process is writing: no step
            compactor(conn)
        assert compactor.steps == 0
        compactor(conn)
        assert compactor.steps >= 1
        db.close()
        conn.close()


def test_the_checkpoint_thread_merges_by_itself(
    settings: Settings, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(fts_plan, "COMPACT_QUIET_S", 0.2)
    monkeypatch.setattr(connection, "TASK_EVERY_S", 0.05)
    settings = settings.model_copy(update={"embedder": "none"})
    with MemVault(settings, clock=clock) as v:
        _fill(v, 30, random.Random(5))
        conn = sqlite3.connect(_db(settings))
        assert len(segment_pages(conn)) > 1
        deadline = time.monotonic() + 20
        while len(segment_pages(conn)) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(segment_pages(conn)) == 1
        assert len(v.search("user-01", "garden tomato", mode="lexical")) > 0
        conn.close()


def test_a_store_filled_elsewhere_is_merged_without_a_write(
    settings: Settings, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings.model_copy(update={"embedder": "none"})
    with monkeypatch.context() as during_fill:
        during_fill.setattr(sqlite, "Compactor", _Idle)
        with MemVault(settings, clock=clock) as v:
            _fill(v, 30, random.Random(6))
    conn = sqlite3.connect(_db(settings))
    assert len(segment_pages(conn)) > 1
    monkeypatch.setattr(fts_plan, "COMPACT_QUIET_S", 0.2)
    monkeypatch.setattr(connection, "TASK_EVERY_S", 0.05)
    with MemVault(settings, clock=clock) as v:  # reads only: access counts wait 30 s
        assert v.search("user-02", "garden", mode="lexical") is not None
        deadline = time.monotonic() + 20
        while len(segment_pages(conn)) > 1 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert len(segment_pages(conn)) == 1
    conn.close()


def test_a_store_without_the_index_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "plain.db"
    db = SqliteConnections(path, busy_timeout_s=5.0, synchronous="NORMAL")
    db.write(lambda c: c.execute("CREATE TABLE t (id INTEGER PRIMARY KEY)"))
    conn = sqlite3.connect(path, isolation_level=None)
    compactor = Compactor(db)
    compactor.start()  # no memories_fts: nothing raised
    compactor(conn)  # merges turn off, nothing raised
    compactor(conn)
    assert compactor.steps == 0
    db.close()
    conn.close()


def test_worth_merging_by_size() -> None:
    assert not worth_merging([])
    assert not worth_merging([500])
    assert not worth_merging([160, 9])  # the others hold under 1/16 of the largest
    assert worth_merging([160, 10])
    assert worth_merging([3, 2, 1])
