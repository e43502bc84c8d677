"""Full-text scores computed for one user's rows (`TermStats.top`) are FTS5's own bm25(),
on a real SQLite store of many users: same rows, same order, same scores; and search
through the library answers the same with it as without it."""

from __future__ import annotations

import random
import sqlite3
from pathlib import Path

import pytest

from memvault import FrozenClock, MemVault, Settings
from memvault.search.text import query_terms
from memvault.storage import fts_plan
from memvault.storage.fts_plan import TermStats, any_of, quote
from memvault.storage.sql.queries import Statements

BACKENDS = ("sqlite",)  # FTS5's bm25 and its tables are SQLite's
WEIGHTS = Statements.fts_weights

WORDS = [
    "garden",
    "tomato",
    "violin",
    "lesson",
    "Lisbon",
    "marathon",
    "training",
    "recipe",
    "curry",
    "spicy",
    "hiking",
    "trail",
    "mountain",
    "sister",
    "wedding",
    "dress",
    "painting",
    "watercolor",
    "sunset",
    "beach",
    "volleyball",
    "chess",
    "club",
    "tournament",
    "adoption",
    "agency",
    "puppy",
    "shelter",
    "camping",
    "tent",
    "lake",
    "kayak",
    "guitar",
    "concert",
    "ticket",
    "birthday",
    "cake",
    "chocolate",
    "museum",
    "exhibit",
    "pottery",
    "class",
    "yoga",
    "morning",
    "run",
    "library",
    "novel",
    "résumé",
    "café",
    "naïve",
    "Zoë",
    "interview",
    "promotion",
    "colleague",
    "project",
    "deadline",
    "launch",
]
SPEAKERS = ("Caroline", "Melanie", "user", "assistant")


def sentence(rng: random.Random) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(4, 14)))


@pytest.fixture
def store(settings: Settings, clock: FrozenClock) -> Path:
    """40 users, each a conversation of 25 turns (neighbour context in the index) and a few
    tagged notes; one user's turns partly deleted."""
    rng = random.Random(11)
    with MemVault(settings, clock=clock) as v:
        for u in range(40):
            user = f"user-{u:02d}"
            v.add_many(
                user,
                [
                    {
                        "content": f"{SPEAKERS[t % 2]}: {sentence(rng)}",
                        "memory_type": "conversation",
                        "session_id": f"s{t // 10}",
                        "metadata": {"speaker": SPEAKERS[t % 2], "turn_id": f"D{t}"},
                    }
                    for t in range(25)
                ]
                + [
                    {"content": sentence(rng), "tags": rng.sample(WORDS, 2)}
                    for _ in range(rng.randint(0, 6))
                ],
            )
        gone = v.list_memories("user-03", limit=8).items
        for m in gone:
            v.delete("user-03", m.memory_id)
    return Path(settings.database_url.removeprefix("sqlite:///"))


def bm25(conn: sqlite3.Connection, owner: str, terms: list[str], n: int) -> list[tuple[int, float]]:
    w = ", ".join(str(x) for x in WEIGHTS)
    return conn.execute(
        f"SELECT rowid, bm25(memories_fts, {w}) AS s FROM memories_fts "
        "WHERE memories_fts MATCH ? ORDER BY s, rowid LIMIT ?",
        (f"owner:{quote(owner)} AND ({any_of(terms)})", n),
    ).fetchall()


def test_scores_are_fts5s_bm25(store: Path) -> None:
    conn = sqlite3.connect(store, isolation_level=None)
    stats = TermStats()
    rng = random.Random(5)
    compared = 0
    for q in range(150):
        owner = "u" + f"user-{q % 40:02d}".encode().hex()
        # Query words as users type them: cases, plurals, accents, repeats of one stem.
        text = " ".join(
            rng.choice([*WORDS, "Tomatoes", "LESSONS", "cafe", "trained"])
            for _ in range(rng.randint(1, 8))
        )
        terms = query_terms(text)
        mine = stats.top(conn, owner, terms, WEIGHTS, 30)
        assert mine is not None
        ref = bm25(conn, owner, terms, 30)
        assert [r for r, _ in mine] == [r for r, _ in ref]
        for (_, a), (_, b) in zip(mine, ref, strict=True):
            assert a == pytest.approx(b, rel=1e-9)
        compared += len(ref)
    assert compared > 1000


def test_it_steps_aside_where_bm25_is_cheaper_or_different(store: Path) -> None:
    conn = sqlite3.connect(store, isolation_level=None)
    stats = TermStats()
    owner = "u" + b"user-01".hex()
    # A term of two tokens is a phrase: bm25() scores it.
    assert stats.top(conn, owner, ["e-mail"], WEIGHTS, 10) is None
    # A user holding a large share of the index: bm25()'s walk is mostly that user's rows.
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(fts_plan, "LOCAL_SHARE", 1000)
        assert stats.top(conn, owner, ["garden"], WEIGHTS, 10) is None
    assert stats.top(conn, "u" + b"nobody".hex(), ["garden"], WEIGHTS, 10) == []


def test_search_answers_the_same_with_and_without_it(
    store: Path, settings: Settings, clock: FrozenClock, monkeypatch: pytest.MonkeyPatch
) -> None:
    rng = random.Random(8)
    compared = 0
    default = fts_plan.LOCAL_ROWS
    # No access weight: each search counts its hits, which the next one ranks with.
    plain_settings = settings.model_copy(update={"embedder": "none", "search_weight_access": 0.0})
    with MemVault(plain_settings, clock=clock) as v:
        for _ in range(60):
            user, query = f"user-{rng.randrange(40):02d}", sentence(rng)
            answers = []
            for local_rows in (default, 0):  # 0: every query to bm25()
                monkeypatch.setattr(fts_plan, "LOCAL_ROWS", local_rows)
                hits = v.search(user, query, k=10, explain=True)
                answers.append([(h.memory.memory_id, h.explain) for h in hits])
            local, plain = answers
            assert [m for m, _ in local] == [m for m, _ in plain]
            for (_, a), (_, b) in zip(local, plain, strict=True):
                assert a is not None
                assert b is not None
                assert a["lexical"] == pytest.approx(b["lexical"], rel=1e-9)
            compared += len(local)
    assert compared > 300
