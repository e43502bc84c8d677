"""Users and what the service keeps about them beside memories: conversation history,
facts, permanent memories, usage metrics and streaks, sessions, the one summary (seed 003),
and the global context shared by all users."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import date
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from memvault import ids, limits
from memvault import importance as importance_rules
from memvault.clock import Clock
from memvault.config import Settings
from memvault.errors import ConflictError, InvalidArgumentError, NotFoundError
from memvault.models import (
    ContextEntry,
    Filters,
    Job,
    Memory,
    Message,
    Metrics,
    Session,
    Summary,
    User,
    check_importance,
    check_json,
    check_text,
)
from memvault.service import validate
from memvault.service.memories import PERMANENT, MemoryOps
from memvault.service.ttl import local_day, next_streak
from memvault.storage.base import Backend
from memvault.storage.sql.codec import content_hash

FACT = "fact"
FACTS_NAMESPACE = "facts"
PERMANENT_NAMESPACE = "permanent"


def _json(value: Any, what: str, max_bytes: int = limits.MAX_JSON_BYTES) -> dict[str, Any]:
    """A JSON object (any mapping is accepted); anything else is INVALID_ARGUMENT."""
    if isinstance(value, Mapping) and not isinstance(value, dict):
        value = dict(value)
    try:
        return check_json(value, what, max_bytes)
    except ValueError as exc:
        raise validate.from_check(exc, what) from None


def _text(value: Any, what: str) -> str:
    try:
        return check_text(value, what)
    except ValueError as exc:
        raise validate.from_check(exc, what) from None


class PeopleOps(MemoryOps):
    backend: Backend
    settings: Settings
    clock: Clock

    # ------------------------------------------------------------------ users
    async def get_or_create_user(self, user_id: str, username: str | None = None) -> User:
        """The user `user_id`, created (with `username`) when new (seed 002's call)."""
        uid = validate.user_id(user_id)
        name = (
            None
            if username is None
            else validate.identifier(username, "username", limits.MAX_USERNAME_CHARS)
        )
        user = await self.backend.ensure_user(uid, name, self.clock.now())
        if name is not None and user.username is None:
            user = await self.update_user(uid, username=name)
        return user

    async def get_user(self, user_id: str) -> User:
        """Raises `NotFoundError` for an unknown user."""
        uid = validate.user_id(user_id)
        user = await self.backend.get_user(uid)
        if user is None:
            raise NotFoundError(f"no user {uid!r}", {"user_id": uid})
        return user

    async def update_user(
        self,
        user_id: str,
        *,
        username: str | None = None,
        profile: Mapping[str, Any] | None = None,
        timezone: str | None = None,
        replace_profile: bool = False,
    ) -> User:
        """Set the user's name, time zone (IANA name, for streaks) or profile fields (merged
        into the stored profile unless `replace_profile`)."""
        uid = validate.user_id(user_id)
        name = (
            None
            if username is None
            else validate.identifier(username, "username", limits.MAX_USERNAME_CHARS)
        )
        prof = None if profile is None else _json(profile, "profile")
        if timezone is not None:
            try:
                ZoneInfo(validate.identifier(timezone, "timezone", 64))
            except (ZoneInfoNotFoundError, ValueError):
                raise InvalidArgumentError(
                    f"timezone must be an IANA name such as 'Europe/Paris', got {timezone!r}"
                ) from None
        now = self.clock.now()

        def change(user: User) -> User:
            merged = user.profile
            if prof is not None:
                merged = prof if replace_profile else {**user.profile, **prof}
                _json(merged, "profile")
            return user.model_copy(
                update={
                    "username": name if name is not None else user.username,
                    "profile": merged,
                    "timezone": timezone if timezone is not None else user.timezone,
                    "updated_at": now,
                }
            )

        return await self.backend.update_user(uid, change)

    async def list_users(self, *, limit: int | None = None, after: str | None = None) -> list[User]:
        """Users in id order; pass the last id as `after` for the next page."""
        return await self.backend.list_users(validate.limit(limit), after)

    # ------------------------------------------------------------------ messages
    async def add_message(
        self,
        user_id: str,
        role: str,
        content: str,
        *,
        session_id: str | None = None,
        metadata: Mapping[str, Any] | None = None,
        extract: bool | None = None,
    ) -> Message:
        """Append to the conversation history, keeping the newest `max_messages` (seed 002's
        `MAX_MESSAGES`); counts towards the user's metrics and, for `user` messages, the
        daily streak.

        `extract`: queue the message for memory extraction (in the same transaction; a
        background worker does it). None: when an extractor is configured
        (`MEMVAULT_EXTRACTOR`) and the role is among `extract_roles`; True: always (with
        the rule extractor when none is configured); False: never."""
        if extract is not None and not isinstance(extract, bool):
            raise InvalidArgumentError("extract must be true, false or null", {"field": "extract"})
        message = self._new_message(user_id, role, content, session_id, metadata)
        stored, _ = await self._store_message(message, extract)
        return stored

    def _new_message(
        self,
        user_id: str,
        role: str,
        content: str,
        session_id: str | None,
        metadata: Mapping[str, Any] | None,
    ) -> Message:
        """A message checked and stamped, not stored yet."""
        uid = validate.user_id(user_id)
        if role not in limits.MESSAGE_ROLES:
            raise InvalidArgumentError(
                f"role must be one of {list(limits.MESSAGE_ROLES)}, got {role!r}", {"field": "role"}
            )
        text = _text(content, "content")
        sid = None if session_id is None else validate.session_id(session_id)
        meta = _json(metadata or {}, "metadata")
        return Message.model_construct(
            message_id=ids.new_id("msg"),
            user_id=uid,
            role=role,
            content=text,
            session_id=sid,
            metadata=meta,
            created_at=self.clock.now(),
        )

    async def _store_message(
        self, message: Message, extract: bool | None
    ) -> tuple[Message, list[Job]]:
        uid, role, now = message.user_id, message.role, message.created_at
        user = await self.backend.get_user(uid)
        tz = None if user is None else user.timezone

        def count(m: Metrics) -> Metrics:
            by_role = dict(m.messages_by_role)
            by_role[role] = by_role.get(role, 0) + 1
            update: dict[str, Any] = {
                "total_messages": m.total_messages + 1,
                "messages_by_role": by_role,
                "first_interaction_at": m.first_interaction_at or now,
                "last_interaction_at": now,
            }
            if role == "user":
                cur, longest, last = next_streak(
                    m.last_active_date, m.current_streak, m.longest_streak, local_day(now, tz)
                )
                update.update(current_streak=cur, longest_streak=longest, last_active_date=last)
            return m.model_copy(update=update)

        jobs = await self._extraction_jobs(message, extract)
        stored = await self.backend.add_message(message, self.settings.max_messages, count, jobs)
        if jobs:
            self._jobs_queued()
        return stored, jobs

    # Hooks the extraction layer (`service.extraction.ExtractOps`) fills in.
    async def _extraction_jobs(self, message: Message, extract: bool | None) -> list[Job]:
        return []

    def _jobs_queued(self) -> None:
        """Jobs were added: wake the worker, if any."""

    async def get_message_history(
        self, user_id: str, *, limit: int | None = None, session_id: str | None = None
    ) -> list[Message]:
        """The newest `limit` messages (all kept ones by default), oldest first."""
        uid = validate.user_id(user_id)
        n = validate.limit(
            limit, default=self.settings.max_messages, maximum=limits.MAX_MESSAGES_LIMIT
        )
        sid = None if session_id is None else validate.session_id(session_id)
        return await self.backend.messages(uid, n, sid)

    async def clear_message_history(self, user_id: str) -> int:
        """Delete a user's conversation history; returns how many messages went."""
        return await self.backend.clear_messages(validate.user_id(user_id))

    # ------------------------------------------------------------------ facts, permanent
    async def add_user_fact(
        self,
        user_id: str,
        fact: str,
        category: str | None = None,
        *,
        importance: float | None = None,
        metadata: Mapping[str, Any] | None = None,
        actor: str | None = None,
    ) -> Memory:
        """Store a fact about the user under a category (seed 002). The same fact again
        (ignoring case and spacing) updates the stored one instead of adding a copy."""
        uid = validate.user_id(user_id)
        cat = category or self.settings.default_fact_category
        text = _text(fact, "fact")
        meta = _json(metadata or {}, "metadata")
        if importance is None:
            imp = (
                importance_rules.derive(FACT, cat, text)
                if self.settings.auto_importance
                else importance_rules.DEFAULT
            )
        else:
            try:
                imp = check_importance(importance)
            except ValueError as exc:
                raise validate.from_check(exc, "importance") from None
        now = self.clock.now()
        existing = await self.backend.find_by_hash(uid, FACTS_NAMESPACE, content_hash(text), now)
        if existing is not None:
            patch: dict[str, Any] = {
                "category": cat,
                "importance": max(imp, existing.importance),
            }
            if meta:
                patch["metadata"] = {**existing.metadata, **meta}
            merged = await self.update(uid, existing.memory_id, patch, actor=actor)
            return merged
        return await self.add(
            uid,
            text,
            namespace=FACTS_NAMESPACE,
            memory_type=FACT,
            category=cat,
            importance=imp,
            metadata=meta,
            actor=actor,
        )

    async def get_user_facts(self, user_id: str, category: str | None = None) -> list[Memory]:
        """The user's live facts, oldest first, optionally of one category."""
        return await self._all(user_id, Filters(memory_types=[FACT], category=category))

    async def add_permanent_memory(
        self, user_id: str, content: str | dict[str, Any], **fields: Any
    ) -> Memory:
        """A memory that never expires (seed 002's permanent memories)."""
        if "ttl_seconds" in fields or "expires_at" in fields:
            raise InvalidArgumentError("permanent memories cannot expire")
        fields.setdefault("namespace", PERMANENT_NAMESPACE)
        return await self.add(user_id, content, memory_type=PERMANENT, **fields)

    async def get_permanent_memories(self, user_id: str) -> list[Memory]:
        return await self._all(user_id, Filters(memory_types=[PERMANENT]))

    async def _all(self, user_id: str, filters: Filters) -> list[Memory]:
        uid = validate.user_id(user_id)
        if await self.backend.get_user(uid) is None:
            return []
        out: list[Memory] = []
        cursor = None
        while True:
            page = await self.list_memories(
                uid,
                filters=filters,
                order="created_asc",
                limit=limits.MAX_PAGE_LIMIT,
                cursor=cursor,
            )
            out.extend(page.items)
            if page.next_cursor is None:
                return out
            cursor = page.next_cursor

    # ------------------------------------------------------------------ metrics, streaks
    async def update_streak(self, user_id: str, *, today: date | None = None) -> Metrics:
        """Record activity today (in the user's time zone) and return the streak."""
        uid = validate.user_id(user_id)
        user = await self.get_or_create_user(uid)
        day = today or local_day(self.clock.now(), user.timezone)
        if not isinstance(day, date):
            raise InvalidArgumentError("today must be a date")

        def change(m: Metrics) -> Metrics:
            cur, longest, last = next_streak(
                m.last_active_date, m.current_streak, m.longest_streak, day
            )
            return m.model_copy(
                update={"current_streak": cur, "longest_streak": longest, "last_active_date": last}
            )

        return await self.backend.update_metrics(uid, change)

    async def increment_metric(self, user_id: str, name: str, by: int = 1) -> Metrics:
        """Add `by` to the user's counter `name`."""
        uid = validate.user_id(user_id)
        key = validate.identifier(name, "metric name", limits.MAX_CATEGORY_CHARS)
        if isinstance(by, bool) or not isinstance(by, int) or abs(by) > 1_000_000_000:
            raise InvalidArgumentError("by must be an integer of at most 1e9 in size")
        await self.get_or_create_user(uid)

        def change(m: Metrics) -> Metrics:
            counters = dict(m.counters)
            counters[key] = counters.get(key, 0) + by
            return m.model_copy(update={"counters": counters})

        return await self.backend.update_metrics(uid, change)

    async def get_metrics(self, user_id: str) -> Metrics:
        """The user's metrics (zeros for a user with no activity yet)."""
        uid = validate.user_id(user_id)
        return await self.backend.get_metrics(uid) or Metrics(user_id=uid)

    # ------------------------------------------------------------------ sessions
    async def create_session(
        self,
        user_id: str,
        *,
        metadata: Mapping[str, Any] | None = None,
        agent_id: str | None = None,
    ) -> Session:
        uid = validate.user_id(user_id)
        meta = _json(metadata or {}, "session metadata")
        agent = (
            None
            if agent_id is None
            else validate.identifier(agent_id, "agent_id", limits.MAX_AGENT_ID_CHARS)
        )
        now = self.clock.now()
        session = Session.model_construct(
            session_id=ids.new_id("ses"),
            user_id=uid,
            agent_id=agent,
            metadata=meta,
            status="active",
            created_at=now,
            updated_at=now,
            ended_at=None,
        )
        return await self.backend.insert_session(session)

    async def get_session(self, user_id: str, session_id: str) -> Session:
        uid, sid = validate.user_id(user_id), validate.session_id(session_id)
        session = await self.backend.get_session(uid, sid)
        if session is None:
            raise NotFoundError(f"no session {sid!r} for user {uid!r}", {"session_id": sid})
        return session

    async def update_session(
        self, user_id: str, session_id: str, *, metadata: Mapping[str, Any]
    ) -> Session:
        """Merge `metadata` into an active session's metadata."""
        uid, sid = validate.user_id(user_id), validate.session_id(session_id)
        meta = _json(metadata, "session metadata")
        now = self.clock.now()

        def change(s: Session) -> Session:
            if s.status != "active":
                raise ConflictError(f"session {sid!r} has ended", {"session_id": sid})
            merged = _json({**s.metadata, **meta}, "session metadata")
            return s.model_copy(update={"metadata": merged, "updated_at": now})

        return await self.backend.update_session(uid, sid, change)

    async def end_session(self, user_id: str, session_id: str) -> Session:
        uid, sid = validate.user_id(user_id), validate.session_id(session_id)
        now = self.clock.now()

        def change(s: Session) -> Session:
            if s.status != "active":
                raise ConflictError(f"session {sid!r} has already ended", {"session_id": sid})
            return s.model_copy(update={"status": "ended", "ended_at": now, "updated_at": now})

        return await self.backend.update_session(uid, sid, change)

    async def list_sessions(
        self, user_id: str, *, status: str | None = None, limit: int | None = None
    ) -> list[Session]:
        uid = validate.user_id(user_id)
        if status not in (None, "active", "ended"):
            raise InvalidArgumentError(f"status must be 'active' or 'ended', got {status!r}")
        return await self.backend.list_sessions(uid, validate.limit(limit), status)

    # ------------------------------------------------------------------ summary (seed 003)
    async def save_summary(self, user_id: str | int, content: str) -> Summary:
        """Upsert the user's one summary: `created_at` stays, `updated_at` moves."""
        uid = validate.user_id(user_id)
        return await self.backend.put_summary(uid, _text(content, "content"), self.clock.now())

    async def get_summary(self, user_id: str | int) -> Summary | None:
        return await self.backend.get_summary(validate.user_id(user_id))

    # ------------------------------------------------------------------ global context
    async def set_global_context(
        self, key: str, value: Any, *, actor: str | None = None
    ) -> ContextEntry:
        """Set a value every user's context can see."""
        k = validate.identifier(key, "key", limits.MAX_NAMESPACE_CHARS)
        checked = _json({"value": value}, "value", limits.MAX_GLOBAL_VALUE_BYTES)["value"]
        return await self.backend.put_context(k, checked, self.clock.now(), actor)

    async def get_global_context(self) -> dict[str, Any]:
        """Every global value by key."""
        return {e.key: e.value for e in await self.backend.list_context()}

    async def delete_global_context(self, key: str) -> None:
        k = validate.identifier(key, "key", limits.MAX_NAMESPACE_CHARS)
        if not await self.backend.delete_context(k):
            raise NotFoundError(f"no global context key {k!r}", {"key": k})
