"""Each user's vectors as one numpy matrix in memory, kept in step with the database.

Why a matrix per user: every search is scoped to one user, so the exact cosine of all that
user's vectors is one matrix-vector product: 100 vectors take microseconds, 10,000 about
0.4 ms and 100,000 about 13 ms on one core (bench/bench_search.py). It is exact, so a
filter never starves it of rows (an HNSW graph with a `WHERE user_id` filter returns fewer
than k). The product runs on one BLAS thread (on 2 cores the threaded one was slower for
small matrices and under concurrent searches), except for a user with at least
`ALL_THREADS_FROM` vectors, where both cores take 100k vectors from 12 to 7 ms when the
product runs alone. A hybrid search of such a user runs the product beside its full-text
query: if that query still runs when the product starts, the product takes one thread
(`top(busy=...)`); both threads fighting the query for its core was slower
(docs/search.md, "Very large users").

A user with fewer than `CACHE_VECTORS_FROM` (256) vectors is read and not kept on its first
two searches (counted over the last `SEEN_USERS` small users searched); the third keeps its
matrix. Building a kept matrix costs fresh memory, page faults included, and did not pay
for users searched once or twice (the peer benchmark, 1,000 users x 100, 1,000 searches:
p50 / p95 1.07 / 1.27 ms keeping every user, 0.48 / 0.60 keeping none, 0.66 / 1.31 keeping
from the second search), while a user searched again and again is faster with a kept
matrix (0.26 against 0.42 ms p50 in-process; peer benchmark at 10k, ten searches a user:
0.29 against 0.47).

Coherence: `vector_blocks.seq` (SQLite, migration 0011) only grows. Before a search the
cache reads the user's largest `seq` (one index probe); if it moved, it reads only the newer
blocks, which add or replace vectors by memory. The probe is skipped while the WAL index
header (`SqliteConnections.wal_index_header`, changed by every commit of every process) is
the one read before the matrix was last brought up to date: nothing can have changed.
Vectors of memories deleted since stay in the matrix until the user is reloaded; the
search drops them when it reads the rows (deleted and expired rows are never returned), and
reloads the user when they reach a quarter of the matrix.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

try:  # one BLAS thread for the product (see above); optional
    from threadpoolctl import ThreadpoolController

    _POOL: ThreadpoolController | None = ThreadpoolController()
except ImportError:  # pragma: no cover
    _POOL = None

F32 = npt.NDArray[np.float32]
ALL_THREADS_FROM = 32_768  # rows from which every BLAS thread helps: 100k rows 12 -> 7 ms
QUERY_BLOCK = 64  # queries a product of `top_many` takes (100k rows: a 25 MB product)


def _product(matrix: F32, right: npt.NDArray[np.float32], one_thread: bool) -> F32:
    """`matrix @ right`, on one BLAS thread when `one_thread` (and threadpoolctl is there)."""
    if one_thread and _POOL is not None:
        with _POOL.limit(limits=1, user_api="blas"):
            return matrix @ right
    return matrix @ right


def encode_keys(pks: Iterable[int]) -> str:
    """A block's memory keys as stored (migration 0011): 16 hexadecimal digits each."""
    return np.array(list(pks), dtype=">i8").tobytes().hex()


def decode_keys(hex_keys: str) -> npt.NDArray[np.int64]:
    """`encode_keys` undone; 0 where an entry was marked deleted."""
    return np.frombuffer(bytes.fromhex(hex_keys), dtype=">i8").astype(np.int64)


_EMPTY: dict[int, F32] = {}  # a read-only matrix of no rows, by dimension
_NO_PKS = np.zeros(0, dtype=np.int64)
_NO_PKS.flags.writeable = False


def _empty(dimension: int) -> F32:
    empty = _EMPTY.get(dimension)
    if empty is None:
        empty = np.zeros((0, dimension), dtype=np.float32)
        empty.flags.writeable = False
        _EMPTY[dimension] = empty
    return empty


@dataclass
class UserVectors:
    dimension: int
    seq: int = 0
    pks: npt.NDArray[np.int64] = field(default_factory=lambda: _NO_PKS)
    matrix: F32 = field(default_factory=lambda: _empty(0))
    pos: dict[int, int] = field(default_factory=dict)
    stale: int = 0
    checked: bytes | None = None  # the WAL index header when last brought up to date

    def __post_init__(self) -> None:
        if self.matrix.shape[1] != self.dimension:
            self.matrix = _empty(self.dimension)

    @property
    def nbytes(self) -> int:
        return int(self.matrix.nbytes + self.pks.nbytes)

    def apply_blocks(self, blocks: Iterable[tuple[int, int, str, bytes]]) -> None:
        """Blocks of (seq, width in bytes, memory keys, vectors), in seq order: the SQLite
        layout of migration 0011 (keys as 16 hexadecimal digits each, zeros where the
        vector was deleted). A first load of live blocks takes their buffers as they are."""
        size = 4 * self.dimension
        keys: list[npt.NDArray[np.int64]] = []
        mats: list[F32] = []
        for seq, width, hex_keys, vectors in blocks:
            self.seq = max(self.seq, seq)
            if width != size or len(vectors) * 16 != len(hex_keys) * width:
                continue  # another embedder's (reindex replaces them), or not a block
            key = decode_keys(hex_keys)
            mat = np.frombuffer(vectors, dtype=np.float32).reshape(len(key), self.dimension)
            live = key != 0
            if not live.all():
                key, mat = key[live], mat[live]
            keys.append(key)
            mats.append(mat)
        if not keys:
            return
        pks = keys[0] if len(keys) == 1 else np.concatenate(keys)
        matrix = mats[0] if len(mats) == 1 else np.concatenate(mats)
        if len(self.pks) == 0 and (len(keys) == 1 or len(np.unique(pks)) == len(pks)):
            self.pks, self.matrix = pks, matrix  # read-only until a change (`_add`)
            return
        self._add(pks.tolist(), list(matrix))

    def _add(self, pks: list[int], vecs: list[F32]) -> None:
        """Add these vectors, or replace them for memories already in the matrix."""
        if not pks:
            return
        if not self.pos and len(self.pks):
            self.pos = dict(zip(self.pks.tolist(), range(len(self.pks)), strict=True))
        new_pks: list[int] = []
        new_vecs: list[F32] = []
        base = len(self.pks)
        for pk, vec in zip(pks, vecs, strict=True):
            at = self.pos.get(pk)
            if at is None:
                self.pos[pk] = base + len(new_pks)
                new_pks.append(pk)
                new_vecs.append(vec)
            elif at >= base:
                new_vecs[at - base] = vec
            else:
                if not self.matrix.flags.writeable:  # a block's buffer, as read
                    self.matrix = self.matrix.copy()
                self.matrix[at] = vec
        if new_pks:
            self.pks = np.concatenate([self.pks, np.array(new_pks, dtype=np.int64)])
            self.matrix = np.vstack([self.matrix, np.stack(new_vecs)]).astype(
                np.float32, copy=False
            )

    def top(
        self, query: F32, n: int, *, busy: Callable[[], bool] | None = None
    ) -> list[tuple[int, float]]:
        """The n most similar (memory_pk, cosine), best first. `busy()` says whether other
        work of the same search is running: if it is when the product starts, a big matrix
        is multiplied on one BLAS thread, leaving that work the other core."""
        pks, matrix = self.pks, self.matrix  # `apply_blocks` swaps both; read each once
        total = min(len(pks), len(matrix))
        if total == 0:
            return []
        matrix = matrix[:total]
        big = total >= ALL_THREADS_FROM
        sims = _product(matrix, query, (busy is not None and busy()) if big else total > 2048)
        n = min(n, total)
        if n < total:
            idx = np.argpartition(-sims, n - 1)[:n]
            idx = idx[np.argsort(-sims[idx], kind="stable")]
        else:
            idx = np.argsort(-sims, kind="stable")
        return list(zip(pks[idx].tolist(), sims[idx].tolist(), strict=True))

    def top_many(self, queries: F32, n: int) -> list[list[tuple[int, float]]]:
        """`top` for each row of `queries` (one per query), from matrix products of
        `QUERY_BLOCK` queries at a time (which bounds the product's size)."""
        pks, matrix = self.pks, self.matrix
        total = min(len(pks), len(matrix))
        if total == 0:
            return [[] for _ in range(len(queries))]
        matrix = matrix[:total]
        n = min(n, total)
        one_thread = 2048 < total < ALL_THREADS_FROM  # as `top` without other work
        out: list[list[tuple[int, float]]] = []
        for start in range(0, len(queries), QUERY_BLOCK):
            sims = _product(matrix, queries[start : start + QUERY_BLOCK].T, one_thread)
            if n < total:
                idx = np.argpartition(-sims, n - 1, axis=0)[:n]
            else:
                idx = np.broadcast_to(np.arange(total)[:, None], sims.shape)
            for j in range(sims.shape[1]):
                rows = idx[:, j]
                col = sims[rows, j]
                order = np.argsort(-col, kind="stable")
                out.append([(int(pks[rows[o]]), float(col[o])) for o in order])
        return out


class VectorCache:
    """Per-user matrices, least recently used dropped past `max_bytes`."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self._users: OrderedDict[str, UserVectors] = OrderedDict()
        self._sizes: dict[str, int] = {}
        self._total = 0
        self._lock = threading.Lock()

    def get(self, user_id: str) -> UserVectors | None:
        with self._lock:
            uv = self._users.get(user_id)
            if uv is not None:
                self._users.move_to_end(user_id)
            return uv

    def peek(self, user_id: str) -> UserVectors | None:
        """The kept matrix of `user_id`, if any, without counting a use."""
        return self._users.get(user_id)

    def put(self, user_id: str, uv: UserVectors) -> None:
        """Store (or re-measure after a change) the matrix of `user_id`."""
        with self._lock:
            self._users[user_id] = uv
            self._users.move_to_end(user_id)
            size = uv.nbytes
            self._total += size - self._sizes.get(user_id, 0)
            self._sizes[user_id] = size
            while self._total > self.max_bytes and len(self._users) > 1:
                old, _ = self._users.popitem(last=False)
                self._total -= self._sizes.pop(old, 0)

    def drop(self, user_id: str | None = None) -> None:
        with self._lock:
            if user_id is None:
                self._users.clear()
                self._sizes.clear()
                self._total = 0
            else:
                self._users.pop(user_id, None)
                self._total -= self._sizes.pop(user_id, 0)
