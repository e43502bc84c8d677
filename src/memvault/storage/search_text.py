"""Text the full-text index adds to a memory, on every backend: its neighbouring dialogue
turns (memories said in a conversation), its ISO dates spelled out in words, and the
character pairs of text written without spaces between words (Chinese, Japanese, Korean)."""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator, Sequence
from datetime import date
from typing import Any

from memvault import limits

_WORD_RE = re.compile(r"\w+", re.UNICODE)
CONTEXT_WINDOW = 2
MAX_QUERY_TERMS = 64  # distinct query words a full-text search uses
CONTEXT_MAX_WORDS = 45


def _words(text: str) -> int:
    return len(_WORD_RE.findall(text))


_ISO_DATE_RE = re.compile(r"\b(\d{4})-(\d{2})-(\d{2})(?=\b|T)")
_MONTHS = (
    "january",
    "february",
    "march",
    "april",
    "may",
    "june",
    "july",
    "august",
    "september",
    "october",
    "november",
    "december",
)
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
MAX_DATES = 4


def date_words(text: str) -> str:
    """ISO dates in `text` as words ("2023-10-13" -> "october 13 2023 friday"), so a
    question that says "on October 13, 2023" finds a memory stamped 2023-10-13 (LoCoMo dev
    hybrid recall@10 +0.013 in a prototype)."""
    if "-" not in text:  # no ISO date; most memories (and the regex is most of the cost)
        return ""
    out = []
    for y, mo, d in _ISO_DATE_RE.findall(text)[:MAX_DATES]:
        try:
            day = date(int(y), int(mo), int(d))
        except ValueError:
            continue
        out.append(f"{_MONTHS[day.month - 1]} {day.day} {day.year} {_WEEKDAYS[day.weekday()]}")
    return " ".join(dict.fromkeys(out))


# Han (with extension A, compatibility and the supplementary planes' ideographs), kana
# and Hangul syllables: scripts whose words are not separated by spaces (Korean is, but
# its particles join the word before them). The full-text tokenizers (FTS5's unicode61,
# PostgreSQL's parser) make one token of a whole run, so a word inside it is never found.
_UNSPACED_RUN = re.compile(
    "[\u3040-\u309f\u30a0-\u30fa\u30fc-\u30ff\u31f0-\u31ff\u3400-\u4dbf"
    "\u4e00-\u9fff\uac00-\ud7af\uf900-\ufaff\U00020000-\U0002fa1f]+"
)


def unspaced_grams(text: str) -> list[str]:
    """The overlapping character pairs of each run of Han, kana or Hangul in `text` (a run of
    one character: itself), distinct, in order: "我喜欢喝绿茶" -> 我喜 喜欢 欢喝 喝绿 绿茶.
    Indexed beside a memory and searched beside the query's words, they let "绿茶" find it
    (the bigram indexing of CJK full-text engines). Empty for text without such runs."""
    if text.isascii():
        return []
    out: dict[str, None] = {}
    cap = limits.MAX_CHARACTER_PAIRS
    for run in _UNSPACED_RUN.findall(text):
        for j in range(max(1, len(run) - 1)):
            if len(out) >= cap:
                return list(out)
            out[run[j : j + 2]] = None
    return list(out)


def search_context(texts: Sequence[str], i: int, conversation: bool) -> str | None:
    """What the full-text index adds to the i-th memory: its neighbours' text (memories of a
    conversation only), its dates in words, and the character pairs of the Chinese, Japanese
    or Korean in both (`unspaced_grams`). Its own pairs are written twice: in this one
    column they then score above the same pairs of a neighbour (BM25's term frequency: 1.4
    times), as its own words in the content column score above its neighbours' here."""
    near = neighbour_context(texts, i) if conversation else None
    own = texts[i]
    grams = unspaced_grams(own)
    grams += grams
    if near is not None and (more := unspaced_grams(near)):
        mine = set(grams)
        grams += [g for g in more if g not in mine]
    parts = [near, date_words(own), " ".join(grams)]
    joined = " ".join(p for p in parts if p)
    return joined or None


def neighbour_context(texts: Sequence[str], i: int) -> str | None:
    """The search context of the i-th memory of a conversation: its neighbours' text, when
    they are short dialogue turns (median of the window at most `CONTEXT_MAX_WORDS` words).
    Long memories carry their own words; adding their neighbours' measured worse. Lexical
    recall@10 with bench/retrieval_adapter.py (dev halves): LoCoMo 0.634 without context,
    0.760 with this rule; LongMemEval_S first 40 questions 0.844 without context, 0.750
    with it for every memory, 0.846 with this rule."""
    lo, hi = max(0, i - CONTEXT_WINDOW), min(len(texts), i + CONTEXT_WINDOW + 1)
    lengths = sorted(_words(t) for t in texts[lo:hi])
    if lengths[len(lengths) // 2] > CONTEXT_MAX_WORDS:
        return None
    around = [texts[j] for j in range(lo, hi) if j != i]
    return " ".join(around) or None


def fresh_contexts(
    rows: Iterable[Sequence[Any]], *, unspaced_only: bool = False
) -> Iterator[tuple[int, str | None]]:
    """(pk, context) for each of `rows` whose search context is not what `search_context`
    gives now. `rows`: (pk, user_id, session_id, content, context) of live memories, ordered
    by user, session and pk (a conversation's turns together, in order; any iterable, read
    once). With `unspaced_only`, only memories whose conversation (or themselves, outside
    one) holds text other than ASCII are looked at: the contexts that character pairs
    change (migration 0013)."""
    group: list[Sequence[Any]] = []
    for row in rows:
        if group and (row[1] != group[0][1] or row[2] != group[0][2] or row[2] is None):
            yield from _fresh_group(group, unspaced_only)
            group = []
        group.append(row)
    if group:
        yield from _fresh_group(group, unspaced_only)


def _fresh_group(
    group: list[Sequence[Any]], unspaced_only: bool
) -> Iterator[tuple[int, str | None]]:
    texts = [r[3] for r in group]
    if unspaced_only and all(t.isascii() for t in texts):
        return
    for i, r in enumerate(group):
        ctx = search_context(texts, i, r[2] is not None)
        if ctx != r[4]:
            yield r[0], ctx
