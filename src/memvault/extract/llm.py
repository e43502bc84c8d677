"""Extraction and summaries by any OpenAI-compatible chat completions endpoint (OpenAI,
Ollama, vLLM, llama.cpp's server, ...).

`ChatClient` posts `{base_url}/chat/completions` with the model, the messages, temperature
0 and, by default, `response_format: {"type": "json_object"}` (a server that refuses it
with a 400 is asked again without it). Timeouts, connection errors, 429 and 5xx are retried
`retries` times with exponential backoff, then raise `ExtractionError(retry=True)`: the job
goes back to the queue. Other 4xx answers raise `ExtractionError(retry=False)`.

`LlmExtractor` asks for `{"facts": [...]}` and keeps what is well-formed: a fact without
text is dropped, an unknown category becomes `general`, an importance outside 0..1 or a
date it cannot read is ignored. An answer that is not JSON at all raises
`ExtractionError(retry=True)` (models are not deterministic; the next try may be fine).

Prompts are templates: `{today}`, `{categories}`, `{speaker}` are replaced; everything
else is sent as written (JSON braces included). `MEMVAULT_EXTRACT_PROMPT_FILE` and
`MEMVAULT_SUMMARY_PROMPT_FILE` replace the defaults below.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx

from memvault import limits
from memvault.extract import CATEGORIES, ExtractionError, Fact, Known, Turn

MAX_FACTS = limits.MAX_FACTS_PER_MESSAGE
MAX_FACT_CHARS = limits.MAX_FACT_CHARS
_SLOT_RE = re.compile(r"^[a-z][a-z0-9_.]{0,63}$")
_FENCE_RE = re.compile(r"^\s*```(?:json)?\s*(.*?)\s*```\s*$", re.S)

EXTRACT_PROMPT = """\
You extract long-term memories about a person from their messages to an assistant.
Today is {today}. The person is {speaker}.

Return only JSON: {"facts": [{"text": "...", "category": "...", "slot": null,
"importance": null, "valid_from": null, "ends": false, "replaces": []}]}

- text: one short standalone statement about the person, present tense, without "I"
  ("Lives in Lisbon", "Is allergic to peanuts", "Plans to visit Rome in May").
- category: one of {categories}.
- slot: for an attribute a person has one value of at a time, a dotted name such as
  "location.home", "work.employer", "work.role", "identity.name", "family.status";
  otherwise null. A new value for a slot replaces the old one.
- importance: 0 to 1, how much it matters to remember (health and identity high,
  passing likes low), or null.
- valid_from: the date (YYYY-MM-DD) the fact holds from when the message says one, else null.
- ends: true when the message says a slot no longer holds ("I quit my job"): then give
  the slot and leave text empty.
- replaces: the refs (such as "F2") of the known facts, listed with the message, that
  this fact makes untrue ("Dislikes coffee" replaces "Likes coffee"); else [].
  Repeating a known fact is not a new fact: leave it out.

Only what the person states about themselves and means; no questions, hypotheticals,
jokes or facts about other people. When there is nothing to remember: {"facts": []}.
"""

SUMMARY_PROMPT = """\
Write a short summary (at most 8 sentences) of what an assistant knows about a person,
from the facts and recent messages below. Plain prose, third person, most important first.
Today is {today}. The person is {speaker}.
"""


def load_prompt(path: str, default: str) -> str:
    """The template at `path` (a prompt file setting), or `default` when unset."""
    if not path:
        return default
    try:
        return Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ExtractionError(f"cannot read prompt file {path}: {exc}", retry=False) from exc


def fill(template: str, *, today: str, speaker: str) -> str:
    return (
        template.replace("{today}", today)
        .replace("{categories}", ", ".join(CATEGORIES))
        .replace("{speaker}", speaker)
    )


class ChatClient:
    """A blocking OpenAI-compatible chat completions client with retries."""

    def __init__(
        self,
        base_url: str,
        *,
        model: str,
        api_key: str | None = None,
        timeout_s: float = 30.0,
        retries: int = 2,
        backoff_s: float = 0.5,
        json_mode: bool = True,
    ) -> None:
        self.url = base_url.rstrip("/") + "/chat/completions"
        self.model = model
        self.retries = retries
        self.backoff_s = backoff_s
        self.json_mode = json_mode
        headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._client = httpx.Client(timeout=timeout_s, headers=headers)

    def complete(self, messages: Sequence[dict[str, str]], *, want_json: bool) -> str:
        """The assistant message's text. Raises `ExtractionError`."""
        body: dict[str, Any] = {"model": self.model, "messages": list(messages), "temperature": 0}
        if want_json and self.json_mode:
            body["response_format"] = {"type": "json_object"}
        last = "no attempt made"
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                resp = self._client.post(self.url, json=body)
            except httpx.TimeoutException:
                last = f"{self.url} timed out"
                continue
            except httpx.HTTPError as exc:
                last = f"{self.url} unreachable: {exc}"
                continue
            if resp.status_code == 400 and "response_format" in body:
                body.pop("response_format")  # a server without JSON mode: ask plainly
                last = f"{self.url} refused response_format"
                continue
            if resp.status_code == 429 or resp.status_code >= 500:
                last = f"{self.url} answered {resp.status_code}: {resp.text[:200]}"
                continue
            if resp.status_code != 200:
                raise ExtractionError(
                    f"{self.url} answered {resp.status_code}: {resp.text[:200]}", retry=False
                )
            try:
                content = resp.json()["choices"][0]["message"]["content"]
            except (ValueError, KeyError, IndexError, TypeError):
                last = f"{self.url} sent a body that is not a chat completion"
                continue
            if not isinstance(content, str):
                last = f"{self.url} sent a completion without text"
                continue
            return content
        raise ExtractionError(f"after {self.retries + 1} attempts: {last}", retry=True)

    def close(self) -> None:
        self._client.close()


def parse_facts(answer: str, said_at: datetime, refs: set[str] | None = None) -> list[Fact]:
    """The well-formed facts of a model's answer (see the module docstring); `replaces`
    keeps only refs of the known facts that were shown (`refs`)."""
    fenced = _FENCE_RE.match(answer)
    text = fenced.group(1) if fenced else answer.strip()
    try:
        data = json.loads(text)
    except ValueError:
        raise ExtractionError(f"the model's answer is not JSON: {answer[:120]!r}") from None
    items = data.get("facts") if isinstance(data, dict) else data
    if not isinstance(items, list):
        raise ExtractionError("the model's answer has no list of facts")
    out: list[Fact] = []
    for item in items[:MAX_FACTS]:
        if not isinstance(item, dict):
            continue
        ends = item.get("ends") is True
        slot = item.get("slot")
        slot = slot.strip().lower() if isinstance(slot, str) else None
        if slot is not None and not _SLOT_RE.match(slot):
            slot = None
        fact_text = item.get("text")
        fact_text = " ".join(fact_text.split()) if isinstance(fact_text, str) else ""
        if ends:
            if slot is None:
                continue
            fact_text = ""
        elif not fact_text or len(fact_text) > MAX_FACT_CHARS or "\x00" in fact_text:
            continue
        category = item.get("category")
        category = category.strip().lower() if isinstance(category, str) else "general"
        if category not in CATEGORIES:
            category = "general"
        importance = item.get("importance")
        if (
            isinstance(importance, bool)
            or not isinstance(importance, int | float)
            or not 0.0 <= float(importance) <= 1.0
        ):
            importance = None
        replaces = item.get("replaces")
        shown = refs or set()
        kept = (
            tuple(dict.fromkeys(r for r in replaces if isinstance(r, str) and r in shown))
            if isinstance(replaces, list)
            else ()
        )
        out.append(
            Fact(
                text=fact_text,
                category=category,
                slot=slot,
                importance=None if importance is None else float(importance),
                valid_from=_date(item.get("valid_from"), said_at),
                ends=ends,
                replaces=kept,
            )
        )
    return out


def _date(value: Any, said_at: datetime) -> datetime | None:
    if not isinstance(value, str) or not value.strip():
        return None
    try:
        parsed = datetime.fromisoformat(value.strip())
    except ValueError:
        return None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    if parsed.year < 1900 or parsed > said_at.replace(year=min(said_at.year + 50, 9999)):
        return None
    return parsed.astimezone(UTC)


def _transcript(turn: Turn, context: list[Turn], known: Sequence[Known]) -> str:
    head = ""
    if known:
        facts = [f"[{k.ref}] {k.text}" + (f" (slot {k.slot})" if k.slot else "") for k in known]
        head += "Known facts:\n" + "\n".join(facts) + "\n\n"
    lines = [f"{t.speaker or t.role}: {t.content}" for t in context]
    if lines:
        head += "Earlier messages:\n" + "\n".join(lines) + "\n\n"
    return f"{head}Message to extract from ({turn.speaker or turn.role}):\n{turn.content}"


class LlmExtractor:
    """Facts from a chat model; see the module docstring."""

    name = "llm"
    reads_known = True

    def __init__(self, client: ChatClient, prompt: str = EXTRACT_PROMPT) -> None:
        self.client = client
        self.prompt = prompt

    def extract(self, turn: Turn, context: list[Turn], known: Sequence[Known] = ()) -> list[Fact]:
        system = fill(
            self.prompt,
            today=turn.created_at.date().isoformat(),
            speaker=turn.speaker or "the user",
        )
        answer = self.client.complete(
            [
                {"role": "system", "content": system},
                {"role": "user", "content": _transcript(turn, context, known)},
            ],
            want_json=True,
        )
        return parse_facts(answer, turn.created_at, {k.ref for k in known})


class LlmSummarizer:
    """A user's summary written by a chat model."""

    def __init__(self, client: ChatClient, prompt: str = SUMMARY_PROMPT) -> None:
        self.client = client
        self.prompt = prompt

    def summarize(self, facts: Sequence[str], recent: Sequence[str], speaker: str) -> str:
        system = fill(self.prompt, today=datetime.now(UTC).date().isoformat(), speaker=speaker)
        body = "Facts:\n" + "\n".join(f"- {f}" for f in facts)
        if recent:
            body += "\n\nRecent messages:\n" + "\n".join(f"- {r}" for r in recent)
        text = self.client.complete(
            [{"role": "system", "content": system}, {"role": "user", "content": body}],
            want_json=False,
        ).strip()
        if not text:
            raise ExtractionError("the model wrote an empty summary")
        return text
