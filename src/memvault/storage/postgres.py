"""The PostgreSQL backend: several memvault servers on one database.

What it adds to the shared SQL body (`storage/sql/backend.py`): full-text search on the
generated `tsvector` column, vector search with pgvector, a change feed fed by LISTEN/NOTIFY
(migration 0005's triggers) for read caches in every process, advisory locks around
migrations and purges. See docs/backends.md.
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import os
import threading
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime
from typing import Any

import psycopg
from sqlalchemy.dialects import postgresql as pg_dialect

from memvault.config import Settings
from memvault.errors import ConfigurationError, ConflictError, UnavailableError
from memvault.models import Filters
from memvault.storage import migrate
from memvault.storage.access import AccessTracker
from memvault.storage.base import Candidate, Capabilities, ChangeFeed
from memvault.storage.runner import InlineRunner, Runner, ThreadRunner
from memvault.storage.search_text import MAX_QUERY_TERMS
from memvault.storage.sql import codec
from memvault.storage.sql.backend import SqlBackend, _candidate
from memvault.storage.sql.dbapi import Conn
from memvault.storage.sql.pg_connection import (
    PackedVector,
    PgConn,
    PostgresConnections,
    conninfo,
)
from memvault.storage.sql.queries import Statements

log = logging.getLogger("memvault.storage")

CHANNEL = "memvault_changes"
# Advisory lock keys (pg_advisory_lock takes a bigint): migrations, purge, reindex.
LOCK_MIGRATE = 0x6D76_0001
LOCK_PURGE = 0x6D76_0002
LOCK_REINDEX = 0x6D76_0003
LOCK_ANALYZE = 0x6D76_0004
LOCK_HNSW = 0x6D76_0005  # one HNSW index build at a time across servers
ANALYZE_CHECK_WRITES = 50  # write transactions between two looks at the statistics
LOCKS = {"reindex": LOCK_REINDEX, "purge": LOCK_PURGE}
BARRIER_TIMEOUT_S = 2.0
MAX_BACKLOG = 100_000  # notices kept for the cache between two reads; past it, drop everything
MAX_COUNTED = 1_000_000  # a user's rows are counted up to this many
PG_READ_THREADS = 4  # when `read_threads` is unset: reads wait on the server, not the CPU
PG_STEMMER = "english_stem"  # the dictionary of the `english` configuration (0005)
SIZE_TTL_S = 60.0  # how long a user's size class and the index list are remembered
HNSW_INDEX = "ix_memory_vectors_hnsw"  # + "_<dimension>"
HNSW_MAX_SCAN = 100_000  # graph tuples an iterative scan may visit before giving up


def _index_dimensions(conn: Conn) -> set[int]:
    """Dimensions that have an HNSW index on memory_vectors."""
    rows = conn.execute(
        "SELECT indexname FROM pg_indexes WHERE tablename = 'memory_vectors' "
        "AND indexname LIKE 'ix\\_memory\\_vectors\\_hnsw\\_%'"
    ).fetchall()
    return {int(r[0].rsplit("_", 1)[1]) for r in rows if r[0].rsplit("_", 1)[1].isdigit()}


def prepare_postgres(url: str) -> None:
    """Migrate the database to the newest revision, once even when several servers start at
    the same moment (an advisory lock)."""
    try:
        with psycopg.connect(conninfo(url), autocommit=True, connect_timeout=10) as conn:
            conn.execute("SELECT pg_advisory_lock(%s)", (LOCK_MIGRATE,))
            try:
                if migrate.current_revision(url) != migrate.HEAD_REVISION:
                    migrate.upgrade(url)
            finally:
                conn.execute("SELECT pg_advisory_unlock(%s)", (LOCK_MIGRATE,))
    except psycopg.OperationalError as exc:
        raise UnavailableError(f"PostgreSQL is unreachable at {_safe(url)}: {exc}") from exc
    except RuntimeError as exc:  # the migration's own message (pgvector missing)
        raise ConfigurationError(str(exc)) from exc


def _safe(url: str) -> str:
    """The URL without its password, for messages."""
    head, sep, rest = url.partition("://")
    if "@" in rest:
        cred, _, host = rest.rpartition("@")
        rest = f"{cred.split(':', 1)[0]}:***@{host}" if ":" in cred else rest
    return f"{head}{sep}{rest}"


def q_words(terms: Sequence[str]) -> list[str]:
    """The query words memvault sends: distinct, word characters only, at most 64."""
    return [w for w in dict.fromkeys(terms) if w.replace("_", "").isalnum()][:MAX_QUERY_TERMS]


def tsquery(terms: Sequence[str]) -> str | None:
    """A safe `to_tsquery` text: every word quoted, OR-ed. Words are word characters only,
    so quoting cannot be escaped."""
    words = q_words(terms)
    return " | ".join(f"'{w}'" for w in words) if words else None


class PgTermStats:
    """How common each query word is, for planning a big user's full-text search.

    Frequencies are the share of rows holding a lexeme, from the statistics ANALYZE keeps
    for `search_tsv` (`pg_stats.most_common_elems`, refreshed by autovacuum); a lexeme not
    listed is rarer than the rarest listed. Words become lexemes with the text search
    configuration's stemmer. Both are cached (`SIZE_TTL_S`)."""

    def __init__(self) -> None:
        self._freqs: dict[str, float] = {}
        self._floor = 0.0
        self._loaded = 0.0
        self._lexemes: dict[str, str | None] = {}
        self._lock = threading.Lock()

    def _refresh(self, conn: Conn) -> None:
        row = conn.execute(
            "SELECT most_common_elems::text::text[], most_common_elem_freqs FROM pg_stats "
            "WHERE tablename = 'memories' AND attname = 'search_tsv' LIMIT 1"
        ).fetchone()
        freqs: dict[str, float] = {}
        floor = 0.0
        if row is not None and row[0] is not None and row[1] is not None:
            values = [float(f) for f in row[1]]
            freqs = dict(zip(row[0], values[: len(row[0])], strict=True))
            floor = values[len(row[0])] if len(values) > len(row[0]) else min(values, default=0)
        self._freqs, self._floor, self._loaded = freqs, floor, time.monotonic()

    def rarest_first(self, conn: Conn, words: Sequence[str]) -> list[tuple[float, str]]:
        """(estimated share of rows holding it, word) of each of `words` that has a lexeme,
        rarest first; empty when nothing is known about how common words are."""
        with self._lock:
            if self._loaded + SIZE_TTL_S < time.monotonic():
                self._refresh(conn)
            if not self._freqs:
                return []
            unknown = [w for w in words if w not in self._lexemes]
            if unknown:
                got = conn.execute(
                    f"SELECT w, (ts_lexize('{PG_STEMMER}', w))[1] "
                    "FROM unnest(CAST(? AS text[])) AS w",
                    (unknown,),
                ).fetchall()
                if len(self._lexemes) > 100_000:
                    self._lexemes.clear()
                self._lexemes.update({str(w): lex for w, lex in got})
            return sorted(
                (self._freqs.get(lex, self._floor / 2), w)
                for w in words
                if (lex := self._lexemes.get(w)) is not None
            )

    def select_by(self, conn: Conn, words: Sequence[str], rows: int, budget: int) -> str | None:
        """The `to_tsquery` text of the rarest `words` whose estimated matches among `rows`
        stay within `budget` (at least one word); None when every word is needed or
        nothing is known about how common the words are."""
        chosen = take_rarest(self.rarest_first(conn, words), rows, budget, 0)
        return None if chosen is None else any_word(chosen)


def take_rarest(
    scored: Sequence[tuple[float, str]], rows: int, budget: int, at_least: int
) -> list[str] | None:
    """The longest prefix of `scored` (rarest first) whose estimated matches among `rows`
    stay within `budget`, and at least `at_least + 1` words; None when that is all of them."""
    chosen: list[str] = []
    share = 0.0
    for freq, w in scored:
        if len(chosen) > at_least and (share + freq) * rows > budget:
            break
        chosen.append(w)
        share += freq
    if not chosen or len(chosen) >= len(scored):
        return None
    return chosen


def any_word(words: Sequence[str]) -> str:
    return " | ".join(f"'{w}'" for w in words)


class ChangeListener:
    """LISTEN on `memvault_changes` in a thread; what arrives waits for `drain`.

    Notices arrive in commit order. A barrier (a notice this listener sent itself) tells
    when every notice of a transaction committed before it has arrived: the backend raises
    one before every cached read. While the connection is down everything is reported as
    possibly changed (`reset`)."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._lock = threading.Condition()
        self._memories: list[tuple[str, str]] = []
        self._users: list[str] = []
        self._reset = True  # nothing is known before the first LISTEN
        self._pending = True
        self._barrier_sent = 0  # number of the last barrier sent
        self._sent_at: dict[int, float] = {}  # barrier number -> when it was sent
        self._seen_at = 0.0  # when the latest barrier that arrived was sent
        self._inflight: int | None = None
        self._token = f"{os.getpid()}-{id(self)}"
        self._closed = False
        self._conn: psycopg.Connection[Any] | None = None
        self._thread: threading.Thread | None = None
        self._connected = threading.Event()

    def start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="memvault-listen", daemon=True)
            self._thread.start()
        self._connected.wait(timeout=10)

    def _run(self) -> None:
        delay = 0.05
        while not self._closed:
            try:
                with psycopg.connect(conninfo(self.url), autocommit=True) as conn:
                    conn.execute(f"LISTEN {CHANNEL}")
                    self._conn = conn
                    with self._lock:
                        self._reset = self._pending = True  # what happened before LISTEN
                    self._connected.set()
                    delay = 0.05
                    while not self._closed:
                        for note in conn.notifies(timeout=0.5):
                            self._take(note.payload)
            except psycopg.Error:
                if self._closed:
                    return
                with self._lock:
                    self._reset = self._pending = True
                    self._lock.notify_all()
                log.warning("memvault change listener lost its connection; reconnecting")
                time.sleep(delay)
                delay = min(delay * 2, 2.0)
            finally:
                self._conn = None
                if not self._closed:
                    self._connected.clear()

    def _take(self, payload: str) -> None:
        try:
            got = json.loads(payload)
        except ValueError:
            got = {"all": True}
        with self._lock:
            if "barrier" in got:
                token, _, n = str(got["barrier"]).rpartition(":")
                if token == self._token:
                    number = int(n)
                    self._seen_at = max(self._seen_at, self._sent_at.pop(number, 0.0))
                    if self._inflight == number:
                        self._inflight = None
                    self._lock.notify_all()
                return
            if got.get("all"):
                self._reset = True
            for pair in got.get("m") or ():
                self._memories.append((str(pair[0]), str(pair[1])))
            self._users.extend(str(u) for u in got.get("u") or ())
            self._pending = True
            if len(self._memories) + len(self._users) > MAX_BACKLOG:  # nobody drained: drop all
                self._memories, self._users, self._reset = [], [], True

    def barrier(self, send: Any) -> None:
        """Return once every notice of a transaction committed before this call has
        arrived: a notice of our own is sent (`send(payload)` issues the NOTIFY on a pooled
        connection) and, delivered in commit order, comes after all of those. Concurrent
        callers share barriers: one sent after a caller started covers it, so under load
        there is at most one in flight. When it does not come back in time, or the listener
        is not connected, everything is taken as changed."""
        start = time.monotonic()
        deadline = start + BARRIER_TIMEOUT_S
        with self._lock:
            while self._seen_at < start:
                if not self._connected.is_set():
                    self._reset = self._pending = True
                    return
                if self._inflight is None:
                    self._barrier_sent += 1
                    number = self._inflight = self._barrier_sent
                    self._sent_at[number] = time.monotonic()
                    self._lock.release()
                    try:
                        send(json.dumps({"barrier": f"{self._token}:{number}"}))
                    except BaseException:
                        with self._lock:
                            self._inflight = None
                            self._sent_at.pop(number, None)
                        raise
                    finally:
                        self._lock.acquire()
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    self._reset = self._pending = True
                    self._inflight = None
                    return
                self._lock.wait(left)

    def pending(self) -> bool:
        with self._lock:
            return self._pending

    def drain(self) -> tuple[list[tuple[str, str]], list[str], bool]:
        with self._lock:
            out = (self._memories, self._users, self._reset)
            self._memories, self._users = [], []
            self._reset = self._pending = not self._connected.is_set()
            return out

    def close(self) -> None:
        self._closed = True
        conn = self._conn
        if self._thread is not None:
            self._thread.join(timeout=2)
        if conn is not None and not conn.closed:
            conn.close()


class PostgresBackend(SqlBackend):
    """PostgreSQL storage. `threaded=False` runs every call inline (the blocking library)."""

    capabilities = Capabilities(lexical=True, vector=True, listen_notify=True)

    def __init__(self, url: str, settings: Settings, *, threaded: bool) -> None:
        prepare_postgres(url)
        self.url = url
        self.db = PostgresConnections(
            url,
            pool_size=settings.pg_pool_size,
            max_overflow=settings.pg_max_overflow,
            pool_timeout_s=settings.pg_pool_timeout_s,
            pre_ping=settings.pg_pre_ping,
            busy_timeout_s=settings.sqlite_busy_timeout_s,
        )
        self.sql = Statements(pg_dialect.dialect(paramstyle="named"))  # type: ignore[no-untyped-call]
        # A point read is a network round trip here: never on the event loop.
        self.runner: Runner = (
            ThreadRunner(settings.read_threads or PG_READ_THREADS, inline_points=False)
            if threaded
            else InlineRunner()
        )
        self.access = AccessTracker(
            max_pending=settings.access_flush_max_pending,
            interval_s=settings.access_flush_interval_s,
        )
        self.hnsw_from = settings.pg_hnsw_from
        self._hnsw_dims: set[int] = set()
        self._hnsw_checked = 0.0
        self._index_lock = threading.Lock()  # one HNSW index build at a time in this process
        self._sizes: dict[str, tuple[int, float]] = {}
        self.lexical_budget = settings.search_lexical_budget
        self.term_stats = PgTermStats()
        self.listener = ChangeListener(url)
        self._writes = 0
        self._maintaining = threading.Lock()
        self._closed = False
        try:
            self._open_encryption(settings)
        except BaseException:
            self.db.close()
            raise

    # ------------------------------------------------------------------ hooks
    def _hook_vector_value(self, vec: bytes) -> Any:
        return PackedVector(vec)

    async def _write(self, fn: Any) -> Any:
        result = await super()._write(fn)
        self._writes += 1
        if self._writes >= ANALYZE_CHECK_WRITES and not self._maintaining.locked():
            self._writes = 0
            # On a thread of its own: a VACUUM may take minutes and must hold up no write.
            threading.Thread(target=self._maintain, name="memvault-maintain", daemon=True).start()
        return result

    def _maintain(self) -> None:
        if not self._maintaining.acquire(blocking=False):
            return
        try:
            self._maybe_analyze()
        except Exception:  # housekeeping: the next look tries again
            log.warning("memvault could not refresh PostgreSQL statistics", exc_info=True)
        finally:
            self._maintaining.release()

    def _maybe_analyze(self) -> None:
        """Keep the memory tables' statistics fresh, and on a server with autovacuum off
        their dead rows vacuumed, by autovacuum's default rules (ANALYZE past 50 + 10% of
        the table changed, VACUUM past 50 + 20% dead). Without this a freshly loaded table
        is planned as if empty, and an HNSW walk over deleted entries ends early. One
        server at a time (an advisory lock); the others skip."""

        def run(conn: PgConn) -> None:
            rows = conn.execute(
                "SELECT s.relname, s.n_mod_since_analyze > 50 + 0.1 * greatest(c.reltuples, 0), "
                "s.n_dead_tup > 50 + 0.2 * greatest(c.reltuples, 0) "
                "AND current_setting('autovacuum') = 'off' "
                "FROM pg_stat_user_tables s JOIN pg_class c ON c.oid = s.relid "
                "WHERE s.relname IN ('memories', 'memory_vectors')"
            ).fetchall()
            todo = [(name, analyze, vacuum) for name, analyze, vacuum in rows if analyze or vacuum]
            if not todo:
                return
            got = conn.execute("SELECT pg_try_advisory_lock(?)", (LOCK_ANALYZE,)).fetchone()
            if got is None or not got[0]:
                return
            try:
                for name, analyze, vacuum in todo:  # autocommit: VACUUM runs outside a block
                    if vacuum:
                        conn.execute(f"VACUUM (ANALYZE) {name}")
                    elif analyze:
                        conn.execute(f"ANALYZE {name}")
            finally:
                conn.execute("SELECT pg_advisory_unlock(?)", (LOCK_ANALYZE,))

        self.db.read(run)

    # ------------------------------------------------------------------ search
    async def lexical(
        self, user_id: str, terms: Sequence[str], filters: Filters, k: int, now: datetime
    ) -> list[Candidate]:
        """Full-text candidates, best first. For a user with more rows than
        `search_lexical_budget`, the rarest words whose estimated matches fit the budget
        select the rows and every word ranks them (scores stay exact for the rows selected);
        while that selects fewer than k rows, more words are taken, up to all of them."""
        q = tsquery(terms)
        if q is None:
            return []
        words = q_words(terms)
        at = codec.ts(now)
        size = 0
        if self.lexical_budget > 0 and len(words) > 1:
            size = await self._user_size(user_id)
        budget = self.lexical_budget

        def ranked(conn: Conn, select_by: str | None) -> list[Candidate]:
            sql, params = self.sql.pg_lexical(filters, split=select_by is not None)
            params.update(user_id=user_id, now=at, q=q, s=select_by, k=k)
            rows = conn.execute(sql, params).fetchall()
            return [_candidate(r[:-1], lexical=float(r[-1])) for r in rows]

        def run(conn: Conn) -> list[Candidate]:
            if size <= budget:
                return ranked(conn, None)
            # Past the budget: select by the rarest words; while they select fewer than k
            # rows, widen to more words (4x the budget each time), up to every word.
            scored = self.term_stats.rarest_first(conn, words)
            limit, taken = budget, 0
            while (chosen := take_rarest(scored, size, limit, taken)) is not None:
                found = ranked(conn, any_word(chosen))
                if len(found) >= k:
                    return found
                limit, taken = limit * 4, len(chosen)
            return ranked(conn, None)

        result: list[Candidate] = await self._read(run)
        return result

    async def _user_size(self, user_id: str) -> int:
        """How many memory rows `user_id` has (counted up to 10^6; remembered
        `SIZE_TTL_S`)."""
        now = time.monotonic()
        got = self._sizes.get(user_id)
        if got is not None and got[1] > now:
            return got[0]

        def count(conn: Conn) -> int:
            row = conn.execute(
                "SELECT count(*) FROM (SELECT 1 FROM memories WHERE user_id = ? LIMIT ?) AS s",
                (user_id, MAX_COUNTED),
            ).fetchone()
            return int(row[0])

        size: int = await self._read(count)
        if len(self._sizes) > 100_000:
            self._sizes.clear()
        self._sizes[user_id] = (size, now + SIZE_TTL_S)
        return size

    def kept_vectors(self, user_id: str) -> int:
        return 0  # the vectors live in the server (pgvector), none in this process

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
        """The k visible memories most similar to `query` (`whole` and `busy` are not
        taken: a winner's row is read by `hits`, and the server does the work).

        A user with fewer than `pg_hnsw_from` memories is searched exactly: every vector of
        the user is compared (its rows come by the `(user_id, seq)` index), so a filter never
        leaves fewer than k rows when k exist. A bigger user is searched through the HNSW
        index with pgvector's iterative scan, which keeps walking the graph until k rows
        pass the user and the filters (`hnsw.iterative_scan = relaxed_order`; the rows are
        put back in order here)."""
        dimension = int(query.shape[0])
        big = await self._searched_by_index(user_id, dimension)
        bound: dict[str, Any] = {
            "user_id": user_id,
            "now": codec.ts(now),
            "qv": PackedVector(query.astype("<f4").tobytes()),
            "k": max(k, 1),
        }
        ef_search = min(1000, max(40, 2 * max(k, 1)))

        def run(conn: Conn, indexed: int | None) -> list[Candidate]:
            sql, params = self.sql.pg_vector(filters, indexed)
            rows = conn.execute(sql, {**params, **bound}).fetchall()
            return [_candidate(r[:-1], vector=1.0 - float(r[-1])) for r in rows]

        def run_indexed(conn: PgConn) -> list[Candidate]:
            with conn.raw.transaction():
                conn.execute("SET LOCAL hnsw.iterative_scan = relaxed_order")
                conn.execute(f"SET LOCAL hnsw.ef_search = {ef_search}")
                conn.execute(f"SET LOCAL hnsw.max_scan_tuples = {HNSW_MAX_SCAN}")
                found = run(conn, dimension)
            if len(found) < bound["k"]:
                # The graph walk gave up early (`hnsw.max_scan_tuples`; seen with many
                # identical vectors): the exact search finds k rows whenever k exist.
                return run(conn, None)
            found.sort(key=lambda c: (-(c.vector or 0.0), c.pk))
            return found

        result: list[Candidate] = await self._read(
            run_indexed if big else functools.partial(run, indexed=None)
        )
        return result

    async def _searched_by_index(self, user_id: str, dimension: int) -> bool:
        """Whether `user_id` has at least `pg_hnsw_from` memories (the count full-text
        planning uses too) and the HNSW index for `dimension` exists (both remembered for
        `SIZE_TTL_S`)."""
        if self.hnsw_from <= 0:
            return False
        now = time.monotonic()
        if self._hnsw_checked + SIZE_TTL_S < now:
            self._hnsw_dims = await self._read(_index_dimensions)
            self._hnsw_checked = now
        if dimension not in self._hnsw_dims:
            return False
        return await self._user_size(user_id) >= self.hnsw_from

    async def nearest(
        self,
        user_id: str,
        queries: Sequence[Any],
        filters: Filters,
        now: datetime,
        min_similarity: float = -1.0,
    ) -> list[Candidate | None]:
        """For each query, the most similar visible memory when its cosine is at least
        `min_similarity`, else None: one `vector_search` each (pgvector orders by distance
        per query)."""
        out: list[Candidate | None] = []
        for q in queries:
            near = await self.vector_search(user_id, q, filters, 1, now)
            sim = near[0].vector if near else None
            out.append(near[0] if sim is not None and sim >= min_similarity else None)
        return out

    async def set_vector_model(self, model: str, dimension: int, now: datetime) -> bool:
        """Record the embedder; make the HNSW index for its dimension unless `pg_hnsw_from`
        is 0 (and drop those of other dimensions, whose vectors were just dropped)."""
        changed = await super().set_vector_model(model, dimension, now)

        def ensure(conn: Conn) -> set[int]:
            # Concurrent first writes each get here. Two `CREATE INDEX CONCURRENTLY` of one
            # index deadlock (each waits for the other's transaction), and inserts beside
            # two builds failed in pgvector ("different vector dimensions 384 and 0"): one
            # build at a time in this process (a lock), none while another server builds (a
            # try-lock that waits for nothing: it then uses what exists, exact search till
            # the index is there).
            with self._index_lock:
                got = conn.execute("SELECT pg_try_advisory_lock(?)", (LOCK_HNSW,)).fetchone()
                if not (got and got[0]):
                    return _index_dimensions(conn)
                try:
                    for other in _index_dimensions(conn) - {dimension}:
                        conn.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {HNSW_INDEX}_{int(other)}")
                    if self.hnsw_from > 0:  # else every search is exact: no index to keep up
                        conn.execute(
                            f"CREATE INDEX CONCURRENTLY IF NOT EXISTS "
                            f"{HNSW_INDEX}_{int(dimension)} ON memory_vectors USING hnsw "
                            f"((vector::vector({int(dimension)})) vector_cosine_ops)"
                        )
                finally:
                    conn.execute("SELECT pg_advisory_unlock(?)", (LOCK_HNSW,))
                return _index_dimensions(conn)

        self._hnsw_dims = await self._read(ensure)
        self._hnsw_checked = time.monotonic()
        return changed

    async def rebuild_lexical(self) -> int:
        """Recompute search contexts; the `tsvector` column follows by itself."""

        def run(conn: Conn) -> int:
            self._refresh_contexts(conn)
            return int(conn.execute("SELECT count(*) FROM memories").fetchone()[0])

        result: int = await self._write(run)
        return result

    def _hook_purge_batch(self, conn: Conn) -> None:
        """One purge batch at a time across every server (a transaction advisory lock)."""
        conn.execute("SELECT pg_advisory_xact_lock(?)", (LOCK_PURGE,))

    @contextlib.asynccontextmanager
    async def exclusive(self, name: str) -> AsyncIterator[None]:
        """A session advisory lock, held on a connection of its own for the duration."""
        key = LOCKS[name]
        conn = await self.runner.read(self._lock_connection, key, name)
        try:
            yield
        finally:
            await self.runner.read(self._unlock, conn, key)

    def _lock_connection(self, key: int, name: str) -> psycopg.Connection[Any]:
        try:
            conn = psycopg.connect(conninfo(self.url), autocommit=True)
            got = conn.execute("SELECT pg_try_advisory_lock(%s)", (key,)).fetchone()
        except psycopg.Error as exc:
            raise UnavailableError(f"PostgreSQL is unreachable: {exc}") from exc
        if not (got and got[0]):
            conn.close()
            raise ConflictError(f"another {name} is running on this database")
        return conn

    @staticmethod
    def _unlock(conn: psycopg.Connection[Any], key: int) -> None:
        with contextlib.suppress(psycopg.Error):
            conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
        conn.close()

    # ------------------------------------------------------------------ change feed
    def _notify(self, payload: str) -> None:
        self.db.read(lambda conn: conn.execute("SELECT pg_notify(?, ?)", (CHANNEL, payload)))

    async def data_changed(self) -> bool:
        """Whether a change may have been committed since the last `changes_since`: every
        change committed before this call is known once it returns (a barrier round trip,
        shared by concurrent callers), so a cache never serves what another server changed
        and acknowledged before the read began."""
        self.listener.start()
        await self.runner.read(self.listener.barrier, self._notify)
        return self.listener.pending()

    async def changes_since(self, history_id: int, audit_id: int, memory_pk: int) -> ChangeFeed:
        memories, users, reset = self.listener.drain()
        return ChangeFeed(history_id, audit_id, memory_pk, memories, users, reset=reset)

    async def change_position(self) -> ChangeFeed:
        self.listener.start()
        self.listener.drain()
        return ChangeFeed(0, 0, 0, [], [])

    async def close(self) -> None:
        self.listener.close()
        await super().close()

    def close_now(self) -> None:
        self.listener.close()
        super().close_now()


__all__ = ["PostgresBackend", "prepare_postgres", "tsquery"]
