"""Pure rules: ids, streaks, expiry, FTS query quoting, cursors."""

from __future__ import annotations

from datetime import UTC, date, datetime, timedelta

import pytest

from memvault import InvalidArgumentError, ids, limits
from memvault.search.text import query_terms, without_words
from memvault.service.ttl import expiry, next_streak
from memvault.storage.search_text import search_context, unspaced_grams
from memvault.storage.sql.queries import decode_cursor, encode_cursor
from memvault.storage.sqlite import fts_query

NOW = datetime(2026, 1, 1, tzinfo=UTC)


def test_ids_are_prefixed_sortable_and_valid() -> None:
    made = [ids.new_id("mem") for _ in range(1000)]
    assert made == sorted(made)
    assert len(set(made)) == 1000
    assert all(ids.is_valid_id(m, "mem") and not ids.is_valid_id(m, "ses") for m in made)
    with pytest.raises(ValueError, match="unknown id prefix"):
        ids.new_id("xyz")


def test_an_id_spells_its_time_and_random_bits_whatever_halves_it_reuses(monkeypatch) -> None:
    """Ids of one millisecond reuse the encoded time and the random part's first half: each
    id must still be the full 130-bit encoding, also when counting up carries into that
    first half."""
    ahead = ids.time.time_ns() // 1_000_000 + 10**6  # later than now: every id counts up
    monkeypatch.setattr(ids, "_last_ms", ahead)
    monkeypatch.setattr(ids, "_last_rand", (5 << 40) + (1 << 40) - 3)
    made = []
    for _ in range(6):  # the third carries into the first half
        made.append(ids.new_id("mem"))
        assert made[-1] == f"mem_{ids._encode(ahead, 10)}{ids._encode(ids._last_rand, 16)}"
    assert ids._last_rand == (6 << 40) + 3
    assert made == sorted(made)
    assert len(set(made)) == 6
    assert made[1][-16:-8] != made[2][-16:-8]  # the first half moved on


def test_a_batch_of_ids_is_what_one_id_at_a_time_gives(monkeypatch) -> None:
    """`new_ids` (add_many's) spells each id in full, counts up across a carry into the
    random part's first half, and leaves the counter where the next id goes on from."""
    ahead = ids.time.time_ns() // 1_000_000 + 10**6
    start = (5 << 40) + (1 << 40) - 3
    monkeypatch.setattr(ids, "_last_ms", ahead)
    monkeypatch.setattr(ids, "_last_rand", start)
    batch = ids.new_ids("mem", 6) + ids.new_ids("mem", 1)
    one_by_one = [f"mem_{ids._encode(ahead, 10)}{ids._encode(start + i, 16)}" for i in range(1, 8)]
    assert batch == one_by_one
    assert ids.new_id("mem") == f"mem_{ids._encode(ahead, 10)}{ids._encode(start + 8, 16)}"
    with pytest.raises(ValueError, match="unknown id prefix"):
        ids.new_ids("xyz", 2)


@pytest.mark.parametrize(
    ("last", "cur", "longest", "today", "want"),
    [
        (None, 0, 0, date(2026, 1, 5), (1, 1, date(2026, 1, 5))),
        (date(2026, 1, 4), 3, 3, date(2026, 1, 5), (4, 4, date(2026, 1, 5))),
        (date(2026, 1, 5), 3, 5, date(2026, 1, 5), (3, 5, date(2026, 1, 5))),
        (date(2026, 1, 1), 3, 5, date(2026, 1, 5), (1, 5, date(2026, 1, 5))),
        (date(2026, 1, 6), 2, 2, date(2026, 1, 5), (2, 2, date(2026, 1, 6))),
    ],
)
def test_next_streak(last, cur, longest, today, want) -> None:
    assert next_streak(last, cur, longest, today) == want


def test_expiry() -> None:
    assert expiry(NOW, 60, None) == NOW + timedelta(seconds=60)
    assert expiry(NOW, None, None) is None
    with pytest.raises(InvalidArgumentError):
        expiry(NOW, None, NOW)


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ('tea "and" coffee', '"tea" OR "coffee"'),
        ("the and", '"the" OR "and"'),
        ('say "hi" NEAR me', '"say" OR "hi" OR "near"'),
        ("NEAR(a b) -x*", '"near" OR "b" OR "x"'),
        ("***", None),
        ("日本 ü", '"日本" OR "ü"'),
    ],
)
def test_fts_query_quotes_every_word(text: str, want: str | None) -> None:
    assert fts_query(query_terms(text)) == want


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("我喜欢喝绿茶", ["我喜", "喜欢", "欢喝", "喝绿", "绿茶"]),
        ("Tokyo: 東京タワー, 서울에서!", ["東京", "京タ", "タワ", "ワー", "서울", "울에", "에서"]),
        ("茶 and 茶", ["茶"]),  # a run of one character: itself, once
        ("绿茶绿茶", ["绿茶", "茶绿"]),
        ("plain English", []),
        ("café naïve Ελλάδα", []),  # spaced scripts: the tokenizer's words are enough
    ],
)
def test_unspaced_text_is_indexed_by_character_pairs(text: str, want: list[str]) -> None:
    assert unspaced_grams(text) == want


def test_character_pairs_are_capped_and_join_the_search_context() -> None:
    long = "".join(chr(0x4E00 + i) for i in range(2 * limits.MAX_CHARACTER_PAIRS))
    assert len(unspaced_grams(long)) == limits.MAX_CHARACTER_PAIRS
    runs = " ".join(chr(0x4E00 + i) for i in range(2 * limits.MAX_CHARACTER_PAIRS))
    assert len(unspaced_grams(runs)) == limits.MAX_CHARACTER_PAIRS  # runs of one too
    assert search_context(["2023-10-13 去了东京"], 0, False) == (
        "october 13 2023 friday 去了 了东 东京 去了 了东 东京"  # its own pairs: twice
    )
    assert search_context(["plain text"], 0, False) is None
    turns = ["你周末做什么", "去公园", "公园跑步"]  # a conversation: the neighbours' pairs once
    assert search_context(turns, 1, True) == (
        "你周末做什么 公园跑步 去公 公园 去公 公园 你周 周末 末做 做什 什么 园跑 跑步"
    )


def test_query_words_of_unspaced_text_bring_their_character_pairs() -> None:
    assert query_terms("我喜欢喝什么\uff1f") == [
        "我喜欢喝什么",
        "我喜",
        "喜欢",
        "欢喝",
        "喝什",
        "什么",
    ]
    assert query_terms("绿茶") == ["绿茶"]
    assert query_terms("What is 绿茶?") == ["绿茶"]
    assert len(query_terms("".join(chr(0x4E00 + i) for i in range(200)))) == 64


@pytest.mark.parametrize(
    ("text", "words", "want"),
    [
        ("What does Melanie's kid like, Melanie?", {"melanie"}, "What does kid like,?"),
        ("When did CAROLINE and Melanie meet", {"melanie", "caroline"}, "When did and meet"),
        ("Was ist Jörg\u2019s Hund?", {"jörg"}, "Was ist Hund?"),
        ("Melanies painting", {"melanie"}, "Melanies painting"),  # a whole word only
        ("Melanie?", {"melanie"}, "Melanie?"),  # nothing would be left: unchanged
        ("Ann Lee's garden", {"ann", "lee"}, "garden"),
    ],
)
def test_without_words_drops_names_and_their_possessive(
    text: str, words: set[str], want: str
) -> None:
    assert without_words(text, frozenset(words)) == want


def test_cursor_round_trip_and_tamper() -> None:
    c = encode_cursor("created_desc", "2026-01-01T00:00:00.000000+00:00", 42)
    assert decode_cursor(c, "created_desc") == ("2026-01-01T00:00:00.000000+00:00", 42)
    with pytest.raises(InvalidArgumentError):
        decode_cursor(c, "created_asc")
    with pytest.raises(InvalidArgumentError):
        decode_cursor("!!", "created_desc")


def test_an_undrained_notice_backlog_turns_into_a_reset(monkeypatch: pytest.MonkeyPatch) -> None:
    from memvault.storage import postgres

    monkeypatch.setattr(postgres, "MAX_BACKLOG", 3)
    listener = postgres.ChangeListener("postgresql://127.0.0.1:1/none")  # never connects
    listener._connected.set()  # as if LISTEN were established
    listener.drain()
    listener._take('{"m": [["u", "a"], ["u", "b"]], "u": ["u"]}')
    assert listener.drain() == ([("u", "a"), ("u", "b")], ["u"], False)
    listener._take('{"m": [["u", "a"], ["u", "b"], ["u", "c"]], "u": ["u"]}')
    assert listener.drain() == ([], [], True)  # too many to keep: everything changed
