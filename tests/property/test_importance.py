"""Derived importance reads a text's two content signals (a word of obligation or risk; a
date or a number) with one regular expression where it used two: for any text, the score
is the one the two separate searches give."""

from __future__ import annotations

from hypothesis import given, settings
from hypothesis import strategies as st

from memvault.importance import _DATE_OR_NUMBER, _DATE_WORDS, _STRONG, _STRONG_WORDS, derive

WORDS = st.sampled_from(
    [
        "always",
        "Never",
        "must",
        "mustard",
        "allergic",
        "allergy2024",
        "diagnosed",
        "remember",
        "REMEMBER",
        "deadline",
        "3",
        "10am",
        "8:30",
        "2024-05-01",
        "abc123",
        "\u0663",  # an Arabic-Indic digit: \d matches it
        "may",
        "Maybe",
        "monday",
        "Sundays",
        "tea",
        "the",
        "?",
        ",",
        "-",
        "é",
    ]
)
SEPARATORS = st.sampled_from([" ", "", ", ", "\n", "_", "-"])


def _reference(memory_type: str, category: str | None, text: str) -> float:
    """The score as two separate searches give it (the rule in the module docstring)."""
    score = {"permanent": 900, "fact": 600, "preference": 600}.get(memory_type, 500)
    if category == "health":
        score += 250
    lower = text.lower()
    if _STRONG.search(lower):
        score += 100
    if _DATE_OR_NUMBER.search(lower):
        score += 50
    if len(text.split(None, 2)) < 3:
        score -= 100
    if text.rstrip().endswith("?"):
        score -= 150
    return min(950, max(50, score)) / 1000


@settings(max_examples=800, deadline=None)
@given(
    st.lists(st.tuples(WORDS, SEPARATORS), max_size=8),
    st.sampled_from(["note", "fact", "permanent"]),
    st.sampled_from([None, "health", "hobbies"]),
)
def test_one_search_scores_as_the_two_did(
    parts: list[tuple[str, str]], memory_type: str, category: str | None
) -> None:
    text = "".join(word + sep for word, sep in parts)
    assert derive(memory_type, category, text) == _reference(memory_type, category, text)


def test_each_signal_alone_and_both() -> None:
    assert derive("note", None, "we met at the cafe") == 0.5
    assert derive("note", None, "we met at the cafe at 3") == 0.55
    assert derive("note", None, "remember we met at the cafe") == 0.6
    assert derive("note", None, "remember we met at the cafe at 3") == 0.65
    assert derive("note", None, "on monday remember the cafe") == 0.65  # date first


def test_every_signal_word_counts_wherever_it_stands() -> None:
    """Each word of both sets, at the start, inside and at the end of a text (the search
    skips positions by the letters a signal word can begin with: a word left out of that
    class would go unseen)."""
    words = [
        w.replace("\\w*", "y").replace("\\d+", "7")
        for alternation in (_STRONG_WORDS, _DATE_WORDS)
        for w in alternation.split("|")
    ]
    assert len(words) == 32
    for word in words:
        for text in (f"{word} we met", f"we met {word} at the cafe", f"we met at {word}"):
            assert derive("note", None, text) == _reference("note", None, text) > 0.5, text
