"""The importance a new memory gets when its writer gives none (docs/extraction.md).

A base by memory type, a bonus by category, then small content signals; clipped to
[0.05, 0.95] so that an importance a user sets by hand (0 or 1) always outranks a derived
one. Given importances are never changed.

| type | base | | category | bonus |
|---|---|---|---|---|
| permanent | 0.90 | | health | +0.25 |
| fact, preference | 0.60 | | identity | +0.20 |
| event | 0.50 | | family, dates | +0.15 |
| summary | 0.50 | | location, work, education, pets | +0.10 |
| note and others | 0.50 | | plans, preferences | +0.05 |
| conversation | 0.50 | | hobbies, general, others | 0 |

Content: words of obligation or risk ("always", "never", "must", "allergic",
"emergency", "important", "remember", "deadline") add 0.10; a date or a number adds 0.05;
fewer than three words take 0.10 away; a question takes 0.15 away.
"""

from __future__ import annotations

import re

DEFAULT = 0.5
# In thousandths, so that sums are exact (no rounding of the result)
_TYPE = {"permanent": 900, "fact": 600, "preference": 600, "event": 500, "summary": 500}
_CATEGORY = {
    "health": 250,
    "identity": 200,
    "family": 150,
    "dates": 150,
    "location": 100,
    "work": 100,
    "education": 100,
    "pets": 100,
    "plans": 50,
    "preferences": 50,
}
# matched against the lower-cased text: re.I made each search 2.5 times slower
_STRONG_WORDS = (
    r"always|never|must|allerg\w*|emergency|important|remember|deadline|urgent|"
    r"password|medication|diagnos\w*"
)
_DATE_WORDS = (
    r"\d+|january|february|march|april|may|june|july|august|september|october|"
    r"november|december|monday|tuesday|wednesday|thursday|friday|saturday|sunday"
)


def _first_chars(*alternations: str) -> str:
    """A character class of what a match of these alternations begins with."""
    firsts = {
        alt[:2] if alt.startswith("\\") else alt[0]
        for words in alternations
        for alt in words.split("|")
    }
    return "[" + "".join(sorted(firsts)) + "]"


_STRONG = re.compile(rf"\b(?:{_STRONG_WORDS})\b")
_DATE_OR_NUMBER = re.compile(rf"\b(?:{_DATE_WORDS})\b")
# Both at once: the text up to the first signal of either kind is read once, not twice
# (the peer benchmark's 10,000 sentences, both ways alternating in one process: 5.5-5.8
# against 6.3-6.4 us, and 6.6-7.2 against 8.0-8.2 us on a slower minute). The two sets
# share no word, so the first match says which kind it is; the other kind can then only
# come after it (tests/property/test_importance.py holds it to the two searches).
# The lookahead (a class of the letters a signal word begins with, and digits) lets the
# search pass over most positions without trying every word: 2.4 against 3.0 us a search
# over the same sentences, alternating.
_EITHER = re.compile(
    rf"(?={_first_chars(_STRONG_WORDS, _DATE_WORDS)})\b(?:({_STRONG_WORDS})|{_DATE_WORDS})\b"
)


def derive(memory_type: str, category: str | None, text: str) -> float:
    """The derived importance of a memory (see the module docstring)."""
    score = _TYPE.get(memory_type, 500)
    if category is not None:
        score += _CATEGORY.get(category.lower(), 0)
    lower = text.lower()
    first = _EITHER.search(lower)
    if first is not None:
        if first.group(1) is not None:  # a strong word first: a date or number after it?
            score += 150 if _DATE_OR_NUMBER.search(lower, first.end()) else 100
        else:
            score += 150 if _STRONG.search(lower, first.end()) else 50
    if len(text.split(None, 2)) < 3:  # fewer than three words (stops at the third)
        score -= 100
    if text.rstrip().endswith("?"):
        score -= 150
    return min(950, max(50, score)) / 1000
