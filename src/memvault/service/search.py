"""Search and everything vectors need: embedding on write, dedup, hybrid search, reindex.

Writes: new memories are embedded in one batch before the write transaction (off the event
loop in the async service). When the embedder cannot answer (a remote endpoint down), the
memories are stored without vectors, stay searchable by keyword, and get their vectors from
`reindex(missing=True)` (`memvault reindex --missing`) or the next write that can embed.

Search: the lexical ranking (BM25 over content, tags and neighbour context) and the vector
ranking (exact cosine over the user's vectors) are fused by score and adjusted by
importance, recency and access (`memvault.search.scoring`, docs/search.md).
"""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable, Coroutine, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any, Literal, TypeVar

import numpy as np

from memvault import limits
from memvault.embed import Embedder, QueryCache, Vectors, check_vector, check_vectors
from memvault.errors import InvalidArgumentError, UnavailableError
from memvault.models import Filters, Memory, SearchHit, VectorLike, construct, content_text
from memvault.search.scoring import Weights, named, rank, relevance
from memvault.search.text import WORD_RE, query_terms, without_words
from memvault.service import validate
from memvault.service.memories import MemoryOps
from memvault.storage.base import Candidate, Change, Merge
from memvault.storage.runner import drive

if TYPE_CHECKING:
    from memvault.config import Settings

log = logging.getLogger("memvault.search")
T = TypeVar("T")
Mode = Literal["hybrid", "lexical", "vector"]
_MODES = ("hybrid", "lexical", "vector")
GAP_FILL = 256
CANDIDATES = 100  # per ranking, before fusion (LoCoMo dev recall@10: 50 -> 100, +0.006)
DIALOGUE_CHARS = 400  # about 60 words: memories longer than this stand alone
NEIGHBOUR_SOURCES = 20  # best conversation candidates whose neighbours share their score
# A user with this many kept vectors gets its vector ranking beside its keyword ranking
# (the product alone takes milliseconds there; below, a thread hop costs more than it saves).
BESIDE_FROM = 16_384


def _not_set(event: threading.Event) -> bool:
    return not event.is_set()


class Offload:
    """Where CPU-heavy work (embedding) runs: inline for the blocking library, on a worker
    thread for the async service (set by the client).

    `start` begins work that overlaps what the caller does next (a query embedding while
    the full-text query runs: both release the GIL) and `finish` collects it."""

    _pool: ThreadPoolExecutor | None = None
    _pool_lock = threading.Lock()

    async def run(self, fn: Callable[..., T], *args: Any) -> T:
        return fn(*args)

    def start(self, fn: Callable[..., T], *args: Any) -> Any:
        with Offload._pool_lock:
            if Offload._pool is None:
                Offload._pool = ThreadPoolExecutor(2, thread_name_prefix="memvault-embed")
        return Offload._pool.submit(fn, *args)

    async def finish(self, started: Any) -> Any:
        return started.result()  # the blocking library: waiting here is what the caller does

    _side: ThreadPoolExecutor | None = None

    def spawn(self, fn: Callable[..., Coroutine[Any, Any, T]], *args: Any) -> Any:
        """Run the coroutine `fn(*args)` beside the caller (collected by `join`). The
        blocking library's coroutines never suspend: it runs to the end on a thread of its
        own pool (not the embedding pool, whose work it may wait for)."""
        with Offload._pool_lock:
            if Offload._side is None:
                Offload._side = ThreadPoolExecutor(4, thread_name_prefix="memvault-side")
        return Offload._side.submit(lambda: drive(fn(*args)))

    async def join(self, started: Any) -> Any:
        return started.result()


@dataclass
class ReindexReport:
    embedded: int = 0
    skipped: int = 0
    lexical_rows: int = 0
    model: str | None = None
    switched: bool = False


class SearchOps(MemoryOps):
    """Search calls of the service. Concrete class: `memvault.client.AsyncMemVault`."""

    embedder: Embedder | None
    offload: Offload
    query_cache: QueryCache | None
    _vectors_state: str | None = None  # None: not checked; "ok"; "mismatch"
    _gaps: bool = False  # an embedding failed since the last fill: some memories lack vectors
    _weights_of: tuple[Settings, Weights] | None = None

    # ------------------------------------------------------------------ vectors
    def _weights(self) -> Weights:
        s = self.settings  # frozen: its weights are worked out once
        known = self._weights_of
        if known is not None and known[0] is s:
            return known[1]
        weights = Weights(
            lexical=s.search_weight_lexical,
            vector=s.search_weight_vector,
            neighbours=s.search_weight_neighbours,
            importance=s.search_weight_importance,
            recency=s.search_weight_recency,
            access=s.search_weight_access,
            assistant=s.search_weight_assistant,
            speaker=s.search_weight_speaker,
            recency_half_life_days=s.recency_half_life_days,
        )
        self._weights_of = (s, weights)
        return weights

    async def _vectors_usable(self) -> bool:
        """True when the configured embedder is the one the stored vectors come from (it is
        recorded on first use). Another one leaves vectors off until `reindex`."""
        if self.embedder is None or not self.backend.capabilities.vector:
            return False
        if self._vectors_state is None:
            stored = await self.backend.vector_model()
            mine = (self.embedder.name, self.embedder.dimension)
            if stored is None:
                await self.backend.set_vector_model(*mine, self.clock.now())
                self._vectors_state = "ok"
            elif stored == mine:
                self._vectors_state = "ok"
            else:
                log.warning(
                    "stored vectors come from %s (%d dims), the embedder is %s (%d dims): "
                    "vector search is off until `memvault reindex`",
                    *stored,
                    *mine,
                )
                self._vectors_state = "mismatch"
        return self._vectors_state == "ok"

    async def _embed(self, texts: Sequence[str]) -> Vectors | None:
        if not texts or self.embedder is None:
            return None
        try:
            return await self.offload.run(self.embedder.embed, list(texts))
        except UnavailableError as exc:
            log.warning("embedding %d texts failed (%s); stored without vectors", len(texts), exc)
            self._gaps = True
            return None

    async def _fill_gaps(self) -> None:
        """After an embedding failure, the next writes that can embed also give up to
        `GAP_FILL` memories without a vector theirs (the rest: `reindex --missing`)."""
        if not self._gaps or self.embedder is None:
            return
        rows = await self.backend.missing_vectors(0, GAP_FILL, None)
        if not rows:
            self._gaps = False
            return
        if await self._embed_rows(rows) is None:
            return
        if len(rows) < GAP_FILL:
            self._gaps = False

    async def _embed_rows(self, rows: list[tuple[int, str, str, str]]) -> int | None:
        """Embed rows of `backend.missing_vectors` and store their vectors; how many were
        stored, or None when the embedder cannot answer now."""
        vecs = await self._embed([r[3] for r in rows])
        if vecs is None:
            return None
        by_user: dict[str, list[tuple[str, bytes]]] = {}
        for row, vec in zip(rows, vecs, strict=True):
            by_user.setdefault(row[1], []).append((row[2], vec.tobytes()))
        done = 0
        for owner, items in by_user.items():
            done += await self.backend.put_vectors(owner, items)
        return done

    async def _store_new(
        self,
        user_id: str,
        built: list[Memory],
        change: Change,
        now: datetime,
        given: Sequence[Any] | None = None,
    ) -> list[Memory]:
        vecs = await self._vectors_for(built, given)
        plan: dict[int, Merge | int] = {}
        if self.settings.dedup != "off":
            plan = await self._dedup(user_id, built, vecs, now, change.actor)
        fresh = [i for i in range(len(built)) if i not in plan]
        blobs: list[bytes | None] | None = None
        if vecs is not None:
            blobs = [v.tobytes() if (v := vecs[i]) is not None else None for i in fresh]
        merges = [m for m in plan.values() if isinstance(m, Merge)]
        done = await self.backend.insert_memories(
            [built[i] for i in fresh], change, now, blobs, merges
        )
        by_index = dict(zip(fresh, done[: len(fresh)], strict=True))
        merged = iter(done[len(fresh) :])
        for i, step in sorted(plan.items()):
            if isinstance(step, Merge):
                by_index[i] = next(merged)
        for i, step in plan.items():
            if not isinstance(step, Merge):
                by_index[i] = by_index[step]  # a repeat of an earlier item of this batch
        if self._gaps and vecs is not None and any(v is not None for v in vecs):
            await self._fill_gaps()
        return [by_index[i] for i in range(len(built))]

    async def _vectors_for(
        self, built: list[Memory], given: Sequence[Any] | None
    ) -> list[Vectors | None] | None:
        """One vector (or None) per new memory: the caller's `embedding` where given
        (checked against the embedder's dimension), the embedder's for the others. None
        for all when vectors are off; None for those the embedder could not do now
        (`reindex --missing` fills them)."""
        has_given = given is not None and any(g is not None for g in given)
        if not await self._vectors_usable():
            if has_given:
                raise InvalidArgumentError(
                    "embedding given, but this store keeps no vectors of a matching embedder "
                    "(set MEMVAULT_EMBEDDER, or run `memvault reindex`)"
                )
            return None
        assert self.embedder is not None
        out: list[Vectors | None] = [None] * len(built)
        todo = list(range(len(built)))
        if given is not None and has_given:
            todo = [i for i, g in enumerate(given) if g is None]
            at = [i for i, g in enumerate(given) if g is not None]
            try:
                checked = check_vectors([given[i] for i in at], self.embedder.dimension)
            except InvalidArgumentError as exc:
                exc.details["index"] = at[exc.details.get("index", 0)]  # in the whole batch
                raise
            for i, row in zip(at, checked, strict=True):
                out[i] = row
        if todo:
            vecs = await self._embed([content_text(built[i].content) for i in todo])
            if vecs is not None:
                for i, v in zip(todo, vecs, strict=True):
                    out[i] = v
        return out

    async def _dedup(
        self,
        user_id: str,
        built: list[Memory],
        vecs: list[Vectors | None] | None,
        now: datetime,
        actor: str | None,
    ) -> dict[int, Merge | int]:
        """Which new memories repeat a live one of the same user and namespace (same text
        after case and space folding, or cosine at or above `dedup_threshold`): each becomes
        a `Merge` into it (a history row 'merge' with the reason; `revert` undoes it). A
        repeat of an earlier item of the same batch is folded into that item (its index).
        Only memories without an explicit key take part (a key says "this slot")."""
        from memvault.storage.sql.codec import content_hash

        plan: dict[int, Merge | int] = {}
        first: dict[tuple[str, str], int] = {}
        todo: list[tuple[int, str]] = []  # (index, content hash) to look up in the store
        for i, m in enumerate(built):
            eligible = self.settings.dedup == "all" or m.memory_type == "fact"
            if not eligible or m.key != m.memory_id:
                continue
            digest = content_hash(m.content)
            earlier = first.get((m.namespace, digest))
            if earlier is not None and earlier not in plan:
                built[earlier] = _merged(built[earlier], new=m, now=None)
                plan[i] = earlier
                continue
            first.setdefault((m.namespace, digest), i)
            todo.append((i, digest))
        if not todo:
            return plan
        # One read for every exact repeat, one product for every near one (a batch of
        # facts made two reads a memory before).
        stored = await self.backend.find_by_hashes(
            user_id, [(built[i].namespace, d) for i, d in todo], now
        )
        found: dict[int, tuple[Memory, str]] = {}
        by_namespace: dict[str, list[int]] = {}
        for i, digest in todo:
            same = stored.get((built[i].namespace, digest))
            if same is not None:
                found[i] = (same, "same text")
            elif vecs is not None and vecs[i] is not None:
                by_namespace.setdefault(built[i].namespace, []).append(i)
        threshold = self.settings.dedup_threshold
        for namespace, idx in by_namespace.items():
            assert vecs is not None
            near = await self.backend.nearest(
                user_id, [vecs[i] for i in idx], Filters(namespaces=[namespace]), now, threshold
            )
            hits = {i: c for i, c in zip(idx, near, strict=True) if c is not None}
            if not hits:
                continue
            rows = await self.backend.hits(
                user_id, sorted({c.pk for c in hits.values()}), now, count_access=False
            )
            for i, c in hits.items():
                row = rows.get(c.pk)
                if row is not None:
                    found[i] = (row, f"cosine {c.vector:.3f}")
        for i, (same, reason) in sorted(found.items()):
            m = built[i]
            vec = None if vecs is None else vecs[i]
            new_vec = None
            if vec is not None and content_text(m.content) != content_text(same.content):
                new_vec = vec.tobytes()
            plan[i] = Merge(
                user_id,
                same.memory_id,
                functools.partial(_merged, new=m, now=now),
                Change("merge", actor, f"near-duplicate write ({reason})"),
                new_vec,
            )
        return plan

    async def _content_changed(self, user_id: str, memories: list[Memory]) -> None:
        if not memories or not await self._vectors_usable():
            return
        vecs = await self._embed([content_text(m.content) for m in memories])
        if vecs is not None:
            await self.backend.put_vectors(
                user_id, [(m.memory_id, v.tobytes()) for m, v in zip(memories, vecs, strict=True)]
            )

    # ------------------------------------------------------------------ search
    async def search(
        self,
        user_id: str,
        query: str,
        *,
        k: int = 10,
        filters: Filters | Mapping[str, Any] | None = None,
        memory_types: Sequence[str] | None = None,
        tags: Sequence[str] | None = None,
        mode: Mode = "hybrid",
        explain: bool = False,
        query_vector: VectorLike | None = None,
    ) -> list[SearchHit]:
        """The k live memories of `user_id` that best answer `query`, best first.

        `memory_types` and `tags` (any of) are seed 004's shorthands for the same filters.
        `mode`: `hybrid` (default; lexical only when no embedder is configured), `lexical`
        (no model involved, sub-millisecond), `vector`. `query_vector` skips embedding the
        query (a caller with its own vectors of the same embedder). `explain=True` fills
        each hit's `explain` with the parts of its score.

        Raises:
            InvalidArgumentError: empty or oversized query, k outside 1..100, unknown filter,
                malformed time range, unknown mode, wrong vector dimension.
        """
        uid = validate.user_id(user_id)
        if not isinstance(query, str) or not query.strip():
            raise InvalidArgumentError("query must be a non-empty string")
        if "\x00" in query:
            raise InvalidArgumentError("query must not contain NUL characters", {"field": "query"})
        if len(query) > limits.MAX_QUERY_CHARS:
            raise InvalidArgumentError(
                f"query is {len(query)} characters; at most {limits.MAX_QUERY_CHARS}",
                {"limit": limits.MAX_QUERY_CHARS},
            )
        if isinstance(k, bool) or not isinstance(k, int) or not 1 <= k <= limits.MAX_SEARCH_K:
            raise InvalidArgumentError(
                f"k must be an integer in [1, {limits.MAX_SEARCH_K}], got {k!r}"
            )
        if mode not in _MODES:
            raise InvalidArgumentError(f"mode must be one of {list(_MODES)}, got {mode!r}")
        f = validate.filters(_merge_shorthands(filters, memory_types, tags))
        if not self.backend.capabilities.lexical:
            # A store that encrypts memory content keeps no full-text index of it.
            if mode == "lexical":
                raise InvalidArgumentError(
                    "keyword search is off: this store encrypts memory content "
                    "(docs/backends.md#encryption); search with mode 'vector' or 'hybrid'",
                    {"reason": "content_encrypted"},
                )
            mode = "vector"
        if f.metadata and self.backend.capabilities.sealed:
            raise InvalidArgumentError(
                "metadata filters do not apply to search on a store that encrypts memory "
                "metadata (docs/backends.md#encryption); list_memories takes them",
                {"reason": "content_encrypted"},
            )
        if f.created_after and f.created_before and f.created_after >= f.created_before:
            raise InvalidArgumentError("created_after must be before created_before")
        if f.updated_after and f.updated_before and f.updated_after >= f.updated_before:
            raise InvalidArgumentError("updated_after must be before updated_before")
        now = self.clock.now()
        # Fusion needs a deep pool from each ranking; a single ranking only its top k.
        n = max(CANDIDATES, 2 * k) if mode == "hybrid" else k
        cands: dict[int, Candidate] = {}
        words = frozenset(w.casefold() for w in WORD_RE.findall(query))
        # The query embedding (several ms) runs while the full-text query does. When the
        # keyword candidates show that the query names speakers, the query is embedded
        # again without their names (`_vector_text`) and the first vector is not used.
        embedding = (
            await self._start_query_vector(query, query_vector, mode)
            if mode in ("hybrid", "vector")
            else None
        )
        # A big user's vector ranking (embedding, then the product) runs beside the keyword
        # ranking: both wait on threads that release the GIL.
        beside = keywords_done = None
        if (
            mode == "hybrid"
            and embedding is not None
            and self.backend.kept_vectors(uid) >= BESIDE_FROM
        ):
            keywords_done = threading.Event()  # till then the product leaves the keywords a core
            busy = functools.partial(_not_set, keywords_done)
            ranking = functools.partial(self._vector_ranking, busy=busy)
            beside = self.offload.spawn(ranking, uid, embedding, f, n, now, mode)
            embedding = None  # that ranking collects it
        try:
            if mode in ("hybrid", "lexical"):
                try:
                    for c in await self.backend.lexical(uid, query_terms(query), f, n, now):
                        cands[c.pk] = c
                finally:
                    if keywords_done is not None:
                        keywords_done.set()
            under_way = embedding is not None or beside is not None
            if mode == "hybrid" and query_vector is None and under_way:
                text = _vector_text(query, cands.values(), words)
                if text != query:
                    _abandon(beside)
                    _abandon(embedding)
                    beside = embedding = None
                    embedding = await self._start_query_vector(text, None, mode)
        except BaseException:
            _abandon(beside)
            _abandon(embedding)
            raise
        if beside is not None:
            found: list[Candidate] = await self.offload.join(beside)
        else:
            found = await self._vector_ranking(uid, embedding, f, n, now, mode)
        for c in found:
            got = cands.get(c.pk)
            if got is None:
                cands[c.pk] = c
            else:
                got.vector = c.vector
        # The rows' counts leave out the accesses not written yet (storage/access.py)
        for pk, n in self.backend.pending_accesses(cands.keys()).items():
            cands[pk].access_count += n
        weights = self._weights()
        rel = relevance(list(cands.values()), weights)
        boosts: dict[int, float] = {}
        if mode != "vector" and weights.neighbours > 0:  # vector: "nearest by meaning" only
            boosts = await self._neighbour_boosts(uid, cands, rel, f, now)
        scored = rank(list(cands.values()), weights, now, k, rel, boosts, words, explain)
        read = {s.candidate.pk: s.candidate.row for s in scored if s.candidate.row is not None}
        rows = await self.backend.hits(uid, [s.candidate.pk for s in scored], now, read=read)
        return [
            construct(
                SearchHit,
                {
                    "memory": rows[s.candidate.pk],
                    "score": s.score,
                    "explain": s.parts,
                },
            )
            for s in scored
            if s.candidate.pk in rows
        ]

    async def _vector_ranking(
        self,
        uid: str,
        started: Any,
        f: Filters,
        n: int,
        now: datetime,
        mode: Mode,
        *,
        busy: Callable[[], bool] | None = None,
    ) -> list[Candidate]:
        """The n nearest memories to the query vector under way (none without one);
        `busy()`: whether the keyword ranking that runs at the same time is still running."""
        qvec = await self._finish_query_vector(started, mode)
        if qvec is None:
            return []
        # Vector-only: the winners come from this one read, so it reads them whole.
        return await self.backend.vector_search(
            uid, qvec, f, n, now, whole=mode == "vector", busy=busy
        )

    async def _neighbour_boosts(
        self,
        uid: str,
        cands: dict[int, Candidate],
        rel: dict[int, tuple[float, ...]],
        f: Filters,
        now: datetime,
    ) -> dict[int, float]:
        """A short dialogue turn next to a strong match shares some of its relevance (the
        answer after a question, the details after a topic). Long memories stand alone:
        on LongMemEval, whose turns are paragraphs, sharing with every turn cost recall@10
        (0.876 -> 0.803) while on LoCoMo's short turns it gained (0.783 -> 0.797); with
        the length rule: LongMemEval 0.876, LoCoMo 0.796."""
        best = sorted(
            (pk for pk, c in cands.items() if c.in_session and c.size <= DIALOGUE_CHARS),
            key=lambda pk: -rel[pk][2],
        )[:NEIGHBOUR_SOURCES]
        if not best:
            return {}
        around = await self.backend.neighbours(uid, best, f, now)
        boosts: dict[int, float] = {}
        for pk, ns in around.items():
            for n in ns:
                if n.size > DIALOGUE_CHARS:
                    continue
                boosts[n.pk] = boosts.get(n.pk, 0.0) + rel[pk][2]
                if n.pk not in cands:
                    cands[n.pk] = n
        return boosts

    async def _start_query_vector(
        self, query: str, given: Sequence[float] | None, mode: Mode
    ) -> Any:
        """The query vector, or its embedding under way (see `_finish_query_vector`)."""
        usable = await self._vectors_usable()
        if given is not None:
            if self.embedder is None:
                raise InvalidArgumentError("query_vector needs an embedder's vectors to compare")
            return _Ready(check_vector(given, self.embedder.dimension, "query_vector"))
        if not usable:
            if mode == "vector":
                raise InvalidArgumentError(
                    "vector search needs an embedder whose vectors are stored "
                    "(set MEMVAULT_EMBEDDER, or run `memvault reindex`)"
                )
            return None
        cache, embedder = self.query_cache, self.embedder
        assert embedder is not None  # usable
        if cache is not None:
            return self.offload.start(cache.vector, query)
        return self.offload.start(lambda: embedder.embed([query])[0])

    async def _finish_query_vector(
        self, started: Any, mode: Mode
    ) -> np.ndarray[Any, np.dtype[np.float32]] | None:
        if started is None:
            return None
        if isinstance(started, _Ready):
            return started.vector
        try:
            vec: Vectors = await self.offload.finish(started)
            return vec
        except UnavailableError:
            if mode == "vector":
                raise UnavailableError(
                    "the embedder cannot answer now; retry or use lexical"
                ) from None
            return None

    # ------------------------------------------------------------------ reindex
    async def reindex(
        self,
        *,
        missing: bool = False,
        lexical: bool = False,
        user_id: str | None = None,
        batch: int = 256,
        progress: Callable[[int, int], None] | None = None,
    ) -> ReindexReport:
        """Embed memories again with the configured embedder.

        `missing=True` only fills memories without a vector (writes made while the embedder
        was down); otherwise, when the stored vectors come from another embedder, they are
        dropped and every memory is embedded again. Resumable: an interrupted run leaves the
        vectors it wrote, and the next `missing=True` run continues. `lexical=True` also
        rebuilds the full-text index. `progress(done, total)` is called after each batch.
        """
        uid = validate.user_id(user_id) if user_id is not None else None
        if isinstance(batch, bool) or not isinstance(batch, int) or not 1 <= batch <= 10_000:
            raise InvalidArgumentError(f"batch must be an integer in [1, 10000], got {batch!r}")
        report = ReindexReport()
        async with self.backend.exclusive("reindex"):
            if lexical:
                report.lexical_rows = await self.backend.rebuild_lexical()
            if self.embedder is None:
                return report
            report.model = self.embedder.name
            if not missing:
                report.switched = await self.backend.set_vector_model(
                    self.embedder.name, self.embedder.dimension, self.clock.now()
                )
            elif not await self._vectors_usable():
                raise InvalidArgumentError(
                    "the stored vectors come from another embedder: run reindex without --missing"
                )
            self._vectors_state = "ok"
            total = await self.backend.count_missing_vectors(uid)
            after = 0
            while True:
                rows = await self.backend.missing_vectors(after, batch, uid)
                if not rows:
                    break
                after = rows[-1][0]
                done = await self._embed_rows(rows)
                if done is None:
                    raise UnavailableError("the embedder cannot answer now; run reindex again")
                report.embedded += done
                if progress is not None:
                    progress(report.embedded, total)
        return report


@dataclass(frozen=True)
class _Ready:
    vector: np.ndarray[Any, np.dtype[np.float32]]


def _abandon(started: Any) -> None:
    """Let work under way (an embedding, a vector ranking) finish unused: its failure, if
    any, is nobody's."""
    if started is None or isinstance(started, _Ready):
        return

    def retrieve(fut: Any) -> None:
        if not fut.cancelled():
            fut.exception()

    started.add_done_callback(retrieve)


def _vector_text(query: str, candidates: Iterable[Candidate], words: frozenset[str]) -> str:
    """The query as its vector is made: less the names of the speakers it names (a
    speaker's name is among the query's words and a keyword candidate was said by them).

    A name says who, not what: embedded, it pulls toward every turn that names or
    addresses that person, whoever said it; the speaker part of the score does the name's
    work instead (docs/search.md: with the speaker weight at 0.3, LoCoMo dev recall@10
    0.811 -> 0.820)."""
    names = {c.speaker for c in candidates if c.speaker is not None}
    drop = frozenset(
        w.casefold() for name in names if named(name, words) for w in WORD_RE.findall(name)
    )
    return without_words(query, drop) if drop else query


def _merged(cur: Memory, *, new: Memory, now: datetime | None) -> Memory:
    """`cur` with what `new` repeats or adds: its wording, the union of tags, merged
    metadata, the higher importance. With `now`, a new version of a stored memory."""
    update: dict[str, Any] = {
        "content": new.content,
        "tags": list(dict.fromkeys([*cur.tags, *new.tags]))[: limits.MAX_TAGS],
        "metadata": {**cur.metadata, **new.metadata},
        "importance": max(cur.importance, new.importance),
    }
    if now is not None:
        update |= {"version": cur.version + 1, "updated_at": now}
    return cur.model_copy(update=update)


def _merge_shorthands(
    filters: Filters | Mapping[str, Any] | None,
    memory_types: Sequence[str] | None,
    tags: Sequence[str] | None,
) -> Filters | Mapping[str, Any] | None:
    if memory_types is None and tags is None:
        return filters
    base: dict[str, Any]
    if filters is None:
        base = {}
    elif isinstance(filters, Filters):
        base = filters.model_dump(exclude_unset=True)
    elif isinstance(filters, Mapping):
        base = dict(filters)
    else:
        raise InvalidArgumentError("filters must be an object")
    for name, value in (("memory_types", memory_types), ("tags_any", tags)):
        if value is None:
            continue
        if name in base:
            raise InvalidArgumentError(f"{name} is given twice (keyword and filters)")
        if isinstance(value, str):
            raise InvalidArgumentError(f"{name} must be a list of strings")
        base[name] = list(value)
    return base
