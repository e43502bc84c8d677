"""SQLite keeps vectors a batch to a block (migration 0011): what the blocks hold after
writes, replacements, deletions and erasures, and that a new instance reads the same."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from memvault import FrozenClock, MemVault, Settings
from memvault.storage.runner import drive


def _db(settings: Settings) -> Iterator[sqlite3.Connection]:
    conn = sqlite3.connect(settings.database_url.removeprefix("sqlite:///"))
    try:
        yield conn
    finally:
        conn.close()


def _rows(settings: Settings, sql: str, *args: object) -> list[tuple[object, ...]]:
    for conn in _db(settings):
        return conn.execute(sql, args).fetchall()
    raise AssertionError("unreachable")


def _units(n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    v = rng.standard_normal((n, 384)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def _order(vault: MemVault, user: str, q: np.ndarray, k: int = 100) -> list[str]:
    hits = vault.search(user, "x", mode="vector", k=k, query_vector=q)
    return [h.memory.memory_id for h in hits]


def test_a_batch_is_one_block_that_a_new_instance_reads_alike(
    settings: Settings, clock: FrozenClock
) -> None:
    vecs = _units(80, 1)
    with MemVault(settings, clock=clock) as vault:
        alice = vault.add_many(
            "alice", [{"content": f"a{i}", "embedding": vecs[i]} for i in range(50)]
        )
        vault.add_many("bob", [{"content": f"b{i}", "embedding": vecs[50 + i]} for i in range(30)])
        first = _order(vault, "alice", vecs[7])
    assert first[0] == alice[7].memory_id
    assert len(first) == 50
    blocks = _rows(settings, "SELECT user_id, width, length(pks) FROM vector_blocks ORDER BY seq")
    assert blocks == [("alice", 1536, 50 * 16), ("bob", 1536, 30 * 16)]
    by_memory = dict(
        _rows(
            settings,
            "SELECT m.memory_id, v.vector FROM memory_vectors v JOIN memories m "
            "ON m.pk = v.memory_pk WHERE m.user_id = 'alice'",
        )
    )
    for i, m in enumerate(alice):
        assert by_memory[m.memory_id] == vecs[i].tobytes()
    with MemVault(settings, clock=clock) as again:  # reads the block, nothing kept
        assert _order(again, "alice", vecs[7]) == first


def test_replaced_and_deleted_vectors_leave_their_block(
    settings: Settings, clock: FrozenClock
) -> None:
    vecs = _units(8, 2)
    with MemVault(settings, clock=clock) as vault:
        made = vault.add_many(
            "alice", [{"content": f"note {i}", "embedding": vecs[i]} for i in range(6)]
        )
        alone = vault.add("alice", "on its own", embedding=vecs[6])
        # New content: the memory is embedded again, its old entry is marked deleted.
        vault.update("alice", made[1].memory_id, content="something else entirely")
        vault.delete("alice", made[2].memory_id)
        vault.delete("alice", alone.memory_id)
        clock.advance(days=400)
        vault.purge()  # past the retention: rows gone for good, their slots cascade
        keys = _rows(settings, "SELECT pks FROM vector_blocks ORDER BY seq")
        assert len(keys) == 2  # the batch and the new vector; the lone block went with its row
        first = str(keys[0][0])
        entries = [first[i : i + 16] for i in range(0, len(first), 16)]
        assert entries[1] == entries[2] == "0" * 16
        assert all(e != "0" * 16 for i, e in enumerate(entries) if i not in (1, 2))
        live = {m.memory_id for i, m in enumerate(made) if i != 2}
    pks = dict(_rows(settings, "SELECT memory_id, pk FROM memories"))
    with MemVault(settings, clock=clock) as again:
        found = again.search("alice", "x", mode="vector", k=100, query_vector=vecs[1])
        assert {h.memory.memory_id for h in found} == live
        backend = again._inner.backend  # the matrix a new instance reads from the blocks
        uv = drive(backend._read(lambda conn: backend._user_vectors(conn, "alice", 384)))
        rows = dict(zip(uv.pks.tolist(), uv.matrix, strict=True))
        assert set(rows) == {pks[m] for m in live}
        for i in (0, 3, 4, 5):
            assert rows[pks[made[i].memory_id]].tobytes() == vecs[i].tobytes()
        changed = rows[pks[made[1].memory_id]]  # the model's vector of the new text
        assert float(changed @ vecs[1]) < 0.5
        assert abs(float(np.linalg.norm(changed)) - 1.0) < 1e-4


def test_erasing_a_user_and_switching_embedders_drop_blocks(
    settings: Settings, clock: FrozenClock
) -> None:
    vecs = _units(20, 3)
    with MemVault(settings, clock=clock) as vault:
        for user in ("alice", "bob"):
            vault.add_many(user, [{"content": f"n{i}", "embedding": vecs[i]} for i in range(10)])
        vault.erase_user("alice")
        assert _rows(settings, "SELECT DISTINCT user_id FROM vector_blocks") == [("bob",)]
        assert _rows(settings, "SELECT count(*) FROM vector_slots") == [(10,)]
        backend = vault._inner.backend
        assert drive(backend.set_vector_model("other-model", 8, clock.now())) is True
    assert _rows(settings, "SELECT count(*) FROM vector_blocks") == [(0,)]
    assert _rows(settings, "SELECT count(*) FROM vector_data") == [(0,)]
    assert _rows(settings, "SELECT count(*) FROM vector_slots") == [(0,)]


def test_one_vector_written_through_the_view_is_a_block_of_one(
    settings: Settings, tmp_path: Path, clock: FrozenClock
) -> None:
    """Writers of single rows (the JSON-file store's loads, transfers, backups) insert into
    `memory_vectors` as before; the view's trigger makes each a block."""
    vecs = _units(3, 4)
    with MemVault(settings, clock=clock) as vault:
        made = vault.add_many("alice", [{"content": f"n{i}"} for i in range(3)])
    for conn in _db(settings):
        conn.execute("PRAGMA foreign_keys=ON")
        pks = dict(conn.execute("SELECT memory_id, pk FROM memories").fetchall())
        conn.execute("DELETE FROM memory_vectors")  # the embedder's own, written on add
        conn.executemany(
            "INSERT INTO memory_vectors (seq, memory_pk, user_id, vector) VALUES (?, ?, ?, ?)",
            [(100 + i, pks[m.memory_id], "alice", vecs[i].tobytes()) for i, m in enumerate(made)],
        )
        conn.commit()
        rows = conn.execute(
            "SELECT seq, user_id, vector FROM memory_vectors ORDER BY seq"
        ).fetchall()
        assert rows == [(100 + i, "alice", vecs[i].tobytes()) for i in range(3)]
        assert conn.execute("SELECT count(*) FROM vector_blocks").fetchone() == (3,)
    with MemVault(settings, clock=clock) as again:
        assert _order(again, "alice", vecs[2], k=3)[0] == made[2].memory_id


@pytest.fixture
def settings(tmp_path: Path) -> Settings:  # one backend: the SQLite file
    return Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'mv.db'}")


def test_vectors_written_one_at_a_time_end_up_in_few_blocks(
    settings: Settings, clock: FrozenClock
) -> None:
    """Every eighth small block written for a user, its eight newest small blocks become one
    (`sqlite._merge_tail`): a chat's memories, written one by one, are read a few blocks at
    a time, with the vectors they had; an entry deleted before a merge is left behind."""
    vecs = _units(60, 5)
    with MemVault(settings, clock=clock) as vault:
        made = [vault.add("alice", f"turn {i}", embedding=vecs[i]) for i in range(60)]
        vault.delete("alice", made[3].memory_id)
        vault.update("alice", made[5].memory_id, content="turn five, said again")  # new vector
        vault.add("bob", "bob's own", embedding=vecs[0])
        sizes = [
            int(str(k)) // 16
            for (k,) in _rows(
                settings, "SELECT length(pks) FROM vector_blocks WHERE user_id = 'alice'"
            )
        ]
        assert sum(sizes) >= 60
        assert len(sizes) <= 12  # instead of 61
        assert max(sizes) <= 24
    pks = dict(_rows(settings, "SELECT memory_id, pk FROM memories"))
    with MemVault(settings, clock=clock) as again:
        backend = again._inner.backend
        uv = drive(backend._read(lambda conn: backend._user_vectors(conn, "alice", 384)))
        rows = dict(zip(uv.pks.tolist(), uv.matrix, strict=True))
        assert set(rows) == {pks[m.memory_id] for m in made}  # soft-deleted: still stored
        for i, m in enumerate(made):
            if i != 5:
                assert rows[pks[m.memory_id]].tobytes() == vecs[i].tobytes()
        assert float(rows[pks[made[5].memory_id]] @ vecs[5]) < 0.5
        hits = again.search("alice", "x", mode="vector", k=3, query_vector=vecs[41])
        assert hits[0].memory.memory_id == made[41].memory_id
    slots = _rows(
        settings,
        "SELECT count(*) FROM vector_slots s JOIN vector_blocks b ON b.seq = s.block "
        "WHERE substr(b.pks, s.slot * 16 + 1, 16) = printf('%016x', s.memory_pk)",
    )
    assert slots == [(61,)]  # every slot names its own entry: alice's 60 and bob's
    assert _rows(settings, "SELECT count(*) FROM vector_slots") == [(61,)]


def test_purge_rewrites_blocks_that_are_half_gone(settings: Settings, clock: FrozenClock) -> None:
    vecs = _units(10, 6)
    with MemVault(settings, clock=clock) as vault:
        made = vault.add_many(
            "alice", [{"content": f"n{i}", "embedding": vecs[i]} for i in range(10)]
        )
        for i in range(4):  # four vectors replaced, one memory purged: half the block
            vault.update("alice", made[i].memory_id, content=f"changed {i}")
        vault.delete("alice", made[9].memory_id)
        first = _rows(settings, "SELECT seq, pks FROM vector_blocks ORDER BY seq")[0]
        assert str(first[1]).count("0" * 16) == 4
        clock.advance(days=400)
        vault.purge()
        keys = [str(k) for (k,) in _rows(settings, "SELECT pks FROM vector_blocks")]
        assert first[0] not in {s for (s,) in _rows(settings, "SELECT seq FROM vector_blocks")}
        assert all("0" * 16 not in [k[i : i + 16] for i in range(0, len(k), 16)] for k in keys)
        assert sum(len(k) // 16 for k in keys) == 9  # five kept and four new
    pks = dict(_rows(settings, "SELECT memory_id, pk FROM memories"))
    with MemVault(settings, clock=clock) as again:
        backend = again._inner.backend
        uv = drive(backend._read(lambda conn: backend._user_vectors(conn, "alice", 384)))
        rows = dict(zip(uv.pks.tolist(), uv.matrix, strict=True))
        assert set(rows) == {pks[m.memory_id] for m in made[:9]}
        for i in range(4, 9):
            assert rows[pks[made[i].memory_id]].tobytes() == vecs[i].tobytes()


def test_a_batch_after_purged_newest_rows_keeps_its_own_vectors(
    settings: Settings, clock: FrozenClock
) -> None:
    # the writer gives a batch's rows the keys after the largest one (SQLite's rule), also
    # when the newest rows were purged and their keys are taken again
    vecs = _units(30, 3)
    with MemVault(settings, clock=clock) as vault:
        vault.add_many("alice", [{"content": f"a{i}", "embedding": vecs[i]} for i in range(10)])
        newest = vault.add_many(
            "alice", [{"content": f"b{i}", "embedding": vecs[10 + i]} for i in range(10)]
        )
        top = _rows(settings, "SELECT max(pk) FROM memories")[0][0]
        for m in newest:
            vault.delete("alice", m.memory_id)
        clock.advance(days=settings.soft_delete_retention_days + 1)
        vault.purge()
        made = vault.add_many(
            "bob", [{"content": f"c{i}", "embedding": vecs[20 + i]} for i in range(10)]
        )
        assert _rows(settings, "SELECT max(pk) FROM memories")[0][0] == top  # keys reused
        for i, m in enumerate(made):
            assert _order(vault, "bob", vecs[20 + i], k=1) == [m.memory_id]
        stored = dict(
            _rows(
                settings,
                "SELECT m.memory_id, v.vector FROM memory_vectors v JOIN memories m "
                "ON m.pk = v.memory_pk WHERE m.user_id = 'bob'",
            )
        )
        for i, m in enumerate(made):
            assert stored[m.memory_id] == vecs[20 + i].tobytes()


def test_a_kept_matrix_is_probed_again_only_after_a_commit(
    settings: Settings, clock: FrozenClock
) -> None:
    # Before each search of a kept matrix the cache asks for the user's newest block; it
    # skips the question while the WAL index header says nobody has committed since, and
    # asks again (and sees the new vector) after any commit, another instance's included.
    probe = "SELECT max(seq) FROM vector_blocks"
    vecs = _units(40, 5)
    with MemVault(settings, clock=clock) as one, MemVault(settings, clock=clock) as two:
        one.add_many("ann", [{"content": f"n{i}", "embedding": v} for i, v in enumerate(vecs)])
        for _ in range(3):  # kept from the third search on (vectors.py)
            assert _order(one, "ann", vecs[7], k=1) == [_order(one, "ann", vecs[7], k=2)[0]]
        said: list[str] = []
        for conn in one._inner.backend.db._all:  # the writer and this thread's reader
            conn.set_trace_callback(said.append)
        for _ in range(3):
            _order(one, "ann", vecs[7], k=1)
        assert not [s for s in said if s.startswith(probe)]
        added = two.add("ann", "from the other instance", embedding=_units(1, 9)[0])
        assert _order(one, "ann", _units(1, 9)[0], k=1) == [added.memory_id]
        assert [s for s in said if s.startswith(probe)]
        said.clear()
        _order(one, "ann", vecs[7], k=1)
        assert not [s for s in said if s.startswith(probe)]
