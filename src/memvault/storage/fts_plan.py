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
"""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Sequence

TOKENIZER = "porter unicode61 remove_diacritics 2"  # as migrations 0001 and 0003
_STEM_CACHE_MAX = 50_000
COUNT_TTL_S = 60.0
_SETUP = (
    f"CREATE VIRTUAL TABLE IF NOT EXISTS temp.mv_query_terms USING fts5(t, tokenize='{TOKENIZER}')",
    "CREATE VIRTUAL TABLE IF NOT EXISTS temp.mv_query_tokens "
    "USING fts5vocab(temp, mv_query_terms, 'instance')",
    "CREATE VIRTUAL TABLE IF NOT EXISTS temp.mv_index_terms "
    "USING fts5vocab(main, memories_fts, 'row')",
)


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
        self._counts: dict[str, tuple[int, float]] = {}
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

    def rows_with(self, conn: sqlite3.Connection, token: str) -> int:
        """How many index rows (all users) hold `token`. fts5vocab counts by walking the
        token's document list (about 1 ms per 100k rows), so counts are reused for up to
        `COUNT_TTL_S`: the plan needs their size, not their last digit."""
        now = time.monotonic()
        with self._lock:
            hit = self._counts.get(token)
        if hit is not None and now - hit[1] < COUNT_TTL_S:
            return hit[0]
        row = _execute(
            conn, "SELECT doc FROM temp.mv_index_terms WHERE term = ?", (token,)
        ).fetchone()
        count = int(row[0]) if row else 0
        with self._lock:
            if len(self._counts) >= _STEM_CACHE_MAX:
                self._counts.clear()
            self._counts[token] = (count, now)
        return count

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
