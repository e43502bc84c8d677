"""Full-text queries that stay fast when one user owns very many memories.

FTS5 computes BM25 for every row that matches any query term, about 1 µs a row. A question
of ten words matches 20,000-60,000 rows of a user with 100,000 real conversation turns
(27 ms median, 70 ms p95 for the full-text part alone; bench/bench_search.py --corpus).

When the user's rows that the terms could match exceed a budget of postings
(`search_lexical_budget`), the rarest terms alone select the rows and the common ones still
count in each selected row's score:

    owner AND ("cathedral" OR "wednesday") AND (owner OR "many" OR "days")

bm25() sums over every phrase of the expression, so a selected row's score is exactly its
score for the whole query (checked on every row in tests). The only change is that a row
matching none of the rare terms is not a candidate; its score comes from common words, low
IDF, so it is rarely among the best. On one user holding 99,707 LongMemEval turns
(bench/bench_big_user_quality.py, 195 questions) the top 10 kept 96.8% of the exact
ranking's rows at the default budget of 4,000 (99.7% at 8,000), recall@10 was unchanged
(0.393 against 0.390), and the query took 11.9 ms at p50 and 18.0 at p95 instead of 35.5
and 80.1.

Document frequencies come from FTS5 itself: query terms are tokenised by a small in-memory
FTS5 table with the same tokenizer (so stems match the index exactly) and counted through
an `fts5vocab` table over the index. Both are TEMP tables of the reading connection.

FTS5's `bm25()` first counts, for every phrase of the query, the rows of the whole index
that hold it (its IDF): a walk over each word's full document list, every user's rows
included. With 100,000 memories of 1,000 users, that walk was 8 of the 8.3 ms of a query
whose matching takes 0.4 ms. `TermStats.top` computes the same score, term for term
(fts5_aux.c: k1 = 1.2, b = 0.75, IDF floored at 1e-6, weighted term frequencies, the row's
token count against the index's average), for the few rows a user's query matches: their
term frequencies from FTS5's `highlight()` of just those rows (the marked words tokenised
by the index's own tokenizer), row sizes and averages from FTS5's own `docsize` and
averages records, and
document counts from `rows_with` (reused up to `COUNT_TTL_S` while the index's row count
moves by under 1%, so a score can differ from `bm25()`'s in the last digits while counts
catch up). It applies to a user with at most `LOCAL_ROWS` rows and under 1/`LOCAL_SHARE` of
the index: where a user holds most of the index, bm25()'s walk reads mostly that user's rows
and costs less than tokenising them again (one conversation per store: 3.1 ms a query with
bm25(), 13 ms this way). A term of several tokens (a phrase) also goes to `bm25()`.
"""

from __future__ import annotations

import logging
import math
import re
import sqlite3
import threading
import time
from collections.abc import Sequence

import numpy as np

from memvault.errors import MemvaultError
from memvault.storage.sql.connection import SqliteConnections, is_busy

log = logging.getLogger(__name__)

TOKENIZER = "porter unicode61 remove_diacritics 2"  # as migrations 0001 and 0003
_STEM_CACHE_MAX = 50_000
COUNT_TTL_S = 60.0
LOCAL_ROWS = 1000  # rows of a user scored by `TermStats.top`; past it, FTS5's bm25()
LOCAL_SHARE = 20  # ... and only while the user holds under 1/20 of the index's rows
K1, B = 1.2, 0.75  # FTS5's bm25 constants (fts5_aux.c)
COLUMNS = ("content", "tags", "search_context")  # memories_fts's scored columns (owner: 4th)
_SETUP = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.mv_query_terms USING fts5(t, tokenize='{TOKENIZER}')",
    "CREATE VIRTUAL TABLE IF NOT EXISTS temp.mv_query_tokens "
    "USING fts5vocab(temp, mv_query_terms, 'instance')",
    "CREATE VIRTUAL TABLE IF NOT EXISTS temp.mv_index_terms "
    "USING fts5vocab(main, memories_fts, 'row')",
)
_OPEN, _CLOSE = "\x1e", "\x1f"
_SPAN = re.compile(f"{_OPEN}([^{_CLOSE}]*){_CLOSE}")
_HIGHLIGHTED = (
    "SELECT rowid, "
    + ", ".join(
        f"highlight(memories_fts, {i}, char({ord(_OPEN)}), char({ord(_CLOSE)}))"
        for i in range(len(COLUMNS))
    )
    + " FROM memories_fts WHERE memories_fts MATCH ? LIMIT ?"
)


def varints(blob: bytes) -> list[int]:
    """SQLite varints (FTS5's `docsize` and averages records): 7 bits a byte, big-endian,
    the 9th byte whole."""
    out: list[int] = []
    i, n = 0, len(blob)
    while i < n:
        value = 0
        for j in range(9):
            byte = blob[i]
            i += 1
            if j == 8:
                value = (value << 8) | byte
                break
            value = (value << 7) | (byte & 0x7F)
            if not byte & 0x80:
                break
        out.append(value)
    return out


def _marks(n: int) -> str:
    return ",".join("?" * n)


def quote(term: str) -> str:
    return '"' + term.replace('"', '""') + '"'


def any_of(terms: Sequence[str]) -> str:
    """`"a" OR "b"`: every term a quoted phrase, so no input is FTS5 syntax."""
    return " OR ".join(quote(t) for t in terms)


def _execute(conn: sqlite3.Connection, sql: str, params: Sequence[object] = ()) -> sqlite3.Cursor:
    """Run `sql`, creating this connection's TEMP tables on first use."""
    try:
        return conn.execute(sql, params)
    except sqlite3.OperationalError as exc:
        if "no such table" not in str(exc):
            raise
        for setup in _SETUP:
            conn.execute(setup)
        return conn.execute(sql, params)


class TermStats:
    """Index tokens and document frequencies of query terms (one per backend)."""

    def __init__(self) -> None:
        self._tokens: dict[str, tuple[str, ...]] = {}
        self._counts: dict[str, tuple[int, float, int]] = {}  # count, when, index rows
        self._lock = threading.Lock()

    def tokens(self, conn: sqlite3.Connection, terms: Sequence[str]) -> list[tuple[str, ...]]:
        """The index tokens of each term (usually one stem; none for punctuation)."""
        with self._lock:
            known = {t: self._tokens[t] for t in terms if t in self._tokens}
        missing = list(dict.fromkeys(t for t in terms if t not in known))
        if missing:
            _execute(conn, "DELETE FROM temp.mv_query_terms")
            conn.executemany(
                "INSERT INTO temp.mv_query_terms(rowid, t) VALUES (?, ?)", enumerate(missing)
            )
            found: dict[int, list[tuple[int, str]]] = {}
            for doc, offset, token in conn.execute(
                "SELECT doc, offset, term FROM temp.mv_query_tokens"
            ):
                found.setdefault(doc, []).append((offset, token))
            conn.execute("DELETE FROM temp.mv_query_terms")
            fresh = {
                t: tuple(tok for _, tok in sorted(found.get(i, []))) for i, t in enumerate(missing)
            }
            known.update(fresh)
            with self._lock:
                if len(self._tokens) + len(fresh) > _STEM_CACHE_MAX:
                    self._tokens.clear()
                self._tokens.update(fresh)
        return [known[t] for t in terms]

    def rows_with(self, conn: sqlite3.Connection, token: str, n_rows: int | None = None) -> int:
        """How many index rows (all users) hold `token`. fts5vocab counts by walking the
        token's document list (about 1 ms per 100k rows), so counts are reused for up to
        `COUNT_TTL_S`: the plan needs their size, not their last digit. Given the index's
        row count `n_rows` (for a score), a count is reused only while the index has not
        grown or shrunk by more than 1% since it was taken."""
        now = time.monotonic()
        with self._lock:
            hit = self._counts.get(token)
        if (
            hit is not None
            and now - hit[1] < COUNT_TTL_S
            and (n_rows is None or abs(n_rows - hit[2]) <= hit[2] // 100)
        ):
            return hit[0]
        row = _execute(
            conn, "SELECT doc FROM temp.mv_index_terms WHERE term = ?", (token,)
        ).fetchone()
        count = int(row[0]) if row else 0
        with self._lock:
            if len(self._counts) >= _STEM_CACHE_MAX:
                self._counts.clear()
            # Untagged (-1): a score's first use counts again.
            self._counts[token] = (count, now, -1 if n_rows is None else n_rows)
        return count

    def top(
        self,
        conn: sqlite3.Connection,
        owner: str,
        terms: Sequence[str],
        weights: Sequence[float],
        n: int,
    ) -> list[tuple[int, float]] | None:
        """The `n` best rows of `owner` matching any of `terms`, as `(rowid, bm25)`, best
        first: what `SELECT rowid, bm25(memories_fts, *weights) ... ORDER BY 2 LIMIT n`
        answers for the exact expression of `match`, without FTS5's walk over every user's
        rows (module doc). None where `bm25()` should score instead: a term of several
        tokens, a user past `LOCAL_ROWS` rows or 1/`LOCAL_SHARE` of the index, or a text
        holding the marker characters itself."""
        stems = self.tokens(conn, [owner, *terms])
        if any(len(t) != 1 for t in stems):
            return None
        owner_stem, term_stems = stems[0][0], [t[0] for t in stems[1:]]
        averages = conn.execute("SELECT block FROM memories_fts_data WHERE id = 1").fetchone()
        totals = varints(averages[0]) if averages else [0]
        n_rows, n_tokens = totals[0], sum(totals[1:])
        mine = self.rows_with(conn, owner_stem, n_rows)
        if mine > LOCAL_ROWS or mine * LOCAL_SHARE > n_rows:
            return None  # bm25()'s walk reads mostly this user's rows: cheaper than this
        expression = f"owner:{quote(owner)} AND ({any_of(terms)})"
        # Each matching row with its phrase instances marked by FTS5 itself (highlight()
        # reads only this row's positions): the marked words, tokenised as the index does,
        # are the row's term frequencies.
        rows = conn.execute(_HIGHLIGHTED, (expression, LOCAL_ROWS + 1)).fetchall()
        if len(rows) > LOCAL_ROWS:
            return None
        if not rows:
            return []
        wanted = list(dict.fromkeys(term_stems))
        column = {stem: i for i, stem in enumerate(wanted)}
        weight = [weights[i] if i < len(weights) else 1.0 for i in range(len(COLUMNS))]
        marked: list[tuple[int, int, list[str]]] = []
        for i, (_, *texts) in enumerate(rows):
            for c, text in enumerate(texts):
                if not text or _OPEN not in text:
                    continue
                words = _SPAN.findall(text)
                if text.count(_OPEN) != len(words) or text.count(_CLOSE) != len(words):
                    return None  # the text holds the marker characters itself
                marked.append((i, c, words))
        seen = list({w for _, _, words in marked for w in words})
        stems_of = dict(zip(seen, self.tokens(conn, seen), strict=True))
        freq = np.zeros((len(rows), len(wanted)))
        for i, c, words in marked:
            for word in words:
                for stem in stems_of[word]:
                    j = column.get(stem)
                    if j is not None:
                        freq[i, j] += weight[c]
        rowids = [r[0] for r in rows]
        slot = {rowid: i for i, rowid in enumerate(rowids)}
        size = np.zeros(len(rowids))
        for rowid, sz in conn.execute(
            f"SELECT id, sz FROM memories_fts_docsize WHERE id IN ({_marks(len(rowids))})",
            rowids,
        ):
            # Column sizes under 128 tokens are one byte each: their sum is the bytes'.
            size[slot[rowid]] = sum(sz) if max(sz, default=0) < 0x80 else sum(varints(sz))
        # One phrase per query term, in order, and the owner's (fts5_aux.c's fts5Bm25Function).
        idf = np.array(
            [self._idf(conn, stem, n_rows) for stem in [owner_stem, *term_stems]], dtype=float
        )
        f = np.empty((len(rowids), len(term_stems) + 1))
        f[:, 0] = weights[len(COLUMNS)] if len(weights) > len(COLUMNS) else 1.0
        f[:, 1:] = freq[:, [column[stem] for stem in term_stems]]
        avgdl = n_tokens / n_rows if n_rows and n_tokens else 1.0
        norm = K1 * (1 - B + B * size / avgdl)
        score = -((idf * (f * (K1 + 1.0)) / (f + norm[:, None])).sum(axis=1))
        order = np.lexsort((np.array(rowids), score))[:n]
        return [(rowids[i], float(score[i])) for i in order]

    def _idf(self, conn: sqlite3.Connection, stem: str, n_rows: int) -> float:
        """FTS5's IDF of a one-token phrase: log((N - n + 0.5) / (n + 0.5)), at least 1e-6."""
        hits = min(self.rows_with(conn, stem, n_rows), n_rows)
        value = math.log((n_rows - hits + 0.5) / (hits + 0.5))
        return value if value > 0 else 1e-6

    def match(
        self,
        conn: sqlite3.Connection,
        owner: str,
        terms: Sequence[str],
        budget: int,
        min_rows: int = 0,
    ) -> tuple[str, bool]:
        """The MATCH expression for `terms` within the rows of `owner` (its index token):
        every term OR-ed, or, past `budget` estimated postings, rare terms selecting (at
        least `min_rows` estimated rows) and common terms scoring (module doc). The flag
        says which: a caller that gets fewer rows than it needs from a split expression
        asks again with `budget=0`."""
        exact = f"owner:{quote(owner)} AND ({any_of(terms)})"
        if budget <= 0 or len(terms) < 2:
            return exact, False
        owned = self.tokens(conn, [owner])[0]
        if len(owned) != 1:
            return exact, False
        mine = self.rows_with(conn, owned[0])
        if mine <= budget:  # this user has fewer rows than the budget: nothing to save
            return exact, False
        total = int(conn.execute("SELECT max(pk) FROM memories").fetchone()[0] or 0)
        share = min(1.0, mine / max(total, 1))
        estimate: dict[str, float] = {}
        for term, toks in zip(terms, self.tokens(conn, terms), strict=True):
            # A term of several tokens is a phrase: rarer than its parts; count it as rare.
            estimate[term] = self.rows_with(conn, toks[0]) * share if len(toks) == 1 else 0.0
        rare: list[str] = []
        spent = 0.0
        for term in sorted(terms, key=lambda t: (estimate[t], t)):
            # Rare terms select at least `min_rows` rows (estimated), within the budget.
            if rare and spent >= min_rows and spent + estimate[term] > budget:
                break
            rare.append(term)
            spent += estimate[term]
        common = [t for t in terms if t not in rare]
        if not common:
            return exact, False
        split = (
            f"owner:{quote(owner)} AND ({any_of(rare)}) "
            f"AND (owner:{quote(owner)} OR {any_of(common)})"
        )
        return split, True


COMPACT_QUIET_S = 2.0  # the index unchanged this long: no ingest under way, merge now
COMPACT_RATIO = 16  # merge once the other segments hold 1/16 of the largest one's pages
COMPACT_STEP_PAGES = 256  # pages a merge step writes (about 25 ms, under the write lock)
COMPACT_BUDGET_S = 0.5  # merge time per call, then the writer's turn again
_STRUCTURE = "SELECT block FROM memories_fts_data WHERE id = 10"
_SEGMENT_PAGES = "SELECT count(*) FROM memories_fts_idx GROUP BY segid"


class Compactor:
    """Merges the full-text index into one segment while writes pause.

    FTS5 writes each batch of new rows as a small segment and merges segments in groups
    (its `automerge`), so an index built by many small batches keeps a dozen or more
    segments, and every query term is looked up in each one. With 100,000 memories of
    1,000 users written 100 at a time (16 segments), a user's query took 1.8 ms to match
    its rows; merged into one segment, 0.17 ms, and a lexical search as a whole went from
    3.4 to 1.4 ms (bench/bench_rest.py's data).

    Merging rewrites the whole index (0.18 s for those 100,000 rows), so it waits until
    the index has not changed for `COMPACT_QUIET_S` (an ingest has ended) and until the
    other segments hold at least 1/`COMPACT_RATIO` of the largest one's pages: written
    often, a big index is merged after every sixteenth part of growth, not after each
    write. Each step is one short write transaction (FTS5's incremental 'merge' of
    `COMPACT_STEP_PAGES` pages), taken only when no other thread of the process is
    writing, at most `COMPACT_BUDGET_S` per call; the checkpoint thread calls it about
    once a second (with its own connection: `conn`). Merging changes no row, score or
    result."""

    def __init__(self, db: SqliteConnections) -> None:
        self.db = db
        self.steps = 0  # merge steps taken (for tests and diagnostics)
        self._seen: bytes | None = None  # the index's structure record, last look
        self._since = time.monotonic()
        self._judged: bytes | None = None  # a structure found not worth merging
        self._off = False

    def start(self) -> None:
        """At open: wake the checkpoint thread when the index is worth merging (a store
        filled by another process, then read here)."""
        try:
            due = worth_merging(self.db.read(segment_pages))
        except (sqlite3.Error, MemvaultError):
            return  # no index of this shape, or busy: the first commit starts the thread
        if due:
            self.db.checkpointer.wake()

    def __call__(self, conn: sqlite3.Connection) -> None:
        if self._off:
            return
        try:
            self._compact(conn)
        except sqlite3.Error as exc:
            if is_busy(exc):
                return  # the next call
            log.info("full-text index merges are off: %s", exc)  # no index of this shape
            self._off = True
        except MemvaultError as exc:  # busy or closing: the next call tries again
            log.debug("full-text index merge skipped: %s", exc)

    def _compact(self, conn: sqlite3.Connection) -> None:
        block = _structure(conn)
        now = time.monotonic()
        if block != self._seen:
            self._seen, self._since = block, now
            return
        if now - self._since < COMPACT_QUIET_S or block == self._judged:
            return
        deadline = now + COMPACT_BUDGET_S
        while block is not None and time.monotonic() < deadline:
            if not worth_merging(segment_pages(conn)):
                self._judged = block
                return
            ran, after = self.db.try_write(_merge_step)
            if not ran:
                return  # the writer is busy: the next call
            self.steps += 1
            if after == block:  # FTS5 found nothing to merge
                self._judged = block
                return
            self._seen = block = after


def _structure(conn: sqlite3.Connection) -> bytes | None:
    rows = conn.execute(_STRUCTURE).fetchall()
    return bytes(rows[0][0]) if rows else None


def segment_pages(conn: sqlite3.Connection) -> list[int]:
    """Leaf pages of each segment of the index, about (its `_idx` table: a row per leaf
    page that starts a term)."""
    return [int(n) for (n,) in conn.execute(_SEGMENT_PAGES)]


def worth_merging(pages: Sequence[int]) -> bool:
    if len(pages) < 2:
        return False
    largest = max(pages)
    return (sum(pages) - largest) * COMPACT_RATIO >= largest


def _merge_step(conn: sqlite3.Connection) -> bytes | None:
    conn.execute(
        "INSERT INTO memories_fts(memories_fts, rank) VALUES ('merge', ?)", (-COMPACT_STEP_PAGES,)
    )
    return _structure(conn)
