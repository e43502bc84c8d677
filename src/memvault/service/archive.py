"""Importing an archive (`memvault import`, `POST /v1/users/{user_id}/import`).

An archive is what `export_user` / `export_all` yield, one `{"kind", "record"}` object a
line (docs/export.md). Records are checked as the service checks a write (ids, sizes,
types), then restored as they were: ids, versions, timestamps, history and access counts
kept. What the store already has (the same id) is skipped and never overwritten, so a
second import of the same archive adds nothing. Records go in batches of `IMPORT_BATCH`,
one transaction each; a malformed line stops the import there (`INVALID_ARGUMENT` with its
line number) and what came before it stays: fix the line and import again. `dry_run`
checks every line and counts what would happen, writing nothing. Vectors are computed for
the imported memories afterwards (as `reindex --missing` would).
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterable, AsyncIterator, Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ValidationError

from memvault import ids, limits
from memvault.errors import InvalidArgumentError, PermissionDeniedError
from memvault.models import (
    ContextEntry,
    HistoryEntry,
    Memory,
    Message,
    Metrics,
    Session,
    Summary,
    User,
    check_content,
    check_identifier,
    check_json,
    check_memory_type,
    check_namespace,
    check_tags,
    check_text,
)
from memvault.service.export import EXPORT_FORMAT, EXPORT_VERSION
from memvault.service.search import SearchOps
from memvault.storage.base import Restore, RestoreCounts

IMPORT_BATCH = 500
Line = tuple[int, str, dict[str, Any]]  # (line number, kind, record)


@dataclass
class ImportReport:
    """What an import did (or, with `dry_run`, would do): by kind, how many records were
    `imported`, already there (`exists`), skipped because a different live memory holds
    their key (`key_taken`), or history of a memory not in the store (`no_memory`)."""

    records: int = 0
    dry_run: bool = False
    scope: str = "user"
    counts: dict[str, dict[str, int]] = field(default_factory=dict)
    embedded: int = 0

    def as_dict(self) -> dict[str, Any]:
        return {
            "records": self.records,
            "dry_run": self.dry_run,
            "scope": self.scope,
            "counts": self.counts,
            "embedded": self.embedded,
        }


class ImportOps(SearchOps):
    """The import call of the service. Concrete class: `AsyncMemVault`."""

    async def import_archive(
        self,
        lines: Iterable[Line] | AsyncIterable[Line],
        *,
        dry_run: bool = False,
        user_id: str | None = None,
        progress: Callable[[int], None] | None = None,
    ) -> ImportReport:
        """Restore an archive's records (`(line number, kind, record)`, header first).
        With `user_id`, every record must belong to that user (a user's own import).

        Raises:
            InvalidArgumentError: a malformed line, or a header that is not a memvault
                export (`details.line`).
            PermissionDeniedError: with `user_id`, a record of another user.
        """
        report = ImportReport(dry_run=dry_run)
        total = RestoreCounts()
        header: dict[str, Any] | None = None
        batch = Restore()
        async for line, kind, record in _aiter(lines):
            if header is None:
                header = _header(line, kind, record)
                report.scope = str(header.get("scope", "user"))
                continue
            _add(batch, line, kind, record, header, user_id)
            report.records += 1
            if len(batch) >= IMPORT_BATCH:
                total.merge(await self._restore(batch, dry_run))
                batch = Restore()
                if progress is not None:
                    progress(report.records)
        if header is None:
            raise InvalidArgumentError("the archive is empty: no header line", {"line": 1})
        if len(batch):
            total.merge(await self._restore(batch, dry_run))
        if progress is not None:
            progress(report.records)
        report.counts = total.by_kind
        if not dry_run:
            report.embedded = await self._embed_missing(user_id)
        return report

    async def _restore(self, batch: Restore, dry_run: bool) -> RestoreCounts:
        return await self.backend.restore(batch, self.clock.now(), dry_run)

    async def _embed_missing(self, user_id: str | None) -> int:
        """Vectors for memories without one (imported ones), when vectors are on."""
        if not await self._vectors_usable():
            return 0
        done, after = 0, 0
        while True:
            rows = await self.backend.missing_vectors(after, 256, user_id)
            if not rows:
                return done
            after = rows[-1][0]
            got = await self._embed_rows(rows)
            if got is None:  # the embedder is down: `reindex --missing` later
                return done
            done += got


async def _aiter(lines: Iterable[Line] | AsyncIterable[Line]) -> AsyncIterator[Line]:
    if isinstance(lines, AsyncIterable):
        async for item in lines:
            yield item
    else:
        for item in lines:
            yield item


def _bad(line: int, message: str) -> InvalidArgumentError:
    return InvalidArgumentError(f"line {line}: {message}", {"line": line})


def _header(line: int, kind: str, record: dict[str, Any]) -> dict[str, Any]:
    if kind != "header" or record.get("format") != EXPORT_FORMAT:
        raise _bad(line, f"the first line must be a {EXPORT_FORMAT!r} header")
    version = record.get("version")
    if version not in range(1, EXPORT_VERSION + 1):
        raise _bad(line, f"archive version {version!r}; this memvault reads 1 to {EXPORT_VERSION}")
    if record.get("scope", "user") not in ("user", "all"):
        raise _bad(line, "scope must be 'user' or 'all'")
    return record


def _parse(line: int, cls: type[BaseModel], record: dict[str, Any]) -> Any:
    if not isinstance(record, dict):
        raise _bad(line, "a record must be a JSON object")
    try:
        parsed = cls.model_validate(record)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(p) for p in first["loc"]) or "record"
        raise _bad(line, f"{where}: {first['msg']}") from None
    for name, value in parsed.__dict__.items():
        if isinstance(value, datetime) and value.tzinfo is None:
            raise _bad(line, f"{name}: a time needs its UTC offset")
    return parsed


def parse_lines(lines: Iterable[str | bytes]) -> Iterator[Line]:
    """`(line number, kind, record)` of the non-blank lines of a JSONL archive.

    Raises:
        InvalidArgumentError: a line that is not `{"kind": "...", "record": {...}}`.
    """
    for number, raw in enumerate(lines, 1):
        text = raw.decode("utf-8", "replace") if isinstance(raw, bytes) else raw
        if not text.strip():
            continue
        try:
            obj = json.loads(text)
        except json.JSONDecodeError as exc:
            raise _bad(number, f"not JSON ({exc.msg})") from None
        if (
            not isinstance(obj, dict)
            or not isinstance(obj.get("kind"), str)
            or not isinstance(obj.get("record"), dict)
        ):
            raise _bad(number, 'each line must be {"kind": "...", "record": {...}}')
        yield number, obj["kind"], obj["record"]


def _check(line: int, fn: Callable[..., Any], *args: Any) -> Any:
    try:
        return fn(*args)
    except ValueError as exc:  # pydantic's custom errors are ValueErrors
        raise _bad(line, str(exc)) from None


def _id(line: int, value: str, prefix: str) -> None:
    if not ids.is_valid_id(value, prefix):
        raise _bad(line, f"{value!r} is not a {prefix}_ id")


_ID_LIMITS = {
    "category": limits.MAX_CATEGORY_CHARS,
    "session_id": limits.MAX_AGENT_ID_CHARS,
    "agent_id": limits.MAX_AGENT_ID_CHARS,
}


def _ids_of(line: int, **values: str | None) -> None:
    """Optional identifiers checked as a write checks them."""
    for name, value in values.items():
        if value is not None:
            _check(line, check_identifier, value, name, _ID_LIMITS[name])


def _owner(line: int, owner: str, header: dict[str, Any], only: str | None) -> None:
    _check(line, check_identifier, owner, "user_id", limits.MAX_USER_ID_CHARS)
    if only is not None and owner != only:
        raise PermissionDeniedError(
            f"line {line}: a record of user {owner!r} in an import for {only!r}", {"line": line}
        )
    if header.get("scope", "user") == "user" and header.get("user_id") not in (None, owner):
        raise _bad(line, f"a record of user {owner!r} in an archive of {header['user_id']!r}")


def _add(
    batch: Restore,
    line: int,
    kind: str,
    record: dict[str, Any],
    header: dict[str, Any],
    only: str | None,
) -> None:
    if kind == "user":
        u: User = _parse(line, User, record)
        _owner(line, u.user_id, header, only)
        _check(line, check_json, u.profile, "profile")
        batch.users.append(u)
    elif kind == "memory":
        m: Memory = _parse(line, Memory, record)
        _owner(line, m.user_id, header, only)
        _id(line, m.memory_id, "mem")
        _check(line, check_content, m.content)
        _check(line, check_namespace, m.namespace)
        _check(line, check_identifier, m.key, "key", limits.MAX_KEY_CHARS)
        _check(line, check_memory_type, m.memory_type)
        _check(line, check_json, m.metadata, "metadata")
        _check(line, check_tags, m.tags)
        _ids_of(line, category=m.category, session_id=m.session_id, agent_id=m.agent_id)
        if m.version < 1 or m.access_count < 0:
            raise _bad(line, "version must be at least 1 and access_count not negative")
        if m.valid_from is not None and m.valid_to is not None and m.valid_from >= m.valid_to:
            raise _bad(line, "valid_from must be before valid_to")
        batch.memories.append(m)
    elif kind == "history":
        owner = record.get("user_id", header.get("user_id"))
        if not isinstance(owner, str):
            raise _bad(line, "a history record needs its user_id")
        _owner(line, owner, header, only)
        h: HistoryEntry = _parse(
            line, HistoryEntry, {k: v for k, v in record.items() if k != "user_id"}
        )
        _id(line, h.memory_id, "mem")
        _check(line, check_json, h.snapshot, "snapshot", 4 * limits.MAX_CONTENT_CHARS)
        batch.history.append((owner, h))
    elif kind == "message":
        msg: Message = _parse(line, Message, record)
        _owner(line, msg.user_id, header, only)
        _id(line, msg.message_id, "msg")
        if msg.role not in limits.MESSAGE_ROLES:
            raise _bad(line, f"role must be one of {list(limits.MESSAGE_ROLES)}")
        _check(line, check_text, msg.content, "content")
        _check(line, check_json, msg.metadata, "metadata")
        _ids_of(line, session_id=msg.session_id)
        batch.messages.append(msg)
    elif kind == "session":
        s: Session = _parse(line, Session, record)
        _owner(line, s.user_id, header, only)
        _id(line, s.session_id, "ses")
        _check(line, check_json, s.metadata, "session metadata")
        _ids_of(line, agent_id=s.agent_id)
        batch.sessions.append(s)
    elif kind == "summary":
        sm: Summary = _parse(line, Summary, record)
        _owner(line, sm.user_id, header, only)
        _check(line, check_text, sm.content, "summary")
        batch.summaries.append(sm)
    elif kind == "metrics":
        mt: Metrics = _parse(line, Metrics, record)
        _owner(line, mt.user_id, header, only)
        _check(line, check_json, mt.counters, "counters")
        batch.metrics.append(mt)
    elif kind == "global_context":
        if only is not None:
            raise PermissionDeniedError(
                f"line {line}: global context is imported with an admin's archive of all",
                {"line": line},
            )
        c: ContextEntry = _parse(line, ContextEntry, record)
        _check(line, check_identifier, c.key, "key", limits.MAX_NAMESPACE_CHARS)
        _check(line, check_json, {"value": c.value}, "value", limits.MAX_GLOBAL_VALUE_BYTES)
        batch.context.append(c)
    elif kind == "header":
        raise _bad(line, "a second header")
    else:
        raise _bad(line, f"unknown record kind {kind!r}")
