"""Memory in prompts (seed 003 step 4, seed 001 phase 4): the messages a chat model gets.

The template, in order (docs/rest.md shows an example):

1. `{"role": "system", "content": system_prompt}` when a system prompt is given;
2. `{"role": "system", "content": "User Memory: <summary>\\n\\nRelevant memories:\\n- <text>
   (<type>)..."}` when the user has a summary or a memory matches: the summary first (seed
   003's exact `User Memory: {content}` when there is nothing else), then the memories the
   search ranks best, one per line, while they fit the budget;
3. the recent conversation history, oldest first, as many of the newest messages as fit;
4. `{"role": "user", "content": message}`.

Tokens are estimated as one per four characters plus four per message (no tokenizer of the
caller's model is at hand); the system prompt and the new message always go in.
"""

from __future__ import annotations

from memvault import limits
from memvault.errors import InvalidArgumentError
from memvault.models import ChatContext, ChatMessage, SearchHit, construct, content_text
from memvault.service import validate
from memvault.service.people import PeopleOps
from memvault.service.search import SearchOps

MEMORY_PREFIX = "User Memory: "
MEMORIES_HEADING = "Relevant memories:"
_PER_MESSAGE = 4
MAX_CONTEXT_K = 50
MAX_CONTEXT_HISTORY = 200


def estimate_tokens(text: str) -> int:
    """A model-independent estimate: about four characters per token."""
    return (len(text) + 3) // 4


def memory_line(hit: SearchHit) -> str:
    m = hit.memory
    kind = m.memory_type if m.category is None else f"{m.memory_type}, {m.category}"
    return f"- {' '.join(content_text(m.content).split())} ({kind})"


def memory_message(summary: str | None, lines: list[str]) -> str | None:
    """The "User Memory" system message, or None when there is nothing to say."""
    parts: list[str] = []
    if summary:
        parts.append(summary)
    if lines:
        parts.append("\n".join([MEMORIES_HEADING, *lines]))
    if not parts:
        return None
    return MEMORY_PREFIX + "\n\n".join(parts)


class ContextOps(SearchOps, PeopleOps):
    """The context-building call of the service. Concrete class: `AsyncMemVault`."""

    async def context(
        self,
        user_id: str,
        message: str,
        *,
        system_prompt: str | None = None,
        token_budget: int | None = None,
        k: int = 8,
        history_limit: int = 20,
        session_id: str | None = None,
    ) -> ChatContext:
        """The OpenAI-style `messages` for answering `message` from `user_id`, with the
        user's summary, the memories most relevant to the message and the recent history,
        within `token_budget` (default `context_token_budget`). Reads only: the message is
        not added to the history.

        Raises:
            InvalidArgumentError: empty message, k outside 1..50, history_limit outside
                0..200, a budget outside 100..1,000,000.
        """
        uid = validate.user_id(user_id)
        if not isinstance(message, str) or not message.strip():
            raise InvalidArgumentError("message must be a non-empty string", {"field": "message"})
        if len(message) > limits.MAX_CONTENT_CHARS:
            raise InvalidArgumentError(
                f"message is {len(message)} characters; at most {limits.MAX_CONTENT_CHARS}",
                {"field": "message", "limit": limits.MAX_CONTENT_CHARS},
            )
        if system_prompt is not None and (
            not isinstance(system_prompt, str) or len(system_prompt) > limits.MAX_CONTENT_CHARS
        ):
            raise InvalidArgumentError(
                f"system_prompt must be a string of at most {limits.MAX_CONTENT_CHARS} characters",
                {"field": "system_prompt"},
            )
        for field, text in (("message", message), ("system_prompt", system_prompt or "")):
            if "\x00" in text:
                raise InvalidArgumentError(
                    f"{field} must not contain NUL characters", {"field": field}
                )
        budget = self.settings.context_token_budget if token_budget is None else token_budget
        _check_int(budget, "token_budget", 100, 1_000_000)
        _check_int(k, "k", 1, MAX_CONTEXT_K)
        _check_int(history_limit, "history_limit", 0, MAX_CONTEXT_HISTORY)
        sid = None if session_id is None else validate.session_id(session_id)

        head = [] if not system_prompt else [ChatMessage(role="system", content=system_prompt)]
        tail = ChatMessage(role="user", content=message)
        used = sum(_cost(m.content) for m in (*head, tail))

        summary = await self.get_summary(uid)
        hits = await self.search(uid, message[: limits.MAX_QUERY_CHARS], k=k)
        summary_text = None if summary is None else summary.content
        lines: list[str] = []
        chosen: list[str] = []
        memory_text = memory_message(summary_text, lines)
        if memory_text is not None and used + _cost(memory_text) > budget:
            room = max(0, (budget - used - _PER_MESSAGE) * 4 - len(MEMORY_PREFIX))
            summary_text = (summary_text or "")[:room] or None
        for hit in hits:
            trial = memory_message(summary_text, [*lines, memory_line(hit)])
            if trial is not None and used + _cost(trial) <= budget:
                lines.append(memory_line(hit))
                chosen.append(hit.memory.memory_id)
        memory_text = memory_message(summary_text, lines)
        middle: list[ChatMessage] = []
        if memory_text is not None:
            middle.append(ChatMessage(role="system", content=memory_text))
            used += _cost(memory_text)

        history: list[ChatMessage] = []
        if history_limit:
            recent = await self.get_message_history(uid, limit=history_limit, session_id=sid)
            for msg in reversed(recent):
                if used + _cost(msg.content) > budget:
                    break
                history.append(ChatMessage(role=msg.role, content=msg.content))
                used += _cost(msg.content)
            history.reverse()
        return construct(
            ChatContext,
            {
                "messages": [*head, *middle, *history, tail],
                "memory_ids": chosen,
                "token_estimate": used,
                "token_budget": budget,
            },
        )


def _cost(text: str) -> int:
    return estimate_tokens(text) + _PER_MESSAGE


def _check_int(value: object, field: str, low: int, high: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not low <= value <= high:
        raise InvalidArgumentError(
            f"{field} must be an integer in [{low}, {high}], got {value!r}", {"field": field}
        )
