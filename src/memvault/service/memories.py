"""Memory rules: create, read, update with a version check, soft delete, restore, revert,
upsert by (user, namespace, key), batches, listing, history, TTL and purge."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, time, timedelta
from typing import Any

from memvault import ids, limits
from memvault import importance as importance_rules
from memvault.clock import Clock
from memvault.config import Settings
from memvault.errors import ConflictError, InvalidArgumentError, NotFoundError, PayloadTooLargeError
from memvault.models import (
    Filters,
    HistoryEntry,
    Memory,
    MemoryPatch,
    NewMemory,
    Page,
    VectorLike,
    construct,
    content_text,
    new_memory_values,
)
from memvault.service import gcpause, validate
from memvault.service.ttl import expiry
from memvault.storage.base import Backend, Change, PurgeCounts, StoreStats
from memvault.storage.sql.queries import ORDERS

PERMANENT = "permanent"
_PATCH_FIELDS = (
    "content",
    "memory_type",
    "metadata",
    "tags",
    "category",
    "importance",
    "session_id",
    "agent_id",
    "valid_from",
    "valid_to",
)
_REVERT_FIELDS = (
    "content",
    "memory_type",
    "metadata",
    "tags",
    "category",
    "importance",
    "expires_at",
    "session_id",
    "agent_id",
    "valid_from",
    "valid_to",
    "superseded_by",
)


def build_memory(user_id: str, new: NewMemory, settings: Settings, now: datetime) -> Memory:
    """The stored form of a new memory (pure)."""
    return build_memory_from(user_id, new.__dict__, settings, now)


def build_memory_from(
    user_id: str,
    new: Mapping[str, Any],
    settings: Settings,
    now: datetime,
    memory_id: str | None = None,
) -> Memory:
    """`build_memory` from a new memory's field values (a `NewMemory`'s, every field
    present: `models.new_memory_values` gives them without making the model), with a new
    id unless `memory_id` is one made for it (`ids.new_ids`, for a batch)."""
    if memory_id is None:
        memory_id = ids.new_id("mem")
    memory_type = new["memory_type"] or settings.default_memory_type
    content = new["content"]
    importance = new["importance"]
    if importance is None:
        importance = (
            importance_rules.derive(memory_type, new["category"], content_text(content))
            if settings.auto_importance
            else importance_rules.DEFAULT
        )
    expires_at = expiry(now, new["ttl_seconds"], new["expires_at"])
    if memory_type == PERMANENT and expires_at is not None:
        raise InvalidArgumentError("permanent memories cannot expire", {"field": "expires_at"})
    return construct(
        Memory,
        {
            "memory_id": memory_id,
            "user_id": user_id,
            "namespace": new["namespace"],
            "key": new["key"] or memory_id,
            "memory_type": memory_type,
            "content": content,
            "metadata": new["metadata"],
            "tags": new["tags"],
            "category": new["category"],
            "importance": importance,
            "access_count": 0,
            "last_accessed_at": None,
            "expires_at": expires_at,
            "session_id": new["session_id"],
            "agent_id": new["agent_id"],
            "version": 1,
            "deleted_at": None,
            "created_at": now,
            "updated_at": now,
            "valid_from": new["valid_from"],
            "valid_to": new["valid_to"],
            "superseded_by": None,
        },
    )


def _visible(cur: Memory, memory_id: str, now: datetime) -> None:
    if cur.deleted_at is not None or cur.is_expired(now):
        state = "deleted" if cur.deleted_at is not None else "expired"
        raise NotFoundError(f"memory {memory_id!r} is {state}", {"memory_id": memory_id})


def _check_version(cur: Memory, expected: int | None) -> None:
    if expected is not None and cur.version != expected:
        raise ConflictError(
            f"memory {cur.memory_id!r} is at version {cur.version}, not {expected}",
            {"memory_id": cur.memory_id, "current_version": cur.version},
        )


def apply_patch(
    cur: Memory, patch: MemoryPatch, now: datetime, expected_version: int | None
) -> Memory:
    """What `cur` becomes under `patch` (pure). Raises when it is not visible or stale."""
    _visible(cur, cur.memory_id, now)
    _check_version(cur, expected_version)
    given = patch.model_fields_set
    changes: dict[str, Any] = {f: getattr(patch, f) for f in _PATCH_FIELDS if f in given}
    if "ttl_seconds" in given or "expires_at" in given:
        changes["expires_at"] = expiry(now, patch.ttl_seconds, patch.expires_at)
    memory_type = changes.get("memory_type", cur.memory_type)
    if memory_type == PERMANENT and changes.get("expires_at", cur.expires_at) is not None:
        raise InvalidArgumentError("permanent memories cannot expire", {"field": "expires_at"})
    if "valid_to" in changes and changes["valid_to"] is None:
        changes["superseded_by"] = None  # valid again: no longer replaced
    start = changes.get("valid_from", cur.valid_from)
    end = changes.get("valid_to", cur.valid_to)
    if start is not None and end is not None and start >= end:
        raise InvalidArgumentError("valid_from must be before valid_to", {"field": "valid_to"})
    if all(getattr(cur, k) == v for k, v in changes.items()):
        return cur
    return cur.model_copy(update={**changes, "version": cur.version + 1, "updated_at": now})


class MemoryOps:
    """Memory calls of the service. Concrete class: `memvault.client.AsyncMemVault`."""

    backend: Backend
    settings: Settings
    clock: Clock

    # Hooks the search layer (`service.search.SearchOps`) fills in: vectors and dedup.
    async def _store_new(
        self,
        user_id: str,
        built: list[Memory],
        change: Change,
        now: datetime,
        given: Sequence[Any] | None = None,
    ) -> list[Memory]:
        return await self.backend.insert_memories(built, change, now)

    async def _content_changed(self, user_id: str, memories: list[Memory]) -> None:
        return None

    async def add(
        self,
        user_id: str,
        content: str | dict[str, Any],
        *,
        namespace: str | None = None,
        key: str | None = None,
        memory_type: str | None = None,
        metadata: dict[str, Any] | None = None,
        tags: Sequence[str] | None = None,
        category: str | None = None,
        importance: float | None = None,
        ttl_seconds: int | None = None,
        expires_at: datetime | None = None,
        session_id: str | None = None,
        agent_id: str | None = None,
        embedding: VectorLike | None = None,
        actor: str | None = None,
        valid_from: datetime | None = None,
        valid_to: datetime | None = None,
    ) -> Memory:
        """Store one memory for `user_id` (created on first use) and return it.

        Raises:
            InvalidArgumentError: a field is malformed or out of range.
            PayloadTooLargeError: content, tags or metadata are over their limits.
            ConflictError: `key` is already used by a live memory in `namespace`.
        """
        fields: dict[str, Any] = {
            "content": content,
            "namespace": self.settings.default_namespace if namespace is None else namespace,
            "key": key,
            "memory_type": memory_type,
            "metadata": metadata if metadata is not None else {},
            "tags": tags if tags is not None else [],
            "category": category,
            "importance": importance,
            "ttl_seconds": ttl_seconds,
            "expires_at": expires_at,
            "session_id": session_id,
            "agent_id": agent_id,
        }
        for name, when in (("valid_from", valid_from), ("valid_to", valid_to)):
            if when is not None:
                fields[name] = when
        if embedding is not None:
            fields["embedding"] = embedding
        created = await self.add_many(user_id, [fields], actor=actor)
        return created[0]

    async def add_many(
        self,
        user_id: str,
        memories: Sequence[NewMemory | Mapping[str, Any]],
        *,
        actor: str | None = None,
    ) -> list[Memory]:
        """Store up to `limits.MAX_BATCH` memories in one transaction: all or none.

        Raises:
            InvalidArgumentError: an item is malformed (`details.index` says which).
            PayloadTooLargeError: the batch or an item is over a limit.
            ConflictError: a key is taken, or used twice in the batch.
        """
        with gcpause.paused(self.settings.batch_gc_pause):
            return await self._add_many(user_id, memories, actor)

    async def _add_many(
        self, user_id: str, memories: Sequence[NewMemory | Mapping[str, Any]], actor: str | None
    ) -> list[Memory]:
        uid = validate.user_id(user_id)
        if not isinstance(memories, Sequence) or isinstance(memories, str | bytes):
            raise InvalidArgumentError("memories must be a list")
        if not memories:
            raise InvalidArgumentError("memories must not be empty")
        if len(memories) > limits.MAX_BATCH:
            raise PayloadTooLargeError(
                f"a batch holds at most {limits.MAX_BATCH} memories, got {len(memories)}"
            )
        now = self.clock.now()
        built: list[Memory] = []
        given: list[Any] = []
        seen: set[tuple[str, str]] = set()
        made = ids.new_ids("mem", len(memories))
        for index, item in enumerate(memories):
            data: Any = item
            # a plain dict first: `isinstance(item, Mapping)` (an ABC) costs more than the rest
            mapping = type(item) is dict or isinstance(item, Mapping)
            if mapping:
                data = dict(item)
                if "namespace" not in data:
                    data["namespace"] = self.settings.default_namespace
            try:
                values = new_memory_values(data) if mapping else None
                if values is None:
                    values = validate.model(NewMemory, data, "memory").__dict__
                mem = build_memory_from(uid, values, self.settings, now, made[index])
            except InvalidArgumentError as exc:
                exc.details.setdefault("index", index)
                raise
            key = values["key"]
            if key is not None:
                namespace = values["namespace"]
                if (namespace, key) in seen:
                    raise ConflictError(
                        f"key {key!r} appears twice in namespace {namespace!r} in one batch",
                        {"index": index, "key": key},
                    )
                seen.add((namespace, key))
            built.append(mem)
            given.append(values["embedding"])
        return await self._store_new(uid, built, Change("create", actor), now, given)

    async def get(self, user_id: str, memory_id: str) -> Memory:
        """The live memory `memory_id` of `user_id`; counts as one access.

        Raises:
            InvalidArgumentError: `memory_id` is malformed.
            NotFoundError: no such live memory for this user (deleted, expired, or another
                user's).
        """
        uid, mid = validate.user_id(user_id), validate.memory_id(memory_id)
        found = await self.backend.fetch(uid, [mid], self.clock.now())
        if not found:
            raise NotFoundError(f"no memory {mid!r} for user {uid!r}", {"memory_id": mid})
        return found[0]

    async def inspect(self, user_id: str, memory_id: str) -> Memory:
        """The memory `memory_id` of `user_id` as stored, whatever its state (deleted,
        expired, superseded), without counting an access: for tools that show a memory to
        a person rather than to a model.

        Raises:
            InvalidArgumentError: `memory_id` is malformed.
            NotFoundError: no such memory for this user (or it was purged).
        """
        uid, mid = validate.user_id(user_id), validate.memory_id(memory_id)
        found = await self.backend.fetch_any(uid, mid)
        if found is None:
            raise NotFoundError(f"no memory {mid!r} for user {uid!r}", {"memory_id": mid})
        return found

    async def get_many(self, user_id: str, memory_ids: Sequence[str]) -> list[Memory]:
        """The live memories among `memory_ids`, in the order asked; missing ones are left out.

        Raises:
            InvalidArgumentError: an id is malformed.
            PayloadTooLargeError: more than `limits.MAX_BATCH` ids.
        """
        uid = validate.user_id(user_id)
        if isinstance(memory_ids, str) or not isinstance(memory_ids, Sequence):
            raise InvalidArgumentError("memory_ids must be a list of ids")
        if len(memory_ids) > limits.MAX_BATCH:
            raise PayloadTooLargeError(
                f"at most {limits.MAX_BATCH} ids at once, got {len(memory_ids)}"
            )
        wanted = list(dict.fromkeys(validate.memory_id(m) for m in memory_ids))
        if not wanted:
            return []
        found = {m.memory_id: m for m in await self.backend.fetch(uid, wanted, self.clock.now())}
        return [found[m] for m in wanted if m in found]

    async def update(
        self,
        user_id: str,
        memory_id: str,
        patch: MemoryPatch | Mapping[str, Any] | None = None,
        *,
        expected_version: int | None = None,
        actor: str | None = None,
        **fields: Any,
    ) -> Memory:
        """Change the fields given (in `patch` or as keywords); the version goes up by one.

        Raises:
            InvalidArgumentError: a field is malformed, or nothing would change.
            NotFoundError: no such live memory for this user.
            ConflictError: `expected_version` is not the stored version.
        """
        uid, mid = validate.user_id(user_id), validate.memory_id(memory_id)
        data: Any = patch if patch is not None else fields
        if patch is not None and fields:
            raise InvalidArgumentError("give a patch or keyword fields, not both")
        if isinstance(data, Mapping):
            data = dict(data)
        p = validate.model(MemoryPatch, data, "update")
        version = _version(expected_version)
        now = self.clock.now()
        before: list[Memory] = []

        def change(cur: Memory) -> Memory:
            before.append(cur)
            return apply_patch(cur, p, now, version)

        updated = await self.backend.mutate(uid, mid, change, Change("update", actor), now)
        if before and before[-1].content != updated.content:  # embed again only then
            await self._content_changed(uid, [updated])
        return updated

    async def delete(
        self,
        user_id: str,
        memory_id: str,
        *,
        expected_version: int | None = None,
        actor: str | None = None,
    ) -> Memory:
        """Soft-delete: hidden everywhere, restorable until purged after the retention period.

        Raises:
            NotFoundError: no such live memory for this user.
            ConflictError: `expected_version` is not the stored version.
        """
        uid, mid = validate.user_id(user_id), validate.memory_id(memory_id)
        version = _version(expected_version)
        now = self.clock.now()

        def change(cur: Memory) -> Memory:
            _visible(cur, mid, now)
            _check_version(cur, version)
            return cur.model_copy(
                update={"deleted_at": now, "version": cur.version + 1, "updated_at": now}
            )

        return await self.backend.mutate(uid, mid, change, Change("delete", actor), now)

    async def restore(self, user_id: str, memory_id: str, *, actor: str | None = None) -> Memory:
        """Bring back a soft-deleted memory.

        Raises:
            NotFoundError: no such memory, or it has expired.
            ConflictError: it is not deleted, or its key is now used by another memory.
        """
        uid, mid = validate.user_id(user_id), validate.memory_id(memory_id)
        now = self.clock.now()

        def change(cur: Memory) -> Memory:
            if cur.is_expired(now):
                raise NotFoundError(f"memory {mid!r} has expired", {"memory_id": mid})
            if cur.deleted_at is None:
                raise ConflictError(f"memory {mid!r} is not deleted", {"memory_id": mid})
            return cur.model_copy(
                update={"deleted_at": None, "version": cur.version + 1, "updated_at": now}
            )

        return await self.backend.mutate(uid, mid, change, Change("restore", actor), now)

    async def revert(
        self, user_id: str, memory_id: str, version: int, *, actor: str | None = None
    ) -> Memory:
        """Make a live memory look as it did at `version` again (a new version; history stays).

        Raises:
            NotFoundError: no such live memory, or no such version in its history.
        """
        uid, mid = validate.user_id(user_id), validate.memory_id(memory_id)
        target = _version(version)
        entries = await self.backend.history(uid, mid)
        snap = next((e.snapshot for e in entries if e.version == target), None)
        if snap is None:
            raise NotFoundError(
                f"memory {mid!r} has no version {target}", {"memory_id": mid, "version": target}
            )
        old = Memory.model_validate({**snap, "access_count": 0})
        now = self.clock.now()

        def change(cur: Memory) -> Memory:
            _visible(cur, mid, now)
            values = {f: getattr(old, f) for f in _REVERT_FIELDS}
            if values["expires_at"] is not None and values["expires_at"] <= now:
                values["expires_at"] = None  # reverting must not make it vanish at once
            return cur.model_copy(update={**values, "version": cur.version + 1, "updated_at": now})

        reverted = await self.backend.mutate(
            uid, mid, change, Change("revert", actor, f"to version {target}"), now
        )
        await self._content_changed(uid, [reverted])
        return reverted

    async def upsert(
        self,
        user_id: str,
        namespace: str,
        key: str,
        content: str | dict[str, Any],
        *,
        actor: str | None = None,
        **fields: Any,
    ) -> Memory:
        """Create the memory at (user, namespace, key), or update the live one there.

        Raises:
            InvalidArgumentError: a field is malformed.
        """
        uid = validate.user_id(user_id)
        new = validate.model(
            NewMemory, {"namespace": namespace, "key": key, "content": content, **fields}, "memory"
        )
        now = self.clock.now()
        fresh = build_memory(uid, new, self.settings, now)
        patch_data = {"content": new.content}
        for name in (
            "memory_type",
            "metadata",
            "tags",
            "category",
            "importance",
            "ttl_seconds",
            "expires_at",
            "session_id",
            "agent_id",
            "valid_from",
            "valid_to",
        ):
            if name in fields:
                patch_data[name] = getattr(new, name)
        patch = validate.model(MemoryPatch, patch_data, "update")
        memory, _created = await self.backend.upsert(
            fresh, lambda cur: apply_patch(cur, patch, now, None), Change("upsert", actor), now
        )
        await self._content_changed(uid, [memory])
        return memory

    async def list_memories(
        self,
        user_id: str,
        *,
        filters: Filters | Mapping[str, Any] | None = None,
        order: str = "created_desc",
        limit: int | None = None,
        cursor: str | None = None,
    ) -> Page:
        """One page of a user's live memories, newest first by default.

        Raises:
            InvalidArgumentError: a filter, the order, the limit or the cursor is malformed.
            NotFoundError: the user does not exist.
        """
        uid = validate.user_id(user_id)
        f = validate.filters(filters)
        if order not in ORDERS:
            raise InvalidArgumentError(f"order must be one of {list(ORDERS)}, got {order!r}")
        n = validate.limit(limit)
        if cursor is not None and not isinstance(cursor, str):
            raise InvalidArgumentError("cursor must be a string from next_cursor")
        items, next_cursor = await self.backend.query(uid, f, order, cursor, n, self.clock.now())
        if not items:  # an empty page may mean an unknown user: say so (one read, only here)
            await self._require_user(uid)
        return construct(Page, {"items": items, "next_cursor": next_cursor})

    async def history(self, user_id: str, memory_id: str) -> list[HistoryEntry]:
        """Every change of a memory, oldest first (deleted memories keep theirs until purged).

        Raises:
            NotFoundError: no such memory for this user.
        """
        uid, mid = validate.user_id(user_id), validate.memory_id(memory_id)
        entries = await self.backend.history(uid, mid)
        if not entries:
            raise NotFoundError(f"no memory {mid!r} for user {uid!r}", {"memory_id": mid})
        return entries

    async def purge(self) -> PurgeCounts:
        """Hard-delete expired memories and those soft-deleted longer than the retention
        period (`soft_delete_retention_days`), with their history."""
        now = self.clock.now()
        cutoff = now - timedelta(days=self.settings.soft_delete_retention_days)
        return await self.backend.purge(now, cutoff)

    async def count(self, user_id: str | None = None) -> int:
        """Live memories of one user, or of everyone."""
        uid = None if user_id is None else validate.user_id(user_id)
        return await self.backend.count_memories(uid, self.clock.now())

    async def stats(self, user_id: str | None = None, *, days: int = 30) -> StoreStats:
        """Counts of the whole store (or one user's part): users, live and deleted memories,
        messages, sessions, and memories created on each of the last `days` UTC days (every
        day listed, oldest first, zero included).

        Raises:
            InvalidArgumentError: `days` outside 1..366.
        """
        uid = None if user_id is None else validate.user_id(user_id)
        if isinstance(days, bool) or not isinstance(days, int) or not 1 <= days <= 366:
            raise InvalidArgumentError(f"days must be an integer in [1, 366], got {days!r}")
        now = self.clock.now()
        first = now.astimezone(UTC).date() - timedelta(days=days - 1)
        since = datetime.combine(first, time.min, tzinfo=UTC)
        got = await self.backend.store_stats(uid, since, now)
        counts = dict(got.created_by_day)
        every = [
            (d.isoformat(), counts.get(d.isoformat(), 0))
            for d in (first + timedelta(days=i) for i in range(days))
        ]
        return dataclasses.replace(got, created_by_day=every)

    async def _require_user(self, user_id: str) -> None:
        if await self.backend.get_user(user_id) is None:
            raise NotFoundError(f"no user {user_id!r}", {"user_id": user_id})


def _version(value: Any) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise InvalidArgumentError(f"a version is a positive integer, got {value!r}")
    return value
