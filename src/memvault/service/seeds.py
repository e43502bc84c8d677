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
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from memvault import limits
from memvault import seed_records as records
from memvault.errors import InvalidArgumentError, UnavailableError
from memvault.models import (
    ContextEntry,
    Summary,
    User,
    check_identifier,
    check_json,
    construct,
)
from memvault.seed_records import SkipRow
from memvault.service.archive import ImportOps
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
                        m = records.seed001_row(dict(row), now)
                    except SkipRow as why:
                        report.skip("long_term_memory", str(why))
                        continue
                    users.setdefault(
                        m.user_id,
                        records.user_record(m.user_id, names.get(m.user_id), m.created_at),
                    )
                    batch.memories.append(m)
            if "user_memories" in tables:
                latest: dict[str, Summary] = {}
                rows = conn.execute(text("SELECT * FROM user_memories ORDER BY id")).mappings()
                for row in rows:
                    report.saw("user_memories")
                    try:
                        s = records.seed003_row(dict(row), now)
                    except SkipRow as why:
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
                        s.user_id,
                        records.user_record(s.user_id, names.get(s.user_id), s.created_at),
                    )
                    batch.summaries.append(s)
    except SQLAlchemyError as exc:
        raise UnavailableError(f"cannot read {url!r}: {exc.__class__.__name__}") from None
    finally:
        engine.dispose()
    batch.users = list(users.values())
    return batch


# ----------------------------------------------------------------------------- seed 002


def _load(path: Path, report: SeedReport, name: str) -> Any:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        report.saw(name)
        report.skip(name, f"unreadable: {exc.__class__.__name__}")
        return None


def _read_elysia(root: Path, report: SeedReport, now: datetime) -> Restore:
    if not root.is_dir():
        raise InvalidArgumentError(f"{root} is not a directory")
    folders = records.seed002_user_folders(root)
    index_path = root / "users_index.json"
    if not folders and not index_path.exists():
        raise InvalidArgumentError(
            f"{root} holds no users_index.json and no user folder with seed 002's files"
        )
    names: dict[str, Any] = {}
    if index_path.exists():
        index = _load(index_path, report, "users_index.json")
        for uid, info in records.index_entries(index).items():
            names[uid] = info.get("username")
    batch = Restore()
    for folder in folders:
        try:
            user_id = records.parse_user_id(folder.name)
        except SkipRow as why:
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
                    k = records.checked(
                        check_identifier, key, "key", limits.MAX_NAMESPACE_CHARS, reason="bad key"
                    )
                    records.checked(
                        check_json, {"value": value}, "value", limits.MAX_GLOBAL_VALUE_BYTES,
                        reason="value too large or not JSON",
                    )  # fmt: skip
                except SkipRow as why:
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
                created = records.parse_time(data.get("created_at"), "created_at") or now
            except SkipRow:
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
    batch.users.append(records.user_record(user_id, username, created, profile))

    path = folder / "conversation_history.json"
    if path.exists():
        for i, item in enumerate(
            records.record_list(
                _load(path, report, "conversation_history.json"), "messages", "history"
            )
        ):
            report.saw("conversation_history.json")
            try:
                batch.messages.append(records.elysia_message(user_id, i, item, now))
            except SkipRow as why:
                report.skip("conversation_history.json", str(why))

    path = folder / "user_facts.json"
    if path.exists():
        data = _load(path, report, "user_facts.json")
        facts: list[tuple[Any, str | None]] = [
            (f, None) for f in records.record_list(data, "facts")
        ]
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
                batch.memories.append(records.elysia_fact(user_id, i, item, cat, now))
            except SkipRow as why:
                report.skip("user_facts.json", str(why))

    path = folder / "permanent_memories.json"
    if path.exists():
        for i, item in enumerate(
            records.record_list(_load(path, report, "permanent_memories.json"), "memories")
        ):
            report.saw("permanent_memories.json")
            try:
                batch.memories.append(records.elysia_permanent(user_id, i, item, now))
            except SkipRow as why:
                report.skip("permanent_memories.json", str(why))

    path = folder / "interaction_metrics.json"
    if path.exists():
        data = _load(path, report, "interaction_metrics.json")
        if isinstance(data, dict):
            report.saw("interaction_metrics.json")
            try:
                batch.metrics.append(records.elysia_metrics(user_id, data))
            except SkipRow as why:
                report.skip("interaction_metrics.json", str(why))
