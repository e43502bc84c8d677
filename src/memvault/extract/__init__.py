"""Memories from conversations: extractors turn what a user says into facts.

An extractor reads one message (with the few messages before it) and returns `Fact`s: a
short statement, a category, optionally the single-valued attribute it sets (`slot`, such
as `location.home`: a newer fact for the same slot supersedes the older one), an
importance, and the time it holds from. Two ship with memvault:

- `rules` (`memvault.extract.rules`): English patterns for self-disclosure; no model, no
  network, microseconds a message;
- `llm` (`memvault.extract.llm`): any OpenAI-compatible chat completions endpoint, asked
  for JSON.

The service (`memvault.service.extraction`) runs them from the job table and decides, for
each fact, whether it is new, repeats a stored memory (merge) or replaces one (supersede).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol

CATEGORIES = (
    "identity",
    "location",
    "work",
    "education",
    "family",
    "pets",
    "preferences",
    "hobbies",
    "health",
    "dates",
    "plans",
    "general",
)
"""The categories extracted facts carry (an LLM's other answers become `general`)."""


class ExtractionError(Exception):
    """An extractor could not answer. `retry`: trying again later may work (a timeout, a
    server error, malformed output); False for answers that will not change (bad request,
    refused credentials)."""

    def __init__(self, message: str, *, retry: bool = True) -> None:
        super().__init__(message)
        self.retry = retry


@dataclass(frozen=True)
class Turn:
    """A message as an extractor sees it."""

    role: str
    content: str
    created_at: datetime
    message_id: str | None = None
    speaker: str | None = None  # who said it, by name (metadata `speaker`)


@dataclass(frozen=True)
class Fact:
    """One thing learned about the speaker.

    `text` stands alone ("Lives in Lisbon"). `slot` names a single-valued attribute; a
    fact with `ends=True` says that the attribute no longer holds ("I quit my job") and
    carries no statement of its own. `valid_from` is when it holds from (None: when it
    was said)."""

    text: str
    category: str = "general"
    slot: str | None = None
    importance: float | None = None
    valid_from: datetime | None = None
    ends: bool = False
    tags: tuple[str, ...] = field(default_factory=tuple)
    replaces: tuple[str, ...] = ()  # refs of `Known` facts this one makes untrue


@dataclass(frozen=True)
class Known:
    """A current fact of the user, shown to an extractor that can judge contradictions
    (`Extractor.reads_known`): `ref` is how its answer names it."""

    ref: str
    text: str
    slot: str | None = None


class Extractor(Protocol):
    """What the service calls; may block (it runs off the event loop)."""

    name: str
    reads_known: bool  # True: the service passes the user's current facts like the message

    def extract(self, turn: Turn, context: list[Turn], known: Sequence[Known] = ()) -> list[Fact]:
        """The facts `turn` states; `context` is the messages just before it, oldest
        first; `known`, the user's current facts closest to it (when `reads_known`).
        Raises `ExtractionError`."""
        ...
