"""Bringing in data from the systems memvault replaces (`memvault import-seed`).

- `sql URL`: seed 001's `long_term_memory` table (memories by namespace and key, tags,
  importance, access counts, expiry, soft delete) and seed 003's `user_memories` table
  (one summary per user) from an existing SQLite or PostgreSQL database, read only.
- `elysia DATA_DIR`: seed 002's JSON files (`users_index.json`, one folder per user with
  `user_profile.json`, `conversation_history.json`, `user_facts.json`,
  `interaction_metrics.json`, `permanent_memories.json`; `global_context.json`).

Every row becomes a record checked as a write is; a row that cannot be (no content, a key
too long, a role memvault does not know, ...) is skipped and counted under its reason.
Imported records get ids derived from where they came from, so running the same import
again finds them and adds nothing. Times without an offset are read as UTC.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from pathlib import Path
from typing import Any

from memvault import ids, limits
from memvault.errors import InvalidArgumentError, UnavailableError
from memvault.models import (
    ContextEntry,
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
from memvault.service.archive import ImportOps
from memvault.service.importance import derive
from memvault.storage.base import Restore, RestoreCounts

BATCH = 500


@dataclass
class SeedReport:
    """What an import from a seed system did: for each source table or file, rows read,
    records imported, and rows skipped by reason."""

    source: str
    dry_run: bool = False
    sources: dict[str, dict[str, Any]] = field(default_factory=dict)
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    embedded: int = 0

    def saw(self, name: str) -> None:
        self._entry(name)["rows"] += 1

    def skip(self, name: str, reason: str) -> None:
        skipped = self._entry(name)["skipped"]
        skipped[reason] = skipped.get(reason, 0) + 1

    def _entry(self, name: str) -> dict[str, Any]:
        return self.sources.setdefault(name, {"rows": 0, "skipped": {}})

    def as_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "dry_run": self.dry_run,
            "sources": self.sources,
            "counts": self.counts,
            "embedded": self.embedded,
        }


class _Skip(Exception):
    """A source row that cannot become a record; the message is the reason."""


class SeedImportOps(ImportOps):
    """Imports from the seed systems. Concrete class: `AsyncMemVault`."""

    async def import_seed_sql(self, url: str, *, dry_run: bool = False) -> SeedReport:
        """Import seed 001's `long_term_memory` and seed 003's `user_memories` tables from
        the database at `url` (SQLite or PostgreSQL), reading only.

        Raises:
            InvalidArgumentError: neither table is there.
            UnavailableError: the database cannot be opened.
        """
        report = SeedReport(source=url, dry_run=dry_run)
        batch = await self.offload.run(_read_sql, url, report)
        await self._put(batch, report)
        return report

    async def import_seed_elysia(
        self, data_dir: str | Path, *, dry_run: bool = False
    ) -> SeedReport:
        """Import seed 002's JSON data directory (read only).

        Raises:
            InvalidArgumentError: `data_dir` is not a seed 002 data directory.
        """
        root = Path(data_dir)
        report = SeedReport(source=str(root), dry_run=dry_run)
        batch = await self.offload.run(_read_elysia, root, report, self.clock.now())
        await self._put(batch, report)
        return report

    async def _put(self, batch: Restore, report: SeedReport) -> None:
        total = RestoreCounts()
        for part in _chunks(batch):
            total.merge(await self.backend.restore(part, self.clock.now(), report.dry_run))
        report.counts = total.by_kind
        if not report.dry_run:
            report.embedded = await self._embed_missing(None)


def _chunks(batch: Restore) -> Iterator[Restore]:
    """Users first (everything else refers to them), then the rest, `BATCH` at a time."""
    yield Restore(users=batch.users, context=batch.context)
    for name in ("memories", "messages", "summaries", "metrics"):
        items = getattr(batch, name)
        for start in range(0, len(items), BATCH):
            part = Restore()
            setattr(part, name, items[start : start + BATCH])
            yield part


# ----------------------------------------------------------------------------- values
def _when(value: Any, what: str = "time") -> datetime | None:
    if value is None or value == "":
        return None
    if isinstance(value, datetime):
        parsed = value
    elif isinstance(value, date):
        parsed = datetime(value.year, value.month, value.day, tzinfo=UTC)
    elif isinstance(value, int | float) and not isinstance(value, bool):
        if not math.isfinite(value) or not 0 <= value < 253402300800:
            raise _Skip(f"bad {what}")
        return datetime.fromtimestamp(value, UTC)
    elif isinstance(value, str):
        try:
            parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
        except ValueError:
            raise _Skip(f"bad {what}") from None
    else:
        raise _Skip(f"bad {what}")
    return parsed.replace(tzinfo=UTC) if parsed.tzinfo is None else parsed.astimezone(UTC)


def _ms(when: datetime) -> int:
    return int(when.timestamp() * 1000)


def _user_id(value: Any) -> str:
    if isinstance(value, bool) or value is None:
        raise _Skip("no user id")
    text = str(value)
    try:
        return check_identifier(text, "user_id", limits.MAX_USER_ID_CHARS)
    except ValueError:
        raise _Skip("bad user id") from None


def _checked(fn: Any, *args: Any, reason: str) -> Any:
    try:
        return fn(*args)
    except ValueError:
        raise _Skip(reason) from None


def _memory(
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
    text = _checked(check_content, content, reason="empty or oversized content")
    ns = _checked(check_namespace, namespace, reason="bad namespace")
    memory_id = ids.derived_id("mem", 0 if said is None else _ms(said), source)
    k = (
        memory_id
        if key is None
        else _checked(check_identifier, key, "key", limits.MAX_KEY_CHARS, reason="bad key")
    )
    if importance is None:
        importance = derive(memory_type, category, str(text))
    if not 0.0 <= importance <= 1.0:
        raise _Skip("importance outside 0..1")
    return construct(
        Memory,
        {
            "memory_id": memory_id,
            "user_id": user_id,
            "namespace": ns,
            "key": k,
            "memory_type": memory_type,
            "content": text,
            "metadata": _checked(check_json, metadata or {}, "metadata", reason="bad metadata"),
            "tags": _checked(check_tags, tags, reason="bad tags"),
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


def _user(
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


# ----------------------------------------------------------------------------- seed 001/003
def _read_sql(url: str, report: SeedReport) -> Restore:
    from sqlalchemy import create_engine, inspect, text
    from sqlalchemy.exc import SQLAlchemyError

    from memvault.storage.migrate import engine_url

    batch = Restore()
    users: dict[str, User] = {}
    try:
        engine = create_engine(engine_url(url))
    except (SQLAlchemyError, ValueError) as exc:
        raise InvalidArgumentError(f"cannot read {url!r} as a database URL: {exc}") from None
    try:
        with engine.connect() as conn:
            tables = set(inspect(conn).get_table_names())
            if not {"long_term_memory", "user_memories"} & tables:
                raise InvalidArgumentError(
                    "neither seed 001's long_term_memory nor seed 003's user_memories table "
                    f"is in {url!r}"
                )
            names: dict[str, str] = {}
            if "users" in tables:
                cols = {c["name"] for c in inspect(conn).get_columns("users")}
                if {"id", "username"} <= cols:
                    for uid, uname in conn.execute(text("SELECT id, username FROM users")):
                        names[str(uid)] = uname
            now = datetime.now(UTC)
            if "long_term_memory" in tables:
                rows = conn.execute(text("SELECT * FROM long_term_memory ORDER BY id")).mappings()
                for row in rows:
                    report.saw("long_term_memory")
                    try:
                        m = _seed001_row(dict(row), now)
                    except _Skip as why:
                        report.skip("long_term_memory", str(why))
                        continue
                    users.setdefault(
                        m.user_id, _user(m.user_id, names.get(m.user_id), m.created_at)
                    )
                    batch.memories.append(m)
            if "user_memories" in tables:
                latest: dict[str, Summary] = {}
                rows = conn.execute(text("SELECT * FROM user_memories ORDER BY id")).mappings()
                for row in rows:
                    report.saw("user_memories")
                    try:
                        s = _seed003_row(dict(row), now)
                    except _Skip as why:
                        report.skip("user_memories", str(why))
                        continue
                    kept = latest.get(s.user_id)
                    if kept is not None:
                        older = s if s.updated_at <= kept.updated_at else kept
                        report.skip("user_memories", "an older summary of the same user")
                        if older is kept:
                            latest[s.user_id] = s
                        continue
                    latest[s.user_id] = s
                for s in latest.values():
                    users.setdefault(
                        s.user_id, _user(s.user_id, names.get(s.user_id), s.created_at)
                    )
                    batch.summaries.append(s)
    except SQLAlchemyError as exc:
        raise UnavailableError(f"cannot read {url!r}: {exc.__class__.__name__}") from None
    finally:
        engine.dispose()
    batch.users = list(users.values())
    return batch


def _seed001_row(row: dict[str, Any], now: datetime) -> Memory:
    user_id = _user_id(row.get("user_id"))
    created = _when(row.get("created_at"), "created_at") or now
    tags: Any = row.get("tags")
    if isinstance(tags, str):
        try:
            tags = json.loads(tags) if tags.strip() else []
        except ValueError:
            raise _Skip("tags are not a JSON list") from None
    if tags is None:
        tags = []
    if not isinstance(tags, list):
        raise _Skip("tags are not a JSON list")
    importance = row.get("importance")
    if importance is None:
        importance = 0.5
    if isinstance(importance, bool) or not isinstance(importance, int | float):
        raise _Skip("importance is not a number")
    deleted = None
    if row.get("is_deleted") in (True, 1, "1", "t", "true"):
        deleted = _when(row.get("updated_at"), "updated_at") or created
    namespace = row.get("namespace") or "default"
    key = row.get("key")
    return _memory(
        said=_when(row.get("created_at"), "created_at"),
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
        updated=_when(row.get("updated_at"), "updated_at"),
        access_count=int(row.get("access_count") or 0),
        last_accessed=_when(row.get("last_accessed_at"), "last_accessed_at"),
        expires=_when(row.get("expires_at"), "expires_at"),
        deleted=deleted,
        metadata={"imported_from": "seed001", "source_id": row.get("id")},
    )


def _seed003_row(row: dict[str, Any], now: datetime) -> Summary:
    user_id = _user_id(row.get("user_id"))
    content = _checked(
        check_text, row.get("content"), "summary", reason="empty or oversized content"
    )
    created = _when(row.get("created_at"), "created_at") or now
    updated = _when(row.get("updated_at"), "updated_at") or created
    return construct(
        Summary,
        {
            "user_id": user_id,
            "content": content,
            "created_at": created,
            "updated_at": max(updated, created),
        },
    )


# ----------------------------------------------------------------------------- seed 002
SEED002_FILES = (
    "user_profile.json",
    "conversation_history.json",
    "user_facts.json",
    "interaction_metrics.json",
    "permanent_memories.json",
)


def _load(path: Path, report: SeedReport, name: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        report.saw(name)
        report.skip(name, f"unreadable: {exc.__class__.__name__}")
        return None


def _items(data: Any, *names: str) -> list[Any]:
    """A list of records, whether the file holds the list or an object around it."""
    if isinstance(data, list):
        return data
    if isinstance(data, dict):
        for name in names:
            if isinstance(data.get(name), list):
                return list(data[name])
    return []


def _read_elysia(root: Path, report: SeedReport, now: datetime) -> Restore:
    if not root.is_dir():
        raise InvalidArgumentError(f"{root} is not a directory")
    folders = sorted(
        p for p in root.iterdir() if p.is_dir() and any((p / f).exists() for f in SEED002_FILES)
    )
    index_path = root / "users_index.json"
    if not folders and not index_path.exists():
        raise InvalidArgumentError(
            f"{root} holds no users_index.json and no user folder with seed 002's files"
        )
    names: dict[str, Any] = {}
    if index_path.exists():
        index = _load(index_path, report, "users_index.json")
        entries = index.get("users", index) if isinstance(index, dict) else index
        if isinstance(entries, dict):
            for uid, info in entries.items():
                names[str(uid)] = info.get("username") if isinstance(info, dict) else None
        elif isinstance(entries, list):
            for info in entries:
                if isinstance(info, dict) and "user_id" in info:
                    names[str(info["user_id"])] = info.get("username")
                elif isinstance(info, str | int):
                    names[str(info)] = None
    batch = Restore()
    for folder in folders:
        try:
            user_id = _user_id(folder.name)
        except _Skip as why:
            report.saw("user folder")
            report.skip("user folder", str(why))
            continue
        _elysia_user(folder, user_id, names.get(user_id), batch, report, now)
    context_path = root / "global_context.json"
    if context_path.exists():
        data = _load(context_path, report, "global_context.json")
        if isinstance(data, dict):
            for key, value in data.items():
                report.saw("global_context.json")
                try:
                    k = _checked(
                        check_identifier, key, "key", limits.MAX_NAMESPACE_CHARS, reason="bad key"
                    )
                    _checked(
                        check_json, {"value": value}, "value", limits.MAX_GLOBAL_VALUE_BYTES,
                        reason="value too large or not JSON",
                    )  # fmt: skip
                except _Skip as why:
                    report.skip("global_context.json", str(why))
                    continue
                batch.context.append(
                    construct(
                        ContextEntry,
                        {"key": k, "value": value, "updated_at": now, "updated_by": "seed002"},
                    )
                )
    return batch


def _elysia_user(
    folder: Path,
    user_id: str,
    username: Any,
    batch: Restore,
    report: SeedReport,
    now: datetime,
) -> None:
    profile: dict[str, Any] = {}
    created = now
    path = folder / "user_profile.json"
    if path.exists():
        data = _load(path, report, "user_profile.json")
        if isinstance(data, dict):
            report.saw("user_profile.json")
            username = data.get("username", username)
            try:
                created = _when(data.get("created_at"), "created_at") or now
            except _Skip:
                created = now
            extra = {
                k: v
                for k, v in data.items()
                if k not in ("user_id", "username", "created_at", "updated_at")
            }
            try:
                profile = check_json(extra, "profile")
            except ValueError:
                report.skip("user_profile.json", "profile fields too large; kept the name only")
    batch.users.append(_user(user_id, username, created, profile))

    path = folder / "conversation_history.json"
    if path.exists():
        for i, item in enumerate(
            _items(_load(path, report, "conversation_history.json"), "messages", "history")
        ):
            report.saw("conversation_history.json")
            try:
                batch.messages.append(_elysia_message(user_id, i, item, now))
            except _Skip as why:
                report.skip("conversation_history.json", str(why))

    path = folder / "user_facts.json"
    if path.exists():
        data = _load(path, report, "user_facts.json")
        facts: list[tuple[Any, str | None]] = [(f, None) for f in _items(data, "facts")]
        if isinstance(data, dict) and not facts:  # {category: [facts]}
            facts = [
                (f, str(cat))
                for cat, items in data.items()
                if isinstance(items, list)
                for f in items
            ]
        for i, (item, cat) in enumerate(facts):
            report.saw("user_facts.json")
            try:
                batch.memories.append(_elysia_fact(user_id, i, item, cat, now))
            except _Skip as why:
                report.skip("user_facts.json", str(why))

    path = folder / "permanent_memories.json"
    if path.exists():
        for i, item in enumerate(
            _items(_load(path, report, "permanent_memories.json"), "memories")
        ):
            report.saw("permanent_memories.json")
            try:
                batch.memories.append(_elysia_permanent(user_id, i, item, now))
            except _Skip as why:
                report.skip("permanent_memories.json", str(why))

    path = folder / "interaction_metrics.json"
    if path.exists():
        data = _load(path, report, "interaction_metrics.json")
        if isinstance(data, dict):
            report.saw("interaction_metrics.json")
            try:
                batch.metrics.append(_elysia_metrics(user_id, data))
            except _Skip as why:
                report.skip("interaction_metrics.json", str(why))


def _elysia_message(user_id: str, i: int, item: Any, now: datetime) -> Message:
    if not isinstance(item, dict):
        raise _Skip("not an object")
    role = item.get("role")
    if role not in limits.MESSAGE_ROLES:
        raise _Skip("unknown role")
    content = _checked(
        check_text, item.get("content"), "content", reason="empty or oversized content"
    )
    said = _when(item.get("timestamp") or item.get("created_at"), "timestamp")
    when = said or now
    return construct(
        Message,
        {
            "message_id": ids.derived_id(
                "msg", 0 if said is None else _ms(said), f"seed002:{user_id}:msg:{i}:{content}"
            ),
            "user_id": user_id,
            "role": role,
            "content": content,
            "session_id": None,
            "metadata": {"imported_from": "seed002"},
            "created_at": when,
        },
    )


def _elysia_fact(user_id: str, i: int, item: Any, category: str | None, now: datetime) -> Memory:
    if isinstance(item, str):
        item = {"fact": item}
    if not isinstance(item, dict):
        raise _Skip("not an object")
    text = item.get("fact", item.get("content"))
    cat = item.get("category", category) or "general"
    try:
        cat = check_identifier(str(cat), "category", limits.MAX_CATEGORY_CHARS)
    except ValueError:
        raise _Skip("bad category") from None
    said = _when(item.get("timestamp") or item.get("created_at"), "timestamp")
    when = said or now
    importance = item.get("importance")
    if importance is not None and (
        isinstance(importance, bool) or not isinstance(importance, int | float)
    ):
        raise _Skip("importance is not a number")
    return _memory(
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


def _elysia_permanent(user_id: str, i: int, item: Any, now: datetime) -> Memory:
    if isinstance(item, str):
        item = {"content": item}
    if not isinstance(item, dict):
        raise _Skip("not an object")
    tags = item.get("tags") or []
    if not isinstance(tags, list):
        raise _Skip("tags are not a list")
    said = _when(item.get("timestamp") or item.get("created_at"), "timestamp")
    when = said or now
    return _memory(
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


def _elysia_metrics(user_id: str, data: dict[str, Any]) -> Metrics:
    def count(name: str) -> int:
        value = data.get(name, 0)
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            raise _Skip(f"{name} is not a count")
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
        raise _Skip("messages_by_role is not counts by role")
    counters = {
        str(k): v
        for k, v in data.items()
        if k not in known and isinstance(v, int) and not isinstance(v, bool)
    }
    last_day = data.get("last_active_date")
    try:
        day = None if not last_day else date.fromisoformat(str(last_day)[:10])
    except ValueError:
        raise _Skip("bad last_active_date") from None
    return construct(
        Metrics,
        {
            "user_id": user_id,
            "total_messages": count("total_messages"),
            "messages_by_role": {str(k): int(v) for k, v in by_role.items()},
            "counters": _checked(check_json, counters, "counters", reason="counters too large"),
            "first_interaction_at": _when(
                data.get("first_interaction_at", data.get("first_interaction"))
            ),
            "last_interaction_at": _when(
                data.get("last_interaction_at", data.get("last_interaction"))
            ),
            "current_streak": count("current_streak"),
            "longest_streak": count("longest_streak"),
            "last_active_date": day,
        },
    )


__all__ = ["SeedImportOps", "SeedReport"]
