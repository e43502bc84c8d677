"""The embedded default backend: one SQLite file, no server."""

from __future__ import annotations

import contextlib
import fcntl
import json
import logging
import os
import sqlite3
import threading
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import numpy as np
from sqlalchemy.dialects import sqlite as sqlite_dialect

from memvault.config import Settings
from memvault.errors import ConflictError, MemvaultError
from memvault.models import Filters, Memory
from memvault.storage import migrate
from memvault.storage.access import AccessTracker
from memvault.storage.base import Candidate, Capabilities, PurgeCounts
from memvault.storage.changes import ChangeStore
from memvault.storage.fts_feed import feed, feed_if_due, waiting, waiting_for
from memvault.storage.fts_plan import Compactor, TermStats, any_of
from memvault.storage.runner import InlineRunner, Runner, ThreadRunner
from memvault.storage.search_text import MAX_QUERY_TERMS
from memvault.storage.sql import codec
from memvault.storage.sql.backend import SqlBackend, _candidate
from memvault.storage.sql.connection import SqliteConnections
from memvault.storage.sql.dbapi import Conn
from memvault.storage.sql.queries import LIGHT_WIDTH, Statements
from memvault.storage.vectors import UserVectors, VectorCache, decode_keys, encode_keys

log = logging.getLogger(__name__)

_ANY = Filters()
CACHE_VECTORS_FROM = 256  # smaller users are read, not kept, on a first search (vectors.py)
VECTOR_BLOCK = 128  # vectors a block holds at most (migration 0011)
TAIL_MERGE = 8  # a user's newest small blocks merged into one (`_merge_tail`)
SMALL_BLOCK = 16  # entries a block holds at most to count as small
COMPACT_BLOCKS = 256  # half-empty blocks `purge` rewrites per transaction
_USER_BLOCKS = (
    "SELECT b.seq, b.width, b.pks, d.vectors FROM vector_blocks b "
    "JOIN vector_data d ON d.block = b.seq WHERE b.user_id = ? AND b.seq > ? ORDER BY b.seq"
)
SEEN_USERS = 100_000  # small users whose searches are counted
KEEP_AFTER = 3  # a small user's matrix is kept from its third search
FTS_FIRST_SLACK = 16  # extra index rows read in case some are deleted or expired
NEAREST_FIRST = 8  # nearest rows `nearest` reads a query before searching it wider
# Reader threads when `read_threads` is unset. A SQLite read is CPU work: more threads than
# this fight over the GIL (lexical searches at concurrency 16 through AsyncMemVault: 506/s
# with one thread, 330/s with four; REST hybrid search over 100k memories, three
# alternating runs: 144-147/s with two, 128-139/s with four). Two leave a thread free
# while a big user's long search runs.
SQLITE_READ_THREADS = 2
# bm25() column weights: content, tags, neighbours' text and dates, owner (migration 0003).
FTS_WEIGHTS = (1.0, 0.5, 0.3, 0.0)


def sqlite_path(url: str) -> Path:
    """`sqlite:///relative.db`, `sqlite:////abs/path.db` -> a path (`:memory:` is refused:
    memvault's readers and writer need one shared file)."""
    if not url.startswith("sqlite:///"):
        raise ValueError(f"not a sqlite URL: {url!r} (expected sqlite:///path/to/file.db)")
    path = url[len("sqlite:///") :]
    if not path or path == ":memory:":
        raise ValueError("memvault needs a SQLite file path, not an in-memory database")
    return Path(path)


def prepare_database(path: Path) -> None:
    """Create the directory and migrate the file to the newest revision, once per file even
    when several processes open it at the same moment."""
    path.parent.mkdir(parents=True, exist_ok=True)
    url = f"sqlite:///{path}"
    with open(f"{path}.migrate.lock", "a+") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        try:
            if _revision(path) != migrate.HEAD_REVISION:
                migrate.upgrade(url)
        finally:
            fcntl.flock(lock, fcntl.LOCK_UN)


def _revision(path: Path) -> str | None:
    if not path.exists():
        return None
    conn = sqlite3.connect(path, timeout=30)
    try:
        row = conn.execute(
            "SELECT name FROM sqlite_master WHERE type='table' AND name='alembic_version'"
        ).fetchone()
        if row is None:
            return None
        got = conn.execute("SELECT version_num FROM alembic_version").fetchone()
        return None if got is None else str(got[0])
    finally:
        conn.close()


def fts_query(terms: Sequence[str]) -> str | None:
    """A safe FTS5 MATCH expression: every term quoted, OR-ed. None when there is none."""
    words = list(dict.fromkeys(terms))[:MAX_QUERY_TERMS]
    return any_of(words) if words else None


# A block's new slots in one statement, from its memories' pks in slot order (a JSON
# array): 5.7k instructions a slot against 15.2k bound row by row (callgrind, 10,000 slots
# in blocks of 100). A single slot costs more that way (28k more instructions an `add` of one
# memory; the two counts cross at about 4 slots): smaller blocks go row by row.
_NEW_SLOTS = (
    "INSERT INTO vector_slots (memory_pk, block, slot) SELECT value, ?, key FROM json_each(?)"
)
SLOTS_AT_ONCE_FROM = 8


def _insert_block(conn: Conn, user_id: str, width: int, entries: list[tuple[int, bytes]]) -> int:
    """A new block of (memory_pk, vector) entries; its `seq`. The slots are the caller's."""
    keys = encode_keys(pk for pk, _ in entries)
    made: Any = conn.execute(  # a sqlite3 cursor
        "INSERT INTO vector_blocks (user_id, width, pks) VALUES (?, ?, ?)", (user_id, width, keys)
    )
    block = int(made.lastrowid)
    conn.execute(
        "INSERT INTO vector_data (block, vectors) VALUES (?, ?)",
        (block, b"".join(vec for _, vec in entries)),
    )
    return block


def _live_entries(hex_keys: str, vectors: bytes, width: int) -> list[tuple[int, bytes]]:
    """A block's (memory_pk, vector) entries, in order, but the marked (deleted) ones."""
    keys = decode_keys(hex_keys).tolist()
    return [(pk, vectors[slot * width : (slot + 1) * width]) for slot, pk in enumerate(keys) if pk]


def _rewrite_blocks(
    conn: Conn, user_id: str, width: int, seqs: list[int], entries: list[tuple[int, bytes]]
) -> None:
    """The blocks `seqs` (their data with them) become one block of `entries`, whose
    memories' slots move to it."""
    marks = ", ".join("?" for _ in seqs)
    conn.execute(f"DELETE FROM vector_blocks WHERE seq IN ({marks})", seqs)
    if entries:
        block = _insert_block(conn, user_id, width, entries)
        conn.executemany(
            "UPDATE vector_slots SET block = ?, slot = ? WHERE memory_pk = ?",
            [(block, slot, pk) for slot, (pk, _) in enumerate(entries)],
        )


def _merge_tail(conn: Conn, user_id: str) -> None:
    """When a user's `TAIL_MERGE` newest blocks are all small (`SMALL_BLOCK` entries or
    fewer, one width), they become one block of their live entries: written a vector at a
    time, a user keeps blocks of about 16-24 vectors, not a block a vector, and each vector
    is copied about three times."""
    tail = conn.execute(
        "SELECT seq, width, pks FROM vector_blocks WHERE user_id = ? ORDER BY seq DESC LIMIT ?",
        (user_id, TAIL_MERGE),
    ).fetchall()
    if len(tail) < TAIL_MERGE:
        return
    width = tail[0][1]
    if any(w != width or len(keys) > 16 * SMALL_BLOCK for _, w, keys in tail):
        return
    tail.reverse()  # oldest first: the merged block keeps the order they were written in
    seqs = [seq for seq, _, _ in tail]
    marks = ", ".join("?" for _ in seqs)
    data = dict(
        conn.execute(f"SELECT block, vectors FROM vector_data WHERE block IN ({marks})", seqs)
    )
    entries = [e for seq, _, keys in tail for e in _live_entries(keys, data[seq], width)]
    _rewrite_blocks(conn, user_id, width, seqs, entries)


def _compact_blocks(conn: Conn) -> int:
    """Rewrite up to `COMPACT_BLOCKS` blocks at least half of whose entries are marked
    deleted, with their live entries; how many were rewritten."""
    due = []
    for seq, user_id, width, hex_keys in conn.execute(
        "SELECT seq, user_id, width, pks FROM vector_blocks"
    ):
        keys = decode_keys(hex_keys)
        if 2 * int(np.count_nonzero(keys == 0)) >= len(keys):
            due.append((seq, user_id, width, hex_keys))
            if len(due) >= COMPACT_BLOCKS:
                break
    for seq, user_id, width, hex_keys in due:
        (vectors,) = conn.execute(
            "SELECT vectors FROM vector_data WHERE block = ?", (seq,)
        ).fetchone()
        _rewrite_blocks(conn, user_id, width, [seq], _live_entries(hex_keys, vectors, width))
    return len(due)


class SqliteBackend(SqlBackend, ChangeStore):
    """SQLite storage. `threaded=False` runs every call inline (for the blocking library)."""

    capabilities = Capabilities(
        lexical=True, vector=True, listen_notify=False, local_change_check=True
    )
    seals_columns = True  # memory content may be sealed (the JSON-file index: never)

    def __init__(self, path: Path, settings: Settings, *, threaded: bool) -> None:
        prepare_database(path)
        self.path = path
        db = SqliteConnections(
            path,
            busy_timeout_s=settings.sqlite_busy_timeout_s,
            synchronous=settings.sqlite_synchronous,
        )
        self.db = db
        self._wal_header = db.wal_index_header  # what every commit changes (0.1 us)
        self.sql = Statements(sqlite_dialect.dialect(paramstyle="named"), FTS_WEIGHTS)
        self.runner: Runner = (
            ThreadRunner(
                settings.read_threads or SQLITE_READ_THREADS,
                inline_points=settings.inline_point_reads,
            )
            if threaded
            else InlineRunner()
        )
        self.access = AccessTracker(
            max_pending=settings.access_flush_max_pending,
            interval_s=settings.access_flush_interval_s,
        )
        self.vectors = VectorCache(int(settings.vector_cache_mb * 2**20))
        self.term_stats = TermStats()
        compactor = Compactor(self.db)
        self.db.checkpointer.task = compactor
        compactor.start()
        self._seen_small: OrderedDict[str, int] = OrderedDict()
        # Small blocks this process wrote per user since `_merge_tail` last looked (the
        # writer's): the tail is looked at every `TAIL_MERGE`th, not at every write.
        self._small_writes: OrderedDict[str, int] = OrderedDict()
        self.lexical_budget = settings.search_lexical_budget
        self._vectors_lock = threading.Lock()
        self._closed = False
        if self.seals_columns:
            try:
                self._open_encryption(settings)
            except BaseException:
                self.db.close()
                raise

    # ------------------------------------------------------------------ hooks
    def _hook_index_new_rows(self, conn: Conn, after_pk: int, count: int) -> None:
        feed_if_due(conn, after_pk + count)  # storage/fts_feed.py: searches feed the rest

    async def close(self) -> None:
        if not self._closed:
            with contextlib.suppress(MemvaultError):  # else the next search feeds them
                if await self._read(waiting):
                    await self.runner.write(self.db.write, feed)
        await super().close()

    def close_now(self) -> None:
        if not self._closed:
            with contextlib.suppress(MemvaultError):
                if self.db.read(waiting):
                    self.db.write(feed)
        super().close_now()

    async def _feed_waiting(self) -> None:
        """Index what waits, for a lexical search that found rows of its user waiting.
        Where that write cannot happen (a read-only file, a writer holding the lock past
        the busy timeout) the search goes on with the index as it is, without them."""
        try:
            await self.runner.write(self.db.write, feed)
        except MemvaultError as exc:
            log.warning("searching without the newest rows' full-text entries: %s", exc)

    def _hook_new_pks(self, conn: Conn, top: int, mems: Sequence[Memory]) -> dict[str, int]:
        # SQLite gives a row without a rowid the largest one plus one: one insert after
        # another in one write transaction, the batch's rows get top+1, top+2, ...
        return {m.memory_id: top + i for i, m in enumerate(mems, 1)}

    def _hook_pks_value(self, pks: Sequence[int]) -> Any:
        return json.dumps(list(pks))

    def _hook_vectors_dropped(self) -> None:
        self.vectors.drop()

    def _hook_store_vectors(
        self, conn: Conn, items: Sequence[tuple[int, str, bytes]], replace: bool = False
    ) -> None:
        """One block per user (and vector width) of up to `VECTOR_BLOCK` vectors, and a slot
        per memory (migration 0011). Replaced vectors are marked deleted in their old block
        by the slot's trigger."""
        if replace:
            conn.executemany(
                "DELETE FROM vector_slots WHERE memory_pk = ?", [(i[0],) for i in items]
            )
        self._write_blocks(conn, [(None, pk, user_id, vec) for pk, user_id, vec in items])

    def _hook_copy_vectors(self, conn: Conn, rows: Sequence[tuple[Any, ...]]) -> None:
        self._write_blocks(conn, [(seq, pk, user_id, vec) for seq, pk, user_id, vec in rows])

    def _write_blocks(self, conn: Conn, rows: Sequence[tuple[int | None, int, str, bytes]]) -> None:
        """Blocks for rows of (slot seq or None for the next, memory_pk, user_id, vector)
        whose memories have no vector now."""
        groups: dict[tuple[str, int], dict[int, tuple[int | None, bytes]]] = {}
        for seq, pk, user_id, vec in rows:  # a memory once, the last
            groups.setdefault((user_id, len(vec)), {})[pk] = (seq, vec)
        for (user_id, width), by_pk in groups.items():
            entries = [(pk, seq, vec) for pk, (seq, vec) in by_pk.items()]
            for start in range(0, len(entries), VECTOR_BLOCK):
                part = entries[start : start + VECTOR_BLOCK]
                block = _insert_block(conn, user_id, width, [(e[0], e[2]) for e in part])
                if len(part) >= SLOTS_AT_ONCE_FROM and all(e[1] is None for e in part):
                    conn.execute(_NEW_SLOTS, (block, json.dumps([e[0] for e in part])))
                else:
                    conn.executemany(
                        "INSERT INTO vector_slots (seq, memory_pk, block, slot) "
                        "VALUES (?, ?, ?, ?)",
                        [(seq, pk, block, slot) for slot, (pk, seq, _) in enumerate(part)],
                    )
            if len(entries) % VECTOR_BLOCK:  # a small block: every `TAIL_MERGE`th, merge
                small = self._small_writes.pop(user_id, 0) + 1
                if small >= TAIL_MERGE:
                    _merge_tail(conn, user_id)
                else:
                    self._small_writes[user_id] = small
                if len(self._small_writes) > SEEN_USERS:
                    self._small_writes.popitem(last=False)

    async def purge(self, now: datetime, deleted_before: datetime) -> PurgeCounts:
        """`SqlBackend.purge`, then blocks at least half of whose entries are gone (their
        memories purged, or their vectors replaced) are rewritten with the live ones."""
        counts = await super().purge(now, deleted_before)
        while await self._write(_compact_blocks):
            pass
        return counts

    def _user_vector_rows(self, conn: Conn, user_id: str) -> list[tuple[int, bytes]]:
        """(memory_pk, vector) of each of the user's stored vectors, in the order written;
        one read per block (through the `memory_vectors` view, each row would read its whole
        block)."""
        out: dict[int, bytes] = {}
        for _seq, width, hex_keys, vectors in conn.execute(_USER_BLOCKS, (user_id, 0)):
            for pk, vec in _live_entries(hex_keys, vectors, width):
                out.pop(pk, None)  # a later block's vector replaces it, in its place
                out[pk] = vec
        return list(out.items())

    def _hook_drop_vectors(self, conn: Conn) -> None:
        # Blocks first: the slots' trigger then has no block to mark, row by row.
        conn.execute("DELETE FROM vector_blocks")
        conn.execute("DELETE FROM vector_slots")

    def _hook_user_gone(self, conn: Conn, user_id: str) -> None:
        # Before the cascade deletes the user's slots one by one (see `_hook_drop_vectors`).
        conn.execute("DELETE FROM vector_blocks WHERE user_id = ?", (user_id,))

    def _lock_path(self, name: str) -> str:
        return f"{self.path}.{name}.lock"

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """A lock file beside the database (`<file>.<name>.lock`), held with flock (a few
        microseconds on a local file: no thread hop)."""
        fd = os.open(self._lock_path(name), os.O_CREAT | os.O_RDWR, 0o644)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise ConflictError(f"another {name} is running on this store") from None
            try:
                yield
            finally:
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    # ------------------------------------------------------------------ search
    async def lexical(
        self, user_id: str, terms: Sequence[str], filters: Filters, k: int, now: datetime
    ) -> list[Candidate]:
        words = list(dict.fromkeys(terms))[:MAX_QUERY_TERMS]
        if not words:
            return []
        owner = f"u{user_id.encode().hex()}"
        sql, params = self.sql.lexical(filters, k)
        params.update(user_id=user_id, now=codec.ts(now))

        at = params["now"]
        ask = True  # the read first asks whether rows of the user wait (not after a feed)

        def run(conn: sqlite3.Connection) -> list[Candidate] | None:
            if ask and waiting_for(conn, user_id):
                return None  # fed first (storage/fts_feed.py), then read again
            match, split = self.term_stats.match(conn, owner, words, self.lexical_budget, 4 * k)
            if not split and filters == _ANY:
                # The same scores as bm25() without its walk over every user's rows.
                n = k + FTS_FIRST_SLACK
                top = self.term_stats.top(conn, owner, words, self.sql.fts_weights, n)
                if top is not None:
                    found = visible(conn, top, n)
                    if found is not None:
                        return found
            found = ranked(conn, match)
            if split and len(found) < k:  # the rare words select too few: score every match
                found = ranked(conn, self.term_stats.match(conn, owner, words, 0)[0])
            return found

        def visible(
            conn: sqlite3.Connection, top: list[tuple[int, float]], n: int
        ) -> list[Candidate] | None:
            """The visible rows of `top` (index rows, best first), or None when too many
            of them dropped out (deleted, expired) to be sure of the best k."""
            rows = self._light_rows(conn, user_id, [pk for pk, _ in top], filters, at)
            if len(rows) >= k or len(top) < n:
                return [
                    _candidate(r, lexical=-float(score))
                    for pk, score in top
                    if (r := rows.get(pk)) is not None
                ][:k]
            return None

        def ranked(conn: sqlite3.Connection, match: str) -> list[Candidate]:
            params["q"] = match
            if filters == _ANY:
                # Index first, rows after: joining every match to its memory row costs
                # more than scoring it (12 of 24 ms for a 100k-memory user). Only
                # deleted or expired rows can drop out; when too many do, join instead.
                n = k + FTS_FIRST_SLACK
                top = conn.execute(self.sql.fts_top, {"q": match, "n": n}).fetchall()
                found = visible(conn, top, n)
                if found is not None:
                    return found
            return [
                _candidate(r[:-1], lexical=-float(r[-1]))
                for r in conn.execute(sql, params).fetchall()
            ]

        result: list[Candidate] | None = await self._read(run)
        if result is None:
            await self._feed_waiting()
            ask = False
            result = await self._read(run)
        return result or []

    def _user_vectors(self, conn: sqlite3.Connection, user_id: str, dimension: int) -> UserVectors:
        """This user's matrix, brought up to date (one refresh at a time: reader threads of
        the async service may search the same user at once)."""
        with self._vectors_lock:
            return self._refresh_vectors(conn, user_id, dimension)

    def _searched_once(self, user_id: str) -> bool:
        """True while `user_id` has been searched fewer than `KEEP_AFTER` times among the
        last `SEEN_USERS` small users searched (then it is forgotten and kept instead)."""
        seen = self._seen_small
        count = seen.pop(user_id, 0) + 1
        if count >= KEEP_AFTER:
            return False
        seen[user_id] = count
        if len(seen) > SEEN_USERS:
            seen.popitem(last=False)
        return True

    def _refresh_vectors(
        self, conn: sqlite3.Connection, user_id: str, dimension: int
    ) -> UserVectors:
        uv = self.vectors.get(user_id)
        # Read before the blocks are: a commit after this read changes the header, and the
        # next search then asks again (`UserVectors.checked`).
        header = self._wal_header()
        if uv is not None and uv.dimension == dimension and uv.stale * 4 <= max(len(uv.pks), 64):
            if header is not None and header == uv.checked:
                return uv  # nobody has committed since it was last brought up to date
            latest = conn.execute(
                "SELECT max(seq) FROM vector_blocks WHERE user_id = ?", (user_id,)
            ).fetchone()[0]
            if latest is not None and latest > uv.seq:
                uv.apply_blocks(conn.execute(_USER_BLOCKS, (user_id, uv.seq)).fetchall())
                self.vectors.put(user_id, uv)
            uv.checked = header
            return uv
        # Not kept, or due for a reload (a quarter of it deleted since): read every block.
        fresh = UserVectors(dimension)
        fresh.apply_blocks(conn.execute(_USER_BLOCKS, (user_id, 0)).fetchall())
        fresh.checked = header
        # A small user is kept once searched often enough; until then read, not kept.
        big = uv is not None or len(fresh.pks) >= CACHE_VECTORS_FROM
        if big or not self._searched_once(user_id):
            self.vectors.put(user_id, fresh)
        return fresh

    def kept_vectors(self, user_id: str) -> int:
        uv = self.vectors.peek(user_id)
        return 0 if uv is None else len(uv.pks)

    async def vector_search(
        self,
        user_id: str,
        query: Any,
        filters: Filters,
        k: int,
        now: datetime,
        *,
        whole: bool = False,
        busy: Callable[[], bool] | None = None,
    ) -> list[Candidate]:
        """The k visible memories most similar to `query` (a unit float32 vector), exact.
        With `whole`, each candidate carries its full row (`Candidate.row`). `busy` goes to
        `UserVectors.top`."""
        at = codec.ts(now)
        assert at is not None
        dimension = int(query.shape[0])

        def run(conn: sqlite3.Connection) -> list[Candidate]:
            uv = self._user_vectors(conn, user_id, dimension)
            return self._ranked(conn, user_id, uv, query, max(k, 1), filters, at, whole, busy)

        result: list[Candidate] = await self._read(run)
        return result

    def _ranked(
        self,
        conn: sqlite3.Connection,
        user_id: str,
        uv: UserVectors,
        query: Any,
        want: int,
        filters: Filters,
        at: str,
        whole: bool = False,
        busy: Callable[[], bool] | None = None,
    ) -> list[Candidate]:
        """The `want` visible rows of `uv` most similar to `query`, best first."""
        # A few spare rows cover nearest rows that are deleted or filtered out; whole
        # rows cost by the row (18 of them took as long as 18 light and 10 whole), so
        # they are read without: a short answer is read again four times wider.
        n = min(len(uv.pks), want if whole else want + 8)
        while True:
            top = uv.top(query, n, busy=busy)
            found = self._light_rows(conn, user_id, [pk for pk, _ in top], filters, at, whole=whole)
            if len(found) >= want or n >= len(uv.pks):
                break
            n = min(len(uv.pks), n * 4)
        if n >= len(uv.pks) and not filters.include_deleted:
            uv.stale = len(uv.pks) - len(found) if filters == _ANY else uv.stale
        out = []
        for pk, sim in top:
            row = found.get(pk)
            if row is None:
                continue
            c = _candidate(row, vector=sim)
            if whole:
                c.row = row[LIGHT_WIDTH:]
            out.append(c)
            if len(out) >= want:
                break
        return out

    async def nearest(
        self,
        user_id: str,
        queries: Sequence[Any],
        filters: Filters,
        now: datetime,
        min_similarity: float = -1.0,
    ) -> list[Candidate | None]:
        """For each query (a unit float32 vector), the most similar visible memory when its
        cosine is at least `min_similarity`, else None. One product for the whole batch
        (`UserVectors.top_many`) and one read of the rows it names: dedup of a 100-memory
        batch made 100 searches before. A query whose `NEAREST_FIRST` nearest rows are all
        hidden (deleted, filtered out) and similar enough is searched again on its own."""
        if not queries:
            return []
        at = codec.ts(now)
        assert at is not None
        mat = np.stack([np.asarray(q, dtype=np.float32) for q in queries])
        dimension = int(mat.shape[1])

        def run(conn: sqlite3.Connection) -> list[Candidate | None]:
            uv = self._user_vectors(conn, user_id, dimension)
            tops = uv.top_many(mat, NEAREST_FIRST)
            pks = sorted({pk for top in tops for pk, sim in top if sim >= min_similarity})
            found = self._light_rows(conn, user_id, pks, filters, at) if pks else {}
            out: list[Candidate | None] = []
            for q, top in enumerate(tops):
                hit: Candidate | None = None
                hidden = 0  # similar enough, but not visible
                for pk, sim in top:
                    if sim < min_similarity:
                        break
                    row = found.get(pk)
                    if row is not None:
                        hit = _candidate(row, vector=sim)
                        break
                    hidden += 1
                if hit is None and hidden == len(top) and len(top) < len(uv.pks):
                    wide = self._ranked(conn, user_id, uv, mat[q], 1, filters, at)
                    if wide and wide[0].vector is not None and wide[0].vector >= min_similarity:
                        hit = wide[0]
                out.append(hit)
            return out

        result: list[Candidate | None] = await self._read(run)
        return result

    async def rebuild_lexical(self) -> int:
        """Recompute search contexts and rebuild the full-text index from the memory rows
        (FTS5 'rebuild')."""

        def run(conn: sqlite3.Connection) -> int:
            self._refresh_contexts(conn)
            conn.execute("INSERT INTO memories_fts(memories_fts) VALUES ('rebuild')")
            return int(conn.execute("SELECT count(*) FROM memories").fetchone()[0])

        result: int = await self._write(run)
        return result
