"""Records from the seed systems' rows and JSON files, checked as memvault checks a write
(used by `memvault import-seed` and by the JSON-file backend opening a seed 002 directory).

A row that cannot become a record raises `SkipRow`, whose message is the reason.
Ids are derived from the source (`ids.derived_id`), so the same row always gives the same id.
"""

from __future__ import annotations

import json
import math
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from memvault import ids, limits
from memvault.importance import derive
from memvault.models import (
    Memory,
    Message,
    Metrics,
    Summary,
    User,
    check_content,
    check_identifier,
    check_json,
    check_namespace,
    check_tags,
    check_text,
    construct,
)


class SkipRow(Exception):
    """A source row that cannot become a record; the message is the reason."""


def parse_time(value: Any, what: str = "time") -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or not 0 <= value < 253402300800:
            raise SkipRow(f"bad {what}")
        return datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise SkipRow(f"bad {what}") from None
    else:
        raise SkipRow(f"bad {what}")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def epoch_ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def parse_user_id(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        raise SkipRow("no user id")
    text = str(value)
    try:
        return check_identifier(text, "user_id", limits.MAX_USER_ID_CHARS)
    except ValueError:
        raise SkipRow("bad user id") from None


def checked(fn: Any, *args: Any, reason: str) -> Any:
    try:
        return fn(*args)
    except ValueError:
        raise SkipRow(reason) from None


def memory_record(
    *,
    source: str,
    user_id: str,
    content: Any,
    namespace: str,
    key: str | None,
    memory_type: str,
    category: str | None,
    tags: list[str],
    importance: float | None,
    created: datetime,
    updated: datetime | None = None,
    access_count: int = 0,
    last_accessed: datetime | None = None,
    expires: datetime | None = None,
    deleted: datetime | None = None,
    metadata: dict[str, Any] | None = None,
    said: datetime | None = None,
) -> Memory:
    """`said`: the time the source gives (the id's time part; none: the epoch, so the id
    does not depend on when the import ran)."""
    text = checked(check_content, content, reason="empty or oversized content")
    ns = checked(check_namespace, namespace, reason="bad namespace")
    memory_id = ids.derived_id("mem", 0 if said is None else epoch_ms(said), source)
    k = (
        memory_id
        if key is None
        else checked(check_identifier, key, "key", limits.MAX_KEY_CHARS, reason="bad key")
    )
    if importance is None:
        importance = derive(memory_type, category, str(text))
    if not 0.0 <= importance <= 1.0:
        raise SkipRow("importance outside 0..1")
    return construct(
        Memory,
        {
            "memory_id": memory_id,
            "user_id": user_id,
            "namespace": ns,
            "key": k,
            "memory_type": memory_type,
            "content": text,
            "metadata": checked(check_json, metadata or {}, "metadata", reason="bad metadata"),
            "tags": checked(check_tags, tags, reason="bad tags"),
            "category": category,
            "importance": float(importance),
            "access_count": max(0, int(access_count)),
            "last_accessed_at": last_accessed,
            "expires_at": expires,
            "session_id": None,
            "agent_id": None,
            "version": 1,
            "deleted_at": deleted,
            "created_at": created,
            "updated_at": max(updated or created, created),
            "valid_from": None,
            "valid_to": None,
            "superseded_by": None,
        },
    )


def user_record(
    user_id: str, username: Any, when: datetime, profile: dict[str, Any] | None = None
) -> User:
    name = None
    if isinstance(username, str) and username.strip():
        try:
            name = check_identifier(username.strip(), "username", limits.MAX_USERNAME_CHARS)
        except ValueError:
            name = None
    return construct(
        User,
        {
            "user_id": user_id,
            "username": name,
            "profile": profile or {},
            "timezone": None,
            "created_at": when,
            "updated_at": when,
        },
    )


def seed001_row(row: dict[str, Any], now: datetime) -> Memory:
    user_id = parse_user_id(row.get("user_id"))
    created = parse_time(row.get("created_at"), "created_at") or now
    tags: Any = row.get("tags")
    if isinstance(tags, str):
        try:
            tags = json.loads(tags) if tags.strip() else []
        except ValueError:
            raise SkipRow("tags are not a JSON list") from None
    if tags is None:
        tags = []
    if not isinstance(tags, list):
        raise SkipRow("tags are not a JSON list")
    importance = row.get("importance")
    if importance is None:
        importance = 0.5
    if isinstance(importance, bool) or not isinstance(importance, int | float):
        raise SkipRow("importance is not a number")
    deleted = None
    if row.get("is_deleted") in (True, 1, "1", "t", "true"):
        deleted = parse_time(row.get("updated_at"), "updated_at") or created
    namespace = row.get("namespace") or "default"
    key = row.get("key")
    return memory_record(
        said=parse_time(row.get("created_at"), "created_at"),
        source=f"seed001:long_term_memory:{row.get('id')}:{user_id}:{namespace}:{key}",
        user_id=user_id,
        content=row.get("content"),
        namespace=str(namespace),
        key=None if key is None else str(key),
        memory_type="note",
        category=None,
        tags=[str(t) for t in tags],
        importance=float(importance),
        created=created,
        updated=parse_time(row.get("updated_at"), "updated_at"),
        access_count=int(row.get("access_count") or 0),
        last_accessed=parse_time(row.get("last_accessed_at"), "last_accessed_at"),
        expires=parse_time(row.get("expires_at"), "expires_at"),
        deleted=deleted,
        metadata={"imported_from": "seed001", "source_id": row.get("id")},
    )


def seed003_row(row: dict[str, Any], now: datetime) -> Summary:
    user_id = parse_user_id(row.get("user_id"))
    content = checked(
        check_text, row.get("content"), "summary", reason="empty or oversized content"
    )
    created = parse_time(row.get("created_at"), "created_at") or now
    updated = parse_time(row.get("updated_at"), "updated_at") or created
    return construct(
        Summary,
        {
            "user_id": user_id,
            "content": content,
            "created_at": created,
            "updated_at": max(updated, created),
        },
    )


def elysia_message(user_id: str, i: int, item: Any, now: datetime) -> Message:
    if not isinstance(item, dict):
        raise SkipRow("not an object")
    role = item.get("role")
    if role not in limits.MESSAGE_ROLES:
        raise SkipRow("unknown role")
    content = checked(
        check_text, item.get("content"), "content", reason="empty or oversized content"
    )
    said = parse_time(item.get("timestamp") or item.get("created_at"), "timestamp")
    when = said or now
    return construct(
        Message,
        {
            "message_id": ids.derived_id(
                "msg", 0 if said is None else epoch_ms(said), f"seed002:{user_id}:msg:{i}:{content}"
            ),
            "user_id": user_id,
            "role": role,
            "content": content,
            "session_id": None,
            "metadata": {"imported_from": "seed002"},
            "created_at": when,
        },
    )


def elysia_fact(user_id: str, i: int, item: Any, category: str | None, now: datetime) -> Memory:
    if isinstance(item, str):
        item = {"fact": item}
    if not isinstance(item, dict):
        raise SkipRow("not an object")
    text = item.get("fact", item.get("content"))
    cat = item.get("category", category) or "general"
    try:
        cat = check_identifier(str(cat), "category", limits.MAX_CATEGORY_CHARS)
    except ValueError:
        raise SkipRow("bad category") from None
    said = parse_time(item.get("timestamp") or item.get("created_at"), "timestamp")
    when = said or now
    importance = item.get("importance")
    if importance is not None and (
        isinstance(importance, bool) or not isinstance(importance, int | float)
    ):
        raise SkipRow("importance is not a number")
    return memory_record(
        said=said,
        source=f"seed002:{user_id}:fact:{i}:{text}",
        user_id=user_id,
        content=text,
        namespace="facts",
        key=None,
        memory_type="fact",
        category=cat,
        tags=[],
        importance=None if importance is None else float(importance),
        created=when,
        metadata={"imported_from": "seed002"},
    )


def elysia_permanent(user_id: str, i: int, item: Any, now: datetime) -> Memory:
    if isinstance(item, str):
        item = {"content": item}
    if not isinstance(item, dict):
        raise SkipRow("not an object")
    tags = item.get("tags") or []
    if not isinstance(tags, list):
        raise SkipRow("tags are not a list")
    said = parse_time(item.get("timestamp") or item.get("created_at"), "timestamp")
    when = said or now
    return memory_record(
        said=said,
        source=f"seed002:{user_id}:permanent:{i}:{item.get('content')}",
        user_id=user_id,
        content=item.get("content"),
        namespace="permanent",
        key=None,
        memory_type="permanent",
        category=None,
        tags=[str(t) for t in tags],
        importance=None,
        created=when,
        metadata={"imported_from": "seed002"},
    )


def elysia_metrics(user_id: str, data: dict[str, Any]) -> Metrics:
    def count(name: str) -> int:
        value = data.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise SkipRow(f"{name} is not a count")
        return value

    known = {
        "total_messages",
        "messages_by_role",
        "first_interaction",
        "first_interaction_at",
        "last_interaction",
        "last_interaction_at",
        "current_streak",
        "longest_streak",
        "last_active_date",
        "user_id",
    }
    by_role = data.get("messages_by_role") or {}
    if not isinstance(by_role, dict) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in by_role.values()
    ):
        raise SkipRow("messages_by_role is not counts by role")
    counters = {
        str(k): v
        for k, v in data.items()
        if k not in known and isinstance(v, int) and not isinstance(v, bool)
    }
    last_day = data.get("last_active_date")
    try:
        day = None if not last_day else date.fromisoformat(str(last_day)[:10])
    except ValueError:
        raise SkipRow("bad last_active_date") from None
    return construct(
        Metrics,
        {
            "user_id": user_id,
            "total_messages": count("total_messages"),
            "messages_by_role": {str(k): int(v) for k, v in by_role.items()},
            "counters": checked(check_json, counters, "counters", reason="counters too large"),
            "first_interaction_at": parse_time(
                data.get("first_interaction_at", data.get("first_interaction"))
            ),
            "last_interaction_at": parse_time(
                data.get("last_interaction_at", data.get("last_interaction"))
            ),
            "current_streak": count("current_streak"),
            "longest_streak": count("longest_streak"),
            "last_active_date": day,
        },
    )


def record_list(data: Any, *names: str) -> list[Any]:
    """A file's list of records, whether the file holds the list or an object around it
    (`{"messages": [...]}`)."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for name in names:
            if isinstance(data.get(name), list):
                return list(data[name])
    return []


SEED002_FILES = (
    "user_profile.json",
    "conversation_history.json",
    "user_facts.json",
    "interaction_metrics.json",
    "permanent_memories.json",
)
"""The files of one user's folder in seed 002's layout."""


def seed002_user_folders(root: Path) -> list[Path]:
    """The user folders of a seed 002 data directory: visible folders holding any of
    `SEED002_FILES`, in name order."""
    if not root.is_dir():
        return []
    return sorted(
        p
        for p in root.iterdir()
        if p.is_dir()
        and not p.name.startswith(".")
        and any((p / f).exists() for f in SEED002_FILES)
    )


def is_seed002_dir(root: Path) -> bool:
    """True when `root` holds seed 002's files (an index or a user folder)."""
    return (root / "users_index.json").exists() or bool(seed002_user_folders(root))


def index_entries(data: Any) -> dict[str, dict[str, Any]]:
    """`users_index.json` as user id -> entry, whichever shape wrote it: a mapping, the
    mapping under `users`, or a list of ids or of entries with `user_id`."""
    entries = data.get("users", data) if isinstance(data, dict) else data
    if isinstance(entries, dict):
        return {str(k): (v if isinstance(v, dict) else {}) for k, v in entries.items()}
    out: dict[str, dict[str, Any]] = {}
    if isinstance(entries, list):
        for item in entries:
            if isinstance(item, dict) and "user_id" in item:
                out[str(item["user_id"])] = item
            elif isinstance(item, str | int) and not isinstance(item, bool):
                out[str(item)] = {}
    return out
