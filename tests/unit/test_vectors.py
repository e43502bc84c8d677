"""The per-user vector matrix: bulk load, incremental adds and replacements, exact top-k."""

from __future__ import annotations

import numpy as np
import pytest

from memvault.storage import vectors
from memvault.storage.vectors import UserVectors, VectorCache


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    m = rng.standard_normal((n, d)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def _block(seq: int, pks: list[int], m: np.ndarray) -> tuple[int, int, str, bytes]:
    keys = "".join(f"{pk:016x}" for pk in pks)
    return seq, 4 * m.shape[1], keys, m.astype(np.float32).tobytes()


def test_bulk_then_incremental_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    m = _unit(rng, 50, 8)
    uv = UserVectors(8)
    uv.apply_blocks([_block(40, [100 + i for i in range(40)], m[:40])])
    assert uv.seq == 40
    # new rows, a replaced row (pk 105), a block of another dimension (ignored)
    repl = _unit(rng, 1, 8)[0]
    uv.apply_blocks(
        [
            _block(42, [140, 105], np.stack([m[40], repl])),
            (43, 12, f"{141:016x}", b"\0" * 12),
            _block(52, [141 + i for i in range(9)], m[41:50]),
        ]
    )
    assert uv.seq == 52
    want = {100 + i: m[i] for i in range(40)} | {140: m[40], 105: repl}
    want |= {141 + i: m[41 + i] for i in range(9)}
    assert sorted(uv.pks.tolist()) == sorted(want)
    q = _unit(rng, 1, 8)[0]
    exact = sorted(want, key=lambda pk: -float(want[pk] @ q))[:5]
    assert [pk for pk, _ in uv.top(q, 5)] == exact
    assert len(uv.top(q, 500)) == len(want)


def test_cache_drops_least_recent_users_past_its_budget() -> None:
    cache = VectorCache(max_bytes=2 * (10 * 4 * 4 + 10 * 8))
    for name in ("a", "b", "c"):
        uv = UserVectors(4)
        uv.apply_blocks([_block(10, list(range(1, 11)), np.ones((10, 4), dtype=np.float32))])
        cache.put(name, uv)
    assert cache.get("a") is None
    assert cache.get("b") is not None
    assert cache.get("c") is not None


def test_a_big_matrix_asks_once_whether_other_work_runs(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """A matrix of at least ALL_THREADS_FROM rows asks `busy()` once, when its product
    starts (one thread if the keyword ranking still runs, every thread if not); a smaller
    one never asks. The ranking is the same either way."""
    monkeypatch.setattr(vectors, "ALL_THREADS_FROM", 64)
    rng = np.random.default_rng(5)
    m = _unit(rng, 100, 8)
    uv = UserVectors(8)
    uv.apply_blocks([_block(100, [1000 + i for i in range(100)], m)])
    q = _unit(rng, 1, 8)[0]
    sims = m @ q
    exact = [1000 + int(i) for i in np.argsort(-sims, kind="stable")[:7]]
    for answer in (True, False):
        asked: list[bool] = []

        def busy(answer: bool = answer, asked: list[bool] = asked) -> bool:
            asked.append(answer)
            return answer

        got = uv.top(q, 7, busy=busy)
        assert [pk for pk, _ in got] == exact
        assert [s for _, s in got] == pytest.approx([float(sims[pk - 1000]) for pk in exact])
        assert asked == [answer]
    small = UserVectors(8)
    small.apply_blocks([_block(63, list(range(1, 64)), m[:63])])
    small.top(q, 3, busy=lambda: pytest.fail("asked"))


@pytest.mark.parametrize("rows", [0, 5, 300])
def test_top_many_gives_each_query_what_top_gives_it(
    rows: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = np.random.default_rng(11)
    m = _unit(rng, rows, 16)
    uv = UserVectors(16)
    uv.apply_blocks([_block(rows, [500 + i for i in range(rows)], m)])
    queries = _unit(rng, 7, 16)
    monkeypatch.setattr(vectors, "QUERY_BLOCK", 3)  # several products, the last one short
    for n in (1, 8, 400):
        many = uv.top_many(queries, n)
        assert len(many) == len(queries)
        for q, got in zip(queries, many, strict=True):
            want = uv.top(q, n)
            assert [pk for pk, _ in got] == [pk for pk, _ in want]
            assert [s for _, s in got] == pytest.approx([s for _, s in want], abs=1e-6)


def test_blocks_load_skip_marked_entries_and_replace_by_later_blocks() -> None:
    """SQLite's blocks (migration 0011): a marked entry (key 0) is not loaded, a later
    block's vector replaces an earlier one of the same memory, a block of another width or
    whose lengths disagree is skipped; a first load's buffer is replaced copy-on-write."""
    rng = np.random.default_rng(5)
    m = _unit(rng, 12, 8)
    uv = UserVectors(8)
    uv.apply_blocks(
        [
            _block(3, [10, 0, 12, 13], m[0:4]),  # the second entry was deleted
            _block(7, [12, 14], m[4:6]),  # 12 replaced
            (8, 16, "000000000000000f", b"\0" * 16),  # another embedder's (4 dimensions)
            (9, 32, "0000000000000010", b"\0" * 8),  # lengths disagree
        ]
    )
    assert uv.seq == 9
    got = dict(zip(uv.pks.tolist(), uv.matrix, strict=True))
    assert sorted(got) == [10, 12, 13, 14]
    assert got[12].tobytes() == m[4].tobytes()
    assert got[10].tobytes() == m[0].tobytes()
    single = UserVectors(8)
    single.apply_blocks([_block(4, [20, 21, 23], m[6:9])])
    assert not single.matrix.flags.writeable  # the block's own buffer, not copied
    single.apply_blocks([_block(5, [21, 22], m[9:11])])  # replaces 21, adds 22
    got = dict(zip(single.pks.tolist(), single.matrix, strict=True))
    want = {20: m[6], 21: m[9], 22: m[10], 23: m[8]}
    assert sorted(got) == sorted(want)
    assert all(got[pk].tobytes() == want[pk].tobytes() for pk in want)
    q = _unit(rng, 1, 8)[0]
    assert [pk for pk, _ in single.top(q, 4)] == sorted(got, key=lambda pk: -float(got[pk] @ q))


def test_a_checked_query_vector_is_the_same_row_when_unit_and_normalised_otherwise() -> None:
    from memvault.embed import check_vector
    from memvault.errors import InvalidArgumentError

    rng = np.random.default_rng(3)
    unit = _unit(rng, 1, 384)[0]
    assert check_vector(unit, 384) is unit  # the usual case: taken as it is
    near = unit * np.float32(1.0 + 3e-5)  # inside the tolerance: kept as given
    assert check_vector(near, 384) is near
    for scale in (1.001, 0.5, 7.0, 1e30):  # off unit length, or past float32's squares
        got = check_vector(unit * np.float32(scale), 384)
        assert abs(float(np.linalg.norm(got.astype(np.float64))) - 1.0) < 1e-5
        assert float(got @ unit) > 0.9999
    assert abs(float(np.linalg.norm(check_vector(unit.tolist(), 384))) - 1.0) < 1e-5
    bad = [np.zeros(384, np.float32), np.full(384, np.nan, np.float32), unit.copy()]
    bad[2][5] = np.inf
    for v in bad:
        with pytest.raises(InvalidArgumentError):
            check_vector(v, 384)
    with pytest.raises(InvalidArgumentError):
        check_vector(unit[:100], 384)
