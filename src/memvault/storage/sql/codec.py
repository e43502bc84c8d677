"""Rows to records and back, for drivers that hand back plain tuples (sqlite3).

Reads build frozen records without re-validating what memvault itself wrote: validation
happened on the way in, and skipping it keeps a 100-row listing well under a millisecond.
"""

from __future__ import annotations

import hashlib
import json
from datetime import UTC, date, datetime
from typing import Any, TypeVar

from pydantic import BaseModel

from memvault.models import Content, HistoryEntry, Memory, content_text

R = TypeVar("R", bound=BaseModel)

MEMORY_COLUMNS = (
    "pk",
    "memory_id",
    "user_id",
    "namespace",
    "key",
    "memory_type",
    "content",
    "content_object",
    "metadata",
    "tags",
    "category",
    "importance",
    "access_count",
    "last_accessed_at",
    "expires_at",
    "session_id",
    "agent_id",
    "version",
    "deleted_at",
    "created_at",
    "updated_at",
)
MEMORY_SELECT = ", ".join(f"m.{c}" if c != "key" else 'm."key"' for c in MEMORY_COLUMNS)

_EMPTY_LIST = "[]"
_EMPTY_OBJ = "{}"


def ts(value: datetime | None) -> str | None:
    """Aware datetime -> fixed-width UTC text that sorts like the instant it names."""
    if value is None:
        return None
    return value.astimezone(UTC).isoformat(timespec="microseconds")


def parse_ts(value: str | None) -> datetime | None:
    return None if value is None else datetime.fromisoformat(value)


def dumps(value: Any) -> str:
    return json.dumps(value, ensure_ascii=False, separators=(",", ":"))


def loads_list(value: str) -> list[Any]:
    if value == _EMPTY_LIST:
        return []
    out: list[Any] = json.loads(value)
    return out


def loads_obj(value: str | None) -> dict[str, Any]:
    if value is None or value == _EMPTY_OBJ:
        return {}
    out: dict[str, Any] = json.loads(value)
    return out


def content_hash(content: Content) -> str:
    """Hash of the normalised text: exact-duplicate detection across white space and case."""
    normal = " ".join(content_text(content).split()).casefold()
    return hashlib.sha256(normal.encode()).hexdigest()


def construct(cls: type[R], values: dict[str, Any]) -> R:
    """Build a record from trusted storage values holding every field, without validation.

    What `model_construct` does minus its per-field default handling, which cost 20 us a
    row and dominated a 100-row listing (profiled with cProfile on `list_memories`).
    """
    obj = cls.__new__(cls)
    object.__setattr__(obj, "__dict__", values)
    object.__setattr__(obj, "__pydantic_fields_set__", set(values))
    object.__setattr__(obj, "__pydantic_extra__", None)
    object.__setattr__(obj, "__pydantic_private__", None)
    return obj


def memory_from_row(row: tuple[Any, ...]) -> Memory:
    (
        _pk,
        memory_id,
        user_id,
        namespace,
        key,
        memory_type,
        content,
        content_object,
        metadata,
        tags,
        category,
        importance,
        access_count,
        last_accessed_at,
        expires_at,
        session_id,
        agent_id,
        version,
        deleted_at,
        created_at,
        updated_at,
    ) = row
    return construct(
        Memory,
        dict(
            memory_id=memory_id,
            user_id=user_id,
            namespace=namespace,
            key=key,
            memory_type=memory_type,
            content=content if content_object is None else json.loads(content_object),
            metadata=loads_obj(metadata),
            tags=loads_list(tags),
            category=category,
            importance=importance,
            access_count=access_count,
            last_accessed_at=parse_ts(last_accessed_at),
            expires_at=parse_ts(expires_at),
            session_id=session_id,
            agent_id=agent_id,
            version=version,
            deleted_at=parse_ts(deleted_at),
            created_at=datetime.fromisoformat(created_at),
            updated_at=datetime.fromisoformat(updated_at),
        ),
    )


def memory_values(m: Memory) -> dict[str, Any]:
    """Column values for an insert or a full-row update."""
    is_obj = isinstance(m.content, dict)
    return {
        "memory_id": m.memory_id,
        "user_id": m.user_id,
        "namespace": m.namespace,
        "key": m.key,
        "memory_type": m.memory_type,
        "content": content_text(m.content),
        "content_object": dumps(m.content) if is_obj else None,
        "content_hash": content_hash(m.content),
        "metadata": dumps(m.metadata),
        "tags": dumps(m.tags),
        "category": m.category,
        "importance": m.importance,
        "access_count": m.access_count,
        "last_accessed_at": ts(m.last_accessed_at),
        "expires_at": ts(m.expires_at),
        "session_id": m.session_id,
        "agent_id": m.agent_id,
        "version": m.version,
        "deleted_at": ts(m.deleted_at),
        "created_at": ts(m.created_at),
        "updated_at": ts(m.updated_at),
    }


def snapshot(m: Memory) -> str:
    """The JSON snapshot kept in a history row."""
    return dumps(m.model_dump(mode="json", exclude={"access_count", "last_accessed_at"}))


def history_from_row(row: tuple[Any, ...]) -> HistoryEntry:
    history_id, memory_id, version, operation, changed_at, actor, reason, snap = row
    return HistoryEntry.model_construct(
        history_id=history_id,
        memory_id=memory_id,
        version=version,
        operation=operation,
        changed_at=datetime.fromisoformat(changed_at),
        actor=actor,
        reason=reason,
        snapshot=json.loads(snap),
    )


def parse_date(value: str | None) -> date | None:
    return None if value is None else date.fromisoformat(value)
