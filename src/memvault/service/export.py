"""Per-user export: everything a user owns, as records a door writes as one JSON document or
a JSONL stream (`memvault.service.export.document` builds the former)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable
from datetime import datetime
from typing import Any

from memvault.clock import Clock
from memvault.errors import NotFoundError
from memvault.models import Filters, User
from memvault.service import validate
from memvault.storage.base import Backend

EXPORT_FORMAT = "memvault-export"
EXPORT_VERSION = 2
"""1: one user's records. 2: adds `scope` (`user` or `all`), `global_context` records, and
`user_id` on history records."""
_PAGE = 500
_ALL = 1_000_000_000
KINDS = (
    "header",
    "user",
    "memory",
    "history",
    "message",
    "session",
    "summary",
    "metrics",
    "global_context",
)
"""Record kinds, in the order an export yields them."""

_EVERYTHING = Filters(include_deleted=True, include_expired=True, include_superseded=True)


class ExportOps:
    """The export call of the service. Concrete class: `AsyncMemVault`."""

    backend: Backend
    clock: Clock

    async def export_user(self, user_id: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Yield `(kind, record)` for everything `user_id` owns: a header, the user, every
        memory (deleted and expired ones too) with its history, messages, sessions, the
        summary and the metrics. Records are JSON-ready dicts.

        Raises:
            NotFoundError: no such user (raised before anything is yielded).
        """
        uid = validate.user_id(user_id)
        user = await self.backend.get_user(uid)
        if user is None:
            raise NotFoundError(f"no user {uid!r}", {"user_id": uid})
        now = self.clock.now()
        yield (
            "header",
            {
                "format": EXPORT_FORMAT,
                "version": EXPORT_VERSION,
                "scope": "user",
                "user_id": uid,
                "exported_at": now.isoformat(),
            },
        )
        async for item in self._user_records(user, now):
            yield item

    async def export_all(self) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        """Yield `(kind, record)` for the whole store: a header (`scope: all`), then each
        user's records as `export_user` gives them (users in id order), then the global
        context. API keys, the audit log, vectors and jobs are not exported (vectors are
        computed again on import)."""
        now = self.clock.now()
        yield (
            "header",
            {
                "format": EXPORT_FORMAT,
                "version": EXPORT_VERSION,
                "scope": "all",
                "exported_at": now.isoformat(),
            },
        )
        after: str | None = None
        while True:
            users = await self.backend.list_users(_PAGE, after)
            for user in users:
                async for item in self._user_records(user, now):
                    yield item
            if len(users) < _PAGE:
                break
            after = users[-1].user_id
        for entry in await self.backend.list_context():
            yield "global_context", entry.model_dump(mode="json")

    async def _user_records(
        self, user: User, now: datetime
    ) -> AsyncIterator[tuple[str, dict[str, Any]]]:
        uid = user.user_id
        yield "user", user.model_dump(mode="json")
        changed: list[str] = []
        cursor: str | None = None
        while True:
            items, cursor = await self.backend.query(
                uid, _EVERYTHING, "created_asc", cursor, _PAGE, now
            )
            for m in items:
                if m.version > 1 or m.deleted_at is not None:
                    changed.append(m.memory_id)
                yield "memory", m.model_dump(mode="json")
            if cursor is None:
                break
        for memory_id in changed:
            for h in await self.backend.history(uid, memory_id):
                if h.history_id:  # 0: a creation implied by the memory row, not stored
                    yield "history", {"user_id": uid, **h.model_dump(mode="json")}
        for msg in await self.backend.messages(uid, _ALL, None):
            yield "message", msg.model_dump(mode="json")
        for s in await self.backend.list_sessions(uid, _ALL, None):
            yield "session", s.model_dump(mode="json")
        summary = await self.backend.get_summary(uid)
        if summary is not None:
            yield "summary", summary.model_dump(mode="json")
        metrics = await self.backend.get_metrics(uid)
        if metrics is not None:
            yield "metrics", metrics.model_dump(mode="json")


def assemble(records: Iterable[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """One JSON document of an export (pure): the header's fields, then a list per kind
    (`memories`, `history`, `messages`, `sessions`), then `summary` and `metrics`."""
    lists = {
        "memory": "memories",
        "history": "history",
        "message": "messages",
        "session": "sessions",
    }
    doc: dict[str, Any] = {name: [] for name in lists.values()}
    for kind, record in records:
        if kind == "header":
            doc = {**record, **doc}
        elif kind in lists:
            doc[lists[kind]].append(record)
        else:
            doc[kind] = record
    doc.setdefault("summary", None)
    doc.setdefault("metrics", None)
    return doc


async def document(records: AsyncIterator[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
    """Gather an export into one JSON document (`assemble`)."""
    return assemble([r async for r in records])
