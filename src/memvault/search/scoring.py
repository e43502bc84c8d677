"""How a hit's score is made (pure; documented in docs/search.md).

1. Relevance fuses the two rankings by score, not by rank: the lexical BM25 score divided by
   the best one among the candidates, and the vector cosine scaled between the weakest and
   the strongest vector candidate. `relevance = w_lexical * lexical + w_vector * vector`.
   (Reciprocal-rank fusion lost to BM25 alone on LongMemEval; score fusion keeps how much
   better the best lexical match is.)
2. Then small, bounded adjustments: importance (0..1, 0.5 neutral), recency (half-life
   decay of the last update) and access frequency (log of the access count).
   `score = relevance + w_importance * (importance - 0.5) + w_recency * recency
            + w_access * access - w_assistant * (role == "assistant")`.
3. A conversation memory whose metadata `role` is `assistant` (what an assistant replied)
   ranks below what the user said: questions to a memory are about the user, and long,
   general replies match many words (LongMemEval: recall@10 0.876 -> 0.906).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import NamedTuple

from memvault.search.text import WORD_RE
from memvault.storage.base import Candidate


@dataclass(frozen=True)
class Weights:
    lexical: float = 1.0
    vector: float = 0.5
    neighbours: float = 0.15
    importance: float = 0.1
    recency: float = 0.05
    access: float = 0.02
    assistant: float = 0.3
    speaker: float = 0.3
    recency_half_life_days: float = 30.0


class Scored(NamedTuple):
    """A ranked candidate; `parts` (what `explain=True` shows) only when asked for."""

    candidate: Candidate
    score: float
    parts: dict[str, float] | None


def recency(updated_at: datetime, now: datetime, half_life_days: float) -> float:
    """1 for now, 0.5 one half-life ago."""
    age_days = max(0.0, (now - updated_at).total_seconds() / 86400.0)
    return math.pow(0.5, age_days / half_life_days) if half_life_days > 0 else 0.0


def access(count: int) -> float:
    """0 for never, 1 at 100 accesses, growing slowly past it."""
    return math.log1p(max(0, count)) / math.log1p(100)


def named(speaker: str, words: frozenset[str]) -> bool:
    """True when every word of `speaker` is among the query's `words` (casefolded)."""
    parts = [w.casefold() for w in WORD_RE.findall(speaker)]
    return bool(parts) and all(p in words for p in parts)


def relevance(candidates: Sequence[Candidate], weights: Weights) -> dict[int, tuple[float, ...]]:
    """(normalised lexical, normalised vector, relevance) of each candidate, by pk."""
    best_lex = max((c.lexical for c in candidates), default=0.0)
    sims = [c.vector for c in candidates if c.vector is not None]
    lo, hi = (min(sims), max(sims)) if sims else (0.0, 0.0)
    span = hi - lo
    out: dict[int, tuple[float, ...]] = {}
    for c in candidates:
        lex = c.lexical / best_lex if best_lex > 0 else 0.0
        if c.vector is None:
            vec = 0.0
        elif span > 1e-9:
            vec = (c.vector - lo) / span
        else:
            vec = 1.0 if c.vector > 0 else 0.0
        out[c.pk] = (lex, vec, weights.lexical * lex + weights.vector * vec)
    return out


def rank(
    candidates: Sequence[Candidate],
    weights: Weights,
    now: datetime,
    k: int,
    rel: dict[int, tuple[float, ...]] | None = None,
    boosts: dict[int, float] | None = None,
    words: frozenset[str] = frozenset(),
    explain: bool = False,
) -> list[Scored]:
    """The k best candidates by final score, best first, with their parts when `explain`.
    `boosts` adds the neighbour part (see `service.search`) to the candidates it names."""
    if not candidates:
        return []
    if rel is None:
        rel = relevance(candidates, weights)
    boosts = boosts or {}
    # Candidates share stamps (a batch), speakers (a conversation) and access counts:
    # compute each once. Scores first, for every candidate; the parts only for the k kept
    # (a hybrid search scores about a hundred candidates and keeps ten).
    recencies: dict[str, float] = {}
    speakers: dict[str | None, float] = {None: 0.0}
    accesses: dict[int, float] = {}
    w = weights
    scores: list[tuple[float, int, Candidate, float, float, float]] = []
    for c in candidates:
        lex, vec, base = rel.get(c.pk, (0.0, 0.0, 0.0))
        rec = recencies.get(c.updated_at)
        if rec is None:
            when = datetime.fromisoformat(c.updated_at)
            rec = recencies[c.updated_at] = recency(when, now, w.recency_half_life_days)
        spoke = speakers.get(c.speaker)
        if spoke is None:
            assert c.speaker is not None
            spoke = speakers[c.speaker] = 1.0 if named(c.speaker, words) else 0.0
        acc = accesses.get(c.access_count)
        if acc is None:
            acc = accesses[c.access_count] = access(c.access_count)
        score = (
            base
            + w.neighbours * boosts.get(c.pk, 0.0)
            + w.importance * (c.importance - 0.5)
            + w.recency * rec
            + w.access * acc
            - w.assistant * (1.0 if c.role == "assistant" else 0.0)
            + w.speaker * spoke
        )
        scores.append((-score, c.pk, c, lex, vec, rec))
    scores.sort(key=lambda t: (t[0], t[1]))
    out = []
    for neg, _, c, lex, vec, rec in scores[:k]:
        if not explain:
            out.append(Scored(c, -neg, None))
            continue
        parts = {
            "lexical": lex,
            "vector": vec,
            "neighbours": boosts.get(c.pk, 0.0),
            "importance": c.importance - 0.5,
            "recency": rec,
            "access": accesses[c.access_count],
            "assistant": 1.0 if c.role == "assistant" else 0.0,
            "speaker": speakers[c.speaker],
            "bm25": c.lexical,
            "cosine": c.vector if c.vector is not None else 0.0,
        }
        out.append(Scored(c, -neg, parts))
    return out
