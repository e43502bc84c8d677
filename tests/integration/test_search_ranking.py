"""Ranking without the model, on real SQLite files: full-text search for users with very
many memories (storage/fts_plan.py: rare query terms select the rows, common ones only add
to their scores), rows read by key, and the weight of an assistant's replies."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy.dialects import sqlite as sqlite_dialect

from memvault import MemVault, Settings
from memvault.models import Filters
from memvault.search import scoring
from memvault.storage.fts_plan import TermStats
from memvault.storage.sql.queries import Statements
from memvault.storage.sqlite import FTS_FIRST_SLACK, FTS_WEIGHTS

COMMON = ["garden", "coffee", "weekend", "music", "travel"]


def _settings(tmp_path: Path, budget: int) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'p.db'}",
        embedder="none",
        search_lexical_budget=budget,
    )


def _fill(vault: MemVault, user: str, n: int, rare_every: int = 10) -> None:
    """`n` memories: each talks about two common topics; every `rare_every`-th also names
    a rare place."""
    items = []
    for i in range(n):
        words = [COMMON[i % 5], COMMON[(i * 3 + 1) % 5]]
        text = f"memory {i} about the {words[0]} and the {words[1]}"
        if i % rare_every == 0:
            text += f" near Kyoto station {i}"
        items.append({"content": text})
    vault.add_many(user, items)


def test_split_scores_are_exact_and_rare_terms_lead(tmp_path: Path) -> None:
    query = "coffee garden weekend near Kyoto"
    with MemVault(_settings(tmp_path, budget=0)) as exact_vault:
        _fill(exact_vault, "big", 600)
        _fill(exact_vault, "small", 30)
        exact = exact_vault.search("big", query, k=10, mode="lexical", explain=True)
    with MemVault(_settings(tmp_path, budget=100)) as vault:
        split = vault.search("big", query, k=10, mode="lexical", explain=True)
        small = vault.search("small", query, k=20, mode="lexical")
    assert all("Kyoto" in h.memory.text for h in exact)
    assert [h.memory.memory_id for h in split] == [h.memory.memory_id for h in exact]
    for got, want in zip(split, exact, strict=True):
        assert got.explain is not None
        assert want.explain is not None
        assert abs(got.explain["bm25"] - want.explain["bm25"]) < 1e-9
    # A user with fewer rows than the budget is searched exactly: all 20 slots filled.
    assert len(small) == 20


def test_plan_keeps_small_users_exact_and_splits_big_ones(tmp_path: Path) -> None:
    with MemVault(_settings(tmp_path, budget=100)) as vault:
        _fill(vault, "big", 600, rare_every=40)
        _fill(vault, "small", 30)
    conn = sqlite3.connect(tmp_path / "p.db")
    stats = TermStats()
    terms = ["coffee", "garden", "kyoto"]
    owner_big, owner_small = ("u" + u.encode().hex() for u in ("big", "small"))
    plan = stats.match(conn, owner_big, terms, 100)
    assert plan == (
        f'owner:"{owner_big}" AND ("kyoto") AND (owner:"{owner_big}" OR "coffee" OR "garden")',
        True,
    )
    assert stats.match(conn, owner_small, terms, 100) == (
        f'owner:"{owner_small}" AND ("coffee" OR "garden" OR "kyoto")',
        False,
    )
    assert stats.match(conn, owner_big, terms, 0)[1] is False
    # Rare terms must select at least `min_rows` (estimated): here kyoto alone is too few.
    assert stats.match(conn, owner_big, terms, 100, min_rows=40)[0].startswith(
        f'owner:"{owner_big}" AND ("kyoto" OR "coffee")'
    )
    # Tokens are the index's own stems; punctuation-only terms have none.
    assert stats.tokens(conn, ["Running", "stations", "--"]) == [("run",), ("station",), ()]
    # A second connection has no TEMP tables yet: they are made on first use.
    other = sqlite3.connect(tmp_path / "p.db")
    assert TermStats().match(other, owner_big, terms, 100) == plan
    conn.close()
    other.close()


def test_rare_words_that_select_too_few_rows_fall_back_to_every_match(tmp_path: Path) -> None:
    """Counts are for all users: a word common elsewhere but rare for this user selects
    fewer rows than asked, and the search scores every match instead."""
    with MemVault(_settings(tmp_path, budget=100)) as vault:
        _fill(vault, "big", 600, rare_every=300)  # two Kyoto rows
        vault.add_many("other", [{"content": f"Kyoto trip {i}"} for i in range(200)])
        hits = vault.search("big", "garden kyoto", k=10, mode="lexical")
    assert len(hits) == 10
    assert [("Kyoto" in h.memory.text) for h in hits[:2]] == [True, True]
    assert all("garden" in h.memory.text for h in hits[2:])


def test_deleted_rows_at_the_top_of_the_index_do_not_shorten_results(tmp_path: Path) -> None:
    with MemVault(_settings(tmp_path, budget=0)) as vault:
        best = vault.add_many(
            "u", [{"content": f"walrus walrus walrus {i}"} for i in range(FTS_FIRST_SLACK + 10)]
        )
        rest = vault.add_many(
            "u", [{"content": f"a walrus and many other words {i}"} for i in range(10)]
        )
        for m in best:
            vault.delete("u", m.memory_id)
        hits = vault.search("u", "walrus", k=10, mode="lexical")
        assert sorted(h.memory.memory_id for h in hits) == sorted(m.memory_id for m in rest)
        assert len(vault.search("u", "walrus", k=5, mode="lexical")) == 5


def test_rows_by_key_use_the_primary_key_whatever_the_filters(tmp_path: Path) -> None:
    """With dozens of keys and no statistics, SQLite would walk the user's index instead."""
    with MemVault(_settings(tmp_path, budget=0)) as vault:
        vault.add("u", "hello")
    conn = sqlite3.connect(tmp_path / "p.db")
    st = Statements(sqlite_dialect.dialect(paramstyle="named"), FTS_WEIGHTS)
    for filters in (Filters(), Filters(namespaces=["a", "b"]), Filters(session_id="s")):
        for light in (True, False):
            sql, params = st.by_pks(filters, 60, light=light)
            params.update({f"pk_{i}": i for i in range(60)}, user_id="u", now="2026")
            plan = " ".join(r[3] for r in conn.execute("EXPLAIN QUERY PLAN " + sql, params))
            assert "INTEGER PRIMARY KEY" in plan, plan
    conn.close()


def test_assistant_replies_rank_below_what_the_user_said(tmp_path: Path) -> None:
    said = "I keep bees on the roof of my flat"
    reply = "Bees on a roof need shade and water: rooftop bees fly higher, so roof hives suit bees"
    with MemVault(_settings(tmp_path, budget=0)) as vault:
        user = vault.add("u", said, metadata={"role": "user"})
        bot = vault.add("u", reply, metadata={"role": "assistant"})
        hits = vault.search("u", "bees on the roof", mode="lexical", explain=True)
        assert [h.memory.memory_id for h in hits] == [user.memory_id, bot.memory_id]
        assert [h.explain["assistant"] for h in hits if h.explain] == [0.0, 1.0]
    plain = _settings(tmp_path, budget=0).model_copy(update={"search_weight_assistant": 0.0})
    with MemVault(plain) as vault:
        hits = vault.search("u", "bees on the roof", mode="lexical")
        assert [h.memory.memory_id for h in hits] == [bot.memory_id, user.memory_id]


def test_memories_said_by_the_person_the_query_names_rank_higher(tmp_path: Path) -> None:
    def settings(weight: float) -> Settings:
        return _settings(tmp_path, budget=0).model_copy(update={"search_weight_speaker": weight})

    query = "What does Ann like to cook?"
    with MemVault(settings(0.0)) as vault:
        vault.add_many("u", [{"content": f"filler note number {i}"} for i in range(20)])
        ann = vault.add("u", "I like to cook on Sundays", metadata={"speaker": "Ann"})
        bob = vault.add("u", "Ann, I like to cook too", metadata={"speaker": "Bob"})
        lee = vault.add("u", "I like to cook with Ann", metadata={"speaker": "Ann Lee"})
        plain = vault.search("u", query, mode="lexical", explain=True)
    assert {h.memory.memory_id for h in plain[:2]} == {bob.memory_id, lee.memory_id}
    with MemVault(settings(0.5)) as vault:
        hits = vault.search("u", query, mode="lexical", explain=True)
    assert hits[0].memory.memory_id == ann.memory_id
    # Every word of the speaker must be named: "Ann Lee" is not "Ann".
    assert {h.memory.memory_id: h.explain["speaker"] for h in hits if h.explain} == {
        ann.memory_id: 1.0,
        bob.memory_id: 0.0,
        lee.memory_id: 0.0,
    }


def test_accesses_not_written_yet_count_in_the_ranking(tmp_path: Path) -> None:
    """Reads note accesses in memory and write them later (storage/access.py); a search in
    the same process ranks with them, as its hits report them."""
    later = _settings(tmp_path, budget=0).model_copy(update={"access_flush_interval_s": 3600.0})
    with MemVault(later) as vault:
        read = vault.add("u", "notes about the garden party")
        newer = vault.add("u", "notes about the garden party")  # more recent: ahead when equal
        for _ in range(5):
            vault.get("u", read.memory_id)
        hits = vault.search("u", "garden party", k=2, mode="lexical", explain=True)
        assert [h.memory.memory_id for h in hits] == [read.memory_id, newer.memory_id]
        assert hits[0].explain is not None
        assert hits[0].explain["access"] == scoring.access(5)  # this search's own comes after
        assert hits[0].memory.access_count == 6
        again = vault.search("u", "garden party", k=2, mode="lexical", explain=True)
        assert again[1].explain is not None
        assert again[1].explain["access"] == scoring.access(1)  # the first search's hit
    with MemVault(later) as vault:  # written on close: the stored counts rank the same
        hits = vault.search("u", "garden party", k=2, mode="lexical", explain=True)
        assert [h.memory.memory_id for h in hits] == [read.memory_id, newer.memory_id]
        assert hits[0].explain is not None
        assert hits[0].explain["access"] == scoring.access(7)
