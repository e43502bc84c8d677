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
_STRONG = re.compile(
    r"\b(?:always|never|must|allerg\w*|emergency|important|remember|deadline|urgent|"
    r"password|medication|diagnos\w*)\b"
)
_DATE_OR_NUMBER = re.compile(
    r"\b(?:\d+|january|february|march|april|may|june|july|august|september|october|"
    r"november|december|monday|tuesday|wednesday|thursday|friday|saturday|sunday)\b"
)


def derive(memory_type: str, category: str | None, text: str) -> float:
    """The derived importance of a memory (see the module docstring)."""
    score = _TYPE.get(memory_type, 500)
    if category is not None:
        score += _CATEGORY.get(category.lower(), 0)
    lower = text.lower()
    if _STRONG.search(lower):
        score += 100
    if _DATE_OR_NUMBER.search(lower):
        score += 50
    if len(text.split(None, 2)) < 3:  # fewer than three words (stops at the third)
        score -= 100
    if text.rstrip().endswith("?"):
        score -= 150
    return min(950, max(50, score)) / 1000
