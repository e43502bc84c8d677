"""The per-user vector matrix: bulk load, incremental adds and replacements, exact top-k."""

from __future__ import annotations

import numpy as np

from memvault.storage.vectors import UserVectors, VectorCache


def _unit(rng: np.random.Generator, n: int, d: int) -> np.ndarray:
    m = rng.standard_normal((n, d)).astype(np.float32)
    return m / np.linalg.norm(m, axis=1, keepdims=True)


def test_bulk_then_incremental_matches_brute_force() -> None:
    rng = np.random.default_rng(3)
    m = _unit(rng, 50, 8)
    uv = UserVectors(8)
    uv.apply((i + 1, 100 + i, m[i].tobytes()) for i in range(40))
    assert uv.seq == 40
    # new rows, a replaced row (pk 105), a row of another dimension (ignored)
    repl = _unit(rng, 1, 8)[0]
    uv.apply(
        [(41, 140, m[40].tobytes()), (42, 105, repl.tobytes()), (43, 141, b"\0" * 12)]
        + [(44 + i, 141 + i, m[41 + i].tobytes()) for i in range(9)]
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
        uv.apply((i + 1, i, np.ones(4, dtype=np.float32).tobytes()) for i in range(10))
        cache.put(name, uv)
    assert cache.get("a") is None
    assert cache.get("b") is not None
    assert cache.get("c") is not None
